"""InfoGAN under DDP (2 CPU processes, gloo) completes and logs the same metric keys as one process."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, list[str]]:
    run_dir = tmp_path / name
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "xgen", "model=infogan", "model/net=infogan_small", "data=digits", "debug=fast",
           "callbacks=gan", "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}", *overrides]
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
