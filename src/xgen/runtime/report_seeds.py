"""Seed tables and contact sheets of a sweep (``xgen report``, the defaults table of docs/defaults.md).

When ``seed`` is one of a sweep's axes, :func:`seed_table` folds the jobs that differ only in their
seed into one row: each metric as mean ± sample standard deviation over the completed seeds, the
number of seeds, and the mean wall and CPU time (``report_seeds.csv`` / ``report_seeds.md``).

:func:`contact_sheets` draws one figure per dataset (``contact_<data>.png``; ``contact_sheet.png``
when the sweep has no ``data`` axis): one row per cell of the other axes (the model), one column per
seed, each panel the job's final sample grid (``samples/raw/samples_final.png``, the bare grid the
image callbacks write). Only regular PNG files inside the reported directory of at most
:data:`MAX_IMAGE_BYTES` and :data:`MAX_IMAGE_PIXELS` are read; anything else becomes a labelled empty
panel and a warning, like every other malformed input of a report (:mod:`xgen.runtime.report`).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from xgen.checkpoint.runs import RunDir
from xgen.runtime.report_cells import (Problems, csv_cell, file_part, fmt, md_cell, plot_label, printable, readable,
                                       swept_keys)

SEED = "seed"
DATA = "data"
SAMPLE_GRID = Path("raw") / "samples_final.png"  # under a run's samples/ (xgen.callbacks.images)
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_SHEET_ROWS = 40   # rows of one contact sheet at most (then a warning)
MAX_SHEET_COLS = 12   # seeds of one contact sheet at most


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1 in the denominator; None for one value)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def pm(values: Sequence[float]) -> str:
    """``mean ± std``, the mean with 4 significant digits and the std with 2; the value alone for one
    seed; empty for none."""
    if not values:
        return ""
    m, s = mean_std(values)
    return fmt(m) if s is None else f"{fmt(m)} ± {s:.2g}"


def cell_key(row: dict[str, Any], axes: Sequence[str]) -> tuple[str, ...]:
    return tuple(fmt(row["params"].get(k, "")) for k in axes)


def seed_groups(rows: Sequence[dict[str, Any]]) -> tuple[list[str], dict[tuple[str, ...], list[dict[str, Any]]]]:
    """The non-seed axes and the jobs of each of their cells, in the order the jobs come."""
    axes = [k for k in swept_keys(rows) if k != SEED]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(cell_key(r, axes), []).append(r)
    return axes, groups


def seed_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any] | None:
    """One row per cell of the non-seed axes: ``{axes, header, rows}`` where each row holds the cell's
    axis values, the seeds completed (and their number), for each metric the list of values over the
    completed seeds, and the wall and CPU time lists. None when ``seed`` is not swept."""
    if SEED not in swept_keys(rows):
        return None
    axes, groups = seed_groups(rows)
    out = []
    for key, jobs in groups.items():
        done = [j for j in jobs if j["status"] == "completed"]
        out.append({"cell": dict(zip(axes, key)), "jobs": len(jobs), "completed": len(done),
                    "seeds": [fmt(j["params"].get(SEED, "")) for j in done],
                    "metrics": {m: [j["metrics"][m] for j in done if m in j["metrics"]] for m in metrics},
                    "wall_time_s": [j["wall_time_s"] for j in done if j.get("wall_time_s") is not None],
                    "cpu_time_s": [j["cpu_time_s"] for j in done if j.get("cpu_time_s") is not None]})
    return {"axes": axes, "metrics": list(metrics), "rows": out}


def seed_tables(table: dict[str, Any], title: str) -> tuple[bytes, bytes]:
    """report_seeds.csv (mean and std in separate columns, n per metric) and report_seeds.md (mean ± std)."""
    axes, metrics = table["axes"], table["metrics"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([csv_cell(h) for h in [*axes, "seeds", "completed", "jobs",
                                      *[f"{m}{s}" for m in metrics for s in (" mean", " std", " n")],
                                      "wall_time_s mean", "cpu_time_s mean"]])
    md = ["| " + " | ".join(md_cell(h) for h in [*axes, "seeds", *metrics, "wall time (s)", "CPU time (s)"]) + " |",
          "|" + "---|" * (len(axes) + len(metrics) + 3)]
    for r in table["rows"]:
        stats = []
        for m in metrics:
            v = r["metrics"][m]
            mean, std = mean_std(v) if v else (None, None)
            stats += [mean, std, len(v)]
        wall = mean_std(r["wall_time_s"])[0] if r["wall_time_s"] else None
        cpu = mean_std(r["cpu_time_s"])[0] if r["cpu_time_s"] else None
        w.writerow([csv_cell(c) for c in [*r["cell"].values(), " ".join(r["seeds"]), r["completed"], r["jobs"],
                                          *stats, wall, cpu]])
        seeds = ", ".join(r["seeds"]) + ("" if r["completed"] == r["jobs"] else f" ({r['jobs'] - r['completed']} not completed)")
        md.append("| " + " | ".join(md_cell(c) for c in [*r["cell"].values(), seeds,
                                                          *[pm(r["metrics"][m]) for m in metrics],
                                                          pm(r["wall_time_s"]), pm(r["cpu_time_s"])]) + " |")
    text = (f"# Over seeds: {md_cell(title)}\n\nmean ± sample standard deviation over the completed seeds "
            f"of each cell ({len(table['rows'])} cells).\n\n" + "\n".join(md) + "\n")
    return buf.getvalue().encode(), text.encode()


# ----------------------------------------------------------------------------- contact sheets
def read_grid(run_dir: str | Path, root: Path, problems: Problems):
    """A job's final sample grid as an RGB array, or None (no grid, a link out of ``root``, too large,
    not a PNG), with a warning for everything but a missing file."""
    import numpy as np
    from PIL import Image

    f = RunDir(run_dir).samples_dir / SAMPLE_GRID
    if not readable(f, root, problems):
        return None
    if f.stat().st_size > MAX_IMAGE_BYTES:
        problems.add(f, None, f"larger than {MAX_IMAGE_BYTES} bytes; not drawn")
        return None
    try:
        with Image.open(f) as im:
            if im.format != "PNG":
                problems.add(f, None, f"not a PNG ({printable(str(im.format))}); not drawn")
                return None
            if im.width * im.height > MAX_IMAGE_PIXELS:
                problems.add(f, None, f"{im.width}x{im.height} pixels, more than {MAX_IMAGE_PIXELS}; not drawn")
                return None
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        problems.add(f, None, f"not a readable image ({printable(str(e))[:120]}); not drawn")
        return None


def contact_sheets(rows: Sequence[dict[str, Any]], root: Path, problems: Problems) -> dict[str, Any]:
    """``{file name: figure}``: per dataset, one row per cell of the other non-seed axes, one column
    per seed, each panel a job's final sample grid (the job id and status under it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [k for k in swept_keys(rows) if k != SEED]
    by_data: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_data.setdefault(fmt(r["params"].get(DATA, "")) if DATA in axes else "", []).append(r)
    row_axes = [k for k in axes if k != DATA]
    figs = {}
    for data, jobs in by_data.items():
        cells: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        seeds: list[str] = []
        for j in jobs:
            s = fmt(j["params"].get(SEED, ""))
            if s not in seeds:
                seeds.append(s)
            cells.setdefault(cell_key(j, row_axes), {})[s] = j
        keys = list(cells)
        name = f"contact_{file_part(data)}.png" if data else "contact_sheet.png"
        if len(keys) > MAX_SHEET_ROWS or len(seeds) > MAX_SHEET_COLS:
            problems.add(root, None, f"{name}: {len(keys)} rows x {len(seeds)} seeds; only the first "
                                     f"{MAX_SHEET_ROWS} x {MAX_SHEET_COLS} are drawn")
            keys, seeds = keys[:MAX_SHEET_ROWS], seeds[:MAX_SHEET_COLS]
        fig, ax = plt.subplots(len(keys), len(seeds), figsize=(2.3 * len(seeds) + 1.4, 2.4 * len(keys) + 0.8),
                               squeeze=False)
        for i, key in enumerate(keys):
            label = "\n".join(plot_label(f"{k}={v}" if v != "" else f"{k}: not set", 30)  # not set: the job's default
                               for k, v in zip(row_axes, key)) or "job"
            for c, s in enumerate(seeds):
                a = ax[i][c]
                a.set_xticks([])
                a.set_yticks([])
                job = cells[key].get(s)
                grid = read_grid(job["dir"], root, problems) if job else None
                if grid is not None:
                    a.imshow(grid)
                else:
                    a.text(0.5, 0.5, "no job" if job is None else "no sample grid", ha="center", va="center",
                           transform=a.transAxes, fontsize=8, color="0.4")
                if job is not None:
                    status = "" if job["status"] == "completed" else f" ({job['status']})"
                    a.set_xlabel(plot_label(f"job {job['id']}{status}", 40), fontsize=7)
                if i == 0:
                    a.set_title(plot_label(f"seed {s}" if s else "", 30), fontsize=9)
                if c == 0:
                    a.set_ylabel(label, fontsize=8 if len(row_axes) > 1 else 9)
        title = f"Final samples, {data}" if data else "Final samples"
        fig.suptitle(plot_label(f"{title}: one row per cell, one column per seed"), fontsize=11)
        fig.tight_layout()
        figs[name] = fig
    return figs

