"""Test log-likelihood of VAEs: the ELBO and the importance-weighted estimate (Burda et al. 2016).

log p(x) ≈ log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x). It is a lower bound in
expectation that tightens as k grows (k = 1 is the ELBO) — the lecture's "test log-likelihood
compares models". The model needs ``encode(x) -> (mu, logvar)``, ``decode_logits(z)`` (raw output) and
``reconstruction_nll(decoder_output, x)`` (−log p(x|z) per image): :class:`xgen.protocols.HasLikelihood`.
"""

from __future__ import annotations

import math

import torch

from xgen.losses import gaussian_kl, log_normal

Tensor = torch.Tensor


@torch.no_grad()
def elbo(model: torch.nn.Module, x: Tensor) -> Tensor:
    """Per-image ELBO (nats) with one posterior sample and the analytic KL: E_q[log p(x|z)] − KL."""
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    rec = model.reconstruction_nll(model.decode_logits(z), x)
    kl = gaussian_kl(mu, logvar)
    return -(rec + kl)


@torch.no_grad()
def iw_log_likelihood(model: torch.nn.Module, x: Tensor, k: int = 100, chunk: int = 100) -> Tensor:
    """Per-image importance-weighted estimate of log p(x) (nats) with ``k`` posterior samples,
    decoded ``chunk`` samples per image at a time."""
    if int(k) < 1:
        raise ValueError(f"iw_log_likelihood: k must be >= 1, got {k}")
    mu, logvar = model.encode(x)
    b = x.shape[0]
    std = torch.exp(0.5 * logvar)
    log_w = []
    for start in range(0, int(k), int(chunk)):
        m = min(int(chunk), int(k) - start)
        z = mu.unsqueeze(1) + torch.randn(b, m, mu.shape[1], device=mu.device, dtype=mu.dtype) * std.unsqueeze(1)
        zf = z.reshape(b * m, -1)
        xr = x.unsqueeze(1).expand(b, m, *x.shape[1:]).reshape(b * m, *x.shape[1:])
        log_px_z = -model.reconstruction_nll(model.decode_logits(zf), xr).view(b, m)
        log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = log_normal(z, mu.unsqueeze(1), logvar.unsqueeze(1))
        log_w.append(log_px_z + log_pz - log_qz)
    return torch.logsumexp(torch.cat(log_w, 1), dim=1) - math.log(int(k))
