"""Sweep reports: one table and a few plots for a run or a multirun directory (``xgen report``).

Every run directory (:class:`xgen.runtime.rundir.RunDir`) becomes a row, like thesis Table 4.2: job id, the
overrides that distinguish it, status, wall and CPU time, and its final metrics (with the split metrics of
its eval.json, ``xgen eval``, for keys training did not log). Outputs, written into the directory (or
``out``): ``report.csv``, ``report.md`` and PNG plots — each chosen metric against every swept numeric
hyperparameter but the seed, and the per-epoch curves of every job (``curves.png``, one panel per logged
key, each panel with its own legend; a job keeps its colour in every panel); one contact sheet of final
sample grids per dataset; and when the seed is swept ``report_seeds.csv`` / ``report_seeds.md`` (mean ± std
over seeds per cell) (:mod:`xgen.runtime.report_seeds`). The command line is
:mod:`xgen.runtime.cli.report`.

A run directory may come from someone else, so nothing in it is trusted (docs/hardening.md, "Reports"):
cells a spreadsheet would evaluate are prefixed with ``'`` in report.csv, text in report.md is
HTML- and Markdown-escaped, a malformed ``metrics.csv`` row or ``summary.json`` field is skipped with a
warning naming the file and line (:class:`Problems`), and every output is written to a new file that
replaces its name, never through a symbolic link that leads out of the output folder.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from xgen.errors import ConfigError
from xgen.checkpoint.runs import RunDir, is_inside
from xgen.runtime import report_seeds
from xgen.runtime.report_cells import (Problems, csv_cell, excerpt, file_part, fmt, is_number, md_cell, plot_label,
                                       printable, readable, swept_keys)
from xgen.runtime.rundir import check_write_target

DEFAULT_METRICS = ("val/nelbo", "val/rec", "val/kl", "val/mmd", "val/fid", "train/loss_d", "train/loss_g",
                   "train/mi_cat", "train/mi_cont", "test/cat_acc", "test/cat_acc_direct", "test/nelbo",
                   # from each job's eval.json (xgen eval), when there is one
                   "test/fid", "test/is", "test/class_consistency", "test/mig", "test/dci_disentanglement")
CURVE_KEYS = ("val/nelbo", "val/fid", "train/loss_d_epoch", "train/loss_g_epoch", "train/loss_epoch",
              "val/loss")

MAX_ROW_BYTES = 64 * 1024          # a metrics.csv row longer than this is skipped
MAX_FILE_BYTES = 64 * 1024 * 1024  # read at most this much of one metrics.csv or summary.json
MAX_TEXT = 1000                    # characters kept of one status / override / error text
MAX_PLOTS = 60                     # metric-vs-hyperparameter plots written at most


# ----------------------------------------------------------------------------- reading a run's files
def _line_of(text: str, key: str) -> int:
    """The line of ``text`` (JSON) where ``key`` first appears as a key (1 when not found)."""
    i = text.find(json.dumps(key) + ":")
    if i < 0:
        i = text.find(json.dumps(key))
    return text.count("\n", 0, i) + 1 if i >= 0 else 1


def read_summary(run: RunDir, root: Path, problems: Problems) -> dict[str, Any] | None:
    """A job's summary.json with every field checked: None when there is none; ``{"status": "corrupt
    summary.json"}`` when it is not UTF-8 JSON; a field of the wrong type is left out. Each problem is
    reported with the file and line."""
    p = run.summary_file
    if not readable(p, root, problems):
        return None
    corrupt = {"status": "corrupt summary.json"}
    with open(p, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        problems.add(p, None, f"larger than {MAX_FILE_BYTES} bytes; not read")
        return corrupt
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.add(p, raw.count(b"\n", 0, e.start) + 1, f"not UTF-8 (byte 0x{raw[e.start]:02x}); not read")
        return corrupt
    try:
        s = json.loads(text)
    except json.JSONDecodeError as e:
        problems.add(p, e.lineno, f"not valid JSON ({e.msg} at column {e.colno}); the job is listed as corrupt")
        return corrupt
    except RecursionError:
        problems.add(p, None, "nested deeper than the JSON parser reads; the job is listed as corrupt")
        return corrupt
    if not isinstance(s, dict):
        problems.add(p, 1, f"not a JSON object but a {type(s).__name__}; the job is listed as corrupt")
        return corrupt
    return _checked_summary(s, p, text, problems)


def _checked_summary(s: dict, p: Path, text: str, problems: Problems) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def bad(key: str, what: str, value: Any) -> None:
        problems.add(p, _line_of(text, key.split(".", 1)[0]), f"{key}: {what} ({excerpt(value)}); left out")

    for key in ("status", "error"):
        v = s.get(key)
        if v is None:
            continue
        if isinstance(v, str):
            out[key] = v[:MAX_TEXT]
        else:
            bad(key, "not a string", v)
    if "status" in s and "status" not in out:
        out["status"] = "corrupt summary.json"
    for key in ("wall_time_s", "cpu_time_s"):
        v = s.get(key)
        if v is not None:
            if is_number(v):
                out[key] = float(v)
            else:
                bad(key, "not a number", v)
    v = s.get("overrides")
    if v is not None:
        if not isinstance(v, list):
            bad("overrides", "not a list", v)
        else:
            out["overrides"] = []
            for o in v:
                if isinstance(o, str) and len(o) <= MAX_TEXT:
                    out["overrides"].append(o)
                else:
                    bad("overrides", "not a string" if not isinstance(o, str) else f"longer than {MAX_TEXT}", o)
    v = s.get("metrics")
    if v is not None:
        if not isinstance(v, dict):
            bad("metrics", "not an object", v)
        else:
            out["metrics"] = {}
            for k, m in v.items():
                if is_number(m):
                    out["metrics"][k] = float(m)
                else:
                    problems.add(p, _line_of(text, k), f"metrics.{printable(k)[:80]}: not a number ({excerpt(m)}); left out")
    return out


def read_eval(run: RunDir, root: Path, problems: Problems) -> dict[str, float]:
    """The numeric split metrics (``test/fid``, ``test/is``, ``test/mig``, ...) of a job's eval.json
    (``xgen eval``): ``{}`` when there is none; a file that is not one JSON object, or too large, is left
    out with a warning; fields that are not ``split/name`` numbers are ignored (name, paths, lists)."""
    p = run.eval_file
    if not readable(p, root, problems):
        return {}
    with open(p, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        problems.add(p, None, f"larger than {MAX_FILE_BYTES} bytes; not read")
        return {}
    try:
        e = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        problems.add(p, None, f"not UTF-8 JSON ({printable(str(err))[:80]}); not read")
        return {}
    if not isinstance(e, dict):
        problems.add(p, None, "not one JSON object (an eval.json of a whole multirun?); not read")
        return {}
    return {k[:MAX_TEXT]: float(v) for k, v in e.items()
            if isinstance(k, str) and "/" in k and is_number(v) and math.isfinite(v)}


def read_metrics_csv(path: Path, problems: Problems) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV logger's metrics.csv as (line number, {column: text}). A row longer than
    :data:`MAX_ROW_BYTES`, with another number of fields than the header, or that the csv module
    refuses is skipped; bytes that are not UTF-8 are replaced (U+FFFD); each with a warning. At most
    :data:`MAX_FILE_BYTES` are read. One physical line is one row (the logger writes no quoted line
    breaks)."""
    rows: list[tuple[int, dict[str, str]]] = []
    header: list[str] | None = None
    total = 0
    with open(path, "rb") as f:
        for lineno in itertools.count(1):
            raw = f.readline(MAX_ROW_BYTES + 1)
            if not raw:
                break
            total += len(raw)
            if len(raw) > MAX_ROW_BYTES:  # skip the rest of this line, reading it in bounded pieces
                n = len(raw)
                while not raw.endswith(b"\n") and total <= MAX_FILE_BYTES:
                    raw = f.readline(MAX_ROW_BYTES + 1)
                    if not raw:
                        break
                    n += len(raw)
                    total += len(raw)
                n -= raw.endswith(b"\n")
                problems.add(path, lineno, f"row of {n} bytes, longer than {MAX_ROW_BYTES}; skipped")
                if header is None:
                    return rows
                continue
            if total > MAX_FILE_BYTES:
                problems.add(path, lineno, f"the file is larger than {MAX_FILE_BYTES} bytes; the rest is not read")
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                text = raw.decode("utf-8", "replace")
                problems.add(path, lineno, f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                             "read with U+FFFD in its place")
            try:
                fields = next(csv.reader([text]), [])
            except csv.Error as e:
                problems.add(path, lineno, f"not a CSV row ({e}); skipped")
                continue
            if not fields:
                continue
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                problems.add(path, lineno, f"{len(fields)} fields, the header has {len(header)}; skipped")
                continue
            rows.append((lineno, dict(zip(header, fields))))
    return rows


