"""A labelled subset of a training split: the few labels a semi-supervised model may read.

``labelled_subset(labels, per_class=N)`` draws N images of every class, ``fraction=f`` draws
``round(f · n_k)`` images of every class k (stratified, so a small fraction still covers every class).
The draw is a function of the labels and ``seed`` only: the same subset on every process, on every
resume and on every machine. Every other training image gets the label :data:`UNLABELLED` (-1), which
the semi-supervised and conditional models skip. Evaluation never reads this: the validation and test
splits and :meth:`~xgen.data.base.InMemoryDataModule.factors` keep every label.
"""

from __future__ import annotations

import torch

from xgen.errors import ConfigError, check

UNLABELLED = -1
"""The label a training image outside the labelled subset carries in training batches."""


def check_subset_args(per_class: int | None, fraction: float | None, key: str = "data") -> None:
    """``labels_per_class`` (>= 0) or ``label_fraction`` (in [0, 1]), not both."""
    check(per_class is None or fraction is None, f"{key}.labels_per_class",
          "set data.labels_per_class or data.label_fraction, not both")
    check(per_class is None or int(per_class) >= 0, f"{key}.labels_per_class",
          f"must be >= 0 (0: no labels) or null (every label), got {per_class}")
    check(fraction is None or 0.0 <= float(fraction) <= 1.0, f"{key}.label_fraction",
          f"must be in [0, 1] or null (every label), got {fraction}")


def labelled_subset(labels: torch.Tensor, per_class: int | None = None, fraction: float | None = None,
                    seed: int = 0, num_classes: int | None = None) -> torch.Tensor:
    """Sorted int64 indices into ``labels`` of the labelled subset (every index when both are None).

    Within each class the images are taken in the order of one permutation of the whole split drawn
    from ``seed``, so a larger ``per_class`` keeps the images of a smaller one (10 labels per class are
    among the 60 of the same seed). A class with fewer than ``per_class`` images is an error naming it.
    """
    check_subset_args(per_class, fraction)
    labels = labels.to(torch.int64).cpu()
    n = labels.shape[0]
    if per_class is None and fraction is None:
        return torch.arange(n)
    if n and int(labels.min()) < 0:
        raise ConfigError("data.labels_per_class: the training split has images without a label (< 0); "
                          "a labelled subset needs a labelled dataset.")
    k = int(num_classes) if num_classes is not None else (int(labels.max()) + 1 if n else 0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 7_919 + 17))
    chosen = []
    for c in range(k):
        members = order[labels[order] == c]  # class c's images in the seed's order
        want = int(per_class) if per_class is not None else int(round(float(fraction) * members.numel()))
        if want > members.numel():
            raise ConfigError(f"data.labels_per_class: class {c} has only {members.numel()} training images, "
                              f"fewer than the {want} asked for; lower data.labels_per_class.")
        chosen.append(members[:want])
    return torch.cat(chosen).sort().values if chosen else torch.zeros(0, dtype=torch.int64)


def mask_labels(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A copy of ``labels`` with every image outside ``keep`` (indices) set to :data:`UNLABELLED`."""
    out = torch.full_like(labels, UNLABELLED)
    out[keep] = labels[keep]
    return out
