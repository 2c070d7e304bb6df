"""What every explainability tool shares: the classifier being explained, pixel ranges, latent axes.

A tool hands images around in the *generative model's* pixel range (``model.value_range``, e.g.
(-1, 1) for a tanh GAN, (0, 1) for a VAE); :class:`ExplainedClassifier` converts them into the range
its classifier reads, so a GAN and a [0, 1] classifier work together without the caller noticing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from xgen.data.base import convert_range
from xgen.errors import ConfigError
from xgen.latent import LatentSpec
from xgen.protocols import Classifies, Generative, value_range_of

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")


def to_unit(x: Tensor, value_range: Sequence[float]) -> Tensor:
    """Images in ``value_range`` -> [0, 1] (for figures and pixel distances)."""
    return convert_range(x, value_range, (0.0, 1.0))


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a parameterless module)."""
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


# ============================================================================ the classifier explained
@dataclass
class ExplainedClassifier:
    """A classifier as the explainability tools use it.

    Args:
        module: any ``nn.Module`` mapping images (B, C, H, W) in ``value_range`` to logits (B, K).
        value_range: the pixel range the module reads (default: its ``value_range`` attribute, else
            (0, 1) — see :func:`xgen.protocols.value_range_of`).
        class_names: one name per logit (default ``"0"``, ``"1"``, ...).
        image_shape: the (C, H, W) the module was trained on, when known (checked against generators).
    """

    module: nn.Module
    value_range: tuple[float, float] | None = None
    class_names: Sequence[str] | None = None
    image_shape: tuple[int, ...] | None = None
    num_classes: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not isinstance(self.module, nn.Module):
            raise ConfigError(f"classifier: expected a torch.nn.Module, got {type(self.module).__name__}")
        self.module.eval()
        self.value_range = tuple(self.value_range) if self.value_range is not None else value_range_of(self.module)
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
            self.num_classes = len(self.class_names)

    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    def check_input(self, image_shape: Sequence[int], who: str = "the generator") -> None:
        """Refuse a classifier that cannot read images of ``image_shape`` (C, H, W) with a message
        naming both shapes; sets ``num_classes`` from a trial forward pass."""
        shape = tuple(int(s) for s in image_shape)
        if self.image_shape is not None and tuple(self.image_shape) != shape:
            raise ConfigError(f"classifier: it reads {'x'.join(map(str, self.image_shape))} images but {who} "
                              f"makes {'x'.join(map(str, shape))} images. Fix: pass a classifier trained on "
                              "the generator's data (--classifier PATH / classifier=...).")
        try:
            with torch.no_grad():
                out = self.module(torch.zeros(2, *shape, device=self.device))
        except (RuntimeError, ValueError, IndexError) as e:
            raise ConfigError(f"classifier: {type(self.module).__name__} cannot take {who}'s "
                              f"{'x'.join(map(str, shape))} images ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                              "Fix: pass a classifier trained on the generator's data.") from None
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != 2 or out.shape[1] < 2:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError(f"classifier: {type(self.module).__name__} must return logits (B, num_classes>=2) "
                              f"for {'x'.join(map(str, shape))} images; it returned {got}.")
        if self.class_names is not None and out.shape[1] != len(self.class_names):
            raise ConfigError(f"classifier: {out.shape[1]} logits but {len(self.class_names)} class names.")
        self.num_classes = int(out.shape[1])
        if self.class_names is None:
            self.class_names = [str(i) for i in range(self.num_classes)]

    def logits(self, x: Tensor, x_range: Sequence[float]) -> Tensor:
        """Logits of images ``x`` given in pixel range ``x_range`` (differentiable in x)."""
        return self.module(convert_range(x, x_range, self.value_range).to(self.device))

    def probs(self, x: Tensor, x_range: Sequence[float]) -> Tensor:
        """Softmax probabilities (B, K)."""
        return torch.softmax(self.logits(x, x_range), dim=1)

    @torch.no_grad()
    def predict(self, x: Tensor, x_range: Sequence[float], batch_size: int = 512) -> tuple[Tensor, Tensor, Tensor]:
        """(class (B,), softmax confidence (B,), all probabilities (B, K)) on the CPU."""
        ps = [self.probs(x[i:i + batch_size], x_range).float().cpu() for i in range(0, len(x), batch_size)]
        p = torch.cat(ps) if ps else torch.zeros(0, max(self.num_classes, 1))
        conf, cls = p.max(dim=1)
        return cls, conf, p

    @torch.no_grad()
    def features(self, x: Tensor, x_range: Sequence[float], batch_size: int = 512) -> Tensor:
        """Penultimate features when the module :class:`~xgen.protocols.Classifies` (``features``),
        else its logits: the feature space of the nearest-neighbour check."""
        out = []
        for i in range(0, len(x), batch_size):
            xb = convert_range(x[i:i + batch_size], x_range, self.value_range).to(self.device)
            f = self.module.features(xb) if isinstance(self.module, Classifies) else self.module(xb)
            out.append(f.flatten(1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    def name_of(self, k: int) -> str:
        names = self.class_names or []
        return names[k] if 0 <= k < len(names) else str(k)


class _ShippedNet(nn.Module):
    """A shipped classifier network with the :class:`~xgen.protocols.Classifies` members."""

    value_range = (0.0, 1.0)

    def __init__(self, net: nn.Module, num_classes: int):
        super().__init__()
        self.net, self.num_classes = net, int(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def features(self, x: Tensor) -> Tensor:
        return self.net.features(x)

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        conf, cls = torch.softmax(self.net(x), 1).max(1)
        return cls, conf


def shipped_classifier(dataset: str = "fashion_mnist", arch: str = "thesis",
                       weights: str | None = None) -> ExplainedClassifier:
    """xgen's shipped classifier for ``dataset`` (``arch`` thesis: the fig. 4.8 CNN the thesis explains;
    strong: the FID feature net), or the classifier weight file ``weights``."""
    from xgen.metrics.features import ClassifierExtractor

    ext = ClassifierExtractor(weights=weights, dataset=dataset, arch=arch)
    names = FASHION_MNIST_CLASSES if ext.record.get("dataset") == "fashion_mnist" else None
    module = _ShippedNet(ext.net, int(ext.record["num_classes"]))
    return ExplainedClassifier(module, (0.0, 1.0), names, tuple(ext.image_shape))


def as_classifier(classifier: "ExplainedClassifier | nn.Module", model: Generative | None = None,
                  class_names: Sequence[str] | None = None) -> ExplainedClassifier:
    """Wrap an ``nn.Module`` (or pass an :class:`ExplainedClassifier` through), checked against the
    images ``model`` makes."""
    clf = classifier if isinstance(classifier, ExplainedClassifier) else ExplainedClassifier(classifier,
                                                                                           class_names=class_names)
    if model is not None:
        clf.check_input(model.image_shape, f"{type(model).__name__}")
    return clf


# ============================================================================ latent axes
@dataclass(frozen=True)
class Axis:
    """One direction of a latent a traversal moves along.

    ``kind`` is ``cat`` (categorical code ``index``: its one-hot block), ``cont`` (continuous code
    ``index``) or ``z`` (noise unit / VAE latent unit ``index``); ``column`` is its first column in the
    latent vector and ``size`` its width (K for a categorical code, else 1).
    """

    kind: str
    index: int
    column: int
    size: int

    @property
    def label(self) -> str:
        what = {"cat": "categorical code", "cont": "continuous code", "z": "latent unit"}[self.kind]
        return f"{self.kind}{self.index} ({what} {self.index})"

    def default_values(self, steps: int = 10, span: Sequence[float] = (-1.0, 1.0)) -> list[float]:
        if self.kind == "cat":
            return [float(k) for k in range(self.size)]
        return torch.linspace(float(span[0]), float(span[1]), int(steps)).tolist()

    def set(self, latents: Tensor, value: float | Tensor) -> Tensor:
        """A copy of ``latents`` (B, dim) with this axis set to ``value`` (a category index for ``cat``)."""
        out = latents.clone()
        if self.kind == "cat":
            k = int(value)
            out[:, self.column:self.column + self.size] = 0.0
            out[:, self.column + k] = 1.0
        else:
            out[:, self.column] = value
        return out

    def get(self, latents: Tensor) -> Tensor:
        """The axis's value in each latent (category index for ``cat``)."""
        if self.kind == "cat":
            return latents[:, self.column:self.column + self.size].argmax(1).float()
        return latents[:, self.column]


def axes_of(latent: LatentSpec) -> list[str]:
    """Short names of every axis of ``latent``: cat0.., cont0.., z0.."""
    return ([f"cat{i}" for i in range(latent.num_categorical)] + [f"cont{i}" for i in range(latent.continuous)]
            + ([f"z0..z{latent.noise - 1}"] if latent.noise else []))


def parse_axis(latent: LatentSpec, name: str | Axis, key: str = "code") -> Axis:
    """``cat0`` / ``cont1`` / ``z5`` (or a plain integer: latent unit) -> :class:`Axis`; a code the
    latent does not have is a :class:`~xgen.errors.ConfigError` naming ``key`` and the codes it has."""
    if isinstance(name, Axis):
        return name
    s = str(name).strip().lower()
    kind, _, num = (("z", "", s) if s.lstrip("-").isdigit() else
                    next(((k, "", s[len(k):]) for k in ("cont", "cat", "z") if s.startswith(k)), ("", "", "")))
    have = ", ".join(axes_of(latent)) or "none"
    if not kind or not num.lstrip("-").isdigit():
        raise ConfigError(f"{key}: {name!r} is not a latent axis; use cat<i>, cont<i> or z<i> (this latent has: {have})")
    i = int(num)
    counts = {"cat": latent.num_categorical, "cont": latent.continuous, "z": latent.noise}
    if not 0 <= i < counts[kind]:
        raise ConfigError(f"{key}: {name!r} does not exist: the latent has {counts[kind]} {kind} "
                          f"axis/axes ({have}). Fix: pick one of those.")
    if kind == "z":
        return Axis("z", i, i, 1)
    if kind == "cat":
        col = latent.noise + sum(latent.categorical[:i])
        return Axis("cat", i, col, latent.categorical[i])
    return Axis("cont", i, latent.noise + sum(latent.categorical) + i, 1)


def default_axes(latent: LatentSpec) -> tuple[str, str]:
    """(rows, columns) of the default 2-D grid: the first categorical code down and the first continuous
    code across (thesis §4.4); a latent without codes uses units z0 and z1."""
    if latent.num_categorical and latent.continuous:
        return "cat0", "cont0"
    if latent.continuous >= 2:
        return "cont0", "cont1"
    if latent.num_categorical:
        return "cat0", ("z0" if latent.noise else "cat0")
    return "z0", ("z1" if latent.noise > 1 else "z0")


def write_csv(path: str | Path, records: list[dict]) -> Path:
    """``records`` (one dict per row, the same keys) as a CSV file with a header; parent folders made."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    return path
