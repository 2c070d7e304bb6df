"""xgen human-eval: the SQLite store, its refusals, and the page driven by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import struct
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from xgen.errors import ConfigError
from xgen.runtime.cli.human_eval import Store, main, prepare, wilson_interval
from xgen.runtime.human_eval.store import AnswerRejected

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
N_PER_KIND = 6  # 6 generated + 6 real images per run


def make_run(root: Path, name: str = "run", seed: int = 0) -> Path:
    """A run directory as xgen writes it: config.yaml (digits data) + checkpoints/last.ckpt of a small GAN."""
    from omegaconf import OmegaConf

    from xgen.models import GAN

    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    torch.manual_seed(seed)
    model = GAN(image_shape=(1, 28, 28), latent={"noise": 8},
                generator={"_target_": "xgen.nets.gan.MLPGenerator", "hidden": [16]},
                discriminator={"_target_": "xgen.nets.gan.MLPDiscriminator", "hidden": [16]})
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "xgen_class": "xgen.models.gan.GAN"}, run / "checkpoints" / "last.ckpt")
    OmegaConf.save(OmegaConf.create({
        "seed": 0, "model": {"_target_": "xgen.models.GAN"},
        "data": {"_target_": "xgen.data.DigitsDataModule", "size": 28, "test_fraction": 0.15, "val_size": 0.1,
                 "batch_size": 64, "seed": 0}}), run / "config.yaml")
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [make_run(root, "gan_a", 0), make_run(root, "gan_b", 1)]


def test_wilson_interval_known_values():
    # Wilson (1927) 95% interval; reference values computed by hand / statsmodels' proportion_confint(method="wilson")
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-5) and hi == pytest.approx(0.763407, abs=1e-5)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.277533, abs=1e-5)
    lo, hi = wilson_interval(9, 10)
    assert lo == pytest.approx(0.596, abs=1e-3) and hi == pytest.approx(0.98212, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_store_accepts_only_issued_tokens(runs, tmp_path):
    store = Store(tmp_path / "he.sqlite")
    keys = prepare(store, [str(runs[0])], N_PER_KIND)
    assert store.image_count(keys) == 2 * N_PER_KIND
    kinds = [r[0] for r in store.db.execute("SELECT kind FROM images ORDER BY id")]
    assert kinds.count("real") == kinds.count("fake") == N_PER_KIND
    a, b = store.new_session(), store.new_session()
    tok = store.next_token(a, keys)
    assert store.next_token(a, keys) == tok  # a reload shows the same image
    image_ids = [r[0] for r in store.db.execute("SELECT id FROM images")]
    with pytest.raises(AnswerRejected, match="no image was shown"):  # an image id as token: never shown
        store.record(a, str(image_ids[0]), "real", 3, 3)
    with pytest.raises(AnswerRejected, match="no image was shown"):
        store.record(a, "forged-token", "fake", 3, 3)
    with pytest.raises(AnswerRejected, match="another session"):
        store.record(b, tok, "fake", 3, 3)
    with pytest.raises(AnswerRejected, match="quality"):
        store.record(a, tok, "fake", 7, 3)
    with pytest.raises(AnswerRejected, match="'real' or 'fake'"):
        store.record(a, tok, "maybe", 3, 3)
    assert store.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0
    store.record(a, tok, "fake", 4, 2)
    with pytest.raises(AnswerRejected, match="already been answered"):
        store.record(a, tok, "real", 4, 2)
    assert store.image_for(tok, b) is None and store.image_for(tok, a)[:4] == b"\x89PNG"
    # every image once per session, then none
    seen = {store.db.execute("SELECT image FROM issued WHERE token=?", (tok,)).fetchone()[0]}
    while (t := store.next_token(a, keys)) is not None:
        seen.add(store.db.execute("SELECT image FROM issued WHERE token=?", (t,)).fetchone()[0])
        store.record(a, t, "real", 3, 3)
    assert seen == set(image_ids)
    res = store.results(keys)[0]
    # all answered "real" except the first ("fake"): accuracy = (#real + [first was fake]) / 12
    first_kind = store.db.execute("SELECT kind FROM images JOIN answers ON answers.image = images.id "
                                  "WHERE answers.token=?", (tok,)).fetchone()[0]
    expected = (N_PER_KIND - (first_kind == "real") + (first_kind == "fake")) / (2 * N_PER_KIND)
    assert res["answers"] == 2 * N_PER_KIND and res["accuracy"] == pytest.approx(expected)
    store.close()


def test_bad_run_directories(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    store = Store(tmp_path / "x.sqlite")
    with pytest.raises(ConfigError, match="neither checkpoints/last.ckpt nor PNG grids in samples/"):
        prepare(store, [str(empty)], 4)
    with pytest.raises(ConfigError, match="no such directory"):
        prepare(store, [str(tmp_path / "missing")], 4)
    assert main([str(empty), "--db", str(tmp_path / "y.sqlite"), "--report"]) == 2
    assert "neither checkpoints/last.ckpt" in capsys.readouterr().err


def test_samples_grids_without_checkpoint(runs, tmp_path):
    """A run with only samples/ grids: the tiles are cut out exactly (make_grid's 2-pixel padding)."""
    from torchvision.utils import make_grid, save_image

    run = tmp_path / "grid_run"
    (run / "samples").mkdir(parents=True)
    shutil.copy(runs[0] / "config.yaml", run / "config.yaml")
    imgs = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    imgs = (imgs * 255).round() / 255
    save_image(make_grid(imgs, nrow=4, padding=2, pad_value=1.0), run / "samples" / "samples_epoch000.png")
    store = Store(tmp_path / "g.sqlite")
    prepare(store, [str(run)], 10)
    from PIL import Image
    import io
    import numpy as np

    fakes = [bytes(r[0]) for r in store.db.execute("SELECT png FROM images WHERE kind='fake' ORDER BY idx")]
    assert len(fakes) == 10  # the two empty slots of the last row are skipped
    got = torch.stack([torch.from_numpy(np.asarray(Image.open(io.BytesIO(b)))) for b in fakes]).float() / 255
    assert torch.allclose(got, imgs[:, 0], atol=1 / 255 + 1e-6)


# ----------------------------------------------------------------------------- the browser test
def _chromium_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


class Served:
    """The page in a background thread on a free port (what `xgen human-eval` runs in the foreground)."""

    def __init__(self, db: Path, keys: list[str], port: int = 0, **options):
        from xgen.runtime.human_eval.server import make_server

        self.store = Store(db)
        self.srv = make_server(self.store, keys, "127.0.0.1", port, **options)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()
        self.store.close()


def test_page_in_headless_chromium(runs, tmp_path):
    if not _chromium_available():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver and the selenium package")
        pytest.skip("needs selenium (pip) and Debian's chromium + chromium-driver (apt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    db = tmp_path / "he.sqlite"
    store = Store(db)
    keys = prepare(store, [str(r) for r in runs], N_PER_KIND)
    store.close()
    served = Served(db, keys)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=900,1100"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    clicked: list[tuple[str, str, int, int]] = []
    try:
        def answer(i: int) -> None:
            token = driver.find_element(By.NAME, "token").get_attribute("value")
            img = driver.find_element(By.ID, "item")
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 28
            choice = "real" if i % 3 == 0 else "fake"
            q, t = 1 + i % 5, 5 - i % 5
            driver.find_element(By.ID, f"answer-{choice}").click()
            driver.find_element(By.ID, f"quality-{q}").click()
            driver.find_element(By.ID, f"interpretability-{t}").click()
            driver.find_element(By.ID, "submit").click()

            def next_page(d) -> bool:
                # the next page has loaded: a new token (or none); while the old page is torn down the
                # driver may answer with a stale-element or an "unhandled inspector" error: ask again
                try:
                    tokens = d.find_elements(By.NAME, "token")
                    return d.execute_script("return document.readyState") == "complete" and (
                        not tokens or tokens[0].get_attribute("value") != token)
                except WebDriverException:
                    return False

            WebDriverWait(driver, 20).until(next_page)
            clicked.append((token, choice, q, t))

        driver.get(f"http://127.0.0.1:{served.port}/")
        for i in range(10):
            assert driver.find_element(By.ID, "count").text == str(i + 1)
            answer(i)
        assert len({c[0] for c in clicked}) == 10  # ten different images shown

        def check_db(expect: list[tuple[str, str, int, int]]) -> None:
            con = sqlite3.connect(str(db))
            rows = con.execute("SELECT answers.token, answers.answer, answers.quality, answers.interpretability, "
                               "images.kind, images.run FROM answers JOIN images ON images.id = answers.image "
                               "ORDER BY answers.id").fetchall()
            con.close()
            assert [r[:4] for r in rows] == expect
            # the reported accuracy per run is what was clicked against the truth of the shown images
            driver.get(f"http://127.0.0.1:{served.port}/results.json")
            import json

            rep = {r["run"]: r for r in json.loads(driver.find_element(By.TAG_NAME, "pre").text)}
            for key in keys:
                mine = [r for r in rows if r[5] == key]
                name = Path(key).name  # the page names runs, it does not give their paths
                assert rep[name]["answers"] == len(mine) and "path" not in rep[name]
                if mine:
                    acc = sum(r[1] == r[4] for r in mine) / len(mine)
                    assert rep[name]["accuracy"] == pytest.approx(acc)
                    lo, hi = wilson_interval(sum(r[1] == r[4] for r in mine), len(mine))
                    assert rep[name]["ci95"] == pytest.approx([lo, hi])
                    fake = [r for r in mine if r[4] == "fake"]
                    if fake:
                        assert rep[name]["quality_fake"] == pytest.approx(sum(r[2] for r in fake) / len(fake))
            assert sum(r["answers"] for r in rep.values()) == len(expect)

        check_db(clicked)
        # a forged answer from the same browser session: an image id that was never issued
        con = sqlite3.connect(str(db))
        some_image = con.execute("SELECT id FROM images").fetchone()[0]
        con.close()
        driver.get(f"http://127.0.0.1:{served.port}/")
        post = ("const r = new XMLHttpRequest(); r.open('POST', '/answer', false);"
                "r.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');"
                "r.send(arguments[0]); return [r.status, r.responseText];")
        csrf = driver.find_element(By.NAME, "csrf").get_attribute("value")
        status = driver.execute_script(post, f"token={some_image}&answer=real&quality=5&interpretability=5&csrf={csrf}")
        assert status[0] == 403 and "no image was shown" in status[1]
        # the shown image's own token, without the form's csrf token: refused too
        token = driver.find_element(By.NAME, "token").get_attribute("value")
        status = driver.execute_script(post, f"token={token}&answer=real&quality=5&interpretability=5")
        assert status[0] == 403 and "csrf token is missing or wrong" in status[1]
        check_db(clicked)

        # restart: a new server on the same database keeps every answer and the session
        served.stop()
        served = Served(db, keys)
        driver.get(f"http://127.0.0.1:{served.port}/results")
        assert driver.find_element(By.ID, "results").is_displayed()
        check_db(clicked)
        driver.get(f"http://127.0.0.1:{served.port}/")
        assert driver.find_element(By.ID, "count").text == "11"  # the cookie's session survived the restart
        answer(10)
        check_db(clicked)
        driver.get(f"http://127.0.0.1:{served.port}/")
        if os.environ.get("XGEN_HUMAN_EVAL_SCREENSHOT"):
            driver.save_screenshot(os.environ["XGEN_HUMAN_EVAL_SCREENSHOT"])
    finally:
        driver.quit()
        served.stop()


def test_forged_answer_over_http_is_refused(runs, tmp_path):
    """Plain HTTP (no browser): a POST with no session or a made-up token stores nothing."""
    db = tmp_path / "h.sqlite"
    store = Store(db)
    keys = prepare(store, [str(runs[0])], 3)
    store.close()
    served = Served(db, keys)
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{served.port}/answer", method="POST",
                                     data=b"token=1&answer=real&quality=3&interpretability=3")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 403 and b"no evaluation session" in e.value.read()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{served.port}/img/1")
        assert e.value.code == 404
        page = urllib.request.urlopen(f"http://127.0.0.1:{served.port}/")
        cookie = page.headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in page.headers["Set-Cookie"] and "SameSite=Strict" in page.headers["Set-Cookie"]
        text = page.read().decode()
        token = re.search(r"name='token' value='([^']+)'", text).group(1)
        csrf = re.search(r"name='csrf' value='([^']+)'", text).group(1)
        forged = urllib.request.Request(f"http://127.0.0.1:{served.port}/answer", method="POST",
                                        headers={"Cookie": cookie},
                                        data=f"token={token[::-1]}&csrf={csrf}&answer=real&quality=3&interpretability=3".encode())
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(forged)
        assert e.value.code == 403
        ok = urllib.request.Request(f"http://127.0.0.1:{served.port}/answer", method="POST", headers={"Cookie": cookie},
                                    data=f"token={token}&csrf={csrf}&answer=real&quality=3&interpretability=3".encode())
        assert urllib.request.urlopen(ok).status == 200  # 303 followed to the next image
        assert served.store.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 1
        assert served.srv.server_address[0] == "127.0.0.1"
    finally:
        served.stop()


def test_report_command_prints_and_writes_the_results(runs, tmp_path, capsys):
    """`xgen human-eval RUN --report --json F`: the same numbers as the store, from the command line."""
    import json

    db = tmp_path / "r.sqlite"
    store = Store(db)
    keys = prepare(store, [str(runs[0])], 3)
    sid = store.new_session()
    truth = []
    for ans in ("real", "real", "fake", "fake"):
        tok = store.next_token(sid, keys)
        store.record(sid, tok, ans, 2, 4)
        truth.append(store.db.execute("SELECT kind FROM images JOIN issued ON issued.image = images.id "
                                      "WHERE issued.token=?", (tok,)).fetchone()[0] == ans)
    store.close()
    out = tmp_path / "r.json"
    assert main([str(runs[0]), "--db", str(db), "--report", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["answers"] == 4 and row["accuracy"] == pytest.approx(sum(truth) / 4)
    assert row["ci95"] == pytest.approx(list(wilson_interval(sum(truth), 4)))
    assert "gan_a" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the server serves only its own page
@pytest.fixture(scope="module")
def prepared(runs, tmp_path_factory):
    """A database with run gan_a's images (3 real + 3 generated), copied by each test."""
    db = tmp_path_factory.mktemp("prepared") / "he.sqlite"
    store = Store(db)
    keys = prepare(store, [str(runs[0])], 3)
    store.close()
    return db, keys


@pytest.fixture
def served(prepared, tmp_path):
    db = tmp_path / "he.sqlite"
    shutil.copy(prepared[0], db)
    made = []

    def start(**options) -> Served:
        made.append(Served(db, prepared[1], **options))
        return made[-1]

    yield start
    for s in made:
        s.stop()


def raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """Send bytes to the server on 127.0.0.1, read to the end: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), dict(line.split(": ", 1) for line in lines[1:]), body


def request(port: int, method: str = "GET", path: str = "/", host: str | None = "", cookie: str | None = None,
            body: bytes = b"", **headers) -> tuple[int, dict, bytes]:
    h = {"Host": f"127.0.0.1:{port}" if host == "" else host, "Cookie": cookie,
         **{k.replace("_", "-"): v for k, v in headers.items()}}
    if method == "POST":
        h |= {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(body))}
    lines = [f"{method} {path} HTTP/1.1", *[f"{k}: {v}" for k, v in h.items() if v is not None]]
    return raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def open_session(port: int) -> tuple[str, str, str]:
    """GET / as a new browser: (cookie, image token, csrf token)."""
    status, headers, body = request(port)
    assert status == 200
    page = body.decode()
    csrf = re.search(r"name='csrf' value='([^']+)'", page)
    return (headers["Set-Cookie"].split(";")[0], re.search(r"name='token' value='([^']+)'", page).group(1),
            csrf.group(1) if csrf else "")


def n_rows(store: Store, table: str) -> int:
    return store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_foreign_host_is_refused(served):
    """DNS rebinding: a page of evil.example that resolves to 127.0.0.1 sends Host: evil.example."""
    s = served()
    port = s.port
    for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", f"127.0.0.1.evil.example:{port}",
                 None, f"127.0.0.1:{port}:1", "[::1"):
        for path in ("/", "/results.json", "/results"):
            status, headers, body = request(port, path=path, host=host)
            assert status == 403 and b"answers only to" in body and "Set-Cookie" not in headers, (host, path)
            assert b"gan_a" not in body
    assert n_rows(s.store, "sessions") == 0
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert request(port, path="/results.json", host=host)[0] == 200, host
    lab = served(allow_hosts=["lab-pc.local"])
    assert request(lab.port, path="/results.json", host=f"lab-pc.local:{lab.port}")[0] == 200
    assert request(lab.port, path="/results.json", host=f"lab-pc.local:{port}")[0] == 403


def test_answers_need_this_origin_and_the_csrf_token(served):
    s = served()
    port = s.port
    cookie, token, csrf = open_session(port)
    other_csrf = open_session(port)[2]
    form = f"token={token}&answer=real&quality=3&interpretability=4"
    for extra, why in ((dict(Origin="http://evil.example"), b"another site"),
                       (dict(Origin="null"), b"another site"),
                       (dict(Origin=f"http://127.0.0.1:{port + 1}"), b"another site"),
                       (dict(Origin=f"https://127.0.0.1:{port}"), b"another site"),
                       (dict(Sec_Fetch_Site="cross-site"), b"Sec-Fetch-Site"),
                       (dict(Sec_Fetch_Site="same-site"), b"Sec-Fetch-Site")):
        status, _, body = request(port, "POST", "/answer", cookie=cookie, body=f"{form}&csrf={csrf}".encode(), **extra)
        assert status == 403 and why in body, extra
    for bad in ("", "&csrf=", f"&csrf={csrf[::-1]}", f"&csrf={other_csrf}", f"&csrf={csrf}x"):
        status, _, body = request(port, "POST", "/answer", cookie=cookie, body=f"{form}{bad}".encode(),
                                  Origin=f"http://127.0.0.1:{port}")
        assert status == 403 and b"csrf token is missing or wrong" in body, bad
    assert n_rows(s.store, "answers") == 0
    status, headers, _ = request(port, "POST", "/answer", cookie=cookie, body=f"{form}&csrf={csrf}".encode(),
                                 Origin=f"http://127.0.0.1:{port}", Sec_Fetch_Site="same-origin")
    assert status == 303 and headers["Location"] == "/"
    assert s.store.db.execute("SELECT answer, quality, interpretability FROM answers").fetchall() == [("real", 3, 4)]
    # a cross-site image or script request is refused; a visit from a link on another site is not
    assert request(port, path="/results.json", Sec_Fetch_Site="cross-site", Sec_Fetch_Mode="cors")[0] == 403
    assert request(port, path="/", cookie=cookie, Sec_Fetch_Site="cross-site", Sec_Fetch_Mode="navigate")[0] == 200


def test_sessions_are_capped(served):
    s = served()
    replies = [request(s.port) for _ in range(200)]  # a client that never keeps the cookie
    statuses = [r[0] for r in replies]
    assert statuses == [200] * 100 + [503] * 100  # the default --max-sessions is 100
    assert b"session limit reached" in replies[-1][2] and b"--max-sessions" in replies[-1][2]
    assert n_rows(s.store, "sessions") == 100
    first_cookie = replies[0][1]["Set-Cookie"].split(";")[0]
    assert request(s.port, cookie=first_cookie)[0] == 200  # a participant who has a session goes on
    small = served(max_sessions=3)  # the same database: 100 sessions already
    assert request(small.port)[0] == 503


def test_a_client_that_hangs_up_prints_no_traceback(served, capfd):
    s = served()
    port = s.port
    capfd.readouterr()
    for i in range(60):
        c = socket.create_connection(("127.0.0.1", port))
        if i % 3:
            c.sendall(f"GET {'/' if i % 3 == 1 else '/results'} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        else:
            c.sendall(f"POST /answer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100\r\n\r\nto".encode())
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # hang up with a reset
        c.close()
    time.sleep(0.5)
    assert request(port, path="/results.json")[0] == 200  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err and err == ""


def test_a_silent_client_is_dropped(served):
    s = served()
    clients = {}
    for name, data in (("silent", b""), ("bare GET", b"GET /\r\n"), ("half a request", b"GET / HTTP/1.1\r\nHost: x")):
        clients[name] = socket.create_connection(("127.0.0.1", s.port), timeout=6)
        clients[name].sendall(data)
    t0 = time.perf_counter()
    assert request(s.port, path="/results.json")[0] == 200  # served meanwhile, at once
    t_other = time.perf_counter() - t0
    timings = {}
    for name, c in clients.items():
        try:
            while c.recv(4096):
                pass
        except (socket.timeout, ConnectionResetError):
            pass
        timings[name] = time.perf_counter() - t0
        c.close()
    assert t_other < 1.0 and all(1.5 < t < 3.0 for t in timings.values()), timings  # REQUEST_TIMEOUT = 2 s


def test_a_trickling_client_is_cut_off(served):
    s = served(request_timeout=1.0, request_deadline=2.0)
    c = socket.create_connection(("127.0.0.1", s.port), timeout=1.0)
    t0 = time.perf_counter()
    c.sendall(b"GET / HTTP/1.1\r\n")
    closed_after = None
    while time.perf_counter() - t0 < 6:
        try:
            c.sendall(b"X-Slow: 1\r\n")  # one header every 0.5 s: never silent for 1 s
            time.sleep(0.5)
            c.setblocking(False)
            try:
                if c.recv(1) == b"":
                    closed_after = time.perf_counter() - t0
                    break
            except BlockingIOError:
                pass
            finally:
                c.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.perf_counter() - t0
            break
    c.close()
    assert closed_after is not None and 1.9 < closed_after < 3.5, closed_after


def test_connections_are_capped(served):
    s = served(max_connections=4)
    held = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(4)]
    time.sleep(0.2)
    status, _, body = raw(s.port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n\r\n".encode())
    assert status == 503 and body == b"busy: too many connections"
    for c in held:
        c.close()
    time.sleep(0.3)
    assert request(s.port, path="/results.json")[0] == 200


def test_results_json_names_runs_without_their_paths(served, prepared):
    import json

    s = served()
    cookie, token, csrf = open_session(s.port)
    assert request(s.port, "POST", "/answer", cookie=cookie,
                   body=f"token={token}&csrf={csrf}&answer=fake&quality=2&interpretability=5".encode())[0] == 303
    (row,) = json.loads(request(s.port, path="/results.json")[2])
    assert row["run"] == "gan_a" and row["answers"] == 1
    assert "path" not in row and "source" not in row
    assert not any(isinstance(v, str) and ("/" in v or prepared[1][0] in v) for v in row.values())
    shown = served(show_paths=True)
    (row,) = json.loads(request(shown.port, path="/results.json")[2])
    assert row["path"] == prepared[1][0] and row["source"].startswith("checkpoint ")


def test_command_line_options_are_checked(tmp_path, capsys):
    for bad in (["--allow-host", "http://lab-pc/"], ["--allow-host", "lab-pc:8765"], ["--max-sessions", "0"]):
        assert main([str(tmp_path), "--db", str(tmp_path / "x.sqlite"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("xgen human-eval: error: " + bad[0])


def test_what_held_still_holds(served):
    """Path traversal and SQL in the token are refused; 8 browsers answering at once store exactly
    their answers (each of the 6 images once per session)."""
    s = served()
    port = s.port
    cookie, token, csrf = open_session(port)
    for path in ("/img/../../../etc/passwd", "/img/%2e%2e%2fhe.sqlite", f"/img/{token}%27%20OR%20%271%27=%271",
                 "/img/x'OR'1'='1", "/../he.sqlite"):
        assert request(port, path=path, cookie=cookie)[0] == 404, path
    inject = f"token=x' OR '1'='1&csrf={csrf}&answer=real&quality=3&interpretability=3"
    assert request(port, "POST", "/answer", cookie=cookie, body=inject.encode())[0] == 403
    assert n_rows(s.store, "answers") == 0
    errors = []

    def participant(i: int) -> None:
        try:
            cookie, token, csrf = open_session(port)
            for _ in range(6):
                form = f"token={token}&csrf={csrf}&answer={'real' if i % 2 else 'fake'}&quality={1 + i % 5}&interpretability=3"
                assert request(port, "POST", "/answer", cookie=cookie, body=form.encode())[0] == 303
                page = request(port, cookie=cookie)[2].decode()
                m = re.search(r"name='token' value='([^']+)'", page)
                token = m.group(1) if m else None
            assert token is None and "You judged all 6 images" in page
        except BaseException as e:  # noqa: BLE001  (reported below, from the test's thread)
            errors.append(e)

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    rows = s.store.db.execute("SELECT session, image, answer, quality FROM answers").fetchall()
    assert len(rows) == 48 and len({(r[0], r[1]) for r in rows}) == 48 and len({r[0] for r in rows}) == 8
    by_session = {}
    for sid, _, answer, quality in rows:
        by_session.setdefault(sid, set()).add((answer, quality))
    assert sorted(len(v) for v in by_session.values()) == [1] * 8  # each browser's own answers, unmixed
