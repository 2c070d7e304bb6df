#!/usr/bin/env python3
"""Retrain the classifiers whose weights ship in ``src/xgen/weights/`` — bit for bit.

Each weight file is the ``net`` state_dict of an ``xgen model=classifier[_strong]`` run, trained with a
fixed seed, ``trainer.deterministic=true`` (torch.use_deterministic_algorithms) and a fixed number of
CPU threads, plus the metadata :mod:`xgen.metrics.features` needs (architecture, image shape, test
accuracy, the command). Usage::

    PYTHONPATH=src python scripts/train_classifiers.py                 # all, into src/xgen/weights
    PYTHONPATH=src python scripts/train_classifiers.py --only fashion_mnist:thesis --out /tmp/w
    PYTHONPATH=src python scripts/train_classifiers.py --check         # retrain into a temp dir, compare

Bit-for-bit holds for the same torch version, CPU and thread count (recorded in each file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# (dataset, arch) -> the xgen overrides of that run
RUNS: dict[tuple[str, str], list[str]] = {
    ("fashion_mnist", "thesis"): ["data=fashion_mnist", "model=classifier", "trainer.max_epochs=15"],
    ("fashion_mnist", "strong"): ["data=fashion_mnist", "model=classifier_strong", "trainer.max_epochs=12"],
    # data.repeat=1: the shipped digits weights were trained on one pass per epoch (the default is now 10)
    ("digits", "thesis"): ["data=digits", "data.repeat=1", "model=classifier", "trainer.max_epochs=20"],
    ("digits", "strong"): ["data=digits", "data.repeat=1", "model=classifier_strong", "trainer.max_epochs=15"],
}
COMMON = ["seed=0", "trainer.accelerator=cpu", "trainer.deterministic=true", "logger=csv",
          "callbacks.progress_bar=null", "callbacks.sample_grids=null", "trainer.enable_model_summary=false"]
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "xgen" / "weights"


def weight_name(dataset: str, arch: str) -> str:
    return f"classifier_{arch}_{dataset}.pt"


def train_one(dataset: str, arch: str, out_dir: Path, threads: int) -> Path:
    """Run the xgen training job for one (dataset, arch) and write its weight file."""
    import torch

    from xgen.metrics.features import write_classifier_weights
    from xgen.models import load_model

    overrides = RUNS[(dataset, arch)] + COMMON
    with tempfile.TemporaryDirectory(prefix=f"xgen-clf-{dataset}-{arch}-") as tmp:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONHASHSEED="0", CUBLAS_WORKSPACE_CONFIG=":4096:8")
        cmd = [sys.executable, "-m", "xgen", *overrides, f"hydra.run.dir={tmp}"]
        print("+", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=str(REPO))
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        model = load_model(str(Path(tmp) / "checkpoints" / "last.ckpt"))
    net_cfg = {k: v for k, v in dict(model.hparams.net).items() if k != "_target_"}
    path = write_classifier_weights(
        out_dir / weight_name(dataset, arch), model.net, arch, model.image_shape, model.num_classes, net_cfg,
        dataset=dataset, test_acc=summary["metrics"].get("test/acc"), val_acc=summary["metrics"].get("val/acc"),
        command="xgen " + " ".join(overrides), torch_version=str(torch.__version__), threads=threads)
    record = {"test_acc": summary["metrics"].get("test/acc")}
    print(f"{path}: test/acc={record['test_acc']:.4f} sha256={sha256(path)[:16]}", flush=True)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_weights(a: Path, b: Path) -> bool:
    """True when two weight files hold bitwise identical tensors."""
    import torch

    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=None, metavar="DATASET:ARCH",
                    help=f"train only these (repeatable); choices: {', '.join(f'{d}:{a}' for d, a in RUNS)}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (part of bit-for-bit reproducibility)")
    ap.add_argument("--check", action="store_true",
                    help="retrain into a temp dir and compare with the shipped files bit for bit")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    keys = list(RUNS) if not args.only else [tuple(s.split(":", 1)) for s in args.only]
    for k in keys:
        if k not in RUNS:
            ap.error(f"unknown run {':'.join(k)}; choose from {', '.join(f'{d}:{a}' for d, a in RUNS)}")
    out = Path(tempfile.mkdtemp(prefix="xgen-weights-")) if args.check else args.out
    ok = True
    for dataset, arch in keys:
        path = train_one(dataset, arch, out, args.threads)
        if args.check:
            shipped = DEFAULT_OUT / path.name
            same = shipped.is_file() and same_weights(path, shipped)
            ok &= same
            print(f"{path.name}: {'identical to' if same else 'DIFFERENT from'} {shipped}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
