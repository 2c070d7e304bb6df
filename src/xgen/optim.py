"""Optimisers shared by models and callbacks (a callback never imports a model module for them)."""

from __future__ import annotations

import torch

from xgen.errors import check


def check_optim(lr: float, betas, key: str = "model") -> tuple[float, float]:
    check(float(lr) > 0, f"{key}.lr", f"learning rate must be > 0, got {lr}")
    check(len(betas) == 2 and all(0 <= float(b) < 1 for b in betas), f"{key}.betas",
          f"Adam betas must be two numbers in [0, 1), got {list(betas)}")
    return float(betas[0]), float(betas[1])


def adam(params, lr: float, betas, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, fused where PyTorch supports it on the parameters' device (one kernel per step on GPU)."""
    params = list(params)
    fused = bool(params) and params[0].is_cuda
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused or None)
