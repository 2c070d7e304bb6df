"""Nearest-neighbour memorisation check (lecture, "Quantitative comparison").

A model that memorised its training set draws samples that sit right on top of training images. For
each generated sample we find the closest training images in pixel space and in a classifier's
feature space, and compare the sample's nearest distance with the *typical* distance from a held-out
test image to its nearest training image (the median over test images): a fraction of samples far
above that of test images (which are, by construction, not copies) points at memorisation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from xgen.errors import ConfigError
from xgen.explain.common import ExplainedClassifier, as_classifier, to_unit
from xgen.explain.figures import image_rows_figure
from xgen.metrics.knn import knn

__all__ = ["Neighbours", "nearest_neighbours", "knn"]


@dataclass
class Neighbours:
    """Nearest training images of each sample in two spaces, and the memorisation statistic."""

    samples: Tensor                    # (N, C, H, W) in [0, 1]
    train: Tensor                      # the training images, [0, 1] (uint8 kept by the caller is fine)
    pixel_dist: Tensor                 # (N, k)
    pixel_index: Tensor
    feature_dist: Tensor
    feature_index: Tensor
    test_pixel_median: float           # median over test images of the distance to their nearest training image
    test_feature_median: float
    stats: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return dict(self.stats)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        per = [{"sample": i, "pixel_nn": int(self.pixel_index[i, 0]), "pixel_dist": float(self.pixel_dist[i, 0]),
                "feature_nn": int(self.feature_index[i, 0]), "feature_dist": float(self.feature_dist[i, 0])}
               for i in range(len(self.samples))]
        path.write_text(json.dumps({"summary": self.summary(), "samples": per}, indent=1))
        return path

    def figure(self, path: str | Path | None = None, rows: int = 8, title: str = ""):
        """Per sample: the sample, its k nearest training images in pixel space, then in feature space,
        each captioned with its distance."""
        k = self.pixel_index.shape[1]
        panels, cols = [], ["sample"] + [f"pixel NN {j + 1}" for j in range(k)] + [f"feature NN {j + 1}" for j in range(k)]
        for i in range(min(rows, len(self.samples))):
            r = [(self.samples[i], f"sample {i}")]
            r += [(self._train(int(self.pixel_index[i, j])), f"#{int(self.pixel_index[i, j])} d={float(self.pixel_dist[i, j]):.2f}")
                  for j in range(k)]
            r += [(self._train(int(self.feature_index[i, j])), f"#{int(self.feature_index[i, j])} d={float(self.feature_dist[i, j]):.2f}")
                  for j in range(k)]
            panels.append(r)
        s = self.stats
        title = title or (f"nearest training images (d: Euclidean distance)\n{100 * s['frac_closer_pixel']:.0f}% (pixel) / "
                          f"{100 * s['frac_closer_feature']:.0f}% (feature) of samples are closer than the median "
                          f"test image ({s['test_pixel_median']:.2f} / {s['test_feature_median']:.2f})")
        return image_rows_figure(panels, path, col_titles=cols, title=title, cell_inches=1.0)

    def _train(self, j: int) -> Tensor:
        t = self.train[j]
        return t.float() / 255.0 if t.dtype == torch.uint8 else t


def nearest_neighbours(samples: Tensor, value_range, train_images: Tensor, test_images: Tensor,
                       classifier: ExplainedClassifier | nn.Module, k: int = 3, num_test: int = 1000) -> Neighbours:
    """The memorisation check.

    Args:
        samples: generated images (N, C, H, W) in ``value_range``.
        train_images, test_images: dataset images as uint8 (0..255) or floats in [0, 1].
        classifier: defines the feature space (its ``features`` when it Classifies, else its logits).
        k: neighbours shown per sample; num_test: test images used for the typical distance.
    """
    clf = as_classifier(classifier)
    clf.check_input(samples.shape[1:], "the samples")
    unit = lambda t: t.float() / 255.0 if t.dtype == torch.uint8 else t.float()  # noqa: E731
    if tuple(train_images.shape[1:]) != tuple(samples.shape[1:]):
        raise ConfigError(f"train_images: {tuple(train_images.shape[1:])} images but the samples are "
                          f"{tuple(samples.shape[1:])}; use the dataset the model was trained on")
    s = to_unit(samples.float().cpu(), value_range).clamp(0, 1)
    tr = unit(train_images)
    te = unit(test_images[:num_test])
    pd, pi = knn(s, tr, k)
    tpd, _ = knn(te, tr, 1)
    f_tr = clf.features(tr, (0.0, 1.0))
    fd, fi = knn(clf.features(s, (0.0, 1.0)), f_tr, k)
    tfd, _ = knn(clf.features(te, (0.0, 1.0)), f_tr, 1)
    pm, fm = float(tpd[:, 0].median()), float(tfd[:, 0].median())
    stats = {"samples": len(s), "train": len(tr), "test": len(te),
             "test_pixel_median": pm, "test_feature_median": fm,
             "sample_pixel_median": float(pd[:, 0].median()), "sample_feature_median": float(fd[:, 0].median()),
             "frac_closer_pixel": float((pd[:, 0] < pm).float().mean()),
             "frac_closer_feature": float((fd[:, 0] < fm).float().mean()),
             # the same statistic for the test images themselves is 0.5 by definition of the median
             "min_pixel_dist": float(pd[:, 0].min())}
    return Neighbours(s, train_images, pd, pi, fd, fi, pm, fm, stats)
