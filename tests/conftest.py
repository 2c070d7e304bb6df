"""Shared fixtures: Hydra composition of xgen's shipped configs, small offline data; pinned threads.

Threads: every test runs with ``XGEN_TEST_THREADS`` (default 1) intra-op threads, and the OpenMP / MKL /
OpenBLAS variables are set to the same before torch is imported, so that ``xgen`` subprocesses the
tests start inherit them. With more threads than free cores, OpenMP's threads wait for each other at
every parallel region while the other processes hold the cores: on a loaded 2-core machine
tests/explain/test_activation_max.py took 9 min with 2 threads against 44 s idle (README, "Tests").
"""

from __future__ import annotations

import os
from pathlib import Path

THREADS = int(os.environ.get("XGEN_TEST_THREADS", "1"))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(THREADS)  # before torch is imported (it reads them once), and for subprocesses

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(THREADS)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def compose(tmp_path):
    """compose(overrides) -> the composed training config, run directory set to tmp_path/run."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from xgen.runtime.cli import CONFIG_DIR

    def _make(overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = _compose("train", overrides=list(overrides or []), return_hydra_config=False)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    yield _make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def fashion_available():
    """Fashion-MNIST from Debian's dataset-fashion-mnist; required in CI, skipped elsewhere."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail("CI must install dataset-fashion-mnist (make data)")
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return FASHION_DIR


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny runs on shared cores were measured up to 10-15x slower with
    two (k-GAN keys 40 s -> 2.6 s; docs/gan.md). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