def _float(text: str | None, path: Path, lineno: int, key: str, problems: Problems) -> float | None:
    """A logged value as a float; None for an empty cell; a warning and None for anything else."""
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        problems.add(path, lineno, f"{printable(key)[:80]}: not a number ({excerpt(text)}); skipped")
        return None


def find_jobs(root: Path) -> list[Path]:
    """Job directories under ``root``: itself if it is a run, else its sub-directories that are runs."""
    return [r.path for r in RunDir.find(root)]


def _model_name(run: RunDir, root: Path) -> str | None:
    """The model class a job trained (the last part of config.yaml's ``model._target_``), or None."""
    try:
        if not (run.config_file.is_file() and is_inside(run.config_file, root)):
            return None
        target = run.config().model.get("_target_")
    except Exception:  # unreadable config: the row just has no model name
        return None
    return str(target).rsplit(".", 1)[-1][:MAX_TEXT] if target else None


def _number(v: str) -> float | str:
    """An override's value: a finite float when it is one, else the text."""
    try:
        f = float(v)
    except ValueError:
        return v
    return f if math.isfinite(f) else v


def collect(root: Path, problems: Problems | None = None) -> list[dict[str, Any]]:
    """One dict per job: id, dir, model, status, wall_time_s, error, overrides, params {key: value},
    metrics {key: value}. Malformed summary.json fields are left out, with a warning in ``problems``."""
    problems = Problems() if problems is None else problems
    root = Path(root)
    rows = []
    for run in RunDir.find(root):
        summary = read_summary(run, root, problems)
        overrides = [o for o in run.overrides(summary or {"status": "none"})  # never re-read summary.json
                     if len(o) <= MAX_TEXT]
        params = {}
        for o in overrides:
            if "=" in o:
                k, v = o.split("=", 1)
                params[k.lstrip("+~")] = _number(v)
        summary = summary or {}
        metrics = dict(summary.get("metrics", {}))
        for k, v in read_eval(run, root, problems).items():
            metrics.setdefault(k, v)  # what training logged under the same key stays
        rows.append({"id": run.name, "dir": str(run.path), "model": _model_name(run, root),
                     "status": summary.get("status", "running or killed"), "overrides": overrides,
                     "wall_time_s": summary.get("wall_time_s"), "cpu_time_s": summary.get("cpu_time_s"),
                     "error": summary.get("error"), "params": params, "metrics": metrics, "root": str(root)})
    return rows


