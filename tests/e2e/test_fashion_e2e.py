"""End to end on real Fashion-MNIST (a few hundred steps): the numbers a user would see."""

from __future__ import annotations

import json

import pytest

from xgen.runtime.train import train

pytestmark = pytest.mark.slow


def test_vae_learns_fashion_mnist(compose, tmp_path, fashion_available):
    cfg = compose(["model=vae", "data=fashion_mnist", "trainer.max_epochs=2", "data.train_subset=12800",
                   "trainer.accelerator=cpu", "callbacks.progress_bar=null", "data.val_size=1000",
                   "+trainer.limit_test_batches=1"])
    s = train(cfg)
    m = s["metrics"]
    # a model that ignores the input scores ~ 350+ nats on Fashion-MNIST val; 200 steps must do far better
    assert m["val/nelbo"] < 300, m
    assert m["val/kl"] > 2.0  # the latent is used
    assert (tmp_path / "run" / "samples" / "reconstructions_final.png").stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["global_step"] == 200
