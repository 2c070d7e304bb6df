"""Shipped configs run, not just compose: every experiment trains a few batches, and the callback
presets compose from one config group per callback (``callbacks/<name>/<option>.yaml``).

Experiments run in-process (Hydra compose + :func:`xgen.runtime.train.train`), on ``digits`` (1,797 images, no
files) instead of Fashion-MNIST/MNIST, for one epoch of two batches of 32; what is scaled down (data,
batch size and count, the MI callback's sample count, checkpoints kept, the progress bar) is listed in
:data:`SMOKE`. Networks, latent layouts, losses and learning rates are the experiments' own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

CONF = Path(__file__).resolve().parents[2] / "src" / "xgen" / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SMOKE = ["data=digits", "data.batch_size=32", "trainer.accelerator=cpu", "trainer.max_epochs=1", "++trainer.limit_train_batches=2",
         "++trainer.limit_val_batches=1", "trainer.enable_model_summary=false", "test=false",
         "callbacks.progress_bar=null", "++trainer.enable_progress_bar=false",
         "callbacks.model_checkpoint.save_top_k=0", "logger=csv"]
# experiments on data with known factors keep their data (at a toy size) and a toy disentanglement budget
FACTOR_DATA = ["data.batch_size=32", "data.num_train=256", "data.num_val=64", "data.num_test=64",
               "callbacks.disentanglement.num_train=200", "callbacks.disentanglement.num_eval=100",
               "callbacks.disentanglement.num_variance=200", "callbacks.disentanglement.pool_size=256",
               "callbacks.disentanglement.covariance_images=64", "callbacks.disentanglement.forest_trees=5"]


def smoke_overrides(name: str) -> list[str]:
    """SMOKE for an experiment: digits unless its data has factors; MI on few samples where the preset has it."""
    base = [o for o in SMOKE if not (name.startswith("dsprites") and o.startswith(("data=", "data.batch_size")))]
    if name.startswith("dsprites"):
        base += FACTOR_DATA
    if "mutual_information" in (_compose([f"experiment={name}"]).callbacks or {}):
        base.append("callbacks.mutual_information.num_samples=64")
    return base


def _compose(overrides: list[str], run_dir: Path | None = None):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="xgen.conf", version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    if run_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)
    return cfg


def _callbacks(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(_compose(overrides).callbacks, resolve=False) or {}


# ------------------------------------------------------------------------------------------ presets
def test_presets_compose_to_the_callbacks_they_always_had():
    """The five presets, as before the split into one file per callback (same keys, order, values), plus
    the clean stop on signals and exact resume (configured in every preset but none; the runtime adds
    them to any config that lacks them, tests/runtime/test_signals.py)."""
    default, gan = _callbacks(["callbacks=default"]), _callbacks(["callbacks=gan"])
    assert list(default) == ["model_checkpoint", "sample_grids", "progress_bar", "stop_on_signal", "resume_state",
                             "lr_monitor"]
    assert default["stop_on_signal"] == {"_target_": "xgen.callbacks.signals.StopOnSignal",
                                         "run_dir": "${paths.output_dir}"}
    assert default["resume_state"] == {"_target_": "xgen.callbacks.resume.ResumeState"}
    assert default["model_checkpoint"]["save_top_k"] == 1 and default["model_checkpoint"]["save_last"] is True
    assert default["model_checkpoint"]["_target_"] == "xgen.callbacks.checkpoint.Checkpoint"  # atomic, every epoch
    assert default["sample_grids"] == {"_target_": "xgen.callbacks.SampleGrids", "every_n_epochs": 1,
                                       "num_samples": 64, "num_reconstructions": 32, "nrow": 8}
    assert default["lr_monitor"] is None
    assert list(gan) == ["model_checkpoint", "sample_grids", "mutual_information", "collapse_guard",
                         "dropout_schedule", "progress_bar", "stop_on_signal", "resume_state"]
    assert gan["model_checkpoint"] == default["model_checkpoint"]
    assert gan["sample_grids"] == {**default["sample_grids"], "num_reconstructions": 0, "traversal": True,
                                   "traversal_categorical": 0, "traversal_continuous": 0, "traversal_steps": 10,
                                   "traversal_span": [-1.0, 1.0]}
    assert gan["mutual_information"]["num_samples"] == 1000 and gan["collapse_guard"]["action"] == "warn"
    assert gan["dropout_schedule"] is None and gan["progress_bar"] == default["progress_bar"]
    assert gan["stop_on_signal"] == default["stop_on_signal"] and gan["resume_state"] == default["resume_state"]
    gan_dropout = _callbacks(["callbacks=gan_dropout"])
    assert list(gan_dropout) == list(gan)
    assert gan_dropout["dropout_schedule"] == {"_target_": "xgen.callbacks.DropoutSchedule", "p": 0.25, "layers": 2,
                                               "fraction": 0.5, "until_epoch": None}
    assert {k: v for k, v in gan_dropout.items() if k != "dropout_schedule"} == {k: v for k, v in gan.items()
                                                                                 if k != "dropout_schedule"}
    fid = _callbacks(["callbacks=fid"])
    assert list(fid) == [*default, "fid"] and {k: fid[k] for k in default} == default
    assert fid["fid"]["num_samples"] == 1000 and fid["fid"]["num_samples_final"] == 10000
    assert _callbacks(["callbacks=none"]) == {}


def test_any_callback_joins_any_preset():
    gan = _callbacks(["callbacks=gan"])
    both = _callbacks(["callbacks=gan", "+callbacks/fid=default"])
    assert list(both) == [*gan, "fid"] and {k: both[k] for k in gan} == gan
    assert both["fid"] == _callbacks(["callbacks=fid"])["fid"]
    assert _callbacks(["callbacks=gan", "+callbacks/dropout_schedule=default"]) == _callbacks(["callbacks=gan_dropout"])
    assert list(_callbacks(["callbacks=none", "+callbacks/fid=default"])) == ["fid"]
    # an experiment's preset plus FID
    exp = _callbacks(["experiment=infogan_fmnist_cpu", "+callbacks/fid=default"])
    assert list(exp) == [*gan, "fid"]
    # swap one callback's option, drop one
    assert "traversal" not in _callbacks(["callbacks=gan", "callbacks/sample_grids=default"])["sample_grids"]
    assert "collapse_guard" not in _callbacks(["callbacks=gan", "~callbacks/collapse_guard"])


def test_presets_that_disagree_on_a_callback_fail_loudly():
    """gan and fid (= default + FID) set model_checkpoint/sample_grids differently: Hydra refuses the
    pair rather than silently letting one win; +callbacks/fid=default is the way to add FID."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="Multiple values for callbacks/"):
        _callbacks(["callbacks=[gan,fid]"])
    with pytest.raises(ConfigCompositionException, match="callbacks/fid appears more than once"):
        _callbacks(["callbacks=fid", "+callbacks/fid=default"])


