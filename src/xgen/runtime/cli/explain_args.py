"""What the ``xgen explain`` command lines share: one-line argument errors, loading the explained model,
the classifier and a data split, and parsing ``--images`` index lists."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from xgen.errors import ConfigError

DATASETS = ("fashion_mnist", "mnist", "digits")


def parse_device(spec: str) -> torch.device:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device on a machine without one is one error line."""
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device: {spec!r} is not a device (cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: this machine has no CUDA device; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device: {spec!r}: only cpu and cuda are supported")
    return dev


class ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own status)
        raise UsageError(message)


class UsageError(Exception):
    pass


def load_explain_model(spec: str, encoder: str | None = None, refine_steps: int = 0, device: str = "cpu"):
    """A checkpoint path or a shipped name -> the model in eval mode on ``device``; with ``encoder`` (or for the
    shipped InfoGAN, its shipped encoder when asked for one) a GAN becomes an :class:`InvertedGAN`."""
    from xgen.explain.inversion import InvertedGAN, load_encoder
    from xgen.explain.shipped import SHIPPED, shipped_checkpoint
    from xgen.models import load_model

    path = shipped_checkpoint(spec) if spec in SHIPPED else Path(spec)
    model = load_model(path, map_location=parse_device(device))
    model.eval()
    if encoder is not None:
        enc_path = shipped_checkpoint("infogan-encoder") if encoder == "shipped" else Path(encoder)
        model = InvertedGAN(model, load_encoder(enc_path).to(next(model.parameters()).device), refine_steps)
        model.eval()
    return model


def load_classifier(spec: str, dataset: str, device: str = "cpu"):
    """``thesis`` / ``strong`` (shipped for ``dataset``) or a classifier weight file / xgen Classifier
    checkpoint, on ``device``."""
    clf = _load_classifier(spec, dataset)
    clf.module.to(parse_device(device))
    return clf


def _load_classifier(spec: str, dataset: str):
    from xgen.explain.common import FASHION_MNIST_CLASSES, ExplainedClassifier, shipped_classifier

    if spec in ("thesis", "strong"):
        return shipped_classifier(dataset, spec)
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(f"--classifier: {spec}: no such file; use thesis, strong or a classifier weight file")
    try:
        rec = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # corrupt, truncated, or a pickle with code in it
        raise ConfigError(f"--classifier: {spec}: not a readable classifier file ({type(e).__name__})") from None
    from xgen.checkpoint.schema import check_finite, check_structure  # [harden] data, and finite

    check_structure(rec, p, top_keys=False)
    check_finite(rec, p, ("state_dict",))
    if isinstance(rec, dict) and rec.get("format") == "xgen-classifier/1":
        return shipped_classifier(dataset, weights=str(p))
    from xgen.models import load_model
    from xgen.protocols import Classifies

    m = load_model(p, expect=Classifies, tool="--classifier")
    names = FASHION_MNIST_CLASSES if dataset == "fashion_mnist" and m.num_classes == 10 else None
    return ExplainedClassifier(m, tuple(m.value_range), names, tuple(getattr(m, "image_shape", ())) or None)  # a user classifier may not declare its input shape: then unchecked


def load_split(dataset: str, split: str, root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and labels of a dataset split."""
    if dataset == "fashion_mnist":
        from xgen.data.mnist import FashionMNISTDataModule as DM
    elif dataset == "mnist":
        from xgen.data.mnist import MNISTDataModule as DM
    elif dataset == "digits":
        from xgen.data.digits import DigitsDataModule as DM
    else:
        raise ConfigError(f"--data: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return DM(root=root).load_split(split)


def parse_indices(spec: str, n: int, key: str = "--images") -> list[int]:
    """``0-49`` / ``3,17,1001`` -> indices, each checked against a split of ``n`` images."""
    out: list[int] = []
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"{key}: {spec!r} is not a list of indices (e.g. 0-49 or 3,17,1001)") from None
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ConfigError(f"{key}: index {bad[0]} is outside the dataset split ({n} images: 0..{n - 1})")
    if not out:
        raise ConfigError(f"{key}: no indices given")
    return out


def images_in_range(x_uint8: torch.Tensor, value_range) -> torch.Tensor:
    from xgen.data.base import to_value_range

    return to_value_range(x_uint8, value_range)
