"""The evaluation page: a small ``http.server`` app over :class:`~xgen.human_eval.store.Store`.

Routes: ``GET /`` the next image and the answer form; ``GET /img/<token>`` the image behind a token
issued to this session; ``POST /answer``; ``GET /results`` (HTML) and ``/results.json``. The session is
a cookie (HttpOnly, SameSite=Strict) whose id lives in the database, so a restart keeps it.
"""

from __future__ import annotations

import html
import json
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from xgen.human_eval.store import AnswerRejected, Store

COOKIE = "xgen_he"
MAX_BODY = 4096

STYLE = """
body{font-family:sans-serif;max-width:46em;margin:1.5em auto;color:#222}
img.item{width:224px;height:224px;image-rendering:pixelated;border:1px solid #888;display:block;margin:1em 0}
fieldset{border:1px solid #ccc;margin:.6em 0;padding:.4em .8em}
label{margin-right:1.1em;white-space:nowrap}
button{font-size:1.05em;padding:.35em 1.4em}
table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}
.note{color:#555;font-size:.9em}.err{color:#a00}
"""


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>").encode()


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def results_table(rows: list[dict]) -> str:
    head = ("<tr><th>run</th><th>answers</th><th>human accuracy</th><th>95% CI (Wilson)</th>"
            "<th>fakes judged real</th><th>quality real / fake</th><th>interpretability real / fake</th></tr>")
    body = "".join(
        f"<tr><td style='text-align:left'>{html.escape(r['run'])}</td><td>{r['answers']}</td>"
        f"<td class='acc'>{_fmt(r['accuracy'])}</td><td>[{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}]</td>"
        f"<td>{_fmt(r['fake_judged_real'])}</td>"
        f"<td>{_fmt(r['quality_real'], 2)} / {_fmt(r['quality_fake'], 2)}</td>"
        f"<td>{_fmt(r['interpretability_real'], 2)} / {_fmt(r['interpretability_fake'], 2)}</td></tr>"
        for r in rows)
    return f"<table id='results'>{head}{body}</table>"


def make_handler(store: Store, runs: list[str]):
    lock = threading.Lock()  # one writer at a time over the shared connection

    class Handler(BaseHTTPRequestHandler):
        server_version = "xgen-human-eval"

        def log_message(self, fmt, *args):  # quiet: the terminal shows the URL and errors only
            pass

        # -------------------------------------------------------------- helpers
        def _sid(self) -> str | None:
            c = SimpleCookie(self.headers.get("Cookie", ""))
            return c[COOKIE].value if COOKIE in c else None

        def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
                  headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _session(self) -> tuple[str, dict]:
            sid = self._sid()
            if store.session_exists(sid):
                return sid, {}  # type: ignore[return-value]
            sid = store.new_session()
            return sid, {"Set-Cookie": f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"}

        # -------------------------------------------------------------- routes
        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            with lock:
                if path == "/":
                    return self._index()
                if path.startswith("/img/"):
                    png = store.image_for(path[5:], self._sid())
                    if png is None:
                        return self._send(404, _page("not found", "<p class='err'>No such image for this session.</p>"))
                    return self._send(200, png, "image/png")
                if path == "/results":
                    return self._send(200, _page("results", "<h1>Human evaluation: results</h1>"
                                                 + results_table(store.results(runs))
                                                 + "<p class='note'>Accuracy: fraction of images judged correctly "
                                                 "(real as real, generated as fake); 0.5 means people cannot tell "
                                                 "them apart. Ratings 1–5.</p><p><a href='/'>back</a></p>"))
                if path == "/results.json":
                    return self._send(200, json.dumps(store.results(runs), indent=2).encode(), "application/json")
            self._send(404, _page("not found", "<p class='err'>Not found.</p>"))

        def _index(self):
            sid, headers = self._session()
            done = store.answered_count(sid)
            token = store.next_token(sid, runs)
            total = store.image_count(runs)
            if token is None:
                body = (f"<h1>Thank you</h1><p>You judged all {total} images.</p>"
                        "<p><a id='results-link' href='/results'>See the results</a></p>")
                return self._send(200, _page("done", body), headers=headers)
            radios = lambda name: "".join(  # noqa: E731
                f"<label><input type='radio' name='{name}' value='{v}' id='{name}-{v}' required> {v}</label>"
                for v in range(1, 6))
            body = (
                "<h1>Real or generated?</h1>"
                f"<p class='note'>Image <span id='count'>{done + 1}</span> of {total}. Each image is either a real "
                "one from the data set or made by a generative model, in random order.</p>"
                f"<img class='item' id='item' src='/img/{token}' alt='image to judge'>"
                "<form method='post' action='/answer' id='answer-form'>"
                f"<input type='hidden' name='token' value='{token}'>"
                "<fieldset><legend>This image is</legend>"
                "<label><input type='radio' name='answer' value='real' id='answer-real' required> real</label>"
                "<label><input type='radio' name='answer' value='fake' id='answer-fake'> generated</label></fieldset>"
                f"<fieldset><legend>Visual quality (1 = poor, 5 = excellent)</legend>{radios('quality')}</fieldset>"
                "<fieldset><legend>Interpretability: how clearly it shows a recognisable object "
                f"(1 = not at all, 5 = clearly)</legend>{radios('interpretability')}</fieldset>"
                "<button type='submit' id='submit'>Submit</button></form>"
                "<p><a href='/results'>results so far</a></p>")
            self._send(200, _page("human evaluation", body), headers=headers)

        def do_POST(self):  # noqa: N802
            if self.path.split("?", 1)[0] != "/answer":
                return self._send(404, _page("not found", "<p class='err'>Not found.</p>"))
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                return self._send(413, _page("rejected", "<p class='err'>Request body too large.</p>"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
            with lock:
                try:
                    store.record(self._sid(), form.get("token", ""), form.get("answer", ""),
                                 form.get("quality"), form.get("interpretability"))
                except AnswerRejected as e:
                    return self._send(HTTPStatus.FORBIDDEN, _page("rejected", f"<h1>Answer rejected</h1>"
                                      f"<p class='err' id='error'>{html.escape(str(e))}</p><p><a href='/'>back</a></p>"))
            self._send(303, b"", headers={"Location": "/"})

    return Handler


def make_server(store: Store, runs: list[str], host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """The HTTP server (not started): ``serve_forever()`` in a thread or the foreground."""
    srv = ThreadingHTTPServer((host, port), make_handler(store, runs))
    srv.daemon_threads = True
    return srv
