"""What a model can do: the contracts every tool of xgen reads a model through.

Callbacks, metrics, ``xgen eval`` and the explainability and disentanglement tools never guess with
``getattr`` and never import a model module: they ask for a capability with :func:`require` (or test
it with ``isinstance(model, Generative)``), so any model that provides the members below — xgen's own
or a user's — works with every tool it can serve.

=====================  =====================================================================
protocol               members
=====================  =====================================================================
:class:`Generative`    ``latent`` (a :class:`~xgen.latent.LatentSpec`), ``value_range``,
                       ``image_shape``, ``sample_latent(n, generator=None)``,
                       ``generate(latent_or_n, generator=None)``
:class:`Decodes`       ``decode(z)``: a latent (B, latent.dim) -> images in ``value_range``
:class:`Embeds`        ``embed(x)``: images -> the representation a metric scores (B, D)
:class:`Encodes`       ``encode(x)`` -> :class:`Posterior` (mean, log-variance), plus ``embed``
:class:`PredictsCodes` ``latent``, ``eval_code``, ``predict_code(x, code=None)`` -> int64 (B,)
:class:`HasLikelihood` ``encode``, ``decode_logits(z)``, ``reconstruction_nll(out, x)`` (nats/image)
:class:`Classifies`    ``num_classes``, ``value_range``, ``predict(x)`` -> (class, confidence),
                       ``features(x)``
:class:`Adversarial`   ``generator``, ``discriminator`` (returns (logits, features)), ``latent``,
                       ``last_losses`` (the last training step's losses, detached)
:class:`HasQ`          ``q(features)`` -> (categorical logits, means, log-variances)
:class:`Conditional`   ``class_code`` (the categorical code that is the class), ``num_classes``,
                       ``latent_for_class(labels, generator=None)`` -> latents asking for those classes
=====================  =====================================================================

Which of xgen's models provide what (tested in ``tests/models/test_model_template.py``):

=========================  ==========  =======  ======  ======  =============  ================  ===========
model                      Generative  Decodes  Embeds  Encodes PredictsCodes  Adversarial       Conditional
=========================  ==========  =======  ======  ======  =============  ================  ===========
VAE, BetaVAE, InfoVAE      yes         yes      yes     yes     no             no                no
GAN, DCGAN                 yes         yes      no      no      no             yes               no
InfoGAN                    yes         yes      yes     no      yes            yes (+HasQ)       no
SSInfoGAN, ACGAN           yes         yes      yes     no      yes            yes (+HasQ)       yes
CGAN                       yes         yes      no      no      no             yes               yes
KGAN                       yes         yes      no      no      no             no (k G/D pairs)  no
Classifier                 no          no       no      no      no             no (Classifies)   no
=========================  ==========  =======  ======  ======  =============  ================  ===========

The representation a metric scores (``embed``): a VAE's posterior mean; InfoGAN's Q read on the
image, in the latent's code layout — softmax probabilities of each categorical code then the means
of the continuous codes (no noise part: Q does not infer the noise).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence, TypeVar, runtime_checkable

import torch
from torch import Tensor

from xgen.errors import XgenError
from xgen.latent import LatentSpec

__all__ = ["Posterior", "Generative", "Decodes", "Embeds", "Encodes", "PredictsCodes", "HasLikelihood",
           "Classifies", "Adversarial", "HasQ", "Conditional", "CapabilityError", "require", "capabilities",
           "value_range_of"]


class Posterior(NamedTuple):
    """q(z|x) of an encoder: a diagonal Gaussian. A tuple, so ``mu, logvar = model.encode(x)`` works."""

    mean: Tensor
    logvar: Tensor

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        """One reparameterised draw z = mean + std·ε."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device if generator is None
                          else "cpu", dtype=self.mean.dtype).to(self.mean.device)
        return self.mean + self.std * eps


