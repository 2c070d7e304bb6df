"""SQLite store of the human evaluation: images, sessions, issued tokens and answers.

Every answer is committed as it arrives (WAL journal), so a restarted server keeps all of them. An answer
is accepted only for a token the server issued to the same session for an image it showed, once, and
(on the page) with the session's CSRF token: an HMAC of the session id under a random key kept in the
database, so it survives a restart and another session's token is worth nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from xgen.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,          -- the run directory's resolved path
    name TEXT NOT NULL,            -- its display name
    source TEXT NOT NULL           -- where the generated images came from (checkpoint or samples)
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL REFERENCES runs(key),
    kind TEXT NOT NULL CHECK (kind IN ('real', 'fake')),
    idx INTEGER NOT NULL,
    png BLOB NOT NULL,
    UNIQUE (run, kind, idx)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS issued (
    token TEXT PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions(id),
    image INTEGER NOT NULL REFERENCES images(id),
    issued REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    token TEXT NOT NULL UNIQUE REFERENCES issued(token),
    session TEXT NOT NULL,
    image INTEGER NOT NULL REFERENCES images(id),
    answer TEXT NOT NULL CHECK (answer IN ('real', 'fake')),
    quality INTEGER NOT NULL CHECK (quality BETWEEN 1 AND 5),
    interpretability INTEGER NOT NULL CHECK (interpretability BETWEEN 1 AND 5),
    answered REAL NOT NULL,
    UNIQUE (session, image)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL            -- csrf_key: the random key of the CSRF tokens
);
"""


class AnswerRejected(DataError):
    """An answer the server refuses (unknown/forged token, another session's token, a repeat, bad field)."""


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (95% by default); (0, 1) when n = 0.
    Unlike the normal approximation it stays inside [0, 1] and is sound for small n."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


