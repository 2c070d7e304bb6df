"""``xgen human-eval``: people tell real from generated images and rate them (InfoGAN thesis §4.3, Table 4.2).

    xgen human-eval outputs/train/2026-01-01_12-00-00                  # serve http://127.0.0.1:8765/
    xgen human-eval RUN_A RUN_B --num-images 50 --db study.sqlite      # compare runs, one pool
    xgen human-eval RUN_A RUN_B --db study.sqlite --report             # print the results and exit

Each run contributes ``--num-images`` generated images (its checkpoint with ``--seed``, or its
``samples/`` grids) and as many real test images of its data set; the page shows them one at a time in
random order and asks real or generated, visual quality 1–5 and interpretability 1–5. Answers go to
SQLite as they are given (a restart keeps them and the images). The report gives per run the human
accuracy (0.5 = indistinguishable) with a 95% Wilson interval and the mean ratings.

The server answers only requests addressed to it as 127.0.0.1 / localhost (and the names given with
--allow-host) at its port, and only answers sent from its own page (Origin, CSRF token); it opens at
most --max-sessions sessions; /results.json leaves out the runs' paths unless --show-paths.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xgen.errors import ConfigError, XgenError
from xgen.runtime.human_eval.server import DEFAULT_MAX_SESSIONS
from xgen.runtime.human_eval.store import AnswerRejected, Store, wilson_interval

__all__ = ["main", "prepare", "Store", "AnswerRejected", "wilson_interval"]


def prepare(store: Store, run_dirs: list[str], n: int, seed: int = 0, data: str | None = None,
            device: str = "cpu") -> list[str]:
    """Put every run's images in the store (runs already there keep theirs); return the run keys."""
    from xgen.runtime.human_eval.images import run_images

    keys = []
    for d in run_dirs:
        key = str(Path(d).expanduser().resolve())
        if not store.has_run(key):
            ri = run_images(d, n, seed=seed, data=data, device=device)
            store.add_run(ri.key, ri.name, ri.source, ri.real, ri.fake)
        keys.append(key)
    if len(set(keys)) != len(keys):
        raise ConfigError("runs: the same run directory is given twice.")
    return keys


def format_results(rows: list[dict]) -> str:
    f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"{'run':24} {'answers':>7} {'accuracy':>8} {'95% CI':>15} {'fake→real':>9} "
             f"{'quality r/f':>11} {'interp. r/f':>11}"]
    for r in rows:
        lines.append(f"{r['run'][:24]:24} {r['answers']:>7} {f(r['accuracy']):>8} "
                     f"{'[' + f(r['ci95'][0]) + ', ' + f(r['ci95'][1]) + ']':>15} {f(r['fake_judged_real']):>9} "
                     f"{f(r['quality_real'], 2) + '/' + f(r['quality_fake'], 2):>11} "
                     f"{f(r['interpretability_real'], 2) + '/' + f(r['interpretability_fake'], 2):>11}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xgen human-eval", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("runs", nargs="+", help="run directories (checkpoints/last.ckpt or samples/*.png, config.yaml)")
    ap.add_argument("--db", default="human_eval.sqlite", help="SQLite file of images and answers (default ./human_eval.sqlite)")
    ap.add_argument("--num-images", type=int, default=20, help="generated (and as many real) images per run (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated and the real draw")
    ap.add_argument("--data", default=None, help="data config name when a run has no config.yaml")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="a host name or address people type to reach a lab server (--host 0.0.0.0), e.g. "
                         "--allow-host 192.168.1.20 --allow-host lab-pc.local; requests naming any other host are "
                         "refused (127.0.0.1, localhost and the --host address are always allowed)")
    ap.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                    help=f"most sessions (participants' browsers) the page opens; then new visitors get HTTP 503 "
                         f"(default {DEFAULT_MAX_SESSIONS}; sessions in --db from earlier count)")
    ap.add_argument("--show-paths", action="store_true",
                    help="/results.json also gives each run's directory and image source (paths on this machine)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--report", action="store_true", help="print the results (and --json) and exit; serve nothing")
    ap.add_argument("--json", default=None, help="with --report: also write the results to this JSON file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``xgen human-eval``; returns the exit status."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port: must be in 0-65535, got {args.port}")
        if args.max_sessions < 1:
            raise ConfigError(f"--max-sessions: must be at least 1, got {args.max_sessions}")
        for h in args.allow_host:
            bare = h.strip("[]")
            if not bare or any(c in bare for c in "/ @?#") or (":" in bare and bare.count(":") < 2):  # IPv6 has 2+
                raise ConfigError(f"--allow-host: {h!r} is not a host name or address (no scheme, port or path: "
                                  "e.g. --allow-host lab-pc.local)")
        store = Store(args.db)
        try:
            keys = prepare(store, args.runs, args.num_images, args.seed, args.data, args.device)
            rows = store.results(keys)
            if args.report:
                print(format_results(rows))
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
                return 0
            from xgen.runtime.human_eval.server import make_server

            try:
                srv = make_server(store, keys, args.host, args.port, allow_hosts=args.allow_host,
                                  max_sessions=args.max_sessions, show_paths=args.show_paths)
            except OSError as e:
                raise ConfigError(f"--port: cannot listen on {args.host}:{args.port} ({e.strerror}); pick another port.") from None
            if args.host not in ("127.0.0.1", "localhost", "::1"):
                names = ", ".join(args.allow_host) or "none: add --allow-host NAME for the address people will type"
                print(f"xgen human-eval: warning: listening on {args.host}: anyone who can reach it can answer "
                      f"(allowed host names besides 127.0.0.1/localhost: {names}).", file=sys.stderr)
            host, port = srv.server_address[:2]
            host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            print(f"xgen human-eval: {store.image_count(keys)} images from {len(keys)} run(s); answers in {args.db}\n"
                  f"open http://{host}:{port}/  (results: /results, Ctrl-C to stop)", flush=True)
            try:
                srv.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                srv.server_close()
            print(format_results(store.results(keys)))
            return 0
        finally:
            store.close()
    except XgenError as e:
        print(f"xgen human-eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