@runtime_checkable
class Generative(Protocol):
    """Draws images from a prior over a latent described by a :class:`~xgen.latent.LatentSpec`."""

    latent: LatentSpec
    value_range: tuple[float, float]
    image_shape: tuple[int, ...]

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...

    def generate(self, latent_or_n: int | Tensor, generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class Decodes(Protocol):
    """Maps a latent vector (B, latent.dim) to images (B, C, H, W) in ``value_range``."""

    def decode(self, z: Tensor) -> Tensor: ...


@runtime_checkable
class Embeds(Protocol):
    """Maps images (in ``value_range``) to the representation a disentanglement metric scores."""

    value_range: tuple[float, float]

    def embed(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Encodes(Protocol):
    """An amortised Gaussian posterior q(z|x) over the model's latent (VAE family)."""

    value_range: tuple[float, float]

    def encode(self, x: Tensor) -> Posterior: ...

    def embed(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class PredictsCodes(Protocol):
    """Reads categorical codes back from images (InfoGAN's Q): argmax per image."""

    latent: LatentSpec
    eval_code: int
    value_range: tuple[float, float]

    def predict_code(self, x: Tensor, code: int | None = None) -> Tensor: ...


@runtime_checkable
class HasLikelihood(Protocol):
    """Enough for the ELBO and importance-weighted log p(x) (:mod:`xgen.metrics.likelihood`)."""

    value_range: tuple[float, float]

    def encode(self, x: Tensor) -> Posterior: ...

    def decode_logits(self, z: Tensor) -> Tensor: ...

    def reconstruction_nll(self, out: Tensor, x: Tensor) -> Tensor: ...


@runtime_checkable
class Classifies(Protocol):
    """A classifier: (class, softmax confidence) per image, and penultimate features."""

    num_classes: int
    value_range: tuple[float, float]

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def features(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Adversarial(Protocol):
    """A generator/discriminator pair; ``discriminator(x)`` returns (logits (B,), features (B, F))."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    latent: LatentSpec

    @property
    def last_losses(self) -> dict[str, Tensor]: ...


@runtime_checkable
class HasQ(Protocol):
    """InfoGAN's auxiliary distribution Q(c|x) on the discriminator's features."""

    def q(self, features: Tensor) -> tuple[list[Tensor], Tensor, Tensor]: ...


@runtime_checkable
class Conditional(Protocol):
    """Generates the class it is asked for: categorical code ``class_code`` of the latent is the label
    (cGAN, AC-GAN, semi-supervised InfoGAN), so ``cat<class_code> = k`` draws class ``k`` without matching."""

    class_code: int
    num_classes: int

    def latent_for_class(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


PROTOCOLS: tuple[type, ...] = (Generative, Decodes, Embeds, Encodes, PredictsCodes, HasLikelihood, Classifies,
                               Adversarial, HasQ, Conditional)


class CapabilityError(XgenError, TypeError):
    """A tool was handed a model that lacks what the tool needs."""


def _members(proto: type) -> list[str]:
    names = [n for n in getattr(proto, "__annotations__", {})]
    names += [n for n, v in vars(proto).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))]
    return list(dict.fromkeys(names))


def missing(model: Any, proto: type) -> list[str]:
    """The members of ``proto`` that ``model`` does not have."""
    return [n for n in _members(proto) if not hasattr(model, n)]


T = TypeVar("T")


def require(model: Any, proto: type[T], tool: str, hint: str = "") -> T:
    """``model`` if it provides ``proto``, else a :class:`CapabilityError` naming the tool, the model's
    class and the members it lacks (e.g. "the Decision Maps need a model that Encodes (encode, embed);
    GAN has none of: encode, embed")."""
    if isinstance(model, proto):
        return model  # type: ignore[return-value]
    lacks = missing(model, proto)
    msg = (f"{tool} needs a model that is {proto.__name__} ({', '.join(_members(proto))}); "
           f"{type(model).__name__} lacks {', '.join(lacks) or 'them'}.")
    raise CapabilityError(msg + (f" {hint}" if hint else ""))


def capabilities(model: Any) -> list[str]:
    """Names of the protocols ``model`` provides (for messages and ``xgen eval``'s table)."""
    return [p.__name__ for p in PROTOCOLS if isinstance(model, p)]


def value_range_of(model: Any) -> tuple[float, float]:
    """The pixel range a model reads and writes. Every xgen model declares ``value_range``; this is the
    one place that falls back to (0, 1) for a user's plain ``nn.Module`` (e.g. a classifier handed to an
    explainability tool), documented as the default input range of such modules."""
    vr: Sequence[float] = getattr(model, "value_range", (0.0, 1.0))  # the one sanctioned fallback
    return float(vr[0]), float(vr[1])
