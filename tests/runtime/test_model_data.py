"""Per-dataset defaults (issue 25): ``xgen model=M data=D`` picks ``model_data/M_D.yaml`` when there is one.

* InfoGAN on Fashion-MNIST composes the recipe its row in docs/defaults.md was measured with (D on
  separate batches, 2 epochs, deterministic), on digits its own digits fix (joint batches, 10 passes);
* an experiment file and the command line still win, and ``~model_data`` drops the file;
* every model_data file is named after a real model and data config, and its ``dataset_defaults``
  (what ``xgen --cfg job`` shows as the origin) lists exactly the keys and values it sets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xgen.runtime.config import CONFIG_DIR as CONFIG_DIR_STR

CONFIG_DIR = Path(CONFIG_DIR_STR)

MODEL_DATA = sorted((CONFIG_DIR / "model_data").glob("*.yaml"))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_infogan_picks_the_settings_of_each_dataset(compose):
    fm = compose(["model=infogan", "data=fashion_mnist"])
    assert (fm.model.d_batch, fm.trainer.max_epochs, fm.trainer.deterministic) == ("separate", 2, True)
    assert fm.dataset_defaults["model.d_batch"] == "separate (model_data/infogan_fashion_mnist)"
    dg = compose(["model=infogan", "data=digits"])
    assert (dg.model.d_batch, dg.data.repeat, dg.trainer.max_epochs) == ("joint", 10, 5)
    assert dict(dg.dataset_defaults) == {}
    # the command line and experiment files still win; ~model_data drops the file
    assert compose(["model=infogan", "data=fashion_mnist", "model.d_batch=joint"]).model.d_batch == "joint"
    assert compose(["model=infogan", "data=fashion_mnist", "~model_data"]).model.d_batch == "joint"
    assert compose(["experiment=infogan_fmnist_paper"]).model.d_batch == "separate"
    # other models on Fashion-MNIST are untouched by InfoGAN's file
    assert compose(["model=dcgan", "data=fashion_mnist"]).trainer.max_epochs == 5


@pytest.mark.parametrize("path", MODEL_DATA, ids=[p.stem for p in MODEL_DATA])
def test_every_model_data_file_names_what_it_sets(path):
    models = {p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")}
    datas = {p.stem for p in (CONFIG_DIR / "data").glob("*.yaml")}
    pairs = {f"{m}_{d}" for m in models for d in datas}
    assert path.stem in pairs, f"{path.name}: not <model>_<data> of existing configs"
    text = path.read_text()
    assert text.startswith("# @package _global_"), path.name
    body = yaml.safe_load(text)
    origin = body.pop("dataset_defaults")
    sets = _flat(body)
    assert set(origin) == set(sets), (path.name, set(origin) ^ set(sets))
    for key, value in sets.items():
        shown = value if not isinstance(value, bool) else str(value).lower()
        assert origin[key] == f"{shown} (model_data/{path.stem})", (path.name, key)


def test_xgen_cfg_job_shows_where_the_values_came_from(tmp_path):
    env = {**os.environ, "XGEN_OUTPUT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "xgen", "--cfg", "job", "model=infogan", "data=fashion_mnist"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = yaml.safe_load(out.stdout)
    assert cfg["model"]["d_batch"] == "separate" and cfg["trainer"]["max_epochs"] == 2
    assert cfg["dataset_defaults"]["trainer.max_epochs"] == "2 (model_data/infogan_fashion_mnist)"


@pytest.mark.parametrize("sweep,models,datas", [
    ("defaults", {"vae", "beta_vae", "info_vae", "gan", "dcgan", "infogan", "kgan"}, {"digits", "fashion_mnist", "dsprites32"}),
    ("defaults_conditional", {"ss_infogan", "acgan", "cgan"}, {"digits", "fashion_mnist"})])
def test_the_defaults_sweeps_cross_models_datasets_and_seeds_and_nothing_else(sweep, models, datas):
    from xgen.runtime.validate import check_job, expand_jobs

    jobs, multirun = expand_jobs([f"+sweep={sweep}"], False)
    assert multirun and len(jobs) == len(models) * len(datas) * 3
    keys = {tuple(sorted(o.split("=")[0] for o in j if not o.startswith("+sweep"))) for j in jobs}
    assert keys == {("data", "model", "seed")}  # no epochs or other values: each cell at its documented default
    assert {o.split("=")[1] for j in jobs for o in j if o.startswith("model=")} == models
    assert {o.split("=")[1] for j in jobs for o in j if o.startswith("data=")} == datas
    cells = {tuple(sorted(o for o in j if o.split("=")[0] in ("model", "data"))): j for j in jobs if "seed=0" in j}
    composed = {cell: check_job(j) for cell, j in cells.items()}  # every cell composes and passes the checks
    if sweep == "defaults":  # its InfoGAN x Fashion-MNIST cell is the recipe of model_data/infogan_fashion_mnist
        cfg = composed[("data=fashion_mnist", "model=infogan")]
        assert cfg.model.d_batch == "separate" and cfg.trainer.max_epochs == 2
