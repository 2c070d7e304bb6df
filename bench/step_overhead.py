"""Where a training step's time goes outside the model's own step: per-call CPU time of Lightning's and
xgen's per-batch functions during an `xgen` run (docs/speed.md, "Where the last millisecond went").

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/step_overhead.py [--model vae] [--steps 300]

The run is `bench_speed.py`'s xgen path (default callbacks, CSV logging, progress bar; batch 128,
Fashion-MNIST). Each listed function is wrapped by a counter of the calling thread's CPU time
(``time.thread_time``: time the thread ran, so a shared machine's waiting is left out); the table
gives the median and the mean per training step over the timed steps, and the step as a whole.
Nested functions are included in their callers' time. A wrapper costs about 4 us a call (two clock
reads), so compare rows, not single microseconds.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vae", help="a bench_speed.py model name (gan dcgan infogan vae info_vae)")
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(1)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "xgen"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import bench_speed
    import xgen.callbacks.throughput as throughput

    # the Throughput clock in thread CPU time too, so the step as a whole is measured like its parts
    clock = types.SimpleNamespace(perf_counter=time.thread_time)
    throughput.time = clock
    samples: dict[str, list[float]] = collections.defaultdict(list)

    def wrap(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                samples[label].append(time.thread_time() - t)

        setattr(owner, name, timed)

    from lightning.pytorch.loops import fetchers, training_epoch_loop
    from lightning.pytorch.strategies.strategy import Strategy
    from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector

    import xgen.data.base as data_base
    import xgen.models.base as models_base
    from xgen.callbacks.finite_guard import FiniteGuard
    from xgen.callbacks.progress import ThrottledProgressBar

    loop = training_epoch_loop._TrainingEpochLoop
    for owner, name, label in [
        (loop, "advance", "whole batch (Lightning's advance)"),
        (fetchers._PrefetchDataFetcher, "__next__", "next batch (Lightning's fetcher)"),
        (data_base, "to_value_range", "uint8 -> float (hand loop: in its step; xgen: prefetch thread)"),
        (Strategy, "batch_to_device", "batch_to_device + transfer hooks"),
        (loop, "_build_kwargs", "training_step kwargs"),
        (_LoggerConnector, "on_batch_end", "logger connector: batch end"),
        (_LoggerConnector, "update_train_step_metrics", "logger connector: write step metrics"),
        (loop, "on_advance_end", "after the batch (val/ckpt checks)"),
        (FiniteGuard, "on_train_batch_end", "FiniteGuard"),
        (ThrottledProgressBar, "on_train_batch_end", "progress bar"),
        (models_base.TrainLog, "log_train", "TrainLog: sums on the device"),
        (models_base.TrainLog, "on_train_batch_end", "TrainLog: hand sums to self.log when due"),
    ]:
        if name in vars(owner) or owner is data_base:
            wrap(owner, name, label)
    from xgen.models.gan import GAN

    for cls in (models_base.StepModule, GAN):  # the classes that define training_step
        wrap(cls, "training_step", "training_step (the step itself)")

    overrides, _, warmup = bench_speed.MODELS[a.model]
    tmp = Path(tempfile.mkdtemp(prefix="xgen-step-overhead-"))
    images_per_s = bench_speed.run_xgen(overrides, a.steps, warmup, tmp)
    n = len(samples["whole batch (Lightning's advance)"])
    print(f"{a.model}: {n} batches; throughput clock: {128 / images_per_s * 1e3:.2f} ms CPU a step "
          f"(steps {warmup}..{warmup + a.steps - 1})")
    print(f"{'per-batch function':52s} {'calls':>6s} {'median ms':>10s} {'ms/step':>8s}")
    for label, xs in sorted(samples.items(), key=lambda kv: -sum(kv[1])):
        print(f"{label:52s} {len(xs):6d} {statistics.median(xs) * 1e3:10.3f} {sum(xs) / n * 1e3:8.3f}")


if __name__ == "__main__":
    main()
