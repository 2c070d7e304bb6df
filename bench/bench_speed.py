"""Training throughput of xgen against hand-written loops of the same networks, in one process.

For each model (GAN, DCGAN, InfoGAN, VAE, InfoVAE on Fashion-MNIST, batch 128) three paths train the
same networks, built from the same config, with the same optimisers and the same step function
(:func:`xgen.models.step.adversarial_step` for the GAN family, :func:`xgen.models.step.player_update`
for the VAEs):

* ``xgen``: the ``xgen`` command's own path, :func:`xgen.runtime.train.train` on the composed config, with its
  default callbacks, CSV logging and progress bar (only a :class:`~xgen.callbacks.throughput.Throughput`
  clock is added, and validation is skipped: it runs after the timed batches anyway);
* ``resident``: a hand loop over the training images held as a uint8 tensor (shuffled by ``randperm``);
* ``dataloader``: a hand loop over torchvision's ``FashionMNIST`` + ``DataLoader(ToTensor())``.

The paths alternate (xgen, resident, dataloader, xgen, ...) for ``--rounds`` rounds so that they share
the machine's noise; the best round of each is reported with the ratios. For InfoGAN the step's
FLOPs (``torch.utils.flop_counter``) times its step rate is compared with the machine's fp32 matmul peak
measured here (``torch.mm`` of 2048x2048 on the same threads). Peak memory: the process's resident set
during each path (CPU), or ``torch.cuda.max_memory_allocated`` (GPU). One JSON line per model.

    OMP_NUM_THREADS=1 python bench/bench_speed.py [--models gan vae] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

# model -> (config overrides, timed steps per path, warm-up steps)
MODELS = {
    "gan": (["model=gan"], 150, 10),
    "dcgan": (["model=dcgan"], 20, 5),
    "infogan": (["model=infogan"], 15, 5),
    "vae": (["model=vae", "model/net=mlp"], 300, 20),
    "info_vae": (["model=info_vae", "model/net=mlp"], 300, 20),
}
BATCH = 128


# ----------------------------------------------------------------------------- helpers
class PeakRSS:
    """The process's peak resident set (MiB) while the block runs, sampled every 5 ms from /proc."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
        except OSError:  # not Linux
            return float("nan")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self) -> "PeakRSS":
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())
        if torch.cuda.is_available():
            self.cuda_peak = torch.cuda.max_memory_allocated() / 2 ** 20


def compose(overrides: list[str], run_dir: Path):
    from hydra import compose as _compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from xgen.runtime.cli import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = _compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


def build_model(cfg):
    """The model exactly as :func:`xgen.runtime.train.build` makes it (same config, same seed)."""
    import lightning as L

    from xgen.runtime.compose import instantiate

    L.seed_everything(int(cfg.seed), verbose=False)
    return instantiate(cfg.model, "model", image_shape=[1, 28, 28], _recursive_=False, _convert_="all")


def make_step(model):
    """The training step of ``model`` as the library defines it: the same function xgen's modules call."""
    from xgen.models.step import adversarial_step, player_update

    opts = model.configure_optimizers()
    if hasattr(model, "discriminator_terms"):  # the GAN family
        opt_g, opt_d = opts

        def step(x: torch.Tensor) -> None:
            adversarial_step(lambda: model.discriminator_terms(x), lambda: model.generator_terms(x.shape[0], x),
                             opt_d, opt_g, model._d_params, model._g_params)
    else:
        params = list(model.parameters())

        def step(x: torch.Tensor) -> None:
            player_update(model.terms(x)["loss"], opts, params)
    return step


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- the three paths
def run_xgen(overrides: list[str], steps: int, warmup: int, tmp: Path) -> float:
    from xgen.runtime.train import train

    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    out = run_dir / "throughput.json"
    cfg = compose([*overrides, "data=fashion_mnist", f"data.batch_size={BATCH}", "data.download=false",
                   "trainer.max_epochs=1", f"+trainer.limit_train_batches={warmup + steps}",
                   "+trainer.limit_val_batches=0", "test=false",
                   "+callbacks.throughput._target_=xgen.callbacks.throughput.Throughput",
                   f"+callbacks.throughput.warmup={warmup}", f"+callbacks.throughput.steps={steps}",
                   f"+callbacks.throughput.path={out}"], run_dir)
    train(cfg, run_dir)
    return json.loads(out.read_text())["images_per_s"]


