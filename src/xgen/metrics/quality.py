"""Sample quality of a generative model against real data: generation, cached real statistics, scores.

The pieces the FID callback and ``xgen eval`` share:

* :func:`generate_images` draws ``n`` samples from any xgen model in batches, under no_grad, with a
  seeded generator (``sample_latent``, then ``generate``);
* :func:`cached_real_reference` computes the real data's Gaussian statistics (and a feature subset for
  KID and precision/recall) once per dataset/split/extractor and caches them on disk under a key that
  holds the images' digest and the extractor's weights hash, so stale statistics cannot be read;
* :func:`score` turns generated features into ``fid``, ``kid``, ``is`` and ``precision``/``recall``.
"""

from __future__ import annotations

import math

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from xgen.errors import ConfigError
from xgen.metrics.features import Extracted, FeatureExtractor, check_same_shape
from xgen.protocols import Generative, require
from xgen.metrics.fid import GaussianStats, fid_from_stats, inception_score, kid, precision_recall

Tensor = torch.Tensor
log = logging.getLogger("xgen")

METRICS = ("fid", "kid", "is", "pr")
CACHE_ENV = "XGEN_CACHE"


def check_metrics(metrics: Sequence[str], key: str = "metrics") -> tuple[str, ...]:
    """Validate metric names (``fid``, ``kid``, ``is``, ``pr``)."""
    out = tuple(str(m).lower() for m in metrics)
    bad = [m for m in out if m not in METRICS]
    if bad:
        raise ConfigError(f"{key}: unknown metric(s) {', '.join(bad)}; choose from {', '.join(METRICS)}")
    return out


@dataclass
class RealReference:
    """What a generated set is compared with: the real features' Gaussian statistics (FID) and up to
    ``max_features`` of the features themselves (KID, precision/recall)."""

    stats: GaussianStats
    features: Tensor
    image_shape: tuple[int, int, int]
    key: str = ""


def images_digest(images: Tensor) -> str:
    """SHA-256 of a uint8 image tensor's shape and bytes (the cache key changes with the data)."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$XGEN_CACHE/fid`` or ``~/.cache/xgen/fid``."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xgen"
    return Path(root) / "fid"


def real_reference(images: Tensor, extractor: FeatureExtractor, value_range: Sequence[float] = (0.0, 1.0),
                   max_features: int = 10000, batch_size: int = 500, seed: int = 0) -> RealReference:
    """Statistics of all ``images`` plus a seeded random subset of ``max_features`` feature vectors."""
    ex = extractor.extract(images, value_range, batch_size)
    stats = GaussianStats.from_features(ex.features, "real")
    keep = ex.features
    if keep.shape[0] > max_features:
        idx = torch.randperm(keep.shape[0], generator=torch.Generator().manual_seed(seed))[:max_features]
        keep = keep[idx.sort().values]
    return RealReference(stats=stats, features=keep.clone(), image_shape=tuple(int(s) for s in images.shape[1:]))


def reference_cache_path(images: Tensor, extractor: FeatureExtractor, name: str, cache_dir: str | Path | None,
                         max_features: int) -> Path:
    """``<cache>/<name>-n<N>-<images digest>-<extractor>-<weights hash>-m<max_features>.pt``."""
    key = f"{name}-n{images.shape[0]}-{images_digest(images)[:12]}-{extractor.cache_key}-m{max_features}"
    return Path(cache_dir or default_cache_dir()) / f"{key}.pt"


def cached_real_reference(images: Tensor, extractor: FeatureExtractor, name: str,
                          cache_dir: str | Path | None = None, max_features: int = 10000, batch_size: int = 500,
                          write: bool = True) -> RealReference:
    """:func:`real_reference` of uint8 ``images``, read from / written to the disk cache.

    ``name`` says what the images are (e.g. ``fashion_mnist-test``); the key adds their digest and the
    extractor's weights hash. An unreadable cache file is recomputed (with a warning) and replaced.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"real images for the statistics cache must be uint8, got {images.dtype}")
    path = reference_cache_path(images, extractor, name, cache_dir, max_features)
    if path.is_file():
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
            return RealReference(GaussianStats.from_dict(d["stats"]), d["features"], tuple(d["image_shape"]), path.stem)
        except Exception as e:  # truncated by a killed job, or an older format
            warnings.warn(f"FID cache {path} is unreadable ({type(e).__name__}); recomputing it.", stacklevel=2)
    ref = real_reference(images, extractor, (0.0, 1.0), max_features, batch_size)  # uint8: range unused
    ref.key = path.stem
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"stats": ref.stats.to_dict(), "features": ref.features, "image_shape": list(ref.image_shape),
                    "extractor": extractor.cache_key}, tmp)
        os.replace(tmp, path)  # atomic: concurrent jobs never read half a file
        log.info("FID: cached real statistics in %s", path)
    return ref