def metric_columns(rows: Sequence[dict[str, Any]], wanted: Sequence[str] | None) -> list[str]:
    present = {k for r in rows for k in r["metrics"]}
    if wanted:
        return [m for m in wanted if m in present]
    return [m for m in DEFAULT_METRICS if m in present]


# ----------------------------------------------------------------------------- safe cells and labels
def tables(rows: Sequence[dict[str, Any]], out: Path, metrics: Sequence[str]) -> tuple[bytes, bytes]:
    """The contents of report.csv and report.md."""
    axes = swept_keys(rows)
    header = ["id", *axes, "status", *metrics, "wall_time_s", "cpu_time_s", "overrides", "error"]
    table = []
    for r in rows:
        table.append([r["id"], *[r["params"].get(k, "") for k in axes], r["status"],
                      *[r["metrics"].get(m) for m in metrics], r["wall_time_s"], r.get("cpu_time_s"),
                      " ".join(r["overrides"]),
                      (r["error"] or "").splitlines()[0][:200] if (r["error"] or "").strip() else ""])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([csv_cell(h) for h in header])
    w.writerows([[csv_cell(c) for c in row] for row in table])
    md_header = [h for h in header if h not in ("overrides",)]
    idx = [header.index(h) for h in md_header]
    lines = ["| " + " | ".join(map(md_cell, md_header)) + " |", "|" + "---|" * len(md_header)]
    for row in table:
        lines.append("| " + " | ".join(md_cell(row[i]) for i in idx) + " |")
    n_ok = sum(r["status"] == "completed" for r in rows)
    md = (f"# Sweep report: {md_cell(out)}\n\n{len(rows)} jobs, {n_ok} completed, "
          f"{len(rows) - n_ok} not completed.\n\n" + "\n".join(lines) + "\n")
    return buf.getvalue().encode(), md.encode()


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def metric_vs_param_pngs(rows: Sequence[dict[str, Any]], metrics: Sequence[str],
                         problems: Problems | None = None) -> dict[str, bytes]:
    """For each swept numeric hyperparameter and metric: the metric against it, one line per value of
    the other swept keys (log x when the values span more than two decades). {file name: PNG bytes};
    at most :data:`MAX_PLOTS`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, bytes] = {}
    ok = [r for r in rows if r["status"] == "completed"]
    axes = swept_keys(rows)
    for key in axes:
        if key == "seed":  # a metric against the seed says nothing; report_seeds.md folds the seeds
            continue
        vals = [r["params"].get(key) for r in ok]
        if not vals or not all(isinstance(v, float) for v in vals):
            continue
        others = [k for k in axes if k != key]
        for m in metrics:
            groups: dict[str, list[tuple[float, float]]] = {}
            for r in ok:
                if m in r["metrics"]:
                    label = ", ".join(f"{k}={fmt(r['params'].get(k))}" for k in others) or m
                    groups.setdefault(label, []).append((r["params"][key], r["metrics"][m]))
            if not groups:
                continue
            name = f"plot_{file_part(m.replace('/', '_'))}_vs_{file_part(key.replace('/', '_').replace('.', '_'))}.png"
            if name in figs:
                continue
            if len(figs) == MAX_PLOTS:
                if problems is not None:
                    problems.add(rows[0]["root"] if rows else "", None, f"more than {MAX_PLOTS} plots; the rest are not drawn")
                return figs
            fig, ax = plt.subplots(figsize=(6, 4))
            for label, pts in sorted(groups.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=plot_label(label))
            xs = [v for v in vals if v > 0]
            if xs and len(xs) == len(vals) and max(xs) / min(xs) > 100:
                ax.set_xscale("log")
            ax.set_xlabel(plot_label(key))
            ax.set_ylabel(plot_label(m))
            ax.set_title(plot_label(f"{m} vs {key}"))
            if len(groups) > 1:
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            figs[name] = _png(fig)
    return figs


def curve_label(row: dict[str, Any], axes: Sequence[str]) -> str:
    """A job's legend entry: its id, model class, and the swept values that are not the model choice."""
    parts = [f"{k}={fmt(row['params'].get(k))}" for k in axes if not (k == "model" and row.get("model"))]
    head = f"{row['id']}: {row['model']}" if row.get("model") else str(row["id"])
    return head + (", " + ", ".join(parts) if parts else "")


