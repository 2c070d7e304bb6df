"""GPU readiness in one run (``make bench-gpu``): every model, the speed options, job packing, the FID
callback and the explain tools on CUDA, and the GPU rows of the speed benchmark, in about 8 minutes.

Each step runs the way a user runs it (the ``xgen`` command with its default callbacks, logging and
progress bar) as its own process, with a time limit; a step that fails is recorded with its exit status
and last error line, and the rest still run. The result is one JSON line::

    {"bench": "gpu", "device": "NVIDIA H200", "steps": [{"step": "train gan", "ok": true, "seconds": 21.4,
     "images_per_s": 41000.0, ...}, ...], "ok": 17, "failed": 0, "seconds": 431.2}

On a machine without CUDA it prints one line saying so and exits 0 (``--cpu-smoke`` runs the same steps
on the CPU with a few batches each, to check the commands themselves; no GPU numbers come from it).

    python bench/bench_gpu.py [--budget 480] [--steps 300] [--cpu-smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ("gan", "dcgan", "infogan", "vae", "info_vae", "kgan")


def xgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "xgen", *args]


def plan(tmp: Path, steps: int, cpu: bool) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in seconds) of every step, in order."""
    trainer = "trainer=cpu" if cpu else "trainer=gpu"
    warm = min(20, max(1, steps // 5))

    def train(name: str, *extra: str, limit: int = 60) -> tuple[str, list[str], int]:
        run = tmp / name.replace(" ", "_").replace("=", "-")
        clock = ["+callbacks.throughput._target_=xgen.callbacks.throughput.Throughput",
                 f"+callbacks.throughput.warmup={warm}", f"+callbacks.throughput.path={run}/throughput.json"]
        return (name, xgen(trainer, "data=fashion_mnist", f"++trainer.max_steps={steps + warm}", "trainer.max_epochs=1",
                           "test=false", "++trainer.limit_val_batches=0", f"hydra.run.dir={run}", *clock, *extra), limit)

    out: list[tuple[str, list[str], int]] = [train(f"train {m}", f"model={m}") for m in MODELS]
    for m in ("dcgan", "infogan"):
        out.append(train(f"{m} bf16", f"model={m}", "trainer.precision=bf16-mixed"))
        out.append(train(f"{m} compile", f"model={m}", "speed.compile=true", limit=120))
        out.append(train(f"{m} cuda graph", f"model={m}", "speed.cuda_graph=true"))
    out.append(train("infogan fid callback", "model=infogan", "callbacks=fid", "++trainer.limit_val_batches=2",
                     "callbacks.fid.every_n_epochs=1", limit=120))
    sweep = tmp / "packing"
    out.append(("packing jobs_per_gpu=4", xgen("-m", trainer, "hydra/launcher=gpu_shared", "jobs_per_gpu=4",
                                              "model=gan", "data=fashion_mnist", "seed=1,2,3,4",
                                              f"++trainer.max_steps={steps}", "trainer.max_epochs=1", "test=false",
                                              "++trainer.limit_val_batches=0", f"hydra.sweep.dir={sweep}"), 120))
    dev = "cpu" if cpu else "cuda"
    out.append(("explain grid", xgen("explain", "grid", "--device", dev, "--out", str(tmp / "grid")), 90))
    out.append(("explain decision-map", xgen("explain", "decision-map", "--device", dev, "--images", "0-3",
                                             "--out", str(tmp / "dmap")), 90))
    scale = "0.05" if cpu else "1"
    out.append(("speed benchmark", [sys.executable, str(REPO / "bench" / "bench_speed.py"), "--rounds", "1",
                                    "--scale", scale], 240))
    return out


def run_step(name: str, cmd: list[str], limit: int, env: dict[str, str]) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env, cwd=REPO)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = 124, "", f"time limit {limit} s"
    row = {"step": name, "ok": rc == 0, "seconds": round(time.perf_counter() - t0, 1)}
    if rc != 0:
        lines = [ln for ln in (err or out or "").strip().splitlines() if ln.strip()]
        row.update(rc=rc, error=lines[-1][:300] if lines else "")
    for arg in cmd:  # the Throughput callback's file
        if arg.startswith("+callbacks.throughput.path="):
            f = Path(arg.split("=", 1)[1])
            if f.is_file():
                row["images_per_s"] = json.loads(f.read_text()).get("images_per_s")
    if name == "speed benchmark" and rc == 0:
        row["rows"] = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=480.0, help="seconds; steps that would start later are skipped")
    ap.add_argument("--steps", type=int, default=300, help="timed training batches per run")
    ap.add_argument("--cpu-smoke", action="store_true", help="no CUDA: run every step on the CPU, a few batches each")
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not a.cpu_smoke:
        print(json.dumps({"bench": "gpu", "skipped": "no CUDA device on this machine (torch "
                          f"{torch.__version__}); run it where one is"}))
        return 0
    steps = 3 if a.cpu_smoke else a.steps
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if a.cpu_smoke:
        env["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="xgen-bench-gpu-") as d:
        for name, cmd, limit in plan(Path(d), steps, a.cpu_smoke):
            if time.perf_counter() - t0 + min(limit, 30) > a.budget:
                rows.append({"step": name, "ok": False, "skipped": f"over the {a.budget:.0f} s budget"})
                continue
            rows.append(run_step(name, cmd, limit, env))
            print(f"bench-gpu: {name}: {'ok' if rows[-1]['ok'] else 'FAILED'} ({rows[-1]['seconds']} s)",
                  file=sys.stderr, flush=True)
    print(json.dumps({"bench": "gpu", "device": "cpu (smoke)" if a.cpu_smoke else torch.cuda.get_device_name(),
                      "torch": torch.__version__, "steps": rows, "ok": sum(r["ok"] for r in rows),
                      "failed": sum(not r["ok"] for r in rows), "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