def latent_sampler(model: torch.nn.Module):
    """The model's seeded latent sampler (:class:`xgen.protocols.Generative`'s ``sample_latent``)."""
    return require(model, Generative, "sample quality (FID/KID/IS/PR)").sample_latent


def shard_batches(n: int, batch_size: int, rank: int = 0, world: int = 1) -> range:
    """The batch indices (of ``ceil(n / batch_size)``) that ``rank`` generates: a contiguous block."""
    n_batches = math.ceil(int(n) / int(batch_size))
    per_rank = math.ceil(n_batches / max(1, int(world)))
    return range(min(n_batches, rank * per_rank), min(n_batches, (rank + 1) * per_rank))


@torch.no_grad()
def generate_images(model: torch.nn.Module, n: int, batch_size: int = 500, seed: int = 0,
                    rank: int = 0, world: int = 1) -> Tensor:
    """``n`` samples of ``model`` (float, CPU, in ``model.value_range``), generated in batches in eval
    mode from latents drawn with ``torch.Generator().manual_seed(seed)``.

    Under DDP (``world`` > 1) every rank draws the same latent stream but decodes only its block of
    batches (:func:`shard_batches`), so the ranks' images, concatenated in rank order, are exactly
    the images one process would generate: a DDP score equals the single-process score."""
    sampler = latent_sampler(model)
    g = torch.Generator().manual_seed(int(seed))
    mine = shard_batches(n, batch_size, rank, world)
    was_training = model.training
    model.eval()
    out = []
    try:
        for k, i in enumerate(range(0, int(n), int(batch_size))):
            z = sampler(min(int(batch_size), int(n) - i), generator=g)  # drawn by every rank: same stream
            if k in mine:
                out.append(model.generate(z).detach().float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def score(reference: RealReference, generated: Extracted, generated_shape: Sequence[int],
          metrics: Sequence[str] = ("fid",), kid_subsets: int = 100, kid_subset_size: int | None = None,
          is_splits: int = 10, pr_k: int = 3, seed: int = 0) -> dict[str, float]:
    """Scores of generated features against the real reference: keys ``fid``, ``kid``/``kid_std``,
    ``is``/``is_std``, ``precision``/``recall``, for the ``metrics`` asked for. ``kid_subset_size=None``
    takes KID's usual 1000, or all samples when there are fewer (an explicit size larger than the
    samples is shrunk with a warning)."""
    metrics = check_metrics(metrics)
    check_same_shape(reference.image_shape, generated_shape)
    out: dict[str, float] = {}
    if "fid" in metrics:
        out["fid"] = fid_from_stats(reference.stats, GaussianStats.from_features(generated.features, "generated"))
    if "kid" in metrics:
        size = kid_subset_size if kid_subset_size is not None else min(
            1000, reference.features.shape[0], generated.features.shape[0])
        out["kid"], out["kid_std"] = kid(reference.features, generated.features, kid_subsets, size, seed=seed)
    if "is" in metrics:
        splits = max(1, min(int(is_splits), generated.logits.shape[0]))
        out["is"], out["is_std"] = inception_score(generated.logits, splits, seed=seed)
    if "pr" in metrics:
        pr = precision_recall(reference.features, generated.features, pr_k)
        out["precision"], out["recall"] = pr["precision"], pr["recall"]
    return out
