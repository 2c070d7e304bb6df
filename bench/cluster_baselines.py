"""Unsupervised accuracy on the Fashion-MNIST test split: InfoGAN's categorical code against k-means.

For each run directory (its ``checkpoints/last.ckpt``): an InfoGAN is scored by Q's argmax on the
real test images (as ``test/cat_acc``, BatchNorm in eval mode; also with batch statistics); any GAN-family model is also scored by k-means (k = 10) on its
discriminator's features; k-means on raw pixels is the floor. Hungarian matching throughout
(:func:`xgen.metrics.cluster_accuracy`). Prints one JSON line.

    python bench/cluster_baselines.py outputs/infogan_fmnist_cpu/<run> outputs/dcgan_fmnist_cpu/<run>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from omegaconf import OmegaConf

from xgen.data import FashionMNISTDataModule, to_value_range
from xgen.metrics import cluster_accuracy
from xgen.models import DCGAN, GAN, InfoGAN
from xgen.nets.gan import batch_stats


def load(run: Path):
    """The run's model class (from its config.yaml) loaded from checkpoints/last.ckpt."""
    target = OmegaConf.load(run / "config.yaml").model._target_
    cls = {"xgen.models.InfoGAN": InfoGAN, "xgen.models.DCGAN": DCGAN, "xgen.models.GAN": GAN}[target]
    # weights_only=False: also reads checkpoints written before hyperparameters were made plain (own runs only)
    return cls.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False).eval()


@torch.no_grad()
def features(model, x: torch.Tensor, batch: int = 1000) -> tuple[np.ndarray, np.ndarray | None]:
    feats, preds = [], []
    for i in range(0, x.shape[0], batch):
        _, f = model.discriminator(x[i:i + batch])
        feats.append(f)
        if isinstance(model, InfoGAN):
            preds.append(model.q(f)[0][model.eval_code].argmax(1))
    return torch.cat(feats).numpy(), (torch.cat(preds).numpy() if preds else None)


def kmeans_accuracy(feats: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    pred = KMeans(n_clusters=10, n_init=10, random_state=seed).fit_predict(feats)
    return cluster_accuracy(pred, labels, num_clusters=10, num_classes=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--root", default=None)
    ap.add_argument("--pixels", action="store_true", help="also k-means on raw pixels")
    args = ap.parse_args()
    dm = FashionMNISTDataModule(root=args.root)
    x_u8, y = dm.split("test")
    labels = y.numpy()
    out: dict[str, dict[str, float]] = {}
    for run in args.runs:
        model = load(run)
        x = to_value_range(x_u8, model.value_range)
        feats, pred = features(model, x)
        res = {"model": type(model).__name__, "kmeans_d_features": kmeans_accuracy(feats, labels)}
        if pred is not None:
            res["q_argmax"] = cluster_accuracy(pred, labels, num_clusters=10, num_classes=10)
            with batch_stats(model):  # BatchNorm with each test batch's own statistics, for comparison
                _, pred_b = features(model, x)
            res["q_argmax_batch_stats"] = cluster_accuracy(pred_b, labels, num_clusters=10, num_classes=10)
        out[str(run)] = res
    if args.pixels:
        out["pixels"] = {"kmeans_pixels": kmeans_accuracy(x_u8.flatten(1).float().numpy() / 255.0, labels)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
