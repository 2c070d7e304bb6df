"""Models that generate the class they are asked for: semi-supervised InfoGAN, AC-GAN and the
conditional GAN (docs/conditional.md).

All three keep the class in the generator's latent as one categorical code, ``class_code`` of the
model's :class:`~xgen.latent.LatentSpec` (a one-hot block like any InfoGAN code), so the latent layout
stays declared and every tool that steps through codes (sample and traversal grids, the Explainability
Grid) shows one row per class. :class:`ConditionalGenerator` provides the
:class:`~xgen.protocols.Conditional` contract on top of that.

* :class:`SSInfoGAN` (after Spurr et al. 2017, "Guiding InfoGAN with Semi-Supervision"): InfoGAN whose
  Q head also learns the label of the labelled real images (cross-entropy, weight ``lambda_sup``), so
  the supervised code means the class; unlabelled images (label -1) train it as InfoGAN does.
* :class:`ACGAN` (Odena et al. 2017, "Conditional Image Synthesis with Auxiliary Classifier GANs"): the
  same objective with an auxiliary classifier (a linear layer) on D's features, DCGAN nets, no
  continuous codes, every training label: D learns the class of real images (by default not of
  generated ones), G learns to make its class recognisable to D.
* :class:`CGAN` (Mirza & Osindero 2014; the label enters D as the projection term of Miyato & Koyama
  2018, "cGANs with Projection Discriminator"): D's logit for an image of class y is
  ``psi(phi(x)) + <embed(y), phi(x)>`` on D's features ``phi(x)``; the embedding starts at zero, so D
  starts unconditional. Every training image needs its label.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xgen.errors import ConfigError, check
from xgen.latent import Codes, LatentSpec
from xgen.models.gan import DCGAN, NetSpec
from xgen.models.inference import inference
from xgen.models.infogan import InfoGAN
from xgen.nets.gan import ConvDiscriminator, ConvGenerator
from xgen.nets.infogan import QHead

__all__ = ["check_class_code", "ConditionalGenerator", "SSInfoGAN", "ACGAN", "CGAN"]


def check_class_code(latent: LatentSpec, class_code: int, key: str) -> int:
    """``class_code`` as an int, if it names one of ``latent``'s categorical codes; else a ConfigError at ``key``."""
    check(0 <= int(class_code) < latent.num_categorical, key,
          f"the latent has {latent.num_categorical} categorical code(s) ({latent.categorical}); the class must "
          f"be one of them, got {class_code}")
    return int(class_code)