def run_resident(overrides: list[str], steps: int, warmup: int, images: torch.Tensor, tmp: Path) -> float:
    from xgen.data import to_value_range

    model = build_model(compose([*overrides, "data=fashion_mnist"], tmp)).train()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    step, rng = make_step(model), tuple(model.value_range)
    images = images.to(device)
    order = torch.randperm(images.shape[0], device=device)
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        j = (i * BATCH) % (images.shape[0] - BATCH)
        step(to_value_range(images[order[j:j + BATCH]], rng))
    sync()
    return steps * BATCH / (time.perf_counter() - t0)


def run_dataloader(overrides: list[str], steps: int, warmup: int, tv_root: Path, tmp: Path) -> float:
    from torchvision import datasets, transforms

    model = build_model(compose([*overrides, "data=fashion_mnist"], tmp)).train()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    step = make_step(model)
    t = [transforms.ToTensor()] + ([transforms.Normalize((0.5,), (0.5,))] if tuple(model.value_range) == (-1.0, 1.0) else [])
    ds = datasets.FashionMNIST(str(tv_root), train=True, download=False, transform=transforms.Compose(t))
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=0,
                                         pin_memory=device.type == "cuda")
    done = 0
    while done < warmup + steps:
        for x, _ in loader:
            if done == warmup:
                sync()
                t0 = time.perf_counter()
            step(x.to(device, non_blocking=True))
            done += 1
            if done == warmup + steps:
                break
    sync()
    return steps * BATCH / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- FLOPs
def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of an n x n matmul on this process's threads (device of the benchmark)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def step_flops(overrides: list[str], tmp: Path) -> int:
    """FLOPs of one training step (forward and backward matmuls and convolutions), batch 128."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(compose([*overrides, "data=fashion_mnist"], tmp)).train()
    step = make_step(model)
    x = torch.rand(BATCH, 1, 28, 28) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        step(x)
    return int(counter.get_total_flops())


def torchvision_root(tmp: Path) -> Path:
    """torchvision's FashionMNIST layout (uncompressed IDX files), unpacked from the files xgen reads."""
    from xgen.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(download=False)
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        src = Path(dm._find(name))
        with (gzip.open if src.suffix == ".gz" else open)(src, "rb") as f, open(raw / name, "wb") as g:
            shutil.copyfileobj(f, g)
    return tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CI machine is shared: 1)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every model's timed steps")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "xgen"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from xgen.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(download=False)
    dm.setup("fit")
    images = dm.split("train")[0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    peak = matmul_peak()
    print(json.dumps({"bench": "matmul_peak", "gflops": round(peak / 1e9, 2), **machine}), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="xgen-bench-speed-"))
    try:
        tv_root = torchvision_root(tmp / "tv")
        for m in a.models:
            overrides, steps, warmup = MODELS[m]
            steps = max(2, int(steps * a.scale))
            res = {"xgen": [], "resident": [], "dataloader": []}
            mem = {k: 0.0 for k in res}
            for _ in range(a.rounds):
                for path in res:
                    with PeakRSS() as p:
                        if path == "xgen":
                            v = run_xgen(overrides, steps, warmup, tmp)
                        elif path == "resident":
                            v = run_resident(overrides, steps, warmup, images, tmp)
                        else:
                            v = run_dataloader(overrides, steps, warmup, tv_root, tmp)
                    res[path].append(v)
                    mem[path] = max(mem[path], getattr(p, "cuda_peak", p.peak))
            best = {k: max(v) for k, v in res.items()}
            line = {"bench": "speed", "model": m, "batch": BATCH, "steps": steps, "rounds": a.rounds,
                    **{f"{k}_images_per_s": round(v, 1) for k, v in best.items()},
                    "xgen_over_resident": round(best["xgen"] / best["resident"], 3),
                    "xgen_over_dataloader": round(best["xgen"] / best["dataloader"], 3),
                    "all": {k: [round(x, 1) for x in v] for k, v in res.items()},
                    f"peak_{'cuda' if device == 'cuda' else 'rss'}_mib": {k: round(v, 1) for k, v in mem.items()},
                    **machine}
            if m == "infogan":
                flops = step_flops(overrides, tmp)
                rate = flops * best["xgen"] / BATCH
                line.update({"step_gflop": round(flops / 1e9, 3), "xgen_gflops": round(rate / 1e9, 2),
                             "matmul_peak_gflops": round(peak / 1e9, 2), "fraction_of_peak": round(rate / peak, 3)})
            print(json.dumps(line), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
