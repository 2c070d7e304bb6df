"""Baselines a generative counterfactual is measured against (issue 24).

* :func:`pixel_attack` — the smallest pixel-space change that flips the classifier: an L2 projected-
  gradient attack on the classifier's margin, inside the image range, with a per-image bisection of
  the L2 radius. Typically invisible, and not an image of the new class: "invisible and unrealistic".
* :func:`nearest_unlike_neighbour` — the closest *training* image (in the classifier's feature space)
  that the classifier puts in another class: a real image, "realistic but far".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xgen.errors import ConfigError
from xgen.explain.common import ExplainedClassifier, as_classifier, convert_range

__all__ = ["AttackResult", "pixel_attack", "nearest_unlike_neighbour", "NearestUnlike"]


@dataclass
class AttackResult:
    """Adversarial images (in the caller's value range, CPU), whether each flipped, and its L2 radius."""

    images: Tensor
    success: Tensor       # (B,) bool
    l2: Tensor            # (B,) ‖x_adv − x‖₂ in [0, 1] units (of the returned image)
    original_class: Tensor


def _margin(logits: Tensor, cls: Tensor) -> Tensor:
    """logit of ``cls`` minus the largest other logit: > 0 while the class holds."""
    own = logits.gather(1, cls[:, None]).squeeze(1)
    other = logits.scatter(1, cls[:, None], -math.inf).max(1).values
    return own - other


def _project(delta: Tensor, x: Tensor, eps: Tensor) -> Tensor:
    """Into the L2 ball of radius ``eps`` (per image), then into the [0, 1] box around x."""
    n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    delta = delta * (eps / n).clamp(max=1.0).view(-1, *[1] * (x.ndim - 1))
    return (x + delta).clamp(0.0, 1.0) - x


def _pgd(clf: ExplainedClassifier, x: Tensor, cls: Tensor, eps: Tensor, steps: int, kappa: float):
    """L2 PGD within radius ``eps``: minimise the margin; returns the smallest flipping change seen per
    image (and whether one was seen) — x in [0, 1] units."""
    delta = torch.zeros_like(x)
    alpha = (2.5 * eps / steps).view(-1, *[1] * (x.ndim - 1))
    best = torch.zeros_like(x)
    best_n = torch.full((len(x),), math.inf, device=x.device)
    for _ in range(int(steps)):
        with torch.enable_grad():
            d = delta.detach().requires_grad_(True)
            m = _margin(clf.logits(x + d, (0.0, 1.0)), cls)
            (g,) = torch.autograd.grad((m + kappa).clamp_min(0).sum() + 1e-3 * m.sum(), d)
        with torch.no_grad():
            ok = m.detach() < 0
            n = delta.flatten(1).norm(dim=1)
            take = ok & (n < best_n)
            best[take], best_n[take] = delta[take], n[take]
            gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
            delta = _project(delta - alpha * g / gn, x, eps)
    with torch.no_grad():
        m = _margin(clf.logits(x + delta, (0.0, 1.0)), cls)
        n = delta.flatten(1).norm(dim=1)
        take = (m < 0) & (n < best_n)
        best[take], best_n[take] = delta[take], n[take]
    return best, best_n


def pixel_attack(classifier: ExplainedClassifier | nn.Module, images: Tensor, value_range=(0.0, 1.0),
                 steps: int = 30, search: int = 8, max_l2: float | None = None, kappa: float = 0.0,
                 batch_size: int = 256) -> AttackResult:
    """A minimal-L2 untargeted attack on ``classifier`` (any module returning logits), bounded to the
    image range.

    Per image, the L2 radius ε is bisected ``search`` times between 0 and ``max_l2`` (default: the
    image's diagonal √(C·H·W), i.e. unbounded); each radius runs ``steps`` steps of L2 projected
    gradient descent (step 2.5·ε/steps) on the margin logit_c − max_{j≠c} logit_j (+ ``kappa``), each
    iterate clipped to the image range. The smallest flipping change seen over all radii is returned;
    an image that never flips is returned unchanged with ``success`` False.
    """
    clf = as_classifier(classifier)
    clf.check_input(images.shape[1:], "the images")
    if steps < 1 or search < 1:
        raise ConfigError(f"pixel_attack: steps and search must be >= 1, got {steps}, {search}")
    dev = clf.device
    lo_hi = tuple(float(v) for v in value_range)
    cap = float(max_l2) if max_l2 is not None else math.sqrt(images[0].numel())
    outs, succ, l2s, classes = [], [], [], []
    for s in range(0, len(images), batch_size):
        x = convert_range(images[s:s + batch_size].to(dev).float(), lo_hi, (0.0, 1.0)).clamp(0, 1)
        with torch.no_grad():
            cls = clf.logits(x, (0.0, 1.0)).argmax(1)
        lo = torch.zeros(len(x), device=dev)
        hi = torch.full((len(x),), cap, device=dev)
        best = torch.zeros_like(x)
        best_n = torch.full((len(x),), math.inf, device=dev)
        for it in range(int(search)):
            eps = hi if it == 0 else (lo + hi) / 2       # first try the cap: does anything flip at all?
            d, n = _pgd(clf, x, cls, eps, steps, kappa)
            found = torch.isfinite(n)
            take = found & (n < best_n)
            best[take], best_n[take] = d[take], n[take]
            hi = torch.where(found, torch.minimum(hi, n), hi)
            lo = torch.where(found | (it == 0), lo, torch.maximum(lo, eps))
        ok = torch.isfinite(best_n)
        outs.append(convert_range(x + best, (0.0, 1.0), lo_hi).cpu())
        succ.append(ok.cpu())
        l2s.append(torch.where(ok, best_n, torch.zeros_like(best_n)).cpu())
        classes.append(cls.cpu())
    return AttackResult(torch.cat(outs), torch.cat(succ), torch.cat(l2s), torch.cat(classes))


@dataclass
class NearestUnlike:
    """Per query: index into the training set, its feature distance, and its (classifier) class."""

    index: Tensor
    distance: Tensor
    train_class: Tensor


def nearest_unlike_neighbour(query_features: Tensor, query_class: Tensor, train_features: Tensor,
                             train_class: Tensor) -> NearestUnlike:
    """The closest training item (Euclidean, in the given feature space) whose class differs from the
    query's class (classes as the classifier predicts them, so the neighbour is "another class" for the
    classifier explained)."""
    from xgen.explain.neighbours import knn

    qc, tc = torch.as_tensor(query_class).view(-1).long(), torch.as_tensor(train_class).view(-1).long()
    if len(query_features) != len(qc) or len(train_features) != len(tc):
        raise ConfigError("nearest_unlike_neighbour: features and classes must pair up")
    idx = torch.zeros(len(qc), dtype=torch.long)
    dist = torch.zeros(len(qc), dtype=torch.float64)
    for k in qc.unique().tolist():
        rows = torch.nonzero(qc == k).view(-1)
        bank = torch.nonzero(tc != k).view(-1)
        if not len(bank):
            raise ConfigError(f"nearest_unlike_neighbour: every training item is of class {k}; no unlike neighbour")
        d, j = knn(query_features[rows], train_features[bank], 1)
        idx[rows] = bank[j[:, 0]]
        dist[rows] = d[:, 0].double()
    return NearestUnlike(idx, dist, tc[idx])
