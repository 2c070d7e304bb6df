#!/usr/bin/env python3
"""Retrain the explainability checkpoints shipped in ``src/xgen/weights/explain_*.pt`` — bit for bit.

Each file is an ``xgen`` training run (fixed seed, ``trainer.deterministic=true``, one CPU thread)
converted to a small checkpoint :func:`xgen.models.load_model` reads (``weights_only=True``): the
model class, its hyperparameters and its state_dict with floating tensors stored in half precision,
plus the run's test scores and the command. Usage::

    PYTHONPATH=src python scripts/train_explain_models.py                    # all, into src/xgen/weights
    PYTHONPATH=src python scripts/train_explain_models.py --only infogan --out /tmp/w
    PYTHONPATH=src python scripts/train_explain_models.py --check            # retrain into a temp dir, compare

Bit-for-bit holds for the same torch version, CPU and thread count (recorded in each file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_classifiers import same_weights, sha256  # noqa: E402  (the sibling script's file checks)

# name -> the xgen overrides of that run
RUNS: dict[str, list[str]] = {
    # the InfoGAN paper's MNIST nets and latent (z 62, 1 cat(10), 2 cont; thesis run 114's layout), D's
    # BatchNorm on separate real/generated batches (docs/explain.md: joint reached 0.40 after 2 epochs)
    "infogan": ["data=fashion_mnist", "model=infogan", "model.d_batch=separate", "callbacks=gan",
                "trainer.max_epochs=2"],
    # the thesis's Decision-Map InfoVAE (§4.4): latent size 4
    "infovae": ["data=fashion_mnist", "model=info_vae", "model.latent_dim=4", "trainer.max_epochs=5"],
}
FILES = {"infogan": "explain_infogan_fashion_mnist.pt", "infovae": "explain_infovae_fashion_mnist.pt",
         "encoder": "explain_infogan_encoder_fashion_mnist.pt"}
# the inversion encoder of the shipped InfoGAN (xgen.explain.train_inversion), trained after it
ENCODER = {"steps": 1500, "batch_size": 64, "lr": 1e-3, "image_weight": 1.0, "real": 10000, "seed": 0}
INT8 = {"infogan"}  # the paper's nets: int8 weight matrices keep all shipped weights under 20 MB
SCORES = {"infogan": ("test/cat_acc",), "infovae": ("test/nelbo", "test/rec", "test/kl")}
# the seed of each shipped run: InfoGAN's categorical code depends on it (seeds 1 and 2 were trained,
# the one with the better validation code accuracy after 2 epochs is shipped; docs/explain.md)
SEEDS = {"infogan": 2, "infovae": 0}
COMMON = ["trainer.accelerator=cpu", "trainer.deterministic=true", "logger=csv",
          "callbacks.progress_bar=null", "callbacks.sample_grids=null", "trainer.enable_model_summary=false"]
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "xgen" / "weights"


def half_state(state: dict) -> dict:
    """Floating tensors in float16 (loading casts them back into the float32 parameters)."""
    return {k: (v.detach().cpu().to(dtype=__import__("torch").float16) if v.is_floating_point() else v.detach().cpu())
            .clone().contiguous() for k, v in state.items()}


def convert(ckpt_path: Path, out: Path, meta: dict, int8: bool = False) -> Path:
    """Write a Lightning checkpoint as a weights-only xgen checkpoint: floating tensors in half precision,
    and with ``int8`` its large weight matrices as int8 with per-row scales (xgen.checkpoint.safety.quantize_int8;
    ``load_model`` dequantises them), with the digest of what is stored."""
    import torch

    from xgen.checkpoint.safety import INT8_KEY, add_digest, quantize_int8

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    scales: dict = {}
    if int8:
        state, scales = quantize_int8(state)
    record = {"xgen_class": ckpt["xgen_class"], "hyper_parameters": dict(ckpt.get("hyper_parameters") or {}),
              "state_dict": half_state(state), "xgen_meta": meta}
    if scales:
        record[INT8_KEY] = {k: v.float().contiguous() for k, v in scales.items()}  # float32: tiny
    add_digest(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, out)
    return out


def train_one(name: str, out_dir: Path, threads: int, keep: Path | None = None, resume: Path | None = None) -> Path:
    """Run the xgen training job ``name`` and write its shipped checkpoint. ``resume``: a kept run
    directory of the same job with fewer epochs, continued to the configured number (xgen resumes bit
    for bit, so the result equals a run from scratch)."""
    import torch

    overrides = RUNS[name] + [f"seed={SEEDS[name]}"] + COMMON
    extra = [f"ckpt_path={resume / 'checkpoints' / 'last.ckpt'}"] if resume is not None else []
    with tempfile.TemporaryDirectory(prefix=f"xgen-explain-{name}-") as tmp:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONHASHSEED="0", CUBLAS_WORKSPACE_CONFIG=":4096:8")
        cmd = [sys.executable, "-m", "xgen", *overrides, *extra, f"hydra.run.dir={tmp}"]
        print("+", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=str(REPO))
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        scores = {k: summary["metrics"].get(k) for k in SCORES[name]}
        meta = {"command": "xgen " + " ".join(overrides), "scores": scores, "dataset": "fashion_mnist",
                "torch_version": str(torch.__version__), "threads": threads,
                "resumed_from_epochs_of": str(resume) if resume is not None else None}
        last = Path(tmp) / "checkpoints" / "last.ckpt"
        if not last.is_file() and resume is not None:  # the kept run had all its epochs: nothing was retrained
            last = resume / "checkpoints" / "last.ckpt"
        path = convert(last, out_dir / FILES[name], meta, int8=name in INT8)
        if keep is not None:
            shutil.copytree(tmp, keep / name, dirs_exist_ok=True)
    print(f"{path}: {json.dumps(scores)} size={path.stat().st_size / 1e6:.2f} MB sha256={sha256(path)[:16]}",
          flush=True)
    return path


def train_encoder(out_dir: Path, threads: int) -> Path:
    """Fit the inversion encoder of ``out_dir``'s InfoGAN and write it (half precision) with its test
    reconstruction error."""
    import torch

    from xgen.data.base import to_value_range
    from xgen.data.mnist import FashionMNISTDataModule
    from xgen.explain.inversion import InvertedGAN, reconstruction_error, save_encoder, train_inversion
    from xgen.models import load_model

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    gan = load_model(out_dir / FILES["infogan"])
    dm = FashionMNISTDataModule()
    xtr, _ = dm.load_split("train")
    xte, _ = dm.load_split("test")
    real = to_value_range(xtr[:ENCODER["real"]], gan.value_range)
    print(f"+ train_inversion({FILES['infogan']}, {ENCODER})", flush=True)
    enc = train_inversion(gan, steps=ENCODER["steps"], batch_size=ENCODER["batch_size"], lr=ENCODER["lr"],
                          image_weight=ENCODER["image_weight"], real_images=real, seed=ENCODER["seed"],
                          log_every=500)
    enc = enc.half().float()  # score what is shipped: the half-precision weights
    test = to_value_range(xte[:1000], gan.value_range)
    scores = {"test_mse_encoder": reconstruction_error(InvertedGAN(gan, enc), test),
              "test_mse_refined_50": reconstruction_error(InvertedGAN(gan, enc, refine_steps=50), test)}
    path = save_encoder(out_dir / FILES["encoder"], enc.half(), gan=FILES["infogan"], settings=ENCODER,
                        scores=scores, torch_version=str(torch.__version__), threads=threads)
    print(f"{path}: {json.dumps(scores)} size={path.stat().st_size / 1e6:.2f} MB sha256={sha256(path)[:16]}", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=None, choices=list(FILES),
                    help="train only these (repeatable; encoder needs the infogan file in --out)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (part of bit-for-bit reproducibility)")
    ap.add_argument("--keep", type=Path, default=None, help="also copy each run directory here")
    ap.add_argument("--resume", type=Path, default=None,
                    help="continue a run directory kept with --keep (same job, fewer epochs) instead of starting over")
    ap.add_argument("--check", action="store_true",
                    help="retrain into a temp dir and compare with the shipped files bit for bit")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="xgen-explain-weights-")) if args.check else args.out
    ok = True
    for name in args.only or list(FILES):
        if name == "encoder":
            if args.check and not (out / FILES["infogan"]).is_file():
                shutil.copy(DEFAULT_OUT / FILES["infogan"], out / FILES["infogan"])
            path = train_encoder(out, args.threads)
        else:
            path = train_one(name, out, args.threads, args.keep, args.resume)
        if args.check:
            shipped = DEFAULT_OUT / path.name
            same = shipped.is_file() and same_weights(path, shipped)
            ok &= same
            print(f"{path.name}: {'identical to' if same else 'DIFFERENT from'} {shipped}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
