"""k-GAN visualisation (kgans §3.2–3.3) of trained KGAN runs:

* per-generator medoid, mean image and random samples (``<prefix>_members.png``),
* frozen-latent-dimension sweeps: one noise vector per member, one latent dimension stepped over
  [-2.5, 2.5] per row (``<prefix>_sweeps.png``),
* the class histogram of each generator's part of the training set (``<prefix>_partition.png``),
* the FID of each member's samples against the test split (offline classifier features), with the
  partition sizes and history, in ``<prefix>_stats.json``.

    OMP_NUM_THREADS=1 python scripts/kgan_figures.py RUN_DIR [RUN_DIR ...] --prefix docs/img/kgan --num-samples 2000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def medoid(x: torch.Tensor) -> int:
    """Index of the sample with the least total Euclidean distance to the others."""
    d = torch.cdist(x.flatten(1).double(), x.flatten(1).double())
    return int(d.sum(1).argmin())


def unit(images: torch.Tensor, vr) -> torch.Tensor:
    return ((images.detach().float().cpu() - vr[0]) / (vr[1] - vr[0])).clamp(0, 1)


def load(run: Path):
    from xgen.evaluate import data_module
    from xgen.models import KGAN, load_model

    model = load_model(run / "checkpoints" / "last.ckpt", expect=None)
    if not isinstance(model, KGAN):
        raise SystemExit(f"{run}: not a KGAN run ({type(model).__name__})")
    return model, data_module(run, None)


def members_figure(runs, path: Path, n: int = 8, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, m, j) for name, m, _ in runs for j in range(m.k)]
    fig, axes = plt.subplots(len(rows), n + 2, figsize=(1.05 * (n + 2), 1.15 * len(rows)), squeeze=False)
    for r, (name, m, j) in enumerate(rows):
        with torch.no_grad():
            pool = unit(m.generate_member(j, 500, generator=torch.Generator().manual_seed(seed + j)), m.value_range)
        shown = [pool.mean(0), pool[medoid(pool)]] + list(pool[:n])
        for c, img in enumerate(shown):
            ax = axes[r, c]
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(["mean", "medoid"][c] if c < 2 else f"sample {c - 1}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{name}\nG{j}", fontsize=8)
    fig.suptitle("k-GAN members: mean and medoid of 500 samples, then random samples", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


@torch.no_grad()
def strongest_dims(m, j: int, z0: torch.Tensor, n: int = 3, span: float = 2.5) -> list[int]:
    """The n latent dimensions whose sweep from -span to +span changes member j's image most (mean
    absolute pixel change, with the other dimensions frozen at z0)."""
    d = m.member_latent.dim
    lo, hi = z0.repeat(d, 1), z0.repeat(d, 1)
    lo[torch.arange(d), torch.arange(d)] = -span
    hi[torch.arange(d), torch.arange(d)] = span
    change = (m.generate_member(j, hi) - m.generate_member(j, lo)).abs().flatten(1).mean(1)
    return change.topk(n).indices.tolist()


def sweeps_figure(runs, path: Path, n_dims: int = 3, steps: int = 9, span: float = 2.5, seed: int = 1) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, m, _ in runs:
        for j in range(m.k):
            z0 = m.member_latent.sample(1, generator=torch.Generator().manual_seed(seed + j))
            rows += [(name, m, j, d, z0) for d in strongest_dims(m, j, z0, n_dims, span)]
    fig, axes = plt.subplots(len(rows), steps, figsize=(0.95 * steps, 1.0 * len(rows)), squeeze=False)
    values = torch.linspace(-span, span, steps)
    for r, (name, m, j, d, z0) in enumerate(rows):
        z = z0.repeat(steps, 1)
        z[:, d] = values
        with torch.no_grad():
            imgs = unit(m.generate_member(j, z), m.value_range)
        for c in range(steps):
            ax = axes[r, c]
            ax.imshow(imgs[c, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == len(rows) - 1:
                ax.set_xlabel(f"z[d]={float(values[c]):+.1f}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{name} G{j}\nd={d}", fontsize=7)
    fig.suptitle("frozen latent: one noise vector per generator; each row sweeps dimension d (the 3 that change "
                 "the image most), the others fixed", fontsize=9, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def partition_figure(runs, path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 3.6), squeeze=False)
    hists = {}
    for ax, (name, m, dm) in zip(axes[0], runs):
        labels = dm.split("train")[1]
        if m.assignment.numel() != labels.numel():
            raise SystemExit(f"{name}: the partition covers {m.assignment.numel()} images, the training split {labels.numel()}")
        classes = list(getattr(dm, "class_names", [str(i) for i in range(int(labels.max()) + 1)]))
        h = torch.stack([torch.bincount(labels[m.assignment.cpu() == j], minlength=len(classes)) for j in range(m.k)])
        hists[name] = h.tolist()
        width = 0.8 / m.k
        for j in range(m.k):
            ax.bar(torch.arange(len(classes)) + (j - (m.k - 1) / 2) * width, h[j], width, label=f"G{j} ({int(h[j].sum())})")
        ax.set_xticks(range(len(classes)), classes, rotation=40, ha="right", fontsize=8)
        ax.set_xlabel("class (labels used for this figure only)")
        ax.set_ylabel("training images in the part")
        ax.set_title(f"{name}: class histogram of each generator's part", fontsize=9)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return hists


def member_fid(m, dm, n: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """FID of each member's samples (classifier features) against the whole test split, and against the
    training images of the member's own part (what it was asked to model)."""
    from xgen.metrics.features import build_extractor
    from xgen.metrics.quality import cached_real_reference, real_reference, score

    ext = build_extractor("classifier", None, dm.name, "strong", torch.device("cpu"))
    images, _ = dm.split("test")
    ref = cached_real_reference(images, ext, f"{dm.name}-test")
    train = dm.split("train")[0]
    vs_test, vs_part = [], []
    for j in range(m.k):
        with torch.no_grad():
            gen = torch.cat([m.generate_member(j, min(500, n - i),
                                               generator=torch.Generator().manual_seed(seed + 97 * j + i))
                             for i in range(0, n, 500)])
        ex = ext.extract(gen, m.value_range)
        vs_test.append(score(ref, ex, gen.shape[1:], ("fid",))["fid"])
        part = real_reference(train[m.assignment.cpu() == j], ext)
        vs_part.append(score(part, ex, gen.shape[1:], ("fid",))["fid"])
    return vs_test, vs_part


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--names", default=None, help="comma-separated labels (default: directory names)")
    ap.add_argument("--prefix", default="docs/img/kgan")
    ap.add_argument("--num-samples", type=int, default=2000, help="samples per member for its FID (0: skip)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = args.names.split(",") if args.names else [Path(r).name for r in args.runs]
    runs = []
    for name, r in zip(names, args.runs):
        m, dm = load(Path(r))
        runs.append((name, m.eval(), dm))
    prefix = Path(args.prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    members_figure(runs, Path(f"{prefix}_members.png"))
    sweeps_figure(runs, Path(f"{prefix}_sweeps.png"))
    hists = partition_figure(runs, Path(f"{prefix}_partition.png"))
    stats = {}
    for name, m, dm in runs:
        stats[name] = {"k": m.k, "partition_sizes": m.partition_sizes().tolist(), "partition_log": m.partition_log,
                       "class_histogram": hists[name]}
        if args.num_samples:
            stats[name]["member_fid_vs_test"], stats[name]["member_fid_vs_own_part"] = member_fid(m, dm, args.num_samples)
    Path(f"{prefix}_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps({k: {kk: v for kk, v in s.items() if kk != "partition_log"} for k, s in stats.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
