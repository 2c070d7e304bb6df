"""InfoGAN (Chen et al. 2016; thesis §4.1, §4.4; report §2.2): a GAN whose generator input carries
codes c, with an auxiliary distribution Q(c|x) sharing the discriminator's body.

Objective: min_{G,Q} max_D V(D, G) − λ·L_I(G, Q), with the variational lower bound
L_I = E_{c~P(c), x~G(z,c)}[log Q(c|x)] + H(c) ≤ I(c; G(z, c)).
log Q is a cross-entropy for each categorical code and a Gaussian log-likelihood (mean and
log-variance from Q) for each continuous code; the two parts have their own weights
``lambda_cat`` and ``lambda_cont`` (the InfoGAN paper uses a smaller weight for continuous codes).
As in the official code, −λ·L_I is added to both players' losses: the D step trains Q and the shared
body on generated images, the G step trains G to make its codes recoverable.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from xgen.errors import ConfigError, check
from xgen.latent import Codes, LatentSpec
from xgen.losses import info_terms
from xgen.metrics.clustering import cluster_accuracy
from xgen.models.base import plain
from xgen.models.gan import GAN, NetSpec, build, plain_latent
from xgen.models.inference import inference
from xgen.nets.gan import ConvDiscriminator, ConvGenerator
from xgen.nets.infogan import QHead


def _paper_generator(image_shape: Sequence[int], latent_dim: int) -> nn.Module:
    """The InfoGAN paper's MNIST generator: FC1024 → FC 128·(H/4)·(W/4) → deconv 64 → deconv C, tanh."""
    return ConvGenerator(image_shape, latent_dim, channels=[128, 64], hidden=1024)


def _paper_discriminator(image_shape: Sequence[int]) -> nn.Module:
    """The InfoGAN paper's MNIST discriminator: conv 64 → conv 128 (BN) → FC1024 (BN), LeakyReLU 0.1."""
    return ConvDiscriminator(image_shape, channels=[64, 128], hidden=1024, slope=0.1)


