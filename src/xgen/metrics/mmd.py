"""Maximum mean discrepancy between two samples (InfoVAE's divergence between q(z) and p(z)).

MMD²(P, Q) = E k(x, x') + E k(y, y') − 2 E k(x, y) (Gretton et al. 2012). Kernels:
  * ``rbf``: k(x, y) = exp(−‖x − y‖² / s), default s = d² (the official MMD-VAE code divides the
    mean squared difference by the latent size d);
  * ``imq``: k(x, y) = C / (C + ‖x − y‖²), default C = 2·d (WAE, Tolstikhin et al. 2018, for a
    standard normal prior).
"""

from __future__ import annotations

import torch

from xgen.errors import ConfigError

KERNELS = ("rbf", "imq")


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)


def kernel_matrix(x: torch.Tensor, y: torch.Tensor, kernel: str = "rbf",
                  scale: float | None = None) -> torch.Tensor:
    """k(x_i, y_j) for all pairs; x (n, d), y (m, d) -> (n, m)."""
    d = x.shape[1]
    sq = _sq_dists(x, y)
    if kernel == "rbf":
        s = float(d * d) if scale is None else float(scale)
        return torch.exp(-sq / s)
    if kernel == "imq":
        c = float(2 * d) if scale is None else float(scale)
        return c / (c + sq)
    raise ConfigError(f"model.kernel: unknown kernel {kernel!r}; choose one of {KERNELS}")


def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str = "rbf", scale: float | None = None,
        unbiased: bool = True) -> torch.Tensor:
    """Estimate MMD² between samples x (n, d) and y (m, d).

    The unbiased U-statistic (default) drops the diagonal of k(x, x) and k(y, y): its expectation is
    exactly 0 when both samples come from the same distribution (so single estimates can be slightly
    negative). The biased V-statistic keeps them and is always >= 0.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd needs two (n, d) samples of equal d, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = (kernel_matrix(a, b, kernel, scale) for a, b in ((x, x), (y, y), (x, y)))
    if unbiased:
        if n < 2 or m < 2:
            raise ValueError("the unbiased MMD estimate needs at least 2 points in each sample")
        exx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        eyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        exx, eyy = kxx.mean(), kyy.mean()
    return exx + eyy - 2 * kxy.mean()
