"""Per-class sample grids and class consistency of AC-GAN and cGAN on scikit-learn's digits (small nets,
300 steps each, seed 0; about 15 s a model on one CPU core): the figures of docs/conditional.md. Then, for
each model, the explain tools through the Conditional contract: an Explainability Grid with one row per class
asked for, and decision maps "as class k" of 6 test digits through an inversion encoder (1,500 steps).

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/conditional_digits.py --out docs/img
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from xgen.data import DigitsDataModule  # noqa: E402
from xgen.explain.class_swap import class_swap  # noqa: E402
from xgen.explain.common import as_classifier, shipped_classifier  # noqa: E402
from xgen.explain.grids import explainability_grid  # noqa: E402
from xgen.explain.inversion import InvertedGAN, reconstruction_error, train_inversion  # noqa: E402
from xgen.metrics.conditional import class_consistency  # noqa: E402
from xgen.models import ACGAN, CGAN  # noqa: E402

SMALL = dict(generator={"_target_": "xgen.nets.gan.ConvGenerator", "channels": [32, 16]},
             discriminator={"_target_": "xgen.nets.gan.ConvDiscriminator", "channels": [16, 32]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clf = shipped_classifier("digits", arch="strong").module
    results = {}
    for cls in (ACGAN, CGAN):
        torch.manual_seed(args.seed)
        model = cls(**SMALL)
        trainer = L.Trainer(max_steps=2 * args.steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            accelerator="cpu")
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=64, repeat=10, seed=args.seed))
        model.eval()
        r = class_consistency(model, clf, n=1000, seed=args.seed)
        results[cls.__name__] = {"class_consistency": r["accuracy"], "per_class": r["per_class"],
                                 "steps": args.steps, "seed": args.seed}
        labels = torch.arange(10).repeat_interleave(10)
        imgs = model.generate_class(labels, generator=torch.Generator().manual_seed(1))
        imgs = ((imgs + 1) / 2).clamp(0, 1).cpu()
        named, _ = clf.predict(imgs)
        fig, axes = plt.subplots(10, 10, figsize=(8.4, 9.2))
        for i, ax in enumerate(axes.flat):
            ax.imshow(imgs[i, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ok = int(named[i]) == int(labels[i])
            ax.set_title(f"read {int(named[i])}", fontsize=7, color="black" if ok else "red", pad=2)
            if i % 10 == 0:
                ax.set_ylabel(f"class {int(labels[i])}", fontsize=9)
        fig.suptitle(f"{cls.__name__} on digits, {args.steps} steps, seed {args.seed}: one row per class asked for\n"
                     f"titles: the class xgen's shipped digits classifier reads (red: another class); "
                     f"class consistency on 1,000 images {r['accuracy']:.3f}", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.94))
        path = out / f"conditional_{cls.__name__.lower()}_digits_classes.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        print(cls.__name__, f"class consistency {r['accuracy']:.3f}", path)
        results[cls.__name__].update(explain(model, clf, out, args))
    (out / "conditional_digits.json").write_text(json.dumps(results, indent=1) + "\n")


def explain(model, clf, out: Path, args) -> dict:
    """The Explainability Grid (class rows) and decision maps as class k of one trained model."""
    name = type(model).__name__
    named = as_classifier(clf, model, class_names=[str(k) for k in range(10)])
    g = explainability_grid(model, named, steps=8, seed=args.seed)
    g.figure(out / f"conditional_{name.lower()}_digits_grid.png",
             title=f"{name} on digits: Explainability Grid, one row per class asked for, noise unit z0 across; "
                   f"{g.counts()['cells_asked_class']:.0%} of cells read as the class asked for")
    dm = DigitsDataModule(batch_size=64, seed=args.seed)
    dm.setup("fit")
    xr, _ = dm.batch("train", value_range=model.value_range)
    xt, yt = dm.batch("test", value_range=model.value_range)
    enc = train_inversion(model, steps=1500, real_images=xr, seed=args.seed)
    inv = InvertedGAN(model, enc)
    cs = class_swap(inv, named, xt[:6], labels=yt[:6], indices=list(range(6)))
    cs.figure(out / f"conditional_{name.lower()}_digits_class_swap.png", rows=6)
    many = _swap_scores(inv, named, xt[:200], yt[:200])
    print(name, "grid: cells read as the class asked for", g.counts()["cells_asked_class"],
          "| as class k, 200 test digits:", many)
    return {"grid": {k: g.counts()[k] for k in ("cells_asked_class", "rows_asked_class", "turning_points")},
            "class_swap_200_test_images": many,
            "inversion_test_mse": reconstruction_error(inv, xt[:500])["mse"]}


def _swap_scores(inv, named, x, y) -> dict:
    s = class_swap(inv, named, x, labels=y).summary()
    return {k: s[k] for k in ("hit_rate", "mean_prob_target", "mean_abs_map", "sparsity", "encoder_reads_label",
                              "reconstruction_keeps_class", "swaps")}


if __name__ == "__main__":
    main()