class InfoGAN(GAN):
    """InfoGAN with any number of categorical and continuous codes.

    Args (beyond :class:`~xgen.models.gan.GAN`'s):
        latent: noise size and codes; default the paper's MNIST layout (z 62, one 10-way code, 2 continuous).
        q_head: Q network on D's features (``_target_`` config or module); default :class:`~xgen.nets.infogan.QHead`.
        lambda_cat, lambda_cont: weights of the categorical and continuous parts of L_I (λ >= 0).
        q_variance: ``learned`` (Q predicts a log-variance) or ``fixed`` (unit variance, as the official code).
        info_in_d_step, info_in_g_step: where −λ·L_I enters (both: the official code).
        eval_code: the categorical code whose Q-argmax is scored against labels (``val/cat_acc``, ``test/cat_acc``).
        d_batch: ``joint`` by default here (see :class:`~xgen.models.gan.GAN`): the paper's D has BatchNorm
            after its fully connected layer, and with separate batches it let G settle on a noise texture
            on digits (docs/gan.md).
    """

    default_latent = LatentSpec(noise=62, categorical=[10], continuous=2)
    default_q_head: Any = QHead
    default_generator = staticmethod(_paper_generator)
    default_discriminator = staticmethod(_paper_discriminator)

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), latent: LatentSpec | Mapping | None = None,
                 generator: NetSpec = None, discriminator: NetSpec = None, q_head: NetSpec = None,
                 loss: str = "bce", lr_g: float = 1e-3, lr_d: float = 2e-4,
                 betas_g: Sequence[float] = (0.5, 0.999), betas_d: Sequence[float] = (0.5, 0.999),
                 n_critic: int = 1, gp_weight: float = 10.0, clip_value: float = 0.01,
                 lambda_cat: float = 1.0, lambda_cont: float = 0.1, q_variance: str = "learned",
                 info_in_d_step: bool = True, info_in_g_step: bool = True, eval_code: int = 0,
                 d_batch: str = "joint"):
        # save_hyperparameters reads this frame's locals too: keep every argument plain (no OmegaConf)
        latent, q_head, generator, discriminator = plain_latent(latent), plain(q_head), plain(generator), plain(discriminator)
        image_shape, betas_g, betas_d = plain(image_shape), plain(betas_g), plain(betas_d)
        check(float(lambda_cat) >= 0, "model.lambda_cat", f"the information weight must be >= 0, got {lambda_cat}")
        check(float(lambda_cont) >= 0, "model.lambda_cont", f"the information weight must be >= 0, got {lambda_cont}")
        check(q_variance in ("learned", "fixed"), "model.q_variance", f"choose learned or fixed, got {q_variance!r}")
        check(bool(info_in_d_step) or bool(info_in_g_step), "model.info_in_d_step",
              "the information term must enter at least one step (info_in_d_step or info_in_g_step)")
        self._q_spec = q_head
        self.lambda_cat, self.lambda_cont = float(lambda_cat), float(lambda_cont)
        self.q_variance = q_variance
        self.info_in_d_step, self.info_in_g_step = bool(info_in_d_step), bool(info_in_g_step)
        self.eval_code = int(eval_code)
        super().__init__(image_shape=image_shape, latent=latent, generator=generator, discriminator=discriminator,
                         loss=loss, lr_g=lr_g, lr_d=lr_d, betas_g=betas_g, betas_d=betas_d, n_critic=n_critic,
                         gp_weight=gp_weight, clip_value=clip_value, d_batch=d_batch)
        check(self.latent.num_categorical == 0 or 0 <= self.eval_code < self.latent.num_categorical,
              "model.eval_code", f"there are {self.latent.num_categorical} categorical codes, got {eval_code}")
        self._eval_preds: list[torch.Tensor] = []
        self._eval_labels: list[torch.Tensor] = []

    # ------------------------------------------------------------------ construction
    def _check_latent(self) -> None:
        self.latent.require_codes()

    def _build_heads(self) -> None:
        feat = getattr(self.discriminator, "feature_dim", None)
        if feat is None:
            raise ConfigError("model.discriminator: InfoGAN needs a discriminator with feature_dim (subclass "
                              "xgen.nets.gan.Discriminator)")
        spec = self._q_spec
        kwargs = dict(feature_dim=int(feat), categorical=self.latent.categorical, continuous=self.latent.continuous)
        self.q_head = build(spec, self.default_q_head, "model.q_head", **kwargs)

    def _check_heads(self, features: torch.Tensor) -> None:
        try:
            logits, mean, logvar = self.q_head(features)
        except RuntimeError as e:
            raise ConfigError(f"model.q_head: cannot take the discriminator's features {tuple(features.shape[1:])} "
                              f"({e})") from None
        want = [(2, k) for k in self.latent.categorical]
        if [tuple(t.shape) for t in logits] != want or tuple(mean.shape) != (2, self.latent.continuous) \
                or tuple(logvar.shape) != (2, self.latent.continuous):
            raise ConfigError("model.q_head: outputs do not match model.latent (one logit vector per categorical "
                              "code, a mean and log-variance per continuous code)")

    def d_params(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters()) + list(self.q_head.parameters())

    # ------------------------------------------------------------------ the information term
    def q(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Q(c|x) from D's features: (logits per categorical code, means, log-variances)."""
        logits, mean, logvar = self.q_head(features)
        if self.q_variance == "fixed":
            logvar = torch.zeros_like(mean)
        return logits, mean, logvar

    def info_terms(self, features: torch.Tensor, codes: Codes) -> dict[str, torch.Tensor]:
        """−log Q per part (nats per image, batch mean) and the lower bounds L_I = E log Q + H."""
        return info_terms(self.latent, *self.q(features), codes)

    def _info_loss(self, features: torch.Tensor, codes: Codes, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.info_terms(features, codes)
        logs.update({"mi_cat": t["mi_cat"], "mi_cont": t["mi_cont"]})
        loss = self.lambda_cat * t["nll_cat"] + self.lambda_cont * t["nll_cont"]
        logs["loss_info"] = loss
        return loss

    def d_extra(self, fake_features: torch.Tensor, codes: Codes, logs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.info_in_d_step:
            return None
        return self._info_loss(fake_features, codes, logs)

    def g_extra(self, fake_features: torch.Tensor, codes: Codes, logs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.info_in_g_step:
            return None
        sub: dict[str, torch.Tensor] = {}
        loss = self._info_loss(fake_features, codes, sub)
        if not self.info_in_d_step:
            logs.update(sub)
        return loss

    # ------------------------------------------------------------------ unsupervised accuracy
    @torch.no_grad()
    def predict_code(self, x: torch.Tensor, code: int | None = None) -> torch.Tensor:
        """Q's argmax for categorical code ``code`` (default ``eval_code``) on images x."""
        _, features = self.discriminator(x)
        logits, _, _ = self.q(features)
        return logits[self.eval_code if code is None else code].argmax(1)

    @inference
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Q read on images, in the latent's code layout: the softmax probabilities of each categorical
        code, then the means of the continuous codes (B, latent.code_dim). Q does not infer the noise.
        Call in eval mode (BatchNorm in D); gradients only with ``grad=True`` or images that require grad."""
        _, features = self.discriminator(x)
        logits, mean, _ = self.q(features)
        return torch.cat([torch.softmax(lg, 1) for lg in logits] + [mean], dim=1)

    def _eval_step(self, batch: Any, stage: str) -> None:
        super()._eval_step(batch, stage)
        if self.latent.num_categorical:
            x, y = batch[0], batch[1]
            self._eval_preds.append(self.predict_code(x))
            self._eval_labels.append(y)

    def _eval_epoch_end(self, stage: str) -> None:
        if not self._eval_preds:
            return
        pred, labels = torch.cat(self._eval_preds), torch.cat(self._eval_labels)
        self._eval_preds, self._eval_labels = [], []
        if self.trainer.world_size > 1:
            pred, labels = self.all_gather(pred).flatten(), self.all_gather(labels).flatten()
        self.log_code_scores(stage, pred, labels)

    def log_code_scores(self, stage: str, pred: torch.Tensor, labels: torch.Tensor) -> None:
        """Log the scores of Q's predictions ``pred`` of code ``eval_code`` on a whole split (gathered
        from every process) against its ``labels``: ``<stage>/cat_acc``, after matching code values to
        classes. Every process logs the same number, which a max over processes keeps exactly
        (sync_dist: Lightning then knows it is a global value)."""
        k = self.latent.categorical[self.eval_code]
        acc = cluster_accuracy(pred, labels, num_clusters=k, num_classes=max(k, int(labels.max()) + 1))
        self.log(f"{stage}/cat_acc", float(acc), sync_dist=True, reduce_fx="max")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
