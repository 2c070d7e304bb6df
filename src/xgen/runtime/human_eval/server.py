"""The evaluation page: a small ``http.server`` app over :class:`~xgen.runtime.human_eval.store.Store`.

Routes: ``GET /`` the next image and the answer form; ``GET /img/<token>`` the image behind a token
issued to this session; ``POST /answer``; ``GET /results`` (HTML) and ``/results.json``. The session is
a cookie (HttpOnly, SameSite=Strict) whose id lives in the database, so a restart keeps it.

It serves only its own page (docs/hardening.md, "The human-eval server"): a request whose ``Host`` is
not 127.0.0.1 / localhost / ::1 (or a name given with ``allow_hosts``) at the server's port is refused
(DNS rebinding), so is a foreign ``Origin`` or a cross-site fetch; every answer carries the session's
CSRF token; at most ``max_sessions`` sessions are opened (then HTTP 503); a client that sends nothing
for ``request_timeout`` seconds, or takes longer than ``request_deadline`` in all, is dropped; at most
``max_connections`` are served at once; a client that hangs up causes no traceback; and /results.json
names runs without their paths unless ``show_paths``.
"""

from __future__ import annotations

import html
import json
import socket
import sys
import threading
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable
from urllib.parse import parse_qs, urlsplit

from xgen.runtime.human_eval.store import AnswerRejected, Store

COOKIE = "xgen_he"
MAX_BODY = 4096
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_MAX_SESSIONS = 100
REQUEST_TIMEOUT = 2.0    # seconds a client may stay silent (each read or write)
REQUEST_DEADLINE = 10.0  # seconds one connection may take in all (a client trickling bytes)
MAX_CONNECTIONS = 64     # connections served at once; more get 503 at once
PATH_KEYS = ("path", "source")  # the fields of a result that hold paths on this machine

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


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header -> (lower-case name, port or None); None when it is not a host[:port]."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
        if ":" in name:
            return None
    if not name or (port and not port.isdigit()):
        return None
    return name, int(port) if port else None


class Guard:
    """Which requests the server answers: ``Host`` (and ``Origin``, when sent) must name one of
    ``hosts`` at ``port``; a browser's cross-site fetch (``Sec-Fetch-Site: cross-site``) is refused
    except a top-level page visit, and a POST must be same-origin."""

    def __init__(self, port: int, hosts: Iterable[str]):
        self.port = port
        self.hosts = {h.strip().lower().strip("[]") for h in hosts if h.strip()}

    def _ok(self, name: str | None, port: int | None) -> bool:
        return name in self.hosts and (port if port is not None else 80) == self.port

    def refusal(self, method: str, headers) -> str | None:
        """None when the request may be answered, else why not (for the 403 page)."""
        host = split_host(headers.get("Host") or "")
        if host is None or not self._ok(*host):
            return ("this page answers only to " + ", ".join(f"{h}:{self.port}" for h in sorted(self.hosts))
                    + " (the Host of the request is not one of them; a lab server names its address with --allow-host)")
        origin = headers.get("Origin")
        if origin is not None:
            try:
                u = urlsplit(origin)
                ok = u.scheme == "http" and self._ok(u.hostname, u.port)
            except ValueError:
                ok = False
            if not ok:
                return "requests from another site are refused (Origin)"
        site, mode = headers.get("Sec-Fetch-Site"), headers.get("Sec-Fetch-Mode")
        if method == "POST" and site not in (None, "same-origin", "none"):
            return "answers are accepted only from this page (Sec-Fetch-Site)"
        if site == "cross-site" and mode != "navigate":
            return "requests from another site are refused (Sec-Fetch-Site)"
        return None


def public_results(rows: list[dict], show_paths: bool = False) -> list[dict]:
    """The results as /results.json serves them: without the run directories' paths unless asked."""
    return rows if show_paths else [{k: v for k, v in r.items() if k not in PATH_KEYS} for r in rows]


class Reply:
    """A response built while the store's lock is held and sent after it is released (a client
    that reads slowly never holds up the others)."""

    def __init__(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
                 headers: dict | None = None):
        self.status, self.body, self.ctype, self.headers = status, body, ctype, headers or {}


def _refused(status: int, title: str, message: str) -> Reply:
    return Reply(status, _page(title, f"<h1>{html.escape(title)}</h1><p class='err' id='error'>{html.escape(message)}</p>"
                               "<p><a href='/'>back</a></p>"))


