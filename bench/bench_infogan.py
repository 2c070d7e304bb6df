"""InfoGAN training throughput (images/s) through xgen against a plain PyTorch loop, same process.

Both train the same networks (built by the same InfoGAN module) with the same losses, optimisers and
batch size on Fashion-MNIST. The plain loop reads the data the usual way: torchvision's FashionMNIST
with ToTensor + Normalize and a DataLoader; xgen trains through Lightning with its in-memory data
module. Measurements alternate (xgen, plain, xgen, plain, ...) to share the machine's noise; the
script prints one JSON line with the best of each and the ratio xgen / plain (>= 1: xgen no slower).

    OMP_NUM_THREADS=1 python bench/bench_infogan.py [--net paper|small] [--steps 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from xgen.data import FashionMNISTDataModule
from xgen.models import InfoGAN, info_terms

SMALL = {"generator": {"_target_": "xgen.nets.gan.ConvGenerator", "channels": [64, 32], "hidden": 512},
         "discriminator": {"_target_": "xgen.nets.gan.ConvDiscriminator", "channels": [32, 64], "hidden": 512,
                           "slope": 0.1}}


def make_model(net: str, seed: int = 0) -> InfoGAN:
    torch.manual_seed(seed)
    return InfoGAN(image_shape=(1, 28, 28), **(SMALL if net == "small" else {}))


class _Clock(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.batches = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.end, self.batches = time.perf_counter(), self.batches + 1


def xgen_images_per_s(net: str, steps: int, warmup: int, batch: int, root: str) -> float:
    model = make_model(net)
    clock = _Clock(warmup)
    dm = FashionMNISTDataModule(root=root, batch_size=batch, val_size=5000, download=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=warmup + steps,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(model, datamodule=dm)
    return clock.batches * batch / (clock.end - clock.start)


def torchvision_root(src: Path, dst: Path) -> Path:
    """torchvision's FashionMNIST folder layout, unpacked from the IDX .gz files xgen reads."""
    raw = dst / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        gz, plain = src / f"{name}.gz", src / name
        if not (raw / name).exists():
            if gz.exists():
                with gzip.open(gz) as f, open(raw / name, "wb") as out:
                    shutil.copyfileobj(f, out)
            else:
                shutil.copy(plain, raw / name)
    return dst


def plain_images_per_s(net: str, steps: int, warmup: int, batch: int, tv_root: Path) -> float:
    """The hand-written loop: DataLoader batches, D step (BCE + info), G step (BCE + info)."""
    from torchvision import datasets, transforms

    model = make_model(net)
    G, D, Q, spec = model.generator, model.discriminator, model.q_head, model.latent
    ds = datasets.FashionMNIST(str(tv_root), train=True, download=False,
                               transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=0)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(D.parameters()) + list(Q.parameters()), lr=2e-4, betas=(0.5, 0.999))
    start, done = None, 0
    for i, (x, _) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        codes = spec.sample_codes(batch)
        with torch.no_grad():
            fake = G(spec.assemble(codes))
        real_logit, _ = D(x)
        fake_logit, feat = D(fake)
        t = info_terms(spec, *Q(feat), codes)
        loss_d = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean() + t["nll_cat"] + 0.1 * t["nll_cont"]
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        for p in Q.parameters():
            p.requires_grad_(False)
        codes = spec.sample_codes(batch)
        fake_logit, feat = D(G(spec.assemble(codes)))
        t = info_terms(spec, *Q(feat), codes)
        loss_g = F.softplus(-fake_logit).mean() + t["nll_cat"] + 0.1 * t["nll_cont"]
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in list(D.parameters()) + list(Q.parameters()):
            p.requires_grad_(True)
        if i >= warmup:
            done += 1
        if done == steps:
            break
    return done * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=["paper", "small"], default="paper")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--root", default=None, help="folder with the Fashion-MNIST IDX files (default: xgen's search)")
    args = ap.parse_args()
    dm = FashionMNISTDataModule(root=args.root)
    dm.prepare_data()
    src = Path(dm._find("train-images-idx3-ubyte")).parent
    xs, ps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tv_root = torchvision_root(src, Path(tmp))
        for _ in range(args.rounds):
            xs.append(xgen_images_per_s(args.net, args.steps, args.warmup, args.batch, str(src)))
            ps.append(plain_images_per_s(args.net, args.steps, args.warmup, args.batch, tv_root))
    print(json.dumps({"bench": "infogan_train", "net": args.net, "batch": args.batch, "steps": args.steps,
                      "threads": torch.get_num_threads(), "xgen_images_per_s": round(max(xs), 1),
                      "plain_images_per_s": round(max(ps), 1), "ratio_xgen_over_plain": round(max(xs) / max(ps), 3),
                      "all_xgen": [round(v, 1) for v in xs], "all_plain": [round(v, 1) for v in ps]}))


if __name__ == "__main__":
    main()
