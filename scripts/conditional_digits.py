"""Per-class sample grids and class consistency of AC-GAN and cGAN on scikit-learn's digits (small nets,
300 steps each, seed 0; about 15 s a model on one CPU core): the figures of docs/conditional.md.

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
from xgen.explain.common import shipped_classifier  # noqa: E402
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
    (out / "conditional_digits.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
