"""Balanced partitions of a data set into k parts: balanced k-means and entropic optimal transport
(Sinkhorn) rounded to exact part sizes. The k-GAN (:mod:`xgen.models.kgan`) starts its partition with
:func:`kmeans_partition` and updates it with :func:`balanced_assignment` (docs/kgan.md).

* :func:`capacities`: the part sizes, ⌊N/k⌋ or ⌈N/k⌉;
* :func:`sinkhorn_plan`: the entropic transport plan between N items and k equal-mass parts (Cuturi 2013);
* :func:`round_plan`: a hard assignment from a plan that fills every part exactly;
* :func:`balanced_assignment`: items to parts maximising a score under equal sizes (the two above);
* :func:`kmeans_partition`: k-means++ seeding, then Lloyd rounds of balanced assignment.
"""

from __future__ import annotations

import math

import torch

from xgen.errors import ConfigError, check


def capacities(n: int, k: int) -> torch.Tensor:
    """Sizes of a balanced partition of n items into k parts: ⌈n/k⌉ for the first n mod k, ⌊n/k⌋ after."""
    check_k(k, n)
    return torch.tensor([n // k + (1 if j < n % k else 0) for j in range(k)])


def check_k(k: int, n: int | None = None, key: str = "model.k") -> None:
    """k >= 1, and no more members than data points (a member with no data cannot be trained)."""
    if int(k) != k or int(k) < 1:
        raise ConfigError(f"{key}: the number of generator/discriminator pairs must be an integer >= 1, got {k}")
    if n is not None and int(k) > int(n):
        raise ConfigError(f"{key}: {k} generators for {n} training images: each member needs at least one image of "
                          f"its own. Fix: lower {key} or train on more data (data.train_subset).")


def sinkhorn_plan(cost: torch.Tensor, eps: float = 0.05, iters: int = 300) -> torch.Tensor:
    """Entropic optimal transport (Cuturi 2013) between N items of mass 1/N and k members of mass 1/k:
    the plan P (N, k) minimising <P, C> − eps·H(P), by log-domain Sinkhorn iterations. ``cost`` is
    rescaled to unit standard deviation first, so ``eps`` is relative to the spread of the costs."""
    c = cost.double()
    c = (c - c.mean()) / c.std().clamp_min(1e-12)
    n, k = c.shape
    log_a = torch.full((n,), -math.log(n), dtype=c.dtype, device=c.device)
    log_b = torch.full((k,), -math.log(k), dtype=c.dtype, device=c.device)
    f = torch.zeros(n, dtype=c.dtype, device=c.device)
    g = torch.zeros(k, dtype=c.dtype, device=c.device)
    m = -c / eps
    for _ in range(int(iters)):
        f = log_a - torch.logsumexp(m + g[None, :], dim=1)
        g = log_b - torch.logsumexp(m + f[:, None], dim=0)
    return torch.exp(m + f[:, None] + g[None, :])


def round_plan(plan: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
    """A hard assignment (N,) from a transport plan that fills member j with exactly ``caps[j]`` items:
    the (item, member) pairs are taken in decreasing plan mass (ties: lower index first), each item once,
    each member up to its capacity."""
    n, k = plan.shape
    check(int(caps.sum()) == n, "partition", f"capacities sum to {int(caps.sum())}, not to the {n} items")
    order = torch.argsort(plan.flatten(), descending=True, stable=True).tolist()
    out = [-1] * n
    left = caps.tolist()
    placed = 0
    for flat in order:
        i, j = divmod(flat, k)
        if out[i] < 0 and left[j] > 0:
            out[i] = j
            left[j] -= 1
            placed += 1
            if placed == n:
                break
    return torch.tensor(out, dtype=torch.long)


def balanced_assignment(score: torch.Tensor, eps: float = 0.05, iters: int = 300,
                        standardise: bool = True) -> torch.Tensor:
    """Assign N items to k members, maximising the total ``score`` (N, k) under equal part sizes
    (:func:`capacities`): Sinkhorn on cost = −score (each column standardised first if ``standardise``),
    then :func:`round_plan`. Returns int64 (N,) member ids; every member gets ⌊N/k⌋ or ⌈N/k⌉ items."""
    n, k = score.shape
    check_k(k, n, "partition")
    if k == 1:
        return torch.zeros(n, dtype=torch.long)
    s = score.double()
    if standardise:
        s = (s - s.mean(0, keepdim=True)) / s.std(0, keepdim=True).clamp_min(1e-12)
    plan = sinkhorn_plan(-s, eps, iters)
    return round_plan(plan.cpu(), capacities(n, k))


def kmeans_partition(x: torch.Tensor, k: int, iters: int = 10, seed: int = 0, eps: float = 0.05) -> torch.Tensor:
    """A balanced k-means partition of the rows of ``x`` (N, D): k-means++ seeding, then ``iters`` rounds of
    a balanced assignment to the nearest centres (:func:`balanced_assignment` on −squared distance,
    unstandardised) and centre updates."""
    n = x.shape[0]
    check_k(k, n)
    if k == 1:
        return torch.zeros(n, dtype=torch.long)
    x = x.float()
    g = torch.Generator().manual_seed(int(seed))
    centres = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n)
        centres.append(x[int(torch.multinomial(probs, 1, generator=g))])
        d2 = torch.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = torch.stack(centres)
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(max(1, int(iters))):
        dist = torch.cdist(x, c) ** 2
        assign = balanced_assignment(-dist, eps=eps, standardise=False)
        c = torch.stack([x[assign == j].mean(0) for j in range(k)])
    return assign
