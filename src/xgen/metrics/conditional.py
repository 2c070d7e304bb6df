"""How well a conditional model draws the class it is asked for (docs/conditional.md).

``class_consistency``: draw ``n`` images, the same number of each class (class ``k`` asked for through
the :class:`~xgen.protocols.Conditional` contract), and let a classifier — xgen's shipped one for the
dataset, a different network from the model's own discriminator — name them. The score is the fraction
named as the class asked for (overall and per class), and the confusion matrix shows which classes are
drawn as which. Chance is 1 / ``num_classes``.
"""

from __future__ import annotations

from typing import Any

import torch

from xgen.data.base import convert_range
from xgen.protocols import Classifies, Conditional, Generative, require

__all__ = ["class_consistency"]


@torch.no_grad()
def class_consistency(model: Any, classifier: Any, n: int = 10_000, batch_size: int = 500, seed: int = 0,
                      device: str | torch.device | None = None) -> dict[str, Any]:
    """The classifier's accuracy on ``n`` generated images against the classes they were drawn for.

    Returns ``accuracy`` (float), ``per_class`` (list of K floats), ``confusion`` (K×K list of counts, row:
    class asked for, column: class named), ``n`` and ``num_classes``.
    """
    cond = require(model, Conditional, "class consistency",
                   "Train a conditional model (model=cgan, model=acgan or model=ss_infogan).")
    gen = require(model, Generative, "class consistency")
    clf = require(classifier, Classifies, "class consistency", "Pass a classifier, e.g. xgen's shipped one.")
    k = int(cond.num_classes)
    if int(clf.num_classes) != k:
        raise ValueError(f"class consistency: the model draws {k} classes but the classifier names {clf.num_classes}")
    labels = torch.arange(k).repeat_interleave(-(-int(n) // k))[: int(n)]
    g = torch.Generator().manual_seed(int(seed))
    confusion = torch.zeros(k, k, dtype=torch.int64)
    for start in range(0, labels.numel(), int(batch_size)):
        want = labels[start:start + int(batch_size)]
        images = gen.generate(cond.latent_for_class(want, generator=g))
        x = convert_range(images.float(), gen.value_range, clf.value_range)
        if device is not None:
            x = x.to(device)
        named, _ = clf.predict(x)
        confusion += torch.bincount(want * k + named.cpu().to(torch.int64), minlength=k * k).view(k, k)
    per_class = (confusion.diag().to(torch.float64) / confusion.sum(1).clamp(min=1)).tolist()
    return {"accuracy": float(confusion.diag().sum()) / float(confusion.sum()), "per_class": per_class,
            "confusion": confusion.tolist(), "n": int(labels.numel()), "num_classes": k}


@torch.no_grad()
def per_class_fid(model: Any, images: torch.Tensor, labels: torch.Tensor, extractor: Any, name: str,
                  n: int = 10_000, batch_size: int = 500, seed: int = 0, cache_dir: str | None = None) -> list[float]:
    """FID of each class: ``n / K`` images drawn for class k against the real images of class k (uint8
    ``images`` with ``labels``, e.g. the test split), in ``extractor``'s feature space. With 1,000 images
    a class, FID is biased upwards against a 10,000-image FID (Chong & Forsyth 2020): compare classes and
    models at the same ``n``, not with the overall FID."""
    from xgen.metrics.quality import cached_real_reference, score

    cond = require(model, Conditional, "per-class FID")
    gen = require(model, Generative, "per-class FID")
    k = int(cond.num_classes)
    per = -(-int(n) // k)
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for c in range(k):
        real = images[labels == c]
        if real.shape[0] < 2:
            out.append(float("nan"))
            continue
        ref = cached_real_reference(real, extractor, f"{name}-class{c}", cache_dir, batch_size=batch_size)
        fake = torch.cat([gen.generate(cond.latent_for_class(torch.full((min(batch_size, per - s),), c), generator=g)).cpu()
                          for s in range(0, per, batch_size)])
        out.append(score(ref, extractor.extract(fake, gen.value_range, batch_size), fake.shape[1:], ("fid",))["fid"])
    return out