def test_infogan_with_gan_callbacks_and_fid_in_one_run(tmp_path):
    """`xgen model=infogan data=digits callbacks=gan +callbacks/fid=default`: both the MI bound and FID
    are logged in the same run (two tiny epochs)."""
    from xgen.runtime.train import train

    cache = tmp_path / "fid_cache"
    cfg = _compose(["model=infogan", "model/net=infogan_small", "callbacks=gan", "+callbacks/fid=default",
                    *[o for o in SMOKE if o != "trainer.max_epochs=1"], "trainer.max_epochs=2",
                    "callbacks.fid.num_samples=200", "callbacks.fid.arch=thesis", f"callbacks.fid.cache_dir={cache}"],
                   tmp_path / "run")
    summary = train(cfg, tmp_path / "run")
    m = summary["metrics"]
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert math.isfinite(m["val/fid"]) and m["val/fid"] > 0
    assert -0.5 < m["val/mi_cat"] < 0.5 * math.log(10)  # 2 epochs of 2 batches: near 0 still
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))  # every epoch logs both
    fid_epochs = {r["epoch"] for r in rows if r.get("val/fid")}
    mi_epochs = {r["epoch"] for r in rows if r.get("val/mi_cat")}
    assert fid_epochs == mi_epochs == {"0", "1"}
    assert len(list(cache.glob("*.pt"))) == 1  # real statistics computed once, cached


# ------------------------------------------------------------------------------------------ experiments
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_smoke_runs(name, tmp_path):
    """Each shipped experiment trains 2 batches on digits, validates, checkpoints, and the checkpoint
    rebuilds the model the experiment configures (class, latent layout, learning rates)."""
    from omegaconf import OmegaConf

    from xgen.models import load_model
    from xgen.runtime.train import train

    run = tmp_path / "run"
    cfg = _compose([f"experiment={name}", *smoke_overrides(name)], run)
    assert cfg.task_name == name
    summary = train(cfg, run)
    assert summary["status"] == "completed" and summary["global_step"] >= 2
    m = summary["metrics"]
    assert all(math.isfinite(v) for v in m.values())
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    model = load_model(run / "checkpoints" / "last.ckpt")
    assert type(model).__name__ == cfg.model._target_.rsplit(".", 1)[-1]
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    for key in ("lr_g", "lr_d", "lr", "lambda_cat", "lambda_cont", "beta"):
        if key in model_cfg:
            assert model.hparams[key] == pytest.approx(model_cfg[key]), key
    if "latent" in model_cfg:
        lat = model_cfg["latent"]
        assert model.latent.noise == lat["noise"]
        assert list(model.latent.categorical) == list(lat.get("categorical", model.latent.categorical))
        assert model.latent.continuous == lat.get("continuous", 0)
    if "train/loss_d" in m or "train/loss_d_epoch" in m:
        assert any(k.startswith("train/loss_g") for k in m)
    if model.latent.num_categorical and (cfg.callbacks or {}).get("mutual_information"):  # the MI callback ran:
        # after 2 steps the codes are barely recoverable, so the bound sits near 0 (up to estimator noise);
        # a Q head that never learns from generated images (AC-GAN's default, info_in_d_step=False) can be
        # confidently wrong on them after 2 steps on real labels, so its bound may fall below 0 (-0.55 seen)
        low = -0.5 if getattr(model, "info_in_d_step", True) else -math.log(model.latent.categorical[0])
        assert low < m["val/mi_cat"] < 0.5 * math.log(model.latent.categorical[0])
    assert list((run / "samples").glob("*.png"))  # the sample grids were written
    with torch.no_grad():
        imgs = model.generate(4, generator=torch.Generator().manual_seed(0))
    lo, hi = model.value_range
    assert imgs.shape == (4, *model.image_shape) and model.image_shape[1:] == ((32, 32) if name.startswith("dsprites") else (28, 28)) and lo <= float(imgs.min()) and float(imgs.max()) <= hi
