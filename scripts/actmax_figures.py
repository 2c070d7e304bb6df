"""Activation-maximisation figures and numbers for docs/kgan.md (kgans §2.2, fig. 10), on the CPU:

1. the thesis's feature prior for the shipped Fashion-MNIST classifier: a generator trained to turn the
   classifier's last conv maps (``body``, 64×3×3) back into 28×28 images (adversarial + reconstruction),
   checked on held-out images (``actmax_prior_check.png``);
2. each class logit (``fc2``, units 0–9) maximised in pixel space and through that prior; the distance of
   each result to the nearest of the training images in the classifier's 128-d penultimate features
   (``fc1``), and the class confidence (``actmax_classes.png``, ``actmax_curves.png``, ``actmax_stats.json``);
3. optionally (``--kgan RUN``) a k-GAN discriminator's last conv layer maximised in pixel space and through
   the member's own generator (thesis fig. 10; ``actmax_kgan_d.png``).

    OMP_NUM_THREADS=1 python scripts/actmax_figures.py --prefix docs/img/actmax --kgan RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def kgan_discriminator(args, prefix: Path) -> dict:
    """Thesis fig. 10: member 0's discriminator, last conv layer, in pixel space and through the member's
    own generator — the whole layer, and the channel that responds most to real test images."""
    from xgen.data import to_value_range
    from xgen.explain.activation_max import layer_activation, maximize_latent, maximize_pixels, save_figure
    from xgen.models import load_model

    m = load_model(Path(args.kgan) / "checkpoints" / "last.ckpt").eval()
    d0 = m.discriminators[0]
    d0.value_range = m.value_range  # the critic reads images in the generator's range
    layer = "body.1"  # the last conv block (conv + LeakyReLU)
    from xgen.evaluate import data_module

    real = to_value_range(data_module(Path(args.kgan), None).split("test")[0][:500], m.value_range)
    with torch.no_grad():
        per_channel = torch.stack([layer_activation(d0, layer, real, unit=c).mean()
                                   for c in range(d0.body[1][0].out_channels)])
    channel = int(per_channel.argmax())

    class Member(torch.nn.Module):
        """Member 0's generator as a Generative + Decodes prior."""

        def __init__(self):
            super().__init__()
            self.g, self.latent = m.generators[0], m.member_latent
            self.value_range, self.image_shape = m.value_range, m.image_shape

        def sample_latent(self, n, generator=None):
            return self.latent.sample(n, generator=generator)

        def decode(self, z):
            return self.g(z)

        def generate(self, n_or_z, generator=None):
            return self.decode(self.sample_latent(n_or_z, generator) if isinstance(n_or_z, int) else n_or_z)

    out = {"run": str(args.kgan), "layer": layer, "channel": channel}
    for unit, suffix in ((None, ""), (channel, "_unit")):
        r_pix = maximize_pixels(d0, layer, m.image_shape, unit=unit, steps=args.steps, seed=0)
        r_gen = maximize_latent(d0, layer, Member(), unit=unit, steps=args.steps, seed=0)
        what = "whole layer" if unit is None else f"channel {unit} (most active on real images)"
        save_figure([r_pix, r_gen], f"{prefix}_kgan_d{suffix}.png",
                    f"k-GAN (k=1) discriminator, last conv layer {layer}, {what}: pixels vs its generator as prior")
        out["layer_mean" if unit is None else f"channel_{unit}"] = {
            "pixels": [r_pix.activation[0], r_pix.activation[-1]],
            "generator_prior": [r_gen.activation[0], r_gen.activation[-1]]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default="docs/img/actmax")
    ap.add_argument("--prior-images", type=int, default=10000)
    ap.add_argument("--prior-epochs", type=int, default=2)
    ap.add_argument("--reference", type=int, default=10000, help="training images for the nearest-neighbour distance")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--kgan", default=None, help="a KGAN run directory for the discriminator figure")
    ap.add_argument("--only-kgan", action="store_true", help="redo the discriminator figure only (keeps the other stats)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xgen.data import FashionMNISTDataModule
    from xgen.explain.activation_max import (maximize_feature_prior, maximize_latent, maximize_pixels,
                                             nearest_feature_distance, save_figure, train_feature_prior)
    from xgen.metrics.features import ClassifierExtractor

    prefix = Path(args.prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if args.only_kgan:
        stats = json.loads(Path(f"{prefix}_stats.json").read_text())
        stats["kgan_d"] = kgan_discriminator(args, prefix)
        Path(f"{prefix}_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        print(json.dumps(stats["kgan_d"], indent=1))
        return 0
    torch.manual_seed(0)
    net = ClassifierExtractor(dataset="fashion_mnist").net.eval()
    dm = FashionMNISTDataModule(seed=0)
    train = dm.split("train")[0]
    test = dm.split("test")[0]
    classes = list(dm.class_names)
    t0 = time.time()
    prior, hist = train_feature_prior(net, "body", train[: args.prior_images], epochs=args.prior_epochs,
                                      log=lambda m: print(m, flush=True))
    stats: dict = {"prior": {"feature_layer": "body", "images": args.prior_images, "epochs": args.prior_epochs,
                             "history": hist, "seconds": round(time.time() - t0, 1)}}
    # 1. the prior on held-out images (the thesis's check)
    from xgen.explain.activation_max import features_at

    x = test[:10].float() / 255
    with torch.no_grad():
        rec = prior.decode(features_at(net, "body", x))
    stats["prior"]["test_mse"] = float(((rec - x) ** 2).mean())
    fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
    for i in range(10):
        for r, img in enumerate((x[i], rec[i])):
            axes[r, i].imshow(img[0], cmap="gray", vmin=0, vmax=1)
            axes[r, i].set_xticks([]), axes[r, i].set_yticks([])
        axes[1, i].set_xlabel(classes[int(dm.split("test")[1][i])], fontsize=7)
    axes[0, 0].set_ylabel("test image", fontsize=8)
    axes[1, 0].set_ylabel("prior(features)", fontsize=8)
    fig.suptitle(f"feature prior: classifier conv maps (body, 576-d) -> image; test MSE {stats['prior']['test_mse']:.4f}",
                 fontsize=9)
    fig.savefig(f"{prefix}_prior_check.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    # 2. class logits, pixels vs prior
    pix, pri = [], []
    for c in range(10):
        pix.append(maximize_pixels(net, "fc2", (1, 28, 28), unit=c, steps=args.steps, seed=c))
        pri.append(maximize_feature_prior(net, "fc2", prior, unit=c, steps=args.steps, seed=c))
    ref = train[-args.reference:].float() / 255  # images the prior was not trained on
    d_pix, i_pix = nearest_feature_distance(torch.stack([r.final for r in pix]), ref, net.features)
    d_pri, i_pri = nearest_feature_distance(torch.stack([r.final for r in pri]), ref, net.features)
    with torch.no_grad():
        conf_pix = torch.softmax(net(torch.stack([r.final for r in pix])), 1)[torch.arange(10), torch.arange(10)]
        conf_pri = torch.softmax(net(torch.stack([r.final for r in pri])), 1)[torch.arange(10), torch.arange(10)]
        d_real, _ = nearest_feature_distance(test[:200].float() / 255, ref, net.features)
    stats["classes"] = {
        "measure": "Euclidean distance in the classifier's fc1 features (128-d) to the nearest of "
                   f"{len(ref)} training images",
        "pixels": {"distance": d_pix.tolist(), "confidence": conf_pix.tolist(),
                   "activation_start": [r.activation[0] for r in pix], "activation_end": [r.activation[-1] for r in pix]},
        "feature_prior": {"distance": d_pri.tolist(), "confidence": conf_pri.tolist(),
                          "activation_start": [r.activation[0] for r in pri], "activation_end": [r.activation[-1] for r in pri]},
        "mean_distance_pixels": float(d_pix.mean()), "mean_distance_prior": float(d_pri.mean()),
        "prior_closer_in": int((d_pri < d_pix).sum()),
        "real_test_images_mean_distance": float(d_real.mean()),
    }
    fig, axes = plt.subplots(4, 10, figsize=(10.5, 4.9))
    rows = [("pixels", pix, d_pix, i_pix), ("feature prior", pri, d_pri, i_pri)]
    for c in range(10):
        for r, (name, res, d, idx) in enumerate(rows):
            axes[2 * r, c].imshow(res[c].final[0], cmap="gray", vmin=0, vmax=1)
            axes[2 * r, c].set_title(f"{classes[c]}\nd={float(d[c]):.1f}", fontsize=6.5)
            axes[2 * r + 1, c].imshow(ref[int(idx[c])][0], cmap="gray", vmin=0, vmax=1)
        for r in range(4):
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
    for r, label in enumerate(["pixel space", "nearest train", "feature prior", "nearest train"]):
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle("class logit (fc2) maximised; d = fc1-feature distance to the nearest training image", fontsize=9)
    fig.savefig(f"{prefix}_classes.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    save_figure([pix[0], pri[0]], f"{prefix}_curves.png",
                f"shipped Fashion-MNIST classifier, fc2[0] ({classes[0]}): progression and activation")
    # 3. a k-GAN discriminator (thesis fig. 10)
    if args.kgan:
        stats["kgan_d"] = kgan_discriminator(args, prefix)
    stats["seconds"] = round(time.time() - t0, 1)
    Path(f"{prefix}_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps({k: v for k, v in stats["classes"].items() if k.startswith("mean") or k.startswith("prior_")
                      or k.startswith("real")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
