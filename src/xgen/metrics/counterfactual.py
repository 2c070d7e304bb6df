"""Counterfactual explanations measured: validity, proximity, sparsity, realism, stability, rank agreement.

Plain functions of tensors (Wachter, Mittelstadt & Russell 2017; Verma et al. 2020's survey names these
criteria). Pixel quantities are in [0, 1] units: images are converted from their ``value_range`` first.
Each per-image function returns a (B,) tensor; :func:`summarise` turns one into numbers.

* **validity** — did the class change (:func:`changed`), and how sure is the classifier of the class
  it changed to (:func:`target_probability`).
* **proximity** — :func:`pixel_distance` (L1 = Σ|Δ|, L2 = √ΣΔ² over every value of the image) and
  :func:`latent_distance` (‖z' − z‖₂).
* **sparsity** — :func:`changed_fraction`: the share of pixels changed by more than a threshold
  (1 = every pixel changed; lower is sparser).
* **realism** — :func:`class_matched_fid`: FID of the counterfactuals' features against real images of
  the classes they now belong to, beside the same FID for *real* images of that class mix (the
  real-vs-real floor); :func:`nearest_distance`: distance to the closest training image in a feature
  space (the measure of :func:`xgen.explain.neighbours.nearest_neighbours`).
* **stability / faithfulness** — :func:`spearman` (rank correlation of two maps per image, ties at
  their average rank) and :func:`relative_change`.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["changed", "target_probability", "pixel_distance", "latent_distance", "changed_fraction",
           "class_matched_fid", "nearest_distance", "spearman", "relative_change", "rank", "summarise"]


def _unit(x: Tensor, value_range: Sequence[float]) -> Tensor:
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {tuple(value_range)}")
    return (x.detach().double() - lo) / (hi - lo)


def _pair(x: Tensor, x_cf: Tensor) -> None:
    if x.shape != x_cf.shape:
        raise ValueError(f"images and counterfactuals differ in shape: {tuple(x.shape)} vs {tuple(x_cf.shape)}")


# ============================================================================ validity
def changed(original_class: Tensor, counterfactual_probs: Tensor, target_class: Tensor | None = None) -> Tensor:
    """1.0 per image whose predicted class (argmax of ``counterfactual_probs`` (B, K)) differs from
    ``original_class`` (B,) — or, with ``target_class``, equals the target — else 0.0."""
    pred = counterfactual_probs.argmax(1).cpu()
    if target_class is not None:
        return (pred == torch.as_tensor(target_class).view(-1).cpu()).double()
    return (pred != torch.as_tensor(original_class).view(-1).cpu()).double()


def target_probability(counterfactual_probs: Tensor, target_class: Tensor | None = None) -> Tensor:
    """The probability of the class reached (the argmax, or ``target_class``) at each counterfactual."""
    p = counterfactual_probs.detach().double().cpu()
    t = p.argmax(1) if target_class is None else torch.as_tensor(target_class).view(-1).cpu()
    return p.gather(1, t.view(-1, 1).long()).squeeze(1)


# ============================================================================ proximity and sparsity
def pixel_distance(x: Tensor, x_cf: Tensor, p: int = 2, value_range: Sequence[float] = (0.0, 1.0)) -> Tensor:
    """‖x_cf − x‖_p per image over all C·H·W values, in [0, 1] pixel units (p = 1 or 2)."""
    _pair(x, x_cf)
    if p not in (1, 2):
        raise ValueError(f"pixel_distance: p must be 1 or 2, got {p}")
    d = (_unit(x_cf, value_range) - _unit(x, value_range)).flatten(1)
    return d.abs().sum(1) if p == 1 else d.pow(2).sum(1).sqrt()


def latent_distance(z: Tensor, z_cf: Tensor) -> Tensor:
    """‖z_cf − z‖₂ per row (for a Decision Map: λ·‖d‖, λ itself for a unit direction)."""
    _pair(z, z_cf)
    return (z_cf.detach().double() - z.detach().double()).flatten(1).norm(dim=1)


def changed_fraction(x: Tensor, x_cf: Tensor, threshold: float = 0.05,
                     value_range: Sequence[float] = (0.0, 1.0)) -> Tensor:
    """Share of pixels (positions; channels averaged) whose value changed by more than ``threshold``
    ([0, 1] units): the sparsity of a change, 0 = nothing changed, 1 = every pixel changed."""
    _pair(x, x_cf)
    if not threshold >= 0:
        raise ValueError(f"changed_fraction: threshold must be >= 0, got {threshold}")
    d = (_unit(x_cf, value_range) - _unit(x, value_range)).abs().mean(1)  # (B, H, W)
    return (d > float(threshold)).double().flatten(1).mean(1)


# ============================================================================ realism
def class_matched_fid(features: Tensor, classes: Tensor, real_features: Tensor, real_labels: Tensor,
                      reference_per_image: int = 4, seed: int = 0, min_per_class: int = 10) -> dict:
    """FID of ``features`` (N, D) of counterfactuals whose classes are ``classes`` (N,) against real
    images of the same classes, and the real-vs-real floor of that comparison.

    For every class k with n_k counterfactuals, ``reference_per_image``·n_k real images of label k form
    the reference set and another n_k real images of label k (disjoint from the reference) form a *real*
    set with exactly the counterfactuals' class mix and size. ``fid`` compares the counterfactuals with
    the reference, ``fid_floor`` the real set with it: a counterfactual set as realistic as real images
    of its classes scores at the floor (FID from a few hundred samples is biased upward; the floor
    carries the same bias). Classes with too few real images use what there is (``short_classes``).

    The pooled FID compares mixtures only: images of the right classes in the wrong proportions per
    claimed class go unnoticed. ``fid_per_class`` (and its floor) averages the FID of each class with at
    least ``min_per_class`` counterfactuals against that class's reference, weighted by count — it sees
    a counterfactual that is called class k but looks like class j (small per-class sets: strongly
    biased, compare with its own floor only).
    """
    from xgen.metrics.fid import SingularCovarianceWarning, fid

    f = torch.as_tensor(features).double().cpu()
    c = torch.as_tensor(classes).view(-1).long().cpu()
    rf = torch.as_tensor(real_features).double().cpu()
    rl = torch.as_tensor(real_labels).view(-1).long().cpu()
    if len(f) != len(c) or len(rf) != len(rl):
        raise ValueError("class_matched_fid: features and classes (and real features and labels) must pair up")
    if len(f) < 2:
        raise ValueError(f"class_matched_fid needs at least 2 counterfactuals, got {len(f)}")
    g = torch.Generator().manual_seed(int(seed))
    ref, floor, short, per = [], [], [], []
    for k in c.unique().tolist():
        n_k = int((c == k).sum())
        pool = torch.nonzero(rl == k).view(-1)
        pool = pool[torch.randperm(len(pool), generator=g)]
        if len(pool) < 2:
            raise ValueError(f"class_matched_fid: class {k} has {len(pool)} real images; need at least 2")
        m = min(n_k, len(pool) // 2)
        if m < n_k or len(pool) < (reference_per_image + 1) * n_k:
            short.append(int(k))
        floor.append(pool[:m])
        ref.append(pool[m:m + max(reference_per_image * n_k, 1)])
        if n_k >= max(int(min_per_class), 2) and m >= 2:
            per.append((k, n_k, floor[-1], ref[-1]))
    ref_i, floor_i = torch.cat(ref), torch.cat(floor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularCovarianceWarning)
        value = fid(rf[ref_i], f)
        base = fid(rf[ref_i], rf[floor_i])
    singular = any(issubclass(w.category, SingularCovarianceWarning) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularCovarianceWarning)
        pc = [(n_k, fid(rf[r], f[c == k]), fid(rf[r], rf[fl])) for k, n_k, fl, r in per]
    per_singular = any(issubclass(w.category, SingularCovarianceWarning) for w in caught)
    tot = sum(n_k for n_k, _, _ in pc)
    return {"fid": value, "fid_floor": base, "fid_ratio": value / base if base > 0 else math.inf,
            "fid_per_class": sum(n_k * v for n_k, v, _ in pc) / tot if tot else None,
            "fid_per_class_floor": sum(n_k * b for n_k, _, b in pc) / tot if tot else None,
            "classes_scored": len(pc), "n": len(f), "reference": len(ref_i), "floor_n": len(floor_i),
            "short_classes": short, "singular_covariance": singular, "per_class_singular": per_singular}


def nearest_distance(features: Tensor, bank: Tensor) -> Tensor:
    """Euclidean distance from each row of ``features`` to its nearest row of ``bank`` (exact, float64
    re-check; :func:`xgen.metrics.knn.knn`)."""
    from xgen.metrics.knn import knn

    d, _ = knn(torch.as_tensor(features).float(), torch.as_tensor(bank).float(), 1)
    return d[:, 0].double()


# ============================================================================ maps: rank agreement
def rank(x: Tensor) -> Tensor:
    """Ranks (1..n) along the last dimension; tied values share their average rank."""
    x = x.detach().double()
    order = x.argsort(dim=-1, stable=True)
    sx = x.gather(-1, order)
    n = x.shape[-1]
    pos = torch.arange(1, n + 1, dtype=torch.float64).expand_as(sx)
    new_group = torch.ones_like(sx, dtype=torch.bool)
    new_group[..., 1:] = sx[..., 1:] != sx[..., :-1]
    gid = new_group.long().cumsum(-1) - 1                           # group index of each sorted value
    sums = torch.zeros_like(sx).scatter_add_(-1, gid, pos)
    counts = torch.zeros_like(sx).scatter_add_(-1, gid, torch.ones_like(pos))
    avg = sums.gather(-1, gid) / counts.gather(-1, gid)
    return torch.empty_like(sx).scatter_(-1, order, avg)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per image of two maps (B, ...) — Pearson correlation of their average
    ranks. NaN where a map is constant (no order to compare)."""
    _pair(a, b)
    ra, rb = rank(a.flatten(1)), rank(b.flatten(1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    out = (ra * rb).sum(1) / den
    return torch.where(den > 0, out, torch.full_like(out, math.nan))


def relative_change(a: Tensor, b: Tensor) -> Tensor:
    """‖b − a‖₂ / ‖a‖₂ per image (inf where a is zero and b is not, 0 where both are zero)."""
    _pair(a, b)
    a2, b2 = a.detach().double().flatten(1), b.detach().double().flatten(1)
    num, den = (b2 - a2).norm(dim=1), a2.norm(dim=1)
    out = num / den.clamp_min(1e-300)
    return torch.where(den > 0, out, torch.where(num > 0, torch.full_like(out, math.inf), torch.zeros_like(out)))


def summarise(values: Tensor, mask: Tensor | None = None) -> dict:
    """Mean, median and count of the finite values of a per-image tensor (where ``mask`` is true)."""
    v = torch.as_tensor(values).double().view(-1)
    if mask is not None:
        v = v[torch.as_tensor(mask).view(-1).bool()]
    v = v[torch.isfinite(v)]
    if not len(v):
        return {"mean": None, "median": None, "n": 0}
    return {"mean": float(v.mean()), "median": float(v.median()), "n": int(len(v))}