class Store:
    """The evaluation database (one file)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self._key: bytes | None = None

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ images
    def has_run(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE key=?", (key,)).fetchone() is not None

    def add_run(self, key: str, name: str, source: str, real: Iterable[bytes], fake: Iterable[bytes]) -> None:
        """Store a run's real and generated PNGs in one transaction (all or nothing)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO runs(key, name, source) VALUES (?, ?, ?)", (key, name, source))
            for kind, pngs in (("real", real), ("fake", fake)):
                self.db.executemany("INSERT INTO images(run, kind, idx, png) VALUES (?, ?, ?, ?)",
                                    [(key, kind, i, sqlite3.Binary(b)) for i, b in enumerate(pngs)])

    def image_count(self, runs: list[str] | None = None) -> int:
        q, args = self._runs_filter(runs)
        return int(self.db.execute(f"SELECT COUNT(*) FROM images WHERE 1=1{q}", args).fetchone()[0])

    @staticmethod
    def _runs_filter(runs: list[str] | None, column: str = "run") -> tuple[str, tuple]:
        if runs is None:
            return "", ()
        return f" AND {column} IN ({','.join('?' * len(runs))})", tuple(runs)

    # ------------------------------------------------------------------ sessions and tokens
    def new_session(self) -> str:
        sid = secrets.token_urlsafe(24)
        self.db.execute("INSERT INTO sessions(id, created) VALUES (?, ?)", (sid, time.time()))
        return sid

    def session_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def _csrf_key(self) -> bytes:
        if self._key is None:  # made once per database (the first server to need it), then read
            self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('csrf_key', ?)", (secrets.token_bytes(32),))
            self._key = bytes(self.db.execute("SELECT value FROM meta WHERE key='csrf_key'").fetchone()[0])
        return self._key

    def csrf_token(self, sid: str) -> str:
        """The token the page's form carries for this session (the same after a restart)."""
        return hmac.new(self._csrf_key(), b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, sid: str, token: Any) -> None:
        """:class:`AnswerRejected` unless ``token`` is this session's CSRF token."""
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.csrf_token(sid).encode()):
            raise AnswerRejected("the form's csrf token is missing or wrong: answers are accepted only from "
                                 "this page; reload it and answer again")

    def session_exists(self, sid: str | None) -> bool:
        return bool(sid) and self.db.execute("SELECT 1 FROM sessions WHERE id=?", (sid,)).fetchone() is not None

    def answered_count(self, sid: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM answers WHERE session=?", (sid,)).fetchone()[0])

    def next_token(self, sid: str, runs: list[str] | None = None) -> str | None:
        """The token of the image this session is to judge next: the one already shown and not yet
        answered (a reload shows the same image), else a new token for an image drawn at random from the
        images this session has not judged; None when it has judged them all."""
        q, args = self._runs_filter(runs, "images.run")
        q2, _ = self._runs_filter(runs, "run")
        row = self.db.execute(
            "SELECT issued.token FROM issued JOIN images ON images.id = issued.image WHERE issued.session=? "
            f"AND issued.token NOT IN (SELECT token FROM answers){q} ORDER BY issued.issued LIMIT 1",
            (sid, *args)).fetchone()
        if row:
            return row[0]
        left = [r[0] for r in self.db.execute(
            f"SELECT id FROM images WHERE id NOT IN (SELECT image FROM answers WHERE session=?){q2}",
            (sid, *args))]
        if not left:
            return None
        image = secrets.choice(left)
        token = secrets.token_urlsafe(18)
        self.db.execute("INSERT INTO issued(token, session, image, issued) VALUES (?, ?, ?, ?)",
                        (token, sid, image, time.time()))
        return token

    def image_for(self, token: str, sid: str | None) -> bytes | None:
        """The PNG behind a token issued to this session (None otherwise: tokens are per session)."""
        row = self.db.execute("SELECT images.png FROM issued JOIN images ON images.id = issued.image "
                              "WHERE issued.token=? AND issued.session=?", (token, sid or "")).fetchone()
        return bytes(row[0]) if row else None

    def record(self, sid: str | None, token: str, answer: str, quality: Any, interpretability: Any) -> int:
        """Store one answer; :class:`AnswerRejected` for anything the server did not ask for."""
        if answer not in ("real", "fake"):
            raise AnswerRejected(f"answer must be 'real' or 'fake', got {str(answer)[:40]!r}")
        ratings = []
        for name, v in (("quality", quality), ("interpretability", interpretability)):
            try:
                r = int(v)
            except (TypeError, ValueError):
                raise AnswerRejected(f"{name} must be an integer 1-5, got {str(v)[:40]!r}") from None
            if not 1 <= r <= 5:
                raise AnswerRejected(f"{name} must be in 1-5, got {r}")
            ratings.append(r)
        if not self.session_exists(sid):
            raise AnswerRejected("no evaluation session: open the page first (cookies must be enabled)")
        row = self.db.execute("SELECT session, image FROM issued WHERE token=?", (token,)).fetchone()
        if row is None:
            raise AnswerRejected("no image was shown under this id: only images the page displayed can be answered")
        if row[0] != sid:
            raise AnswerRejected("this image was shown to another session")
        try:
            cur = self.db.execute(
                "INSERT INTO answers(token, session, image, answer, quality, interpretability, answered) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (token, sid, row[1], answer, *ratings, time.time()))
        except sqlite3.IntegrityError:
            raise AnswerRejected("this image has already been answered") from None
        return int(cur.lastrowid)

    # ------------------------------------------------------------------ results
    def answers(self) -> list[dict[str, Any]]:
        """Every stored answer with the truth of its image."""
        cur = self.db.execute(
            "SELECT answers.id, answers.token, answers.session, answers.image, images.run, runs.name, images.kind, "
            "answers.answer, answers.quality, answers.interpretability, answers.answered FROM answers "
            "JOIN images ON images.id = answers.image JOIN runs ON runs.key = images.run ORDER BY answers.id")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    def results(self, runs: list[str] | None = None) -> list[dict[str, Any]]:
        """Per run: answers, human accuracy (fraction judged correctly; 0.5 = indistinguishable) with its
        95% Wilson interval, the fraction of generated images judged real, mean ratings per kind."""
        keys = runs if runs is not None else [r[0] for r in self.db.execute("SELECT key FROM runs ORDER BY rowid")]
        out = []
        for key in keys:
            name, source = self.db.execute("SELECT name, source FROM runs WHERE key=?", (key,)).fetchone()
            rows = [r for r in self.answers() if r["run"] == key]
            n = len(rows)
            k = sum(r["answer"] == r["kind"] for r in rows)
            lo, hi = wilson_interval(k, n)
            res: dict[str, Any] = {"run": name, "path": key, "source": source, "answers": n,
                                   "accuracy": k / n if n else None, "ci95": [lo, hi]}
            for kind in ("real", "fake"):
                sub = [r for r in rows if r["kind"] == kind]
                res[f"n_{kind}"] = len(sub)
                res[f"quality_{kind}"] = sum(r["quality"] for r in sub) / len(sub) if sub else None
                res[f"interpretability_{kind}"] = sum(r["interpretability"] for r in sub) / len(sub) if sub else None
            fakes = [r for r in rows if r["kind"] == "fake"]
            res["fake_judged_real"] = sum(r["answer"] == "real" for r in fakes) / len(fakes) if fakes else None
            out.append(res)
        return out
