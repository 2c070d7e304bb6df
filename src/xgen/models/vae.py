"""VAE, beta-VAE and InfoVAE as LightningModules (vae-thesis ch. 3; thesis §3.2.3, §4.3).

Conventions (the same for every model of the family, and stated in the README):
  * losses are per-image sums over pixels and latent dimensions, in nats, averaged over the batch;
  * ``kl`` is KL(q(z|x) ‖ N(0, I)) >= 0; ``rec`` is −log p(x|z) for one z ~ q(z|x);
  * ``nelbo = rec + kl`` is the negative ELBO whatever the weights; ``loss`` is what is minimised:
    VAE/beta-VAE ``rec + beta·kl``; InfoVAE ``rec + (1−alpha)·kl + (alpha+lambda−1)·mmd``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from xgen import losses
from xgen.errors import check
from xgen.latent import LatentSpec
from xgen.losses import LIKELIHOODS
from xgen.metrics.mmd import KERNELS, mmd
from xgen.models.base import StepModule, build_net, check_optim, plain
from xgen.models.inference import inference
from xgen.nets.vae import ConvDecoder, ConvEncoder
from xgen.protocols import Posterior

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
        self.latent = LatentSpec(noise=self.latent_dim, categorical=[], continuous=0)  # z ~ N(0, I)
        self.likelihood = likelihood
        self.obs_std = float(obs_std)
        self.beta = float(beta)
        self.encoder = build_net(encoder, ConvEncoder, "model.encoder", image_shape=self.image_shape,
                                 latent_dim=self.latent_dim)
        self.decoder = build_net(decoder, ConvDecoder, "model.decoder", image_shape=self.image_shape,
                                 latent_dim=self.latent_dim)

    # ------------------------------------------------------------------ the model (xgen.protocols)
    @inference
    def encode(self, x: torch.Tensor) -> Posterior:
        """q(z|x) as a :class:`~xgen.protocols.Posterior` (mean, log-variance); unpacks as a tuple."""
        mu, logvar = self.encoder(x)
        return Posterior(mu, logvar)

    @inference
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation disentanglement metrics score: the posterior mean (B, latent_dim)."""
        return self.encoder(x)[0]

    @inference
    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output (the likelihood's parameters before the sigmoid)."""
        return self.decoder(z)

    @inference
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image E[x|z] in the data's value range."""
        return torch.sigmoid(self.decoder(z))

    @inference
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of x."""
        return self.decode(self.encoder(x)[0])

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of z from the prior N(0, I), on this module's device (CPU draws when seeded)."""
        return self.latent.sample(n, generator=generator, device=self.device)


    @inference
    def generate(self, latent_or_n: int | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images from the prior: ``generate(64)`` or ``generate(z)``."""
        z = self.sample_latent(latent_or_n, generator) if isinstance(latent_or_n, int) else latent_or_n.to(self.device)
        return self.decode(z)

    reparameterize = staticmethod(losses.reparameterize)
    kl_divergence = staticmethod(losses.gaussian_kl)

    def reconstruction_nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per image (summed over pixels), from the decoder's raw output."""
        return losses.reconstruction_nll(self.likelihood, out, x, self.obs_std)

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch means of the loss terms (nats per image) and the loss that is minimised."""
        mu, logvar = self.encoder(x)
        z = losses.reparameterize(mu, logvar)
        rec = self.reconstruction_nll(self.decoder(z), x).mean()
        kl = losses.gaussian_kl(mu, logvar).mean()
        out = {"rec": rec, "kl": kl, "nelbo": rec + kl}
        out["loss"] = self.objective(out, z)
        return out

    def objective(self, t: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        return t["rec"] + self.beta * t["kl"]

    # ------------------------------------------------------------------ Lightning
    train_prog_bar = ("nelbo",)  # the progress bar shows train/nelbo (TrainLog) and val/nelbo

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0]
        t = self.terms(x)
        if stage == "train":
            # summed on the device, handed to the loggers every log_every_n_steps (xgen.models.base.TrainLog);
            # under DDP the values are means over every process's batches
            self.log_train(t, x.shape[0])
            return t["loss"]
        for k, v in t.items():
            # sync_dist: under DDP the epoch value is the mean over every process's batches
            self.log(f"{stage}/{k}", v.detach(), on_step=False, on_epoch=True, prog_bar=k == "nelbo",
                     sync_dist=True, batch_size=x.shape[0])
        return t["loss"]


class BetaVAE(VAE):
    """beta-VAE (Higgins et al. 2017; vae-thesis §3.3): the VAE with the KL term weighted by beta
    (default 4, the value Higgins et al. report for dSprites). Arguments as :class:`VAE`."""

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), latent_dim: int = 16,
                 encoder: NetSpec = None, decoder: NetSpec = None, likelihood: str = "bernoulli",
                 obs_std: float = 0.1, beta: float = 4.0, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 0.0):
        super().__init__(image_shape=image_shape, latent_dim=latent_dim, encoder=encoder, decoder=decoder,
                         likelihood=likelihood, obs_std=obs_std, beta=beta, lr=lr, betas=betas,
                         weight_decay=weight_decay)


class InfoVAE(VAE):
    """InfoVAE (Zhao et al. 2019; thesis §4.3): adds an MMD divergence between the aggregate
    posterior q(z) and the prior so that every latent unit is used.

    Objective (minimised, per image): rec + (1 − alpha)·beta·KL(q(z|x)‖p(z)) + (alpha + lambda_ − 1)·MMD(q(z), p(z)).
    alpha=1 drops the KL term (the official MMD-VAE). ``beta`` (default 1, Zhao et al.'s objective)
    additionally scales the KL term as in the β-VAE, so the two families can be swept on one axis.
    The default alpha=0, lambda_=10 keeps the full ELBO and adds the MMD term with weight 9.
    Measured on digits (conv nets, 10 epochs): lambda_=10 reached val nelbo 298 (plain VAE 300) with
    MMD 0.002, while lambda_=1000 collapsed the posterior (every q(z|x) = N(0, I): KL 0, rec 356)
    because the noisy MMD gradient drowns the reconstruction. The MMD compares the batch's sampled
    codes with ``prior_samples`` draws from N(0, I) under ``kernel`` (``rbf`` | ``imq``) with scale
    ``kernel_scale`` (None: the latent size, as the official code).
    """

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), latent_dim: int = 16,
                 encoder: NetSpec = None, decoder: NetSpec = None, likelihood: str = "bernoulli",
                 obs_std: float = 0.1, beta: float = 1.0, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 0.0,
                 alpha: float = 0.0, lambda_: float = 10.0, kernel: str = "rbf",
                 kernel_scale: float | None = None, prior_samples: int = 200):
        check(float(alpha) <= 1, "model.alpha", f"must be <= 1 (the KL weight is 1 - alpha), got {alpha}")
        check(float(alpha) + float(lambda_) - 1 >= 0, "model.lambda_",
              f"the MMD weight alpha + lambda_ - 1 must be >= 0, got {float(alpha) + float(lambda_) - 1}")
        check(kernel in KERNELS, "model.kernel", f"unknown kernel {kernel!r}; choose one of {KERNELS}")
        check(kernel_scale is None or float(kernel_scale) > 0, "model.kernel_scale",
              f"must be > 0 or null, got {kernel_scale}")
        check(int(prior_samples) >= 2, "model.prior_samples", f"must be >= 2, got {prior_samples}")
        super().__init__(image_shape=image_shape, latent_dim=latent_dim, encoder=encoder, decoder=decoder,
                         likelihood=likelihood, obs_std=obs_std, beta=beta, lr=lr, betas=betas,
                         weight_decay=weight_decay)
        # VAE.__init__'s save_hyperparameters reads the whole call stack's init args: alpha, lambda_, ... too
        self.alpha, self.lambda_ = float(alpha), float(lambda_)
        self.kernel, self.kernel_scale, self.prior_samples = kernel, kernel_scale, int(prior_samples)

    def objective(self, t: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        prior = torch.randn(self.prior_samples, z.shape[1], device=z.device, dtype=z.dtype)
        t["mmd"] = mmd(z, prior, self.kernel, self.kernel_scale)
        return t["rec"] + (1 - self.alpha) * self.beta * t["kl"] + (self.alpha + self.lambda_ - 1) * t["mmd"]
