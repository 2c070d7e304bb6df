"""Sweep reports: one table and a few plots for a run or a multirun directory (``xgen report``).

Every run directory (:class:`xgen.rundir.RunDir`) becomes a row, like thesis Table 4.2: job id, the
overrides that distinguish it, status, wall time, and its final metrics. Outputs, written into the
directory (or ``out``): ``report.csv``, ``report.md`` and PNG plots — each chosen metric against
every swept numeric hyperparameter, and the per-epoch curves of every job (``curves.png``, one panel
per logged key, each panel with its own legend; a job keeps its colour in every panel). The command
line is :mod:`xgen.cli.report`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from xgen.errors import ConfigError
from xgen.rundir import RunDir

DEFAULT_METRICS = ("val/nelbo", "val/rec", "val/kl", "val/mmd", "val/fid", "train/loss_d", "train/loss_g",
                   "train/mi_cat", "train/mi_cont", "test/cat_acc", "test/nelbo")
CURVE_KEYS = ("val/nelbo", "val/fid", "train/loss_d_epoch", "train/loss_g_epoch", "train/loss_epoch",
              "val/loss")


def find_jobs(root: Path) -> list[Path]:
    """Job directories under ``root``: itself if it is a run, else its sub-directories that are runs."""
    return [r.path for r in RunDir.find(root)]


def _model_name(run: RunDir) -> str | None:
    """The model class a job trained (the last part of config.yaml's ``model._target_``), or None."""
    try:
        target = run.config().model.get("_target_") if run.config_file.is_file() else None
    except Exception:  # unreadable config: the row just has no model name
        return None
    return str(target).rsplit(".", 1)[-1] if target else None


def _number(v: str) -> float | str:
    try:
        return float(v)
    except ValueError:
        return v


def collect(root: Path) -> list[dict[str, Any]]:
    """One dict per job: id, dir, model, status, wall_time_s, error, overrides, params {key: value},
    metrics {key: value}."""
    rows = []
    for run in RunDir.find(root):
        summary = run.read_summary()
        overrides = run.overrides(summary)
        params = {}
        for o in overrides:
            if "=" in o:
                k, v = o.split("=", 1)
                params[k.lstrip("+~")] = _number(v)
        status = (summary or {}).get("status", "running or killed")
        rows.append({"id": run.name, "dir": str(run.path), "model": _model_name(run), "status": status,
                     "overrides": overrides, "wall_time_s": (summary or {}).get("wall_time_s"),
                     "error": (summary or {}).get("error"), "params": params,
                     "metrics": (summary or {}).get("metrics", {})})
    return rows


def swept_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Override keys that take more than one value across jobs (the sweep's axes)."""
    keys: dict[str, set] = {}
    for r in rows:
        for k, v in r["params"].items():
            keys.setdefault(k, set()).add(str(v))
    return [k for k, vals in keys.items() if len(vals) > 1 or any(k not in r["params"] for r in rows)]


def metric_columns(rows: Sequence[dict[str, Any]], wanted: Sequence[str] | None) -> list[str]:
    present = {k for r in rows for k in r["metrics"]}
    if wanted:
        return [m for m in wanted if m in present]
    return [m for m in DEFAULT_METRICS if m in present]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_tables(rows: Sequence[dict[str, Any]], out: Path, metrics: Sequence[str]) -> tuple[Path, Path]:
    axes = swept_keys(rows)
    header = ["id", *axes, "status", *metrics, "wall_time_s", "overrides", "error"]
    table = []
    for r in rows:
        table.append([r["id"], *[r["params"].get(k, "") for k in axes], r["status"],
                      *[r["metrics"].get(m) for m in metrics], r["wall_time_s"], " ".join(r["overrides"]),
                      (r["error"] or "").splitlines()[0][:200] if r["error"] else ""])
    csv_path, md_path = out / "report.csv", out / "report.md"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(table)
    md_header = [h for h in header if h not in ("overrides",)]
    idx = [header.index(h) for h in md_header]
    lines = ["| " + " | ".join(md_header) + " |", "|" + "---|" * len(md_header)]
    for row in table:
        cells = [_fmt(row[i]).replace("|", "\\|") for i in idx]
        lines.append("| " + " | ".join(cells) + " |")
    n_ok = sum(r["status"] == "completed" for r in rows)
    md_path.write_text(f"# Sweep report: {out}\n\n{len(rows)} jobs, {n_ok} completed, "
                       f"{len(rows) - n_ok} not completed.\n\n" + "\n".join(lines) + "\n")
    return csv_path, md_path


def plot_metric_vs_params(rows: Sequence[dict[str, Any]], out: Path, metrics: Sequence[str]) -> list[Path]:
    """For each swept numeric hyperparameter and metric: the metric against it, one line per value of
    the other swept keys (log x when the values span more than two decades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ok = [r for r in rows if r["status"] == "completed"]
    axes = swept_keys(rows)
    for key in axes:
        vals = [r["params"].get(key) for r in ok]
        if not vals or not all(isinstance(v, float) for v in vals):
            continue
        others = [k for k in axes if k != key]
        for m in metrics:
            groups: dict[str, list[tuple[float, float]]] = {}
            for r in ok:
                if m in r["metrics"]:
                    label = ", ".join(f"{k}={_fmt(r['params'].get(k))}" for k in others) or m
                    groups.setdefault(label, []).append((r["params"][key], r["metrics"][m]))
            if not groups:
                continue
            fig, ax = plt.subplots(figsize=(6, 4))
            for label, pts in sorted(groups.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
            xs = [v for v in vals if v > 0]
            if xs and len(xs) == len(vals) and max(xs) / min(xs) > 100:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(m)
            ax.set_title(f"{m} vs {key}")
            if len(groups) > 1:
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            p = out / f"plot_{m.replace('/', '_')}_vs_{key.replace('/', '_').replace('.', '_')}.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            paths.append(p)
    return paths


def curve_label(row: dict[str, Any], axes: Sequence[str]) -> str:
    """A job's legend entry: its id, model class, and the swept values that are not the model choice."""
    parts = [f"{k}={_fmt(row['params'].get(k))}" for k in axes if not (k == "model" and row.get("model"))]
    head = f"{row['id']}: {row['model']}" if row.get("model") else str(row["id"])
    return head + (", " + ", ".join(parts) if parts else "")


MAX_LEGEND = 12  # a panel with more lines than this gets no legend (it would cover the curves)


def curves_figure(rows: Sequence[dict[str, Any]]):
    """The per-epoch curves of every job from its metrics.csv, one panel per logged key of
    :data:`CURVE_KEYS`; each panel has a legend of its own jobs and a job keeps its colour across
    panels. None when no job logged any of those keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in rows:
        f = RunDir(r["dir"]).metrics_csv
        if not f.is_file():
            continue
        with open(f, newline="") as fh:
            for line in csv.DictReader(fh):
                for k in CURVE_KEYS:
                    if line.get(k) not in (None, "") and line.get("epoch") not in (None, ""):
                        series.setdefault(k, {}).setdefault(r["id"], []).append((float(line["epoch"]), float(line[k])))
    if not series:
        return None
    axes = swept_keys(rows)
    labels = {r["id"]: curve_label(r, axes) for r in rows}
    palette = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    colours = {r["id"]: palette[i % len(palette)] for i, r in enumerate(rows)}
    keys = sorted(series)
    epochs = sorted({p[0] for per_job in series.values() for pts in per_job.values() for p in pts})
    fig, axs = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for ax, k in zip(axs[0], keys):
        jobs = sorted(series[k].items(), key=lambda t: (len(t[0]), t[0]))
        for job, pts in jobs:
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) == 1 else ".",
                    color=colours.get(job), label=labels.get(job, job))
        ax.set_xlabel("epoch")
        ax.set_ylabel(k)
        ax.set_title(k)
        ax.grid(alpha=0.3)
        # epochs are whole numbers: integer ticks, and one epoch gets a unit-wide axis around it (the
        # automatic limits of a single x value are ±0.04, with fractional ticks)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        if epochs[0] == epochs[-1]:
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        if len(jobs) <= MAX_LEGEND:
            ax.legend(fontsize=7)
    n_ep = len(epochs)
    fig.suptitle(f"Per-epoch metrics of {len(rows)} job(s), {n_ep} epoch{'s' if n_ep != 1 else ''} logged"
                 + (" (one point per job)" if n_ep == 1 else ""), fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(rows: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """Save :func:`curves_figure` as ``out/curves.png``."""
    import matplotlib.pyplot as plt

    fig = curves_figure(rows)
    if fig is None:
        return None
    p = out / "curves.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def report(root: str | Path, out: str | Path | None = None, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Collect the jobs under ``root`` and write report.csv, report.md and the plots into ``out``
    (default ``root``). Returns the rows and the paths written."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory; pass a run directory or a multirun directory.")
    rows = collect(root)
    if not rows:
        raise ConfigError(f"{root}: no run directories in it (expected summary.json, config.yaml, "
                          "checkpoints/last.ckpt or .hydra/ in it or in its sub-directories).")
    out = Path(out) if out else root
    out.mkdir(parents=True, exist_ok=True)
    cols = metric_columns(rows, metrics)
    csv_path, md_path = write_tables(rows, out, cols)
    plots = plot_metric_vs_params(rows, out, cols)
    curves = plot_curves(rows, out)
    return {"rows": rows, "csv": csv_path, "markdown": md_path, "plots": plots + ([curves] if curves else [])}


def main(argv: list[str] | None = None) -> int:
    """``python -m xgen.report``: the same as ``xgen report`` (:mod:`xgen.cli.report`)."""
    from xgen.cli.report import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