MAX_LEGEND = 12  # a panel with more lines than this gets no legend (it would cover the curves)


def curves_figure(rows: Sequence[dict[str, Any]], problems: Problems | None = None):
    """The per-epoch curves of every job from its metrics.csv, one panel per logged key of
    :data:`CURVE_KEYS`; each panel has a legend of its own jobs and a job keeps its colour across
    panels. None when no job logged any of those keys. Malformed rows are skipped (``problems``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = Problems() if problems is None else problems
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in rows:
        f = RunDir(r["dir"]).metrics_csv
        if not readable(f, Path(r.get("root", r["dir"])), problems):
            continue
        for lineno, line in read_metrics_csv(f, problems):
            keys = [k for k in CURVE_KEYS if line.get(k) not in (None, "")]
            if not keys:
                continue
            epoch = _float(line.get("epoch"), f, lineno, "epoch", problems)
            for k in keys:
                v = _float(line[k], f, lineno, k, problems)
                if epoch is not None and v is not None:
                    series.setdefault(k, {}).setdefault(r["id"], []).append((epoch, v))
    if not series:
        return None
    axes = swept_keys(rows)
    labels = {r["id"]: plot_label(curve_label(r, axes)) for r in rows}
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
                    color=colours.get(job), label=labels.get(job, plot_label(job)))
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


# ----------------------------------------------------------------------------- writing, never through links
def output_folder(root: Path, out: str | Path | None) -> Path:
    """The folder to write into: ``out`` or ``root``. One inside ``root`` (``root`` itself included)
    must stay inside it once links are followed: a handed directory with ``reports -> ~/.ssh`` is
    refused. An ``--out`` elsewhere is the user's own choice."""
    folder = Path(out) if out else root
    if not out or Path(os.path.abspath(folder)).is_relative_to(os.path.abspath(root)):
        check_write_target(folder, root, "--out" if out else "")
    return folder


