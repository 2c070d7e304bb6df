"""FID (and optionally KID, IS, precision/recall) while training and at the end.

Every ``every_n_epochs`` epochs (and after the last epoch) the callback generates ``num_samples``
images (the thesis used 1,000), extracts their features and logs ``val/fid`` against real statistics
that are computed once per dataset/split/extractor and cached on disk. In the test stage that
``xgen`` runs after fitting (``test=true``) it does the same with ``num_samples_final`` images and
``final_metrics`` and logs ``test/fid``, ``test/kid``, ... into the run's summary.

Under DDP each rank generates its share; features are all-gathered once and every rank computes the
same numbers (rank 0 writes the real-statistics cache, the others wait and read it).
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import lightning as L
import torch

from xgen.errors import check
from xgen.metrics.features import EXTRACTORS, Extracted, FeatureExtractor, build_extractor
from xgen.metrics.quality import (RealReference, cached_real_reference, check_metrics, generate_images, score,
                                  shard_batches)

log = logging.getLogger("xgen")


class FID(L.Callback):
    """Log ``val/fid`` every ``every_n_epochs`` and ``test/fid`` (+ ``final_metrics``) in the test stage.

    Args:
        every_n_epochs: measure after every N-th training epoch (and after the last one).
        num_samples: generated images per measurement during training (thesis: 1,000).
        num_samples_final: generated images in the test stage.
        metrics, final_metrics: which of ``fid``, ``kid``, ``is``, ``pr`` to compute during training / at the end.
        extractor: ``classifier`` (offline, the default) or ``inception``.
        weights: the extractor's weight file; ``None`` = the classifier shipped for the dataset
            (or, for inception, ``$XGEN_INCEPTION_WEIGHTS`` / torch-fidelity's download).
        arch: which shipped classifier (``strong`` or ``thesis``).
        real_split: data split the samples are compared with (``test``, ``val`` or ``train``).
        batch_size: generation and feature-extraction batch size.
        seed: seed of the latent draws (the same draws every epoch, so curves are not sampling noise).
        cache_dir: where real statistics are cached (``None``: ``$XGEN_CACHE/fid`` or ``~/.cache/xgen/fid``).
        max_real_features: real feature vectors kept for KID and precision/recall.
        kid_subsets, kid_subset_size: KID settings (the subset size shrinks to the sample count, with a warning).
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 1000, num_samples_final: int = 10000,
                 metrics: Sequence[str] = ("fid",), final_metrics: Sequence[str] = ("fid", "kid", "is", "pr"),
                 extractor: str = "classifier", weights: str | None = None, arch: str = "strong",
                 real_split: str = "test", batch_size: int = 500, seed: int = 0, cache_dir: str | None = None,
                 max_real_features: int = 10000, kid_subsets: int = 100, kid_subset_size: int = 1000):
        check(int(every_n_epochs) >= 1, "callbacks.fid.every_n_epochs", f"must be >= 1, got {every_n_epochs}")
        check(int(num_samples) >= 2, "callbacks.fid.num_samples", f"must be >= 2, got {num_samples}")
        check(int(num_samples_final) >= 2, "callbacks.fid.num_samples_final", f"must be >= 2, got {num_samples_final}")
        check(extractor in EXTRACTORS, "callbacks.fid.extractor",
              f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
        check(real_split in ("train", "val", "test"), "callbacks.fid.real_split",
              f"must be train, val or test, got {real_split!r}")
        check(int(batch_size) >= 1, "callbacks.fid.batch_size", f"must be >= 1, got {batch_size}")
        self.metrics = check_metrics(metrics, "callbacks.fid.metrics")
        self.final_metrics = check_metrics(final_metrics, "callbacks.fid.final_metrics")
        self.every_n_epochs, self.num_samples, self.num_samples_final = int(every_n_epochs), int(num_samples), int(num_samples_final)
        self.extractor_name, self.weights, self.arch = extractor, weights, arch
        self.real_split, self.batch_size, self.seed, self.cache_dir = real_split, int(batch_size), int(seed), cache_dir
        self.max_real_features = int(max_real_features)
        self.kid_subsets, self.kid_subset_size = int(kid_subsets), int(kid_subset_size)
        self._extractor: FeatureExtractor | None = None
        self._reference: RealReference | None = None
        self.history: list[dict] = []   # one entry per measurement: stage, epoch, seconds, scores

    # ------------------------------------------------------------------ pieces
    def extractor(self, trainer: L.Trainer, pl_module: L.LightningModule) -> FeatureExtractor:
        if self._extractor is None:
            dataset = getattr(trainer.datamodule, "name", None)
            self._extractor = build_extractor(self.extractor_name, self.weights, dataset, self.arch)
        return self._extractor.to(pl_module.device)

    def reference(self, trainer: L.Trainer, pl_module: L.LightningModule) -> RealReference:
        """Real statistics: rank 0 computes (or reads) and caches them, the other ranks then read them."""
        if self._reference is None:
            dm = trainer.datamodule
            if dm is None or not hasattr(dm, "split"):
                raise RuntimeError("the FID callback needs an xgen data module (with split()) to get real images")
            images, _ = dm.split(self.real_split)
            name = f"{getattr(dm, 'name', 'data')}-{self.real_split}"
            ext = self.extractor(trainer, pl_module)
            if trainer.world_size > 1:
                if trainer.is_global_zero:
                    cached_real_reference(images, ext, name, self.cache_dir, self.max_real_features, self.batch_size)
                trainer.strategy.barrier("xgen-fid-real-stats")
            self._reference = cached_real_reference(images, ext, name, self.cache_dir, self.max_real_features,
                                                    self.batch_size)
        return self._reference

    def _gather(self, pl_module: L.LightningModule, t: torch.Tensor, world: int, n: int) -> torch.Tensor:
        """Concatenate every rank's rows in rank order (ranks may hold different counts)."""
        if world == 1:
            return t
        per_rank = len(shard_batches(n, self.batch_size, 0, world)) * self.batch_size
        padded = torch.zeros(per_rank, *t.shape[1:], dtype=t.dtype)
        padded[: t.shape[0]] = t.cpu()
        counts = pl_module.all_gather(torch.tensor(t.shape[0], device=pl_module.device)).reshape(-1).tolist()
        g = pl_module.all_gather(padded.to(pl_module.device)).cpu()  # (world, per_rank, ...)
        return torch.cat([g[r, : int(c)] for r, c in enumerate(counts)])[:n]

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, n: int,
                metrics: Sequence[str]) -> dict[str, float]:
        """Generate ``n`` images across ranks, gather their features once, score them."""
        start = time.perf_counter()
        ref = self.reference(trainer, pl_module)
        ext = self.extractor(trainer, pl_module)
        world, rank = trainer.world_size, trainer.global_rank
        images = generate_images(pl_module, n, self.batch_size, seed=self.seed, rank=rank, world=world)
        vr = pl_module.value_range  # Generative: checked by generate_images
        if images.shape[0] == 0:  # more ranks than batches: this rank decodes nothing, but still gathers
            images = torch.zeros(1, *ref.image_shape)
            ex = ext.extract(images, vr, self.batch_size)
            ex, images = Extracted(ex.features[:0], ex.logits[:0]), images[:0]
        else:
            ex = ext.extract(images, vr, self.batch_size)
        features = self._gather(pl_module, ex.features, world, n)
        logits = self._gather(pl_module, ex.logits, world, n)
        values = score(ref, Extracted(features, logits), images.shape[1:], metrics, self.kid_subsets,
                       self.kid_subset_size, seed=self.seed)
        seconds = time.perf_counter() - start
        self.history.append({"epoch": trainer.current_epoch, "n": n, "seconds": seconds, **values})
        return values

    def _log(self, pl_module: L.LightningModule, stage: str, values: dict[str, float]) -> None:
        for k, v in values.items():
            # every rank scored the gathered features: the same number everywhere, kept exactly by a max
            pl_module.log(f"{stage}/{k}", float(v), on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")

    # ------------------------------------------------------------------ hooks
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs == 0 or last:
            values = self.measure(trainer, pl_module, self.num_samples, self.metrics)
            self.history[-1]["stage"] = "val"
            self._log(pl_module, "val", values)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = self.measure(trainer, pl_module, self.num_samples_final, self.final_metrics)
        self.history[-1]["stage"] = "test"
        self._log(pl_module, "test", values)
        log.info("FID (test stage, %d samples): %s", self.num_samples_final,
                 ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