def make_handler(store: Store, runs: list[str], guard: Guard, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 request_timeout: float = REQUEST_TIMEOUT, show_paths: bool = False):
    lock = threading.Lock()  # one writer at a time over the shared connection

    class Handler(BaseHTTPRequestHandler):
        server_version = "xgen-human-eval"
        timeout = request_timeout  # StreamRequestHandler: every read and write of the socket

        def log_message(self, fmt, *args):  # quiet: the terminal shows the URL and errors only
            pass

        # -------------------------------------------------------------- helpers
        def _sid(self) -> str | None:
            try:
                c = SimpleCookie(self.headers.get("Cookie", ""))
            except CookieError:
                return None
            return c[COOKIE].value if COOKIE in c else None

        def _send(self, r: Reply) -> None:
            self.send_response(r.status)
            self.send_header("Content-Type", r.ctype)
            self.send_header("Content-Length", str(len(r.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; "
                             "frame-ancestors 'none'; form-action 'self'")
            for k, v in r.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(r.body)

        def _session(self) -> tuple[str | None, dict]:
            """The session of the cookie, or a new one; (None, {}) when the session limit is reached."""
            sid = self._sid()
            if store.session_exists(sid):
                return sid, {}
            if store.session_count() >= max_sessions:
                return None, {}
            sid = store.new_session()
            return sid, {"Set-Cookie": f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"}

        def _guarded(self, method: str) -> Reply | None:
            why = guard.refusal(method, self.headers)
            return None if why is None else _refused(HTTPStatus.FORBIDDEN, "refused", why)

        # -------------------------------------------------------------- routes
        def do_GET(self):  # noqa: N802
            reply = self._guarded("GET")
            if reply is None:
                with lock:
                    reply = self._get(self.path.split("?", 1)[0])
            self._send(reply)

        def _get(self, path: str) -> Reply:
            if path == "/":
                return self._index()
            if path.startswith("/img/"):
                png = store.image_for(path[5:], self._sid())
                if png is None:
                    return Reply(404, _page("not found", "<p class='err'>No such image for this session.</p>"))
                return Reply(200, png, "image/png")
            if path == "/results":
                return Reply(200, _page("results", "<h1>Human evaluation: results</h1>"
                                        + results_table(store.results(runs))
                                        + "<p class='note'>Accuracy: fraction of images judged correctly "
                                        "(real as real, generated as fake); 0.5 means people cannot tell "
                                        "them apart. Ratings 1–5.</p><p><a href='/'>back</a></p>"))
            if path == "/results.json":
                rows = public_results(store.results(runs), show_paths)
                return Reply(200, json.dumps(rows, indent=2).encode(), "application/json")
            return Reply(404, _page("not found", "<p class='err'>Not found.</p>"))

        def _index(self) -> Reply:
            sid, headers = self._session()
            if sid is None:
                return _refused(HTTPStatus.SERVICE_UNAVAILABLE, "session limit reached",
                                f"This study takes no more participants: all {max_sessions} sessions are open. "
                                "The person running it can raise --max-sessions.")
            done = store.answered_count(sid)
            token = store.next_token(sid, runs)
            total = store.image_count(runs)
            if token is None:
                body = (f"<h1>Thank you</h1><p>You judged all {total} images.</p>"
                        "<p><a id='results-link' href='/results'>See the results</a></p>")
                return Reply(200, _page("done", body), headers=headers)
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
                f"<input type='hidden' name='csrf' value='{store.csrf_token(sid)}'>"
                "<fieldset><legend>This image is</legend>"
                "<label><input type='radio' name='answer' value='real' id='answer-real' required> real</label>"
                "<label><input type='radio' name='answer' value='fake' id='answer-fake'> generated</label></fieldset>"
                f"<fieldset><legend>Visual quality (1 = poor, 5 = excellent)</legend>{radios('quality')}</fieldset>"
                "<fieldset><legend>Interpretability: how clearly it shows a recognisable object "
                f"(1 = not at all, 5 = clearly)</legend>{radios('interpretability')}</fieldset>"
                "<button type='submit' id='submit'>Submit</button></form>"
                "<p><a href='/results'>results so far</a></p>")
            return Reply(200, _page("human evaluation", body), headers=headers)

        def do_POST(self):  # noqa: N802
            reply = self._guarded("POST")
            if reply is None and self.path.split("?", 1)[0] != "/answer":
                reply = Reply(404, _page("not found", "<p class='err'>Not found.</p>"))
            if reply is None:
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    reply = Reply(413, _page("rejected", "<p class='err'>Request body too large.</p>"))
            if reply is None:
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
                with lock:
                    try:
                        sid = self._sid()
                        if not store.session_exists(sid):
                            raise AnswerRejected("no evaluation session: open the page first (cookies must be enabled)")
                        store.check_csrf(sid, form.get("csrf"))
                        store.record(sid, form.get("token", ""), form.get("answer", ""),
                                     form.get("quality"), form.get("interpretability"))
                        reply = Reply(303, b"", headers={"Location": "/"})
                    except AnswerRejected as e:
                        reply = _refused(HTTPStatus.FORBIDDEN, "Answer rejected", str(e))
            self._send(reply)

    return Handler


class Server(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_connections`` clients at once (more get a
    503 at once), ends a connection after ``request_deadline`` seconds, and prints no traceback for a
    client that hangs up or times out (one line for anything else)."""

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS  # connections waiting to be accepted (socketserver's default is 5)

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS,
                 request_deadline: float = REQUEST_DEADLINE):
        self.slots = threading.BoundedSemaphore(max_connections)
        self.request_deadline = request_deadline
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 26\r\nConnection: close\r\n\r\nbusy: too many connections")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        # a client that takes longer than the deadline in all is cut off: its socket is shut down
        timer = threading.Timer(self.request_deadline, _hang_up, (request,))
        timer.daemon = True
        timer.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            timer.cancel()
            self.slots.release()

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, TimeoutError)):  # the client hung up, reset or went silent
            return
        print(f"xgen human-eval: error while answering {client_address[0]}: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)


def _hang_up(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def make_server(store: Store, runs: list[str], host: str = "127.0.0.1", port: int = 8765, *,
                allow_hosts: Iterable[str] = (), max_sessions: int = DEFAULT_MAX_SESSIONS,
                request_timeout: float = REQUEST_TIMEOUT, request_deadline: float = REQUEST_DEADLINE,
                max_connections: int = MAX_CONNECTIONS, show_paths: bool = False) -> Server:
    """The HTTP server (not started): ``serve_forever()`` in a thread or the foreground. It answers
    requests whose Host is 127.0.0.1, localhost, ::1, the address it is bound to (unless a wildcard)
    or one of ``allow_hosts``, at its port."""
    guard = Guard(port, [*LOCAL_HOSTS, *allow_hosts, *([] if host in ("", "0.0.0.0", "::") else [host])])
    srv = Server((host, port), make_handler(store, runs, guard, max_sessions, request_timeout, show_paths),
                 max_connections, request_deadline)
    guard.port = srv.server_address[1]  # the port it got (port 0: a free one)
    return srv
