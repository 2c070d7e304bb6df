"""InfoGAN under DDP (2 CPU processes, gloo) completes and logs the same metric keys as one process."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, list[str]]:
    run_dir = tmp_path / name
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    model = [o for o in overrides if o.startswith("model=")] or ["model=infogan"]
    net = ["model/net=infogan_small"] if model[0] in ("model=infogan", "model=ss_infogan") else []
    cmd = [sys.executable, "-m", "xgen", *model, *net, "data=digits", "debug=fast",
           "callbacks=gan", f"hydra.run.dir={run_dir}", *[o for o in overrides if not o.startswith("model=")]]  # the preset's own progress bar included
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv") as f:
        header = next(csv.reader(f))
    return summary, header


@pytest.mark.slow
def test_infogan_ddp_cpu_logs_the_same_keys_as_one_process(tmp_path):
    single, single_header = _run(tmp_path, "single", "trainer=cpu")
    ddp, ddp_header = _run(tmp_path, "ddp", "trainer=ddp_cpu")
    assert single["status"] == ddp["status"] == "completed"
    assert set(ddp["metrics"]) == set(single["metrics"])
    assert set(ddp_header) == set(single_header)
    for key in ("train/loss_d", "train/loss_g", "train/mi_cat", "train/mi_cont", "val/mi_cat", "test/cat_acc"):
        assert key in ddp["metrics"]
    # 2 processes x 5 batches each: both players stepped on every batch of every process
    assert ddp["global_step"] == single["global_step"] == 10


def _average_worker(rank: int, port: int, out) -> None:
    import types

    import torch
    import torch.distributed as dist

    from xgen.models import GAN

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = GAN(image_shape=(1, 8, 8), latent={"noise": 4, "categorical": [], "continuous": 0},
                    generator={"_target_": "xgen.nets.gan.MLPGenerator", "hidden": [8]},
                    discriminator={"_target_": "xgen.nets.gan.MLPDiscriminator", "hidden": [8]})
        model._trainer = types.SimpleNamespace(world_size=2)  # what the method reads from the trainer
        model._sync_grads = True
        params = list(model.generator.parameters())
        for i, p in enumerate(params):
            p.grad = torch.full_like(p, float(rank + 1) * (i + 1))  # rank 0: i+1, rank 1: 2(i+1)
        params[-1].grad = None if rank == 0 else params[-1].grad  # a player without a gradient counts as 0
        model._average_grads(params)
        out.put((rank, [p.grad.unique().tolist() for p in params]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_player_gradients_are_averaged_over_processes():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_average_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    n = len(results[0])
    expected = [[1.5 * (i + 1)] for i in range(n - 1)] + [[(0 + 2.0 * n) / 2]]
    assert results[0] == results[1] == expected


@pytest.mark.slow
def test_readme_ddp_command_with_the_default_callbacks(tmp_path):
    """`xgen trainer=ddp_cpu data=digits debug=fast` as the README writes it: every default callback,
    progress bar included (it used to crash on rank 1 reading the bar's totals)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
           "XGEN_OUTPUT": str(tmp_path / "outputs")}
    proc = subprocess.run([sys.executable, "-m", "xgen", "trainer=ddp_cpu", "data=digits", "debug=fast"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "train").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["devices"]) == 2
