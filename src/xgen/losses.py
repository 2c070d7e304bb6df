"""The objectives of every model, in one place: adversarial losses, the gradient penalty, InfoGAN's
information terms, the Gaussian KL, the reparameterisation trick and the decoders' likelihoods.

Models, callbacks and metrics all import these (a callback never reaches into a model module for
a loss). Conventions: per-image values summed over pixels / latent dimensions, in nats, averaged
over the batch unless a function says "per image".

Adversarial losses on D's raw outputs (logits):
  * ``bce``: D minimises −log D(x) − log(1 − D(G(z))); G the non-saturating −log D(G(z));
  * ``minimax``: as ``bce`` but G minimises log(1 − D(G(z))) (Goodfellow's original game);
  * ``wgan_gp``: critic without sigmoid, D minimises E c(G(z)) − E c(x) + w·GP, G minimises −E c(G(z))
    (Gulrajani et al. 2017); ``wgan``: the same with weights clipped (Arjovsky et al. 2017);
  * ``hinge``: D minimises E relu(1 − c(x)) + E relu(1 + c(G(z))), G minimises −E c(G(z)) (Miyato et al. 2018).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from xgen.errors import ConfigError
from xgen.latent import Codes, LatentSpec

Tensor = torch.Tensor
LOSSES = ("bce", "minimax", "wgan_gp", "wgan", "hinge")
LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- adversarial
def discriminator_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """The discriminator's (critic's) loss from its logits on real and generated images (GP excluded)."""
    if kind in ("bce", "minimax"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()  # −log σ(r) − log(1 − σ(f))
    if kind in ("wgan_gp", "wgan"):
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ConfigError(f"model.loss: unknown loss {kind!r}; choose one of {LOSSES}")


def generator_loss(kind: str, fake: Tensor) -> Tensor:
    """The generator's loss from the discriminator's logits on generated images."""
    if kind == "bce":
        return F.softplus(-fake).mean()  # −log σ(f): non-saturating
    if kind == "minimax":
        return -F.softplus(fake).mean()  # log(1 − σ(f))
    if kind in ("wgan_gp", "wgan", "hinge"):
        return -fake.mean()
    raise ConfigError(f"model.loss: unknown loss {kind!r}; choose one of {LOSSES}")


def real_nll(real_logits: Tensor) -> Tensor:
    """−log D(x) on real images (nats, batch mean): how surely D calls them real."""
    return F.softplus(-real_logits).mean()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     eps: Tensor | None = None) -> Tensor:
    """WGAN-GP's penalty E[(‖∇ₓ c(x̂)‖₂ − 1)²] at x̂ = ε·real + (1 − ε)·fake, ε ~ U(0, 1) per image.

    Zero for a critic that is 1-Lipschitz with unit gradient norm everywhere (e.g. x ↦ w·x, ‖w‖ = 1).
    """
    if eps is None:
        eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


# ----------------------------------------------------------------------------- InfoGAN
def info_terms(latent: LatentSpec, logits: list[Tensor], mean: Tensor, logvar: Tensor,
               codes: Codes) -> dict[str, Tensor]:
    """Negative log-likelihoods of the codes under Q and the MI lower bounds, nats per image.

    nll_cat = Σ_i CE(logits_i, c_i); nll_cont = Σ_j ½(log 2π + logvar_j + (c_j − μ_j)²/exp(logvar_j));
    mi_cat = H_cat − nll_cat, mi_cont = H_cont − nll_cont (each ≤ the true mutual information in expectation).
    """
    zero = mean.new_zeros(())
    nll_cat = zero
    for i, lg in enumerate(logits):
        nll_cat = nll_cat + F.cross_entropy(lg, codes.categorical[:, i])
    if latent.continuous:
        c = codes.continuous.to(mean.dtype)
        nll_cont = (0.5 * (LOG_2PI + logvar + (c - mean).pow(2) * torch.exp(-logvar))).sum(1).mean()
    else:
        nll_cont = zero
    return {"nll_cat": nll_cat, "nll_cont": nll_cont,
            "mi_cat": latent.entropy_categorical() - nll_cat, "mi_cont": latent.entropy_continuous() - nll_cont}


# ----------------------------------------------------------------------------- VAE family
def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = μ + σ·ε, ε ~ N(0, I): a sample of q(z|x) through which gradients reach μ and log σ²."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, exp(logvar)) ‖ N(0, I)) per image (summed over latent dimensions), >= 0."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; μ, diag(exp(logvar))) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def reconstruction_nll(likelihood: str, out: Tensor, x: Tensor, obs_std: float = 0.1) -> Tensor:
    """−log p(x|z) per image (summed over pixels) from a decoder's raw output ``out`` (logits).

    ``bernoulli``: binary cross-entropy with logits; ``gaussian``: N(x; sigmoid(out), obs_std²), with
    the constant log(σ√(2π)) per pixel included."""
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(out, x, reduction="none")
    elif likelihood == "gaussian":
        s = float(obs_std)
        nll = 0.5 * ((x - torch.sigmoid(out)) / s).pow(2) + math.log(s) + 0.5 * LOG_2PI
    else:
        raise ConfigError(f"model.likelihood: unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
    return nll.flatten(1).sum(1)
