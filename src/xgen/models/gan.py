"""GAN and DCGAN as LightningModules with manual optimisation, and the adversarial losses they share.

Algorithm 1 of Goodfellow et al. (2014) (thesis §3.2.4): every training step updates the
discriminator (critic) on a fresh real minibatch; every ``n_critic``-th step also updates the
generator, so there are k = ``n_critic`` discriminator steps per generator step. One Adam per player.

Losses (``model.loss``) are defined in :mod:`xgen.losses`: ``bce`` (default, non-saturating G),
``minimax``, ``wgan_gp``, ``wgan`` (weight clipping) and ``hinge``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from xgen.errors import ConfigError, XgenError, check
from xgen.losses import LOSSES, discriminator_loss, generator_loss, gradient_penalty, real_nll
from xgen.latent import Codes, LatentSpec
from xgen.models.base import XgenModule, adam, build_net, check_optim, plain
from xgen.models.inference import inference
from xgen.models.lightning_private import count_optimizer_steps
from xgen.models.step import adversarial_step
from xgen.nets.gan import BATCH_NORMS, ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator

NetSpec = nn.Module | Mapping | None
D_BATCH = ("separate", "joint")


def build(spec: NetSpec, default: Callable[..., nn.Module], key: str, **kwargs: Any) -> nn.Module:
    """:func:`xgen.models.base.build_net`, re-raising xgen's own error (not Hydra's wrapper) so that
    Python users see the message too."""
    try:
        return build_net(spec, default, key, **kwargs)
    except Exception as e:  # hydra.errors.InstantiationException wraps the ConfigError
        cause = e
        while cause is not None and not isinstance(cause, XgenError):
            cause = cause.__cause__
        if cause is not None and cause is not e:
            raise cause from None
        raise


def check_game(loss: str, lr_g: float, betas_g: Sequence[float], lr_d: float, betas_d: Sequence[float],
               n_critic: int, gp_weight: float, clip_value: float) -> None:
    """The two-player settings every adversarial model shares (GAN family, k-GAN), each checked with
    its config key named."""
    check(loss in LOSSES, "model.loss", f"unknown loss {loss!r}; choose one of {LOSSES}")
    check_optim(lr_g, betas_g, "model.g")
    check_optim(lr_d, betas_d, "model.d")
    check(int(n_critic) >= 1, "model.n_critic", f"discriminator steps per generator step must be >= 1, got {n_critic}")
    check(float(gp_weight) >= 0, "model.gp_weight", f"must be >= 0, got {gp_weight}")
    check(float(clip_value) > 0, "model.clip_value", f"must be > 0, got {clip_value}")


def plain_latent(latent: LatentSpec | Mapping | None) -> dict | None:
    """A latent spec as a plain dict (checkpoints stay loadable with weights_only)."""
    return latent.to_dict() if isinstance(latent, LatentSpec) else plain(latent)


class GAN(XgenModule):
    """A GAN (Goodfellow et al. 2014) trained with Lightning's manual optimisation.

    Args:
        image_shape: (C, H, W) of the data; the CLI fills it from the data module.
        latent: the generator input (:class:`~xgen.latent.LatentSpec` or a mapping of its fields).
            A plain GAN ignores codes in its loss but feeds them to G, so that a probe can measure
            whether G uses them (report fig. 2.4).
        generator, discriminator: networks (module, ``_target_`` config or ``None`` for the defaults:
            MLPs for GAN, DCGAN conv nets for DCGAN); built with ``image_shape`` (and ``latent_dim``).
        loss: ``bce`` | ``minimax`` | ``wgan_gp`` | ``wgan`` | ``hinge`` (module docstring).
        lr_g, lr_d, betas_g, betas_d: Adam settings of each player.
        n_critic: discriminator steps per generator step (k of Algorithm 1).
        gp_weight: weight of the gradient penalty (``wgan_gp``).
        clip_value: weight clipping bound (``wgan``).
        d_batch: ``separate``: D sees the real and the generated batch in two forward passes, so its
            BatchNorm layers standardise each by its own statistics; ``joint``: one pass over both
            (in the G step too, with the step's real batch), so D compares them under the same
            normalisation. With separate batches a BatchNorm after D's fully connected layer removes
            every feature's batch mean: D cannot see what all images of a batch share, e.g. that every
            generated image is the same texture (docs/gan.md, "Why InfoGAN failed on digits").
    """

    default_latent = LatentSpec(noise=100, categorical=[], continuous=0)
    default_generator: Callable[..., nn.Module] = MLPGenerator
    default_discriminator: Callable[..., nn.Module] = MLPDiscriminator

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), latent: LatentSpec | Mapping | None = None,
                 generator: NetSpec = None, discriminator: NetSpec = None, loss: str = "bce",
                 lr_g: float = 2e-4, lr_d: float = 2e-4, betas_g: Sequence[float] = (0.5, 0.999),
                 betas_d: Sequence[float] = (0.5, 0.999), n_critic: int = 1, gp_weight: float = 10.0,
                 clip_value: float = 0.01, d_batch: str = "separate"):
        super().__init__()
        latent, generator, discriminator = plain_latent(latent), plain(generator), plain(discriminator)
        betas_g, betas_d, image_shape = plain(betas_g), plain(betas_d), plain(image_shape)
        check_game(loss, lr_g, betas_g, lr_d, betas_d, n_critic, gp_weight, clip_value)
        check(d_batch in D_BATCH, "model.d_batch", f"choose one of {D_BATCH}, got {d_batch!r}")
        self.latent = LatentSpec.from_config(latent, default=self.default_latent)
        self._check_latent()
        latent = self.latent.to_dict()  # save_hyperparameters reads the locals: keep them plain
        ignore = [n for n, v in (("generator", generator), ("discriminator", discriminator)) if isinstance(v, nn.Module)]
        self.save_hyperparameters(ignore=ignore)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.loss_kind, self.n_critic = loss, int(n_critic)
        self.gp_weight, self.clip_value = float(gp_weight), float(clip_value)
        self.d_batch = d_batch
        self.automatic_optimization = False
        self.generator = build(generator, self.default_generator, "model.generator",
                               image_shape=self.image_shape, latent_dim=self.latent.dim)
        self.discriminator = build(discriminator, self.default_discriminator, "model.discriminator",
                                   image_shape=self.image_shape)
        # a generator net declares its output range (xgen's nets do); a user's net without one is taken
        # to end in tanh, the DCGAN convention (a net attribute, not a model capability)
        self.value_range = tuple(float(v) for v in getattr(self.generator, "value_range", (-1.0, 1.0)))
        self._sync_grads = False
        self._last_losses: dict[str, torch.Tensor] = {}
        self._build_heads()
        self._check_shapes()
        if loss == "wgan_gp" and any(isinstance(m, BATCH_NORMS) for m in self.discriminator.modules()):
            rank_zero_warn("model.loss=wgan_gp with BatchNorm in the critic: the penalty is then only approximate "
                           "(Gulrajani et al. 2017 drop BN); consider model.discriminator.norm=false.")

    # ------------------------------------------------------------------ construction hooks
    def _check_latent(self) -> None:
        """Subclasses add requirements (InfoGAN needs codes)."""

    def _build_heads(self) -> None:
        """Subclasses add heads on the discriminator's features (InfoGAN's Q)."""

    def _check_shapes(self) -> None:
        """Push a tiny batch through G and D on the CPU so that a net/data mismatch stops here."""
        g, d = self.generator, self.discriminator
        modes = (g.training, d.training)
        g.eval(), d.eval()
        try:
            with torch.no_grad():
                try:
                    fake = g(self.latent.sample(2, generator=torch.Generator().manual_seed(0)))
                except RuntimeError as e:
                    raise ConfigError(f"model.generator: cannot take a {self.latent.dim}-wide latent "
                                      f"({type(g).__name__}: {e}). Fix: build it with latent_dim={self.latent.dim} "
                                      "or change model.latent.") from None
                if tuple(fake.shape[1:]) != self.image_shape:
                    raise ConfigError(f"model.generator: {type(g).__name__} makes {tuple(fake.shape[1:])} images but "
                                      f"the data is {self.image_shape}. Fix: pick nets made for this size "
                                      "(model/net=...) or resize the data.")
                try:
                    out = d(torch.zeros(2, *self.image_shape))
                except RuntimeError as e:
                    raise ConfigError(f"model.discriminator: {type(d).__name__} cannot take {self.image_shape} images "
                                      f"({e}). Fix: pick nets made for this size (model/net=...).") from None
                if not (isinstance(out, tuple) and len(out) == 2 and tuple(out[0].shape) == (2,)):
                    raise ConfigError(f"model.discriminator: {type(d).__name__} must return (logits (B,), features "
                                      "(B, F)); subclass xgen.nets.gan.Discriminator.")
                self._check_heads(out[1])
        finally:
            g.train(modes[0]), d.train(modes[1])

    def _check_heads(self, features: torch.Tensor) -> None:
        """Subclasses check their heads against D's features."""

    # ------------------------------------------------------------------ generation
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n generator inputs from the prior, on this module's device."""
        return self.latent.sample(n, generator=generator, device=self.device)

    @inference
    def generate(self, n_or_latent: int | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in ``value_range``: ``generate(64)`` or ``generate(latent)``."""
        latent = self.sample_latent(n_or_latent, generator) if isinstance(n_or_latent, int) else n_or_latent
        return self.generator(latent.to(self.device))

    @inference
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The generator applied to a latent (B, latent.dim): images in ``value_range``."""
        return self.generator(z.to(self.device))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.generator(latent)

    @property
    def last_losses(self) -> dict[str, torch.Tensor]:
        """The last training step's losses (detached tensors: reading them costs no sync until used)."""
        return self._last_losses

    # ------------------------------------------------------------------ losses
    def d_params(self) -> list[nn.Parameter]:
        """Parameters the discriminator's optimiser updates."""
        return list(self.discriminator.parameters())

    def g_params(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())

    def d_extra(self, fake_features: torch.Tensor, codes: Codes, logs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Extra discriminator-side loss on the generated batch (InfoGAN: −λ·L_I); None for a GAN."""
        return None

    def g_extra(self, fake_features: torch.Tensor, codes: Codes, logs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    # ------------------------------------------------------------------ labels (conditional models)
    uses_labels: bool = False
    """Whether the training step reads the batch's labels (conditional and semi-supervised models)."""

    def fake_labels(self, codes: Codes) -> torch.Tensor | None:
        """The class a generated batch was asked for (conditional models: the class code); None here."""
        return None

    def condition(self, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """D's logits for images of class ``labels`` (a conditional D adds its label term); unchanged here."""
        return logits

    def d_real_extra(self, real_features: torch.Tensor, labels: torch.Tensor | None,
                     logs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Extra discriminator-side loss on the real batch and its labels (-1: unlabelled); None here."""
        return None

    def discriminator_terms(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's loss on a real batch (labels ``y``, read by conditional models only) and
        as many generated images."""
        codes = self.latent.sample_codes(x.shape[0], device=x.device)
        with torch.no_grad():
            fake = self.generator(self.latent.assemble(codes))
        if self.d_batch == "joint":
            logits, features = self.discriminator(torch.cat([x, fake]))
            b = x.shape[0]
            real_logits, fake_logits = logits[:b], logits[b:]
            real_features, fake_features = features[:b], features[b:]
        else:
            real_logits, real_features = self.discriminator(x)
            fake_logits, fake_features = self.discriminator(fake)
        if self.uses_labels:
            real_logits = self.condition(real_logits, real_features, y)
            fake_logits = self.condition(fake_logits, fake_features, self.fake_labels(codes))
        loss = discriminator_loss(self.loss_kind, real_logits, fake_logits)
        logs = {"loss_d": loss}
        if self.loss_kind == "wgan_gp":
            gp = gradient_penalty(lambda t: self.discriminator(t)[0], x, fake)
            logs["gp"] = gp
            loss = loss + self.gp_weight * gp
        extra = self.d_extra(fake_features, codes, logs)
        if extra is not None:
            loss = loss + extra
        if self.uses_labels:
            extra = self.d_real_extra(real_features, y, logs)
            if extra is not None:
                loss = loss + extra
        return loss, logs

    def generator_terms(self, batch_size: int, real: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's loss on ``batch_size`` generated images (``d_batch=joint``: D normalises
        them together with the real batch ``real``, as in the D step)."""
        codes = self.latent.sample_codes(batch_size, device=self.device)
        fake = self.generator(self.latent.assemble(codes))
        if self.d_batch == "joint" and real is not None:
            logits, features = self.discriminator(torch.cat([real.detach(), fake]))
            fake_logits, fake_features = logits[real.shape[0]:], features[real.shape[0]:]
        else:
            fake_logits, fake_features = self.discriminator(fake)
        if self.uses_labels:
            fake_logits = self.condition(fake_logits, fake_features, self.fake_labels(codes))
        loss = generator_loss(self.loss_kind, fake_logits)
        logs = {"loss_g": loss}
        extra = self.g_extra(fake_features, codes, logs)
        if extra is not None:
            loss = loss + extra
        return loss, logs

    # ------------------------------------------------------------------ DDP
    def on_train_start(self) -> None:
        """Under DDP, synchronise gradients here rather than in DDP's reducer: a GAN step has two
        backward passes, each using only some parameters, which the reducer (one backward per forward,
        every parameter used) rejects. Each player's gradients are averaged over processes just before
        its optimiser steps, exactly what DDP would do, so the model works unchanged with strategy=ddp."""
        from torch.nn.parallel import DistributedDataParallel

        ddp = getattr(self.trainer.strategy, "model", None)
        self._sync_grads = isinstance(ddp, DistributedDataParallel) and self.trainer.world_size > 1
        self._captured = None
        if self.cuda_graph:  # speed.cuda_graph=true (xgen.models.capture)
            from xgen.models.capture import CapturedStep, capture_problem, make_capturable

            why = capture_problem(self.trainer, self)
            if why is None:
                for opt in self.trainer.optimizers:
                    make_capturable(opt)
                self._captured = CapturedStep(self.graph_step)
            else:
                rank_zero_warn(f"speed.cuda_graph: training eagerly: {why}.")

    def _average_grads(self, params: Sequence[nn.Parameter]) -> None:
        if not self._sync_grads:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for the whole player
        dist.all_reduce(flat)
        flat.div_(self.trainer.world_size)
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    # ------------------------------------------------------------------ Lightning
    def configure_optimizers(self):
        h = self.hparams
        self._g_params, self._d_params = self.g_params(), self.d_params()
        opt_g = adam(self._g_params, h.lr_g, h.betas_g)
        opt_d = adam(self._d_params, h.lr_d, h.betas_d)
        return [opt_g, opt_d]

    def _step_args(self, x: torch.Tensor) -> dict[str, Any]:
        wgan = self.loss_kind == "wgan"
        return dict(clip_params=list(self.discriminator.parameters()) if wgan else (),
                    clip_value=self.clip_value if wgan else None)

    def graph_step(self, x: torch.Tensor, update_g: bool = True) -> dict[str, torch.Tensor]:
        """The whole step on the bare optimisers (no Lightning hooks): what ``speed.cuda_graph`` captures."""
        opt_g, opt_d = self.trainer.optimizers
        return adversarial_step(lambda: self.discriminator_terms(x), lambda: self.generator_terms(x.shape[0], x),
                                opt_d, opt_g, self._d_params, self._g_params, update_g=update_g, **self._step_args(x))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = batch[0]
        y = batch[1] if self.uses_labels else None
        if y is not None and batch_idx == 0:
            self.check_labels(y)
        update_g = (batch_idx + 1) % self.n_critic == 0
        if getattr(self, "_captured", None) is not None:
            # one graph per schedule state: the generator update and D's scheduled-dropout flags
            key = (update_g, tuple(bool(getattr(m, "active", False)) for m in self.discriminator.modules()
                                   if hasattr(m, "active")))
            logs = self._captured(x, key=key, update_g=update_g)
            # the optimiser steps Lightning's wrappers would have counted (trainer.global_step, max_steps)
            count_optimizer_steps(self.trainer, 1 + int(update_g))
        else:
            opt_g, opt_d = self.optimizers()
            if self._sync_grads:  # Lightning re-arms DDP's reducer before every step
                self.trainer.strategy.model.require_backward_grad_sync = False
            # discriminator / critic every step, generator every n_critic-th step (xgen.models.step)
            logs = adversarial_step(
                lambda: self.discriminator_terms(x, y), lambda: self.generator_terms(x.shape[0], x), opt_d, opt_g,
                self._d_params, self._g_params, update_g=update_g, backward=self.manual_backward,
                average=self._average_grads if self._sync_grads else None, **self._step_args(x))
        self._last_losses = logs
        # summed on the device, handed to the loggers every log_every_n_steps (xgen.models.base.TrainLog);
        # sync_dist: under DDP the values are means over every process's batches
        self.log_train(logs, x.shape[0])

    def check_labels(self, y: torch.Tensor) -> None:
        """Conditional models check the first batch's labels of every epoch (one host read)."""

    def _eval_step(self, batch: Any, stage: str) -> None:
        x = batch[0]
        logits, _ = self.discriminator(x)
        # how surely D calls held-out real images real (−log D(x), nats); a rising value flags overfitting
        self.log(f"{stage}/loss_d_real", real_nll(logits), on_epoch=True, sync_dist=True,
                 batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")


class DCGAN(GAN):
    """DCGAN (Radford et al. 2016; thesis §3.2.4): the GAN with the resolution-aware conv nets of
    :mod:`xgen.nets.gan` (strided convs, BatchNorm, ReLU/LeakyReLU, tanh output) by default."""

    default_generator = ConvGenerator
    default_discriminator = ConvDiscriminator
