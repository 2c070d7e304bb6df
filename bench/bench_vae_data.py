"""VAE training throughput: xgen (Lightning + device-resident uint8 data) vs a hand-written loop fed by
torchvision's FashionMNIST + DataLoader(ToTensor()), the same networks, in one process.

Prints one JSON line per network family (``conv``: the default VAE nets, ``mlp``: model/net=mlp) with
images/s of each path and the ratio xgen / torchvision. Timings on shared machines are noisy: compare
the ratio, not the seconds. Usage: ``python bench/bench_vae_data.py [--steps 150] [--nets conv mlp]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from xgen.data import FashionMNISTDataModule
from xgen.models import VAE

NETS = {
    "conv": ({"_target_": "xgen.nets.vae.ConvEncoder"}, {"_target_": "xgen.nets.vae.ConvDecoder"}),
    "mlp": ({"_target_": "xgen.nets.vae.MLPEncoder"}, {"_target_": "xgen.nets.vae.MLPDecoder"}),
}


class _Clock(L.Callback):
    """Wall time from the start of batch `warmup` to the end of the last batch."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.t1 = time.perf_counter()


def make_model(nets: str, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    enc, dec = NETS[nets]
    return VAE(image_shape=(1, 28, 28), latent_dim=16, encoder=enc, decoder=dec)


def xgen_images_per_s(nets: str, steps: int, warmup: int, batch_size: int) -> float:
    dm = FashionMNISTDataModule(batch_size=batch_size, download=False)
    clock = _Clock(warmup)
    trainer = L.Trainer(max_steps=warmup + steps, accelerator="auto", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(make_model(nets), datamodule=dm)
    return steps * batch_size / (clock.t1 - clock.t0)


def torchvision_root() -> Path:
    """torchvision wants uncompressed files in <root>/FashionMNIST/raw; unpack Debian's .gz there."""
    dm = FashionMNISTDataModule(download=False)
    tmp = Path(tempfile.mkdtemp(prefix="xgen-bench-"))
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        src = dm._find(name)
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as f, open(raw / name, "wb") as g:
            shutil.copyfileobj(f, g)
    return tmp


def torchvision_images_per_s(root: Path, nets: str, steps: int, warmup: int, batch_size: int,
                             workers: int) -> float:
    from torchvision import datasets, transforms

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ds = datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)
    model = make_model(nets).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    done, t0 = 0, None
    while done < warmup + steps:
        for x, _ in loader:
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            x = x.to(device, non_blocking=True)
            loss = model.terms(x)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == warmup + steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--nets", nargs="+", default=["conv", "mlp"], choices=sorted(NETS))
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the torchvision path")
    a = ap.parse_args()
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = torchvision_root()
    try:
        for nets in a.nets:
            tv = torchvision_images_per_s(root, nets, a.steps, a.warmup, a.batch_size, a.workers)
            xg = xgen_images_per_s(nets, a.steps, a.warmup, a.batch_size)
            print(json.dumps({"bench": "vae_data_path", "nets": nets, "batch_size": a.batch_size,
                              "steps": a.steps, "xgen_images_per_s": round(xg, 1),
                              "torchvision_images_per_s": round(tv, 1), "torchvision_workers": a.workers,
                              "ratio_xgen_over_torchvision": round(xg / tv, 3),
                              "device": "cuda" if torch.cuda.is_available() else "cpu",
                              "threads": torch.get_num_threads(), "machine": platform.machine()}),
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