def write_outputs(out: Path, files: dict[str, bytes]) -> None:
    """Write ``{name: bytes}`` into ``out``: first every name is checked (a symbolic link there that
    leads out of ``out`` refuses the whole report, before anything is written), then each file goes to
    a new temporary file in ``out`` (``O_EXCL``) that is renamed over the name, so a link is replaced,
    never followed."""
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        check_write_target(out / name, out)
    for name, data in files.items():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp makes it 0600; a report is an ordinary file
                f.write(data)
            os.replace(tmp, out / name)
        except BaseException:
            os.unlink(tmp)
            raise


def report(root: str | Path, out: str | Path | None = None, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Collect the jobs under ``root`` and write report.csv, report.md and the plots into ``out``
    (default ``root``). Returns the rows, the paths written and ``warnings`` (malformed input that was
    left out, ``file:line: what``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory; pass a run directory or a multirun directory.")
    folder = output_folder(root, out)
    problems = Problems()
    rows = collect(root, problems)
    if not rows:
        raise ConfigError(f"{root}: no run directories in it (expected summary.json, config.yaml, "
                          "checkpoints/last.ckpt or .hydra/ in it or in its sub-directories).")
    cols = metric_columns(rows, metrics)
    csv_bytes, md_bytes = tables(rows, folder, cols)
    files = {"report.csv": csv_bytes, "report.md": md_bytes}
    seeds = report_seeds.seed_table(rows, cols)
    if seeds is not None:
        files["report_seeds.csv"], files["report_seeds.md"] = report_seeds.seed_tables(seeds, str(folder))
    plots = metric_vs_param_pngs(rows, cols, problems)
    curves = curves_figure(rows, problems)
    if curves is not None:
        plots["curves.png"] = _png(curves)
    sheets = report_seeds.contact_sheets(rows, root, problems)
    plots.update({n: _png(f) for n, f in sheets.items()})
    write_outputs(folder, files | plots)
    return {"rows": rows, "csv": folder / "report.csv", "markdown": folder / "report.md",
            "seeds": (folder / "report_seeds.md") if seeds is not None else None,
            "plots": [folder / n for n in plots], "contact_sheets": [folder / n for n in sheets],
            "warnings": problems.lines}


