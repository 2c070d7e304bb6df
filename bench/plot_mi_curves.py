"""Report fig. 2.4 from run directories: the categorical MI lower bound per epoch, one curve per run.

Reads ``val/mi_cat`` (logged by the MutualInformation callback) from each run's metrics.csv and draws
it against H(c) = log K.

    python bench/plot_mi_curves.py --out docs/img/mi_gan_vs_infogan.png InfoGAN=<run> DCGAN=<run>
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def curve(run: Path, key: str = "val/mi_cat") -> tuple[list[int], list[float]]:
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    return [int(r["epoch"]) + 1 for r in rows], [float(r[key]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--k", type=int, default=10, help="values of the categorical code (for the log K line)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for spec in args.runs:
        label, run = spec.split("=", 1)
        x, y = curve(Path(run))
        ax.plot(x, y, marker="o", label=label)
    ax.axhline(math.log(args.k), color="gray", ls="--", lw=1, label=f"H(c) = log {args.k}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("L_I, categorical code (nats)")
    ax.set_ylim(-0.1, math.log(args.k) + 0.2)
    ax.legend(loc="center right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
