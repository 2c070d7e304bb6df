#!/usr/bin/env python3
"""Cost of the FID callback relative to a training epoch; prints one JSON line.

    PYTHONPATH=src python bench/bench_fid_callback.py                      # VAE on Fashion-MNIST
    PYTHONPATH=src python bench/bench_fid_callback.py --model infogan      # once the GAN family lands
    PYTHONPATH=src python bench/bench_fid_callback.py --set +trainer.limit_train_batches=50   # a quick look

Trains the same configuration twice, one epoch each (same seed): without callbacks, then with the FID
callback measuring ``--num-samples`` samples at the end of every epoch. The real statistics are cached
before timing (they are computed once per dataset/split/extractor, not per epoch); their one-off cost
is reported as ``real_stats_s``. Ratios, not seconds, are what to compare: machines are shared.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch


class EpochTimer(L.Callback):
    """Wall time of each training epoch (training + validation + other callbacks' epoch-end work)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):  # runs after the FID callback (it is listed last)
        self.seconds.append(time.perf_counter() - self._t)


def compose(overrides: list[str]):
    from hydra import compose as _compose, initialize_config_dir

    from xgen.runtime.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return _compose(config_name="train", overrides=overrides)


def one_run(overrides: list[str], fid_cb, out: Path) -> tuple[float, object]:
    from xgen.runtime.train import build

    cfg = compose([*overrides, f"paths.output_dir={out}"])
    L.seed_everything(int(cfg.seed), verbose=False)
    datamodule, model, trainer, _ = build(cfg, out)
    timer = EpochTimer()
    trainer.callbacks.extend([c for c in (fid_cb, timer) if c is not None])
    trainer.fit(model, datamodule=datamodule)
    return timer.seconds[-1], trainer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vae", help="model config (vae, beta_vae, info_vae, infogan, ...)")
    ap.add_argument("--data", default="fashion_mnist")
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--extractor", default="classifier")
    ap.add_argument("--arch", default="strong")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra xgen overrides")
    args = ap.parse_args(argv)
    from xgen.callbacks import FID

    overrides = [f"data={args.data}", f"model={args.model}", "callbacks=none", "logger=csv", "trainer.max_epochs=1",
                 "trainer.enable_model_summary=false", "+trainer.enable_progress_bar=false", "test=false", *args.set]
    with tempfile.TemporaryDirectory(prefix="xgen-bench-fid-") as tmp:
        cache = Path(tmp) / "cache"
        fid_cb = FID(every_n_epochs=1, num_samples=args.num_samples, extractor=args.extractor, arch=args.arch,
                     cache_dir=str(cache))
        base_s, _ = one_run(overrides, None, Path(tmp) / "base")
        # cache the real statistics first: a one-off cost, not a per-epoch one
        t = time.perf_counter()
        cfg = compose([*overrides, f"paths.output_dir={tmp}"])
        from hydra.utils import instantiate

        from xgen.metrics.features import build_extractor
        from xgen.metrics.quality import cached_real_reference

        dm = instantiate(cfg.data)
        ext = build_extractor(args.extractor, None, dm.name, args.arch)
        cached_real_reference(dm.split(fid_cb.real_split)[0], ext, f"{dm.name}-{fid_cb.real_split}", str(cache))
        real_stats_s = time.perf_counter() - t
        with_s, trainer = one_run(overrides, fid_cb, Path(tmp) / "fid")
        fid_s = fid_cb.history[-1]["seconds"]
        print(json.dumps({
            "bench": "fid_callback", "model": args.model, "data": args.data, "num_samples": args.num_samples,
            "extractor": ext.cache_key, "threads": torch.get_num_threads(), "overrides": args.set,
            "epoch_s": round(base_s, 3), "epoch_with_fid_s": round(with_s, 3), "fid_s": round(fid_s, 3),
            "fid_over_epoch": round(fid_s / base_s, 4), "epoch_ratio": round(with_s / base_s, 4),
            "real_stats_s": round(real_stats_s, 3), "val_fid": round(float(trainer.callback_metrics["val/fid"]), 4),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
