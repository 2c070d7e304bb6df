"""Semi-supervised InfoGAN: test code accuracy against labels per class, from the run directories of
`xgen +sweep=ss_infogan_labels` (or single `experiment=ss_infogan_fmnist` runs): the figure and table of
docs/conditional.md.

Labelled runs are read as `test/cat_acc_direct` (Q's supervised code against the label, no matching),
0-label runs as `test/cat_acc` (after Hungarian matching). Run directories are read, never executed:
summary.json and config.yaml only.

    python scripts/ss_infogan_labels_plot.py RUN_OR_SWEEP_DIR [...] --out docs/img/ss_infogan_labels_fmnist.png \
        [--compare EARLIER.json --compare-label "the earlier recipe"]

--compare draws the table of an earlier run of this script (its .json) beside the runs read now, in grey:
the runs behind it need not exist any more.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xgen.checkpoint.runs import RunDir  # noqa: E402


def find_runs(roots: list[str], depth: int = 2) -> list[RunDir]:
    """The run directories at or under each root (a run, a sweep directory, or a folder of sweeps)."""
    found: list[RunDir] = []
    for root in map(Path, roots):
        if RunDir(root).is_run():
            found.append(RunDir(root))
        elif depth > 0 and root.is_dir():
            found += find_runs([str(p) for p in sorted(root.iterdir()) if p.is_dir()], depth - 1)
    return found


def collect(roots: list[str]) -> dict[int, list[dict]]:
    """{labels per class: [{seed, accuracy, read, run}]} over every completed run under ``roots``."""
    out: dict[int, list[dict]] = defaultdict(list)
    for run in find_runs(roots):
        summary = run.read_summary() or {}
        if summary.get("status") != "completed":
            continue
        cfg = run.config()
        n = cfg.data.get("labels_per_class")
        metrics = summary.get("metrics") or {}
        key = "test/cat_acc_direct" if n else "test/cat_acc"
        if n is None or key not in metrics:
            continue
        out[int(n)].append({"seed": int(cfg.seed), "accuracy": float(metrics[key]), "read": key, "run": str(run.path),
                            "matched": float(metrics.get("test/cat_acc", float("nan")))})
    return dict(sorted(out.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", help="run directories or sweep directories")
    ap.add_argument("--out", default="docs/img/ss_infogan_labels_fmnist.png")
    ap.add_argument("--target", type=float, default=0.80, help="the issue's target at 60 labels per class")
    ap.add_argument("--label", default="these runs", help="legend text of the runs read now")
    ap.add_argument("--compare", help="an earlier table written by this script (.json), drawn in grey")
    ap.add_argument("--compare-label", default="earlier recipe", help="legend text of --compare")
    args = ap.parse_args()
    table = collect(args.roots)
    if not table:
        raise SystemExit("no completed ss_infogan run with test/cat_acc(_direct) under " + ", ".join(args.roots))
    rows = {}
    for n, runs in table.items():
        acc = [r["accuracy"] for r in sorted(runs, key=lambda r: r["seed"])]
        rows[n] = {"seeds": [r["seed"] for r in sorted(runs, key=lambda r: r["seed"])], "accuracy": acc,
                   "matched": [r["matched"] for r in sorted(runs, key=lambda r: r["seed"])],
                   "mean": statistics.mean(acc), "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                   "read": runs[0]["read"]}
        print(f"{n:4d} labels/class: {rows[n]['mean']:.3f} ± {rows[n]['std']:.3f} over seeds {rows[n]['seeds']} "
              f"({rows[n]['read']}): " + ", ".join(f"{a:.4f}" for a in acc)
              + ("; after matching " + ", ".join(f"{a:.4f}" for a in rows[n]["matched"]) if n else ""))
    earlier = {int(k): v for k, v in json.loads(Path(args.compare).read_text()).items()} if args.compare else {}
    xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    compare_legend = f"{args.compare_label}: mean ± std"  # on the first grey mark only
    for x, (n, r) in zip(xs, rows.items()):
        if n in earlier and n:  # the earlier recipe, left of the runs read now
            e = earlier[n]
            ax.scatter([x - 0.3] * len(e["accuracy"]), e["accuracy"], color="grey", alpha=0.5, s=14, zorder=3)
            ax.errorbar([x - 0.3], [e["mean"]], yerr=[e["std"]], fmt="s", color="grey", capsize=4, ms=5, zorder=4,
                        label=compare_legend)
            compare_legend = None
            ax.annotate(f"{e['mean']:.3f}", (x - 0.3, e["mean"]), textcoords="offset points", xytext=(-34, -3),
                        fontsize=7, color="dimgrey")
        ax.scatter([x] * len(r["accuracy"]), r["accuracy"], color="tab:blue", alpha=0.45, s=18,
                   label=f"{args.label}: one seed" if x == 0 else None, zorder=3)
        ax.errorbar([x], [r["mean"]], yerr=[r["std"]], fmt="o", color="black", capsize=5, ms=6,
                    label=f"{args.label}: mean ± std over seeds" if x == 0 else None, zorder=4)
        ax.annotate(f"{r['mean']:.3f}", (x, r["mean"]), textcoords="offset points", xytext=(8, 6), fontsize=8)
        if n:  # the same runs read after matching: how far the code's values are from meaning the class
            ax.scatter([x + 0.12] * len(r["matched"]), r["matched"], facecolors="none", edgecolors="tab:orange",
                       s=22, label="same runs, after matching" if x == xs[-1] else None, zorder=3)
    ax.axhline(args.target, color="tab:green", ls="--", lw=1, label=f"target at 60 labels/class ({args.target:.2f})")
    ax.axhline(0.1, color="grey", ls=":", lw=1, label="chance (0.10)")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{n}\n({'matched' if n == 0 else 'direct'}, {len(r['accuracy'])} seeds)"
                        for n, r in rows.items()])
    ax.set_xlabel("labelled training images per class (how cat0 is read)")
    ax.set_ylabel("test accuracy of the categorical code cat0")
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.8, len(xs) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Semi-supervised InfoGAN on Fashion-MNIST, paper nets, 2 epochs\n"
                 "cat0 read directly as the class" + (" (0 labels: after Hungarian matching)" if 0 in rows else ""),
                 fontsize=9)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    out.with_suffix(".json").write_text(json.dumps({str(k): v for k, v in rows.items()}, indent=1) + "\n")
    print("wrote", out, out.with_suffix(".json"))


if __name__ == "__main__":
    main()
