"""Feature extractors for FID/KID/IS/precision-recall, chosen by name and usable offline.

* ``classifier`` (the default): a classifier xgen trained on the dataset itself
  (:class:`xgen.models.Classifier`, weights shipped in ``xgen/weights/``); features are its
  penultimate layer, logits its output. Needs no download; numbers are comparable between xgen runs,
  not with papers.
* ``inception``: the standard FID Inception-v3 of torch-fidelity (2048-d pool features, 1008 logits);
  numbers comparable with papers. Weights come from ``weights=``/``$XGEN_INCEPTION_WEIGHTS`` (a local
  file) or are downloaded by torch-fidelity on first use where online.

Every extractor takes images as they come — uint8 in [0, 255], or float in a stated ``value_range`` —
with 1 or 3 channels, and converts them itself to what its network expects (Inception: uint8 RGB,
grayscale tiled to 3 channels; classifier: float [0, 1] at the size it was trained on).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from xgen.errors import ConfigError, XgenError

Tensor = torch.Tensor
INCEPTION_ENV = "XGEN_INCEPTION_WEIGHTS"


class WeightsError(XgenError, OSError):
    """A feature extractor's weight file is missing, unreadable or of the wrong format."""


@dataclass
class Extracted:
    """Features (N, D) and class logits (N, K) of a set of images, on the CPU, float32."""

    features: Tensor
    logits: Tensor


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (part of the real-statistics cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def to_unit(images: Tensor, value_range: Sequence[float] = (0.0, 1.0)) -> Tensor:
    """uint8 [0, 255] or float images in ``value_range`` -> float32 in [0, 1] (clamped)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {tuple(value_range)}")
    return ((images.float() - lo) / (hi - lo)).clamp_(0.0, 1.0)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor (N, C, H, W), got {shape}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 (grayscale) or 3 (RGB) channels, got {images.shape[1]} "
                         f"(shape {tuple(images.shape)})")


class FeatureExtractor(nn.Module):
    """Base class: ``extract(images, value_range)`` -> :class:`Extracted`, in batches, under no_grad.

    Subclasses implement ``prepare`` (conversion of [0, 1] float images to the network's input) and
    ``forward`` (prepared batch -> (features, logits)), and set ``name``, ``num_features``,
    ``weights_path``.
    """

    name: str = "extractor"
    num_features: int = 0
    weights_path: Path | None = None

    def __init__(self) -> None:
        super().__init__()
        self._weights_id: str | None = None

    @property
    def weights_id(self) -> str:
        """First 16 hex digits of the weight file's SHA-256 (cache keys change when weights do)."""
        if self._weights_id is None:
            self._weights_id = file_sha256(self.weights_path)[:16] if self.weights_path else "none"
        return self._weights_id

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.weights_id}"

    def prepare(self, unit: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def check_shape(self, image_shape: Sequence[int]) -> None:
        """Raise ValueError when this extractor cannot take images of ``image_shape`` (C, H, W)."""

    @torch.no_grad()
    def extract(self, images: Tensor, value_range: Sequence[float] = (0.0, 1.0), batch_size: int = 500) -> Extracted:
        """Features and logits of ``images`` (uint8, or float in ``value_range``), batch by batch."""
        _check_images(images)
        self.check_shape(images.shape[1:])
        device = next(iter(self.parameters()), torch.empty(0)).device
        feats, logits = [], []
        for i in range(0, images.shape[0], int(batch_size)):
            x = to_unit(images[i:i + int(batch_size)].to(device), value_range)
            f, lg = self(self.prepare(x))
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        if not feats:
            return Extracted(torch.empty(0, self.num_features), torch.empty(0, 0))
        return Extracted(torch.cat(feats), torch.cat(logits))

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)  # always in eval mode (dropout/BatchNorm frozen)


# --------------------------------------------------------------------------- the dataset classifier
def shipped_classifier_path(dataset: str, arch: str = "strong") -> Path:
    """Where the weights of xgen's classifier for ``dataset`` live inside the installed package."""
    return Path(str(files("xgen"))) / "weights" / f"classifier_{arch}_{dataset}.pt"


def shipped_classifiers() -> list[str]:
    """``dataset:arch`` of every classifier weight file shipped with xgen."""
    d = Path(str(files("xgen"))) / "weights"
    out = []
    for p in sorted(d.glob("classifier_*_*.pt")):
        arch, _, dataset = p.stem[len("classifier_"):].partition("_")
        out.append(f"{dataset}:{arch}")
    return out


def write_classifier_weights(path: str | Path, net: nn.Module, arch: str, image_shape: Sequence[int],
                             num_classes: int, net_kwargs: dict | None = None, **meta: object) -> Path:
    """Save a classifier network in the format :class:`ClassifierExtractor` reads (``meta``: dataset,
    test_acc, command, ... recorded as they are)."""
    record = {"format": "xgen-classifier/1", "arch": arch, "net_kwargs": dict(net_kwargs or {}),
              "image_shape": [int(s) for s in image_shape], "num_classes": int(num_classes),
              "input_range": [0.0, 1.0], **meta,
              "state_dict": {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, path)
    return path


def load_classifier_record(path: str | Path) -> dict:
    """Read and validate a classifier weight file written by ``scripts/train_classifiers.py``."""
    from xgen.nets.classifier import ARCHS

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: classifier weight file not found. Fix: pass an existing file "
                           "(extractor weights=...), or train one with `python scripts/train_classifiers.py` "
                           f"(shipped: {', '.join(shipped_classifiers()) or 'none'}).")
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated zip, random bytes, pickle errors
        raise WeightsError(f"{path}: cannot read the classifier weight file ({type(e).__name__}: {e}). It is "
                           "corrupt or not a torch file; re-create it with `python scripts/train_classifiers.py` "
                           "or reinstall xgen.") from None
    from xgen.checkpoint.schema import check_finite, check_structure  # [harden] data, and finite

    check_structure(rec, path, top_keys=False)
    check_finite(rec, path, ("state_dict",))
    if not isinstance(rec, dict) or rec.get("format") != "xgen-classifier/1" or "state_dict" not in rec:
        raise WeightsError(f"{path}: not an xgen classifier weight file (no format 'xgen-classifier/1' with a "
                           "state_dict); write it with scripts/train_classifiers.py.")
    if rec.get("arch") not in ARCHS:
        raise WeightsError(f"{path}: unknown architecture {rec.get('arch')!r}; known: {', '.join(ARCHS)}")
    return rec


class ClassifierExtractor(FeatureExtractor):
    """Penultimate-layer features of an xgen classifier (offline; the default extractor).

    Args:
        weights: a weight file; ``None`` uses the one shipped for ``dataset`` and ``arch``.
        dataset: the data module's ``name`` (``fashion_mnist``, ``digits``) when ``weights`` is None.
        arch: ``strong`` (128-d features, default) or ``thesis`` (the fig. 4.8 CNN, 75-d).
    """

    def __init__(self, weights: str | Path | None = None, dataset: str | None = "fashion_mnist",
                 arch: str = "strong"):
        super().__init__()
        from xgen.nets.classifier import ARCHS

        if weights is None:
            if not dataset:
                raise ConfigError("extractor: the classifier extractor needs a dataset name or a weights file")
            weights = shipped_classifier_path(dataset, arch)
        rec = load_classifier_record(weights)
        self.weights_path = Path(weights)
        self.record = {k: v for k, v in rec.items() if k != "state_dict"}
        self.image_shape = tuple(int(s) for s in rec["image_shape"])
        self.net = ARCHS[rec["arch"]](image_shape=self.image_shape, num_classes=int(rec["num_classes"]),
                                      **rec.get("net_kwargs", {}))
        try:
            self.net.load_state_dict(rec["state_dict"])
        except RuntimeError as e:
            raise WeightsError(f"{weights}: the state_dict does not fit a {rec['arch']} network "
                               f"({str(e).splitlines()[0]}); re-create the file with scripts/train_classifiers.py.") from None
        self.name = f"classifier_{rec['arch']}_{rec.get('dataset', 'custom')}"
        self.num_features = int(self.net.num_features)
        self.requires_grad_(False)
        self.eval()

    def check_shape(self, image_shape: Sequence[int]) -> None:
        c, h, w = (int(s) for s in image_shape)
        ec, eh, ew = self.image_shape
        if (h, w) != (eh, ew) or c not in (ec, 3 if ec == 1 else ec):
            raise ValueError(f"extractor {self.name} ({self.weights_path.name}) was trained on {ec}x{eh}x{ew} "
                             f"images, got {c}x{h}x{w}. Fix: use extractor=inception (any size), or a "
                             "classifier trained on this data (extractor weights=...).")

    def prepare(self, unit: Tensor) -> Tensor:
        if unit.shape[1] == 3 and self.image_shape[0] == 1:  # RGB into a grayscale net: ITU-R 601 luma
            w = torch.tensor([0.299, 0.587, 0.114], device=unit.device).view(1, 3, 1, 1)
            unit = (unit * w).sum(1, keepdim=True)
        return unit

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.net.features(x)
        return f, self.net.head(f)


# --------------------------------------------------------------------------- Inception-v3 (torch-fidelity)
def write_standin_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """Write randomly initialised weights in the exact format of torch-fidelity's FID Inception-v3.

    For tests and offline demos of the ``inception`` code path only: the features are meaningless.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    class _Blank(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random init
            return None

    saved = fe.load_state_dict_from_url
    fe.load_state_dict_from_url = lambda *args, **kwargs: {}  # no download for the blank network
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = _Blank("inception-v3-compat", ["2048"])
    finally:
        fe.load_state_dict_from_url = saved
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


class InceptionExtractor(FeatureExtractor):
    """torch-fidelity's FID Inception-v3: 2048-d pool3 features and 1008 unbiased logits (for IS).

    Args:
        weights: a local weight file in torch-fidelity's format; ``None`` reads
            ``$XGEN_INCEPTION_WEIGHTS`` and otherwise lets torch-fidelity download them (online only).
    """

    name = "inception"
    num_features = 2048

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

        weights = weights or os.environ.get(INCEPTION_ENV) or None
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WeightsError(f"{path}: Inception-v3 weight file not found. Fix: point extractor weights= "
                                   f"(or ${INCEPTION_ENV}) at torch-fidelity's "
                                   f"{URL_INCEPTION_V3.rsplit('/', 1)[-1]}, or run online once to download it.")
        else:
            path = Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[-1]
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                   feature_extractor_weights_path=str(path) if weights else None)
        except WeightsError:
            raise
        except Exception as e:
            if weights is None:
                raise WeightsError(f"Inception-v3 weights could not be downloaded to {path} ({type(e).__name__}: "
                                   f"{e}). Offline? Fix: copy torch-fidelity's weight file there, or set "
                                   f"${INCEPTION_ENV} / extractor weights=PATH, or use extractor=classifier.") from None
            raise WeightsError(f"{path}: not a valid torch-fidelity Inception-v3 weight file "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:300]}). Fix: re-download or "
                               "re-convert it, or use extractor=classifier.") from None
        self.weights_path = path
        self.requires_grad_(False)
        self.eval()

    def prepare(self, unit: Tensor) -> Tensor:
        x = unit.mul(255.0).round_().to(torch.uint8)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grayscale -> RGB by tiling

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self.net(x)
        return features, logits


EXTRACTORS = ("classifier", "inception")


def build_extractor(name: str = "classifier", weights: str | Path | None = None, dataset: str | None = None,
                    arch: str = "strong", device: str | torch.device = "cpu") -> FeatureExtractor:
    """Make a feature extractor by name (``classifier`` or ``inception``) on ``device``."""
    if name == "classifier":
        ext: FeatureExtractor = ClassifierExtractor(weights=weights, dataset=dataset, arch=arch)
    elif name == "inception":
        ext = InceptionExtractor(weights=weights)
    else:
        raise ConfigError(f"extractor: unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    return ext.to(device)


def check_same_shape(real_shape: Sequence[int], generated_shape: Sequence[int]) -> None:
    """Real and generated images must have the same (C, H, W): anything else is a configuration bug."""
    if tuple(real_shape) != tuple(generated_shape):
        raise ValueError(f"real images are {'x'.join(map(str, real_shape))} but generated images are "
                         f"{'x'.join(map(str, generated_shape))}: the model was not trained on this data "
                         "(check data= against the checkpoint's config).")


__all__ = ["EXTRACTORS", "ClassifierExtractor", "Extracted", "FeatureExtractor", "InceptionExtractor",
           "WeightsError", "build_extractor", "check_same_shape", "file_sha256", "load_classifier_record",
           "shipped_classifier_path", "shipped_classifiers", "to_unit", "write_classifier_weights",
           "write_standin_inception_weights"]
