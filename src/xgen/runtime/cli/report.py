"""``xgen report``: one table (report.csv, report.md) and plots of a run or multirun directory.

    xgen report outputs/train/multirun/2026-01-01_12-00-00      # writes into that directory
    xgen report <dir> --out reports/zoo --metrics val/nelbo val/fid

Every job becomes a row (id, swept overrides, status, metrics with those of its eval.json, wall and CPU
time; failed jobs marked); plots: each metric against each swept numeric hyperparameter, curves.png
(per-epoch curves, one panel per logged key, each with its own legend) and contact_<data>.png (the final
sample grid of every job, one row per cell, one column per seed). When the seed is swept,
report_seeds.md / .csv fold the seeds: mean ± std per cell (the defaults table, docs/defaults.md).
Library: xgen.runtime.report, xgen.runtime.report_seeds.

The directory may come from someone else: report.csv cells a spreadsheet would evaluate get a
leading ', report.md shows all text as text, malformed metrics.csv rows and summary.json fields are
skipped with a warning (file:line), and a symbolic link that leads out of the directory (or --out) is
refused, with nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xgen.errors import XgenError


def parser() -> argparse.ArgumentParser:
    from xgen.runtime.report import DEFAULT_METRICS

    doc = __doc__ or ""
    ap = argparse.ArgumentParser(prog="xgen report", description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(doc.split("\n\n")[1:]))
    ap.add_argument("directory", help="a run directory or a multirun directory (outputs/train/multirun/<date>)")
    ap.add_argument("--out", help="where to write report.csv / report.md / plots (default: the directory)")
    ap.add_argument("--metrics", nargs="+", help=f"metric keys for the table and plots (default: those of "
                    f"{', '.join(DEFAULT_METRICS)} that were logged)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``xgen report``; returns the exit status."""
    from xgen.runtime.report import printable, report

    a = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        res = report(a.directory, a.out, a.metrics)
    except XgenError as e:
        print(f"xgen report: error: {printable(str(e))}", file=sys.stderr)
        return 2
    for w in res["warnings"]:
        print(f"xgen report: warning: {w}", file=sys.stderr)
    print(Path(res["markdown"]).read_text())  # escaped, no control characters: safe for a terminal
    if res["seeds"] is not None:
        print(Path(res["seeds"]).read_text())
    for r in res["rows"]:
        if r["status"] != "completed":
            first = (r["error"] or "").strip().splitlines()[:1]
            print(printable(f"job {r['id']}: {r['status']}" + (f" — {first[0][:200]}" if first else "")))
    seeds = f", {res['seeds']}, {res['seeds'].with_suffix('.csv')}" if res["seeds"] is not None else ""
    print(printable(f"xgen report: wrote {res['csv']}, {res['markdown']}{seeds}"
                    + "".join(f", {p}" for p in res["plots"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
