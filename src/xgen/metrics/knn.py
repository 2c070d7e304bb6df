"""Exact Euclidean nearest neighbours in batches (the distance behind memorisation checks and counterfactual
proximity): float32 candidates, float64 re-check."""

from __future__ import annotations

import torch
from torch import Tensor

from xgen.errors import ConfigError


def knn(queries: Tensor, bank: Tensor, k: int = 1, chunk: int = 256, extra: int = 8) -> tuple[Tensor, Tensor]:
    """Euclidean k nearest rows of ``bank`` for each row of ``queries``: (distances (Q, k), indices (Q, k)).
    Candidates come from float32 ‖q‖² − 2q·b + ‖b‖² (k + ``extra`` of them); their distances are then
    recomputed exactly in float64, so near-copies get exact (near-zero) distances."""
    q, b = queries.flatten(1).float(), bank.flatten(1).float()
    if q.shape[1] != b.shape[1]:
        raise ConfigError(f"queries and bank have {q.shape[1]} and {b.shape[1]} values per item")
    k = min(int(k), len(b))
    kc = min(k + int(extra), len(b))
    bn = b.pow(2).sum(1)
    ds, ix = [], []
    for i in range(0, len(q), chunk):
        qi = q[i:i + chunk]
        d2 = qi.pow(2).sum(1, keepdim=True) - 2 * qi @ b.T + bn[None]
        _, cand = d2.topk(kc, dim=1, largest=False)
        exact = (qi.double()[:, None, :] - b[cand].double()).pow(2).sum(2).sqrt()
        d, j = exact.topk(k, dim=1, largest=False)
        ds.append(d.float())
        ix.append(cand.gather(1, j))
    return torch.cat(ds), torch.cat(ix)