class ConditionalGenerator:
    """The :class:`~xgen.protocols.Conditional` contract for a GAN whose categorical code ``class_code``
    is the class label (a mixin for subclasses of :class:`~xgen.models.gan.GAN`)."""

    uses_labels = True
    accepts_unlabelled = True  # training labels of -1 (outside a labelled subset) are skipped
    class_code: int

    @property
    def num_classes(self) -> int:
        """The number of classes: the number of values of the class code."""
        return int(self.latent.categorical[self.class_code])

    def fake_labels(self, codes: Codes) -> torch.Tensor:
        return codes.categorical[:, self.class_code]

    def latent_for_class(self, labels: torch.Tensor | Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents (B, latent.dim) from the prior with the class code set to ``labels`` (B,)."""
        labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ConfigError(f"labels: classes run from 0 to {self.num_classes - 1}, got "
                              f"{int(labels.min())} .. {int(labels.max())}")
        codes = self.latent.sample_codes(labels.numel(), generator=generator, device=self.device)
        codes.categorical[:, self.class_code] = labels.to(codes.categorical.device)
        return self.latent.assemble(codes)

    @inference
    def generate_class(self, labels: torch.Tensor | Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Images of the classes ``labels`` (B,), in ``value_range``."""
        return self.generator(self.latent_for_class(labels, generator))

    def check_labels(self, y: torch.Tensor) -> None:
        lo, hi = int(y.min()), int(y.max())
        low = -1 if self.accepts_unlabelled else 0
        if lo < low or hi >= self.num_classes:
            need = ("labels 0 .. {k} (every training image labelled: leave data.labels_per_class=null)"
                    if not self.accepts_unlabelled else "labels -1 (unlabelled) or 0 .. {k}")
            raise ConfigError(f"data: {type(self).__name__} needs {need.format(k=self.num_classes - 1)}; the "
                              f"training batch has labels {lo} .. {hi}. A dataset with another number of classes "
                              f"needs model.latent.categorical set to it.")


class SSInfoGAN(ConditionalGenerator, InfoGAN):
    """Semi-supervised InfoGAN: InfoGAN plus, on labelled real images, the cross-entropy of Q's
    categorical code ``supervised_code`` against the label.

    Args (beyond :class:`~xgen.models.infogan.InfoGAN`'s):
        supervised_code: the categorical code bound to the class (``cat<k> = c`` generates class c).
        lambda_sup: weight of the supervised cross-entropy (nats per labelled image, batch mean).
        sup_d_body: whether that cross-entropy also trains D's body (the shared conv layers), not only Q's head.
        lambda_ent: weight of the mean entropy of Q's supervised code on the *unlabelled* real images of the
            batch (entropy minimisation, Grandvalet & Bengio 2004: the class boundary is pushed away from the
            unlabelled data). 0 leaves it out; it is computed only in a batch that has labels, so with no
            labels the step is still InfoGAN's. On Fashion-MNIST at 60 labels per class 0.3 raised the
            direct test accuracy from 0.801 / 0.777 to 0.824 / 0.815 (seeds 0 / 2), at 10 labels per class
            from 0.175 to 0.710 (seed 0; docs/conditional.md).
        eval_code: default ``supervised_code``; ``val/cat_acc_direct`` scores it without matching.

    With no labelled image in a batch (``data.labels_per_class=0``) the step is InfoGAN's own.
    """

    def __init__(self, supervised_code: int = 0, lambda_sup: float = 1.0, sup_d_body: bool = True,
                 lambda_ent: float = 0.3, eval_code: int | None = None, **kwargs: Any):
        check(float(lambda_sup) >= 0, "model.lambda_sup", f"the supervised weight must be >= 0, got {lambda_sup}")
        check(float(lambda_ent) >= 0, "model.lambda_ent", f"the entropy weight must be >= 0, got {lambda_ent}")
        latent = kwargs.get("latent")
        # checked before InfoGAN's own checks, so that a wrong code is named as model.supervised_code
        self.class_code = check_class_code(
            LatentSpec.from_config(latent.to_dict() if isinstance(latent, LatentSpec) else latent,
                                   default=self.default_latent), supervised_code, "model.supervised_code")
        self.lambda_sup, self.sup_d_body, self.lambda_ent = float(lambda_sup), bool(sup_d_body), float(lambda_ent)
        # every other argument is InfoGAN's (model=ss_infogan composes model=infogan's config)
        super().__init__(eval_code=self.class_code if eval_code is None else int(eval_code), **kwargs)

    def d_real_extra(self, real_features: torch.Tensor, labels: torch.Tensor | None,
                     logs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if labels is None:
            return None
        mask = labels >= 0
        if not bool(mask.any()):  # one host read: a batch without labels is InfoGAN's step, bit for bit
            return None
        feats = real_features if self.sup_d_body else real_features.detach()
        logits = self.q(feats)[0][self.class_code]
        weight = mask.to(logits.dtype)
        count = weight.sum()
        logp = F.log_softmax(logits, dim=1)  # once, for the cross-entropy and the entropy term
        ce = F.nll_loss(logp, labels.clamp(min=0), reduction="none")  # = F.cross_entropy(logits, ...)
        loss = (ce * weight).sum() / count
        logs["loss_sup"] = loss
        logs["acc_sup"] = ((logits.argmax(1) == labels).to(logits.dtype) * weight).sum() / count
        if self.lambda_ent == 0:
            return self.lambda_sup * loss
        unlabelled = 1.0 - weight
        entropy = -(logp.exp() * logp).sum(1)
        ent = (entropy * unlabelled).sum() / unlabelled.sum().clamp(min=1.0)
        logs["ent_unlab"] = ent
        return self.lambda_sup * loss + self.lambda_ent * ent

    def log_code_scores(self, stage: str, pred: torch.Tensor, labels: torch.Tensor) -> None:
        """InfoGAN's ``cat_acc`` (after matching) and ``<stage>/cat_acc_direct``: the supervised code read
        as the class, no matching."""
        super().log_code_scores(stage, pred, labels)
        if self.eval_code == self.class_code:
            self.log(f"{stage}/cat_acc_direct", float((pred == labels).to(torch.float32).mean()),
                     sync_dist=True, reduce_fx="max")


class ACGAN(SSInfoGAN):
    """AC-GAN (Odena et al. 2017): DCGAN nets, z 100 plus the class as one categorical code, an
    auxiliary classifier (one linear layer, ``q_head.hidden=0``) on D's features trained on real images
    (cross-entropy with the label, ``lambda_sup``); G learns to make the class asked for recognisable to
    it (``lambda_cat``). ``info_in_d_step=True`` also trains the classifier on generated images, as the
    paper does; on Fashion-MNIST that lets G draw images only this classifier recognises. Trains on every
    label by default; with ``data.labels_per_class`` it is the semi-supervised AC-GAN."""

    default_latent = LatentSpec(noise=100, categorical=[10], continuous=0)
    default_generator: Any = ConvGenerator
    default_discriminator: Any = ConvDiscriminator
    default_q_head: Any = staticmethod(functools.partial(QHead, hidden=0))

    # the AC-GAN paper's settings where they differ from InfoGAN's (every other argument is SSInfoGAN's)
    # info_in_d_step=False: the auxiliary classifier learns the class from real labelled images only (the
    # paper also trains it on generated ones). Trained on both, it reads G's images almost perfectly (CE 0.07)
    # while the shipped classifier reads them as the class asked for only 0.53 of the time on Fashion-MNIST;
    # on real images only, 0.885 at a FID of 59 instead of 99 (docs/conditional.md, seed 0, 2 epochs).
    ACGAN_DEFAULTS: dict[str, Any] = {"lr_g": 2e-4, "lr_d": 2e-4, "lambda_cont": 0.0, "q_variance": "fixed",
                                      "d_batch": "separate", "supervised_code": 0, "info_in_d_step": False,
                                      "lambda_ent": 0.0}

    def __init__(self, **kwargs: Any):
        super().__init__(**{**self.ACGAN_DEFAULTS, **kwargs})


class CGAN(ConditionalGenerator, DCGAN):
    """A conditional GAN: G reads the class as the one-hot code ``class_code`` of its latent, D scores
    (image, class) pairs through a projection term on its features (module docstring). DCGAN nets,
    z 100 plus one 10-way class code by default; every training image must carry its label."""

    default_latent = LatentSpec(noise=100, categorical=[10], continuous=0)
    accepts_unlabelled = False

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), latent: LatentSpec | Mapping | None = None,
                 generator: NetSpec = None, discriminator: NetSpec = None, loss: str = "bce",
                 lr_g: float = 2e-4, lr_d: float = 2e-4, betas_g: Sequence[float] = (0.5, 0.999),
                 betas_d: Sequence[float] = (0.5, 0.999), n_critic: int = 1, gp_weight: float = 10.0,
                 clip_value: float = 0.01, d_batch: str = "separate", class_code: int = 0):
        super().__init__(image_shape=image_shape, latent=latent, generator=generator, discriminator=discriminator,
                         loss=loss, lr_g=lr_g, lr_d=lr_d, betas_g=betas_g, betas_d=betas_d, n_critic=n_critic,
                         gp_weight=gp_weight, clip_value=clip_value, d_batch=d_batch)
        self.class_code = check_class_code(self.latent, class_code, "model.class_code")
        self.class_embedding = nn.Embedding(self.num_classes, int(self.discriminator.feature_dim))
        nn.init.zeros_(self.class_embedding.weight)  # D starts unconditional and learns the label term

    def _check_latent(self) -> None:
        check(self.latent.num_categorical >= 1, "model.latent",
              "a conditional GAN carries its class as a categorical code: e.g. model.latent.categorical=[10]")

    def _build_heads(self) -> None:
        if getattr(self.discriminator, "feature_dim", None) is None:
            raise ConfigError("model.discriminator: the conditional GAN needs a discriminator with feature_dim "
                              "(subclass xgen.nets.gan.Discriminator)")

    def d_params(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters()) + list(self.class_embedding.parameters())

    def condition(self, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ConfigError("CGAN: the discriminator needs the labels of the real batch")
        return logits + (self.class_embedding(labels) * features).sum(1)
