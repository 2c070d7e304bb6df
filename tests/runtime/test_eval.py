"""xgen eval: likelihood estimates (closed form), categorical accuracy, baselines, the CLI on a real run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xgen.latent import LatentSpec

from xgen.runtime.cli.eval import format_table, main
from xgen.errors import ConfigError
from xgen.metrics.evaluation import categorical_accuracy, noise_baseline, real_vs_real
from xgen.checkpoint.runs import RunDir, find_checkpoints
from xgen.metrics.features import build_extractor
from xgen.metrics.likelihood import elbo, iw_log_likelihood
from xgen.metrics.quality import RealReference, score
from xgen.metrics.features import Extracted
from xgen.metrics.fid import GaussianStats


class LinearGaussianVAE(torch.nn.Module):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s² I) with orthogonal columns of W, so p(x) and the exact
    (diagonal) posterior are known in closed form. ``shift`` moves q's mean off the true posterior."""

    def __init__(self, d_x: int = 6, d_z: int = 3, s: float = 0.5, shift: float = 0.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d_x, d_z, generator=g, dtype=torch.float64))
        self.W = q * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)[:d_z]
        self.b = torch.randn(d_x, generator=g, dtype=torch.float64)
        self.s, self.shift = s, shift
        prec = 1.0 + (self.W ** 2).sum(0) / s ** 2          # diagonal posterior precision
        self.post_var = 1.0 / prec

    def encode(self, x):
        mu = (x - self.b) @ self.W / self.s ** 2 * self.post_var + self.shift
        return mu, self.post_var.log().expand_as(mu)

    def decode_logits(self, z):
        return z @ self.W.T + self.b

    def reconstruction_nll(self, out, x):
        return (0.5 * ((x - out) / self.s) ** 2 + math.log(self.s) + 0.5 * math.log(2 * math.pi)).sum(1)

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


def test_iw_log_likelihood_is_exact_with_the_true_posterior():
    m = LinearGaussianVAE()
    torch.manual_seed(0)
    x = m.decode_logits(torch.randn(20, 3, dtype=torch.float64)) + 0.5 * torch.randn(20, 6, dtype=torch.float64)
    for k in (1, 7):
        torch.testing.assert_close(iw_log_likelihood(m, x, k=k), m.log_px(x), rtol=1e-9, atol=1e-9)
    # the one-sample ELBO (analytic KL) equals log p(x) in expectation when q is the true posterior
    e = elbo(m, x.repeat(2000, 1)).mean()
    assert float(e) == pytest.approx(float(m.log_px(x).mean()), abs=0.02)


def test_iw_bound_tightens_with_k_towards_log_px():
    m = LinearGaussianVAE(shift=0.15)
    torch.manual_seed(1)
    x = m.decode_logits(torch.randn(50, 3, dtype=torch.float64)) + 0.5 * torch.randn(50, 6, dtype=torch.float64)
    true = float(m.log_px(x).mean())
    e = float(elbo(m, x.repeat(20, 1)).mean())
    iw = float(iw_log_likelihood(m, x, k=5000, chunk=1000).mean())
    assert e < true - 0.05           # the ELBO pays the KL of the shifted posterior
    assert abs(iw - true) < 0.02     # k = 5000 closes the gap
    assert e < float(iw_log_likelihood(m, x, k=10).mean()) < true + 0.02


def test_categorical_accuracy_needs_a_model_that_predicts_codes():
    from xgen.protocols import CapabilityError, PredictsCodes, require

    with pytest.raises(CapabilityError, match=r"PredictsCodes .*Linear lacks latent, eval_code"):
        require(torch.nn.Linear(2, 2), PredictsCodes, "categorical-code accuracy")


class _InfoGANLike(torch.nn.Module):
    """The GAN branch's interface: predict_code(x, code=j) per code, latent.num_categorical, eval_code.
    Code 1 is a relabelling of the true classes, code 0 is constant."""

    value_range = (-1.0, 1.0)
    device = torch.device("cpu")
    latent = LatentSpec(noise=0, categorical=[10, 10], continuous=0)

    def __init__(self, labels, eval_code):
        super().__init__()
        self.labels, self.eval_code, self.seen = labels, eval_code, {0: 0, 1: 0}

    def predict_code(self, x, code=None):
        i = self.seen[code]
        y = self.labels[i:i + x.shape[0]]
        self.seen[code] += x.shape[0]
        return (y * 7) % 10 if code == 1 else torch.zeros_like(y)


def test_categorical_accuracy_with_predict_code_per_code():
    from xgen.protocols import PredictsCodes

    assert isinstance(_InfoGANLike(torch.arange(3), 0), PredictsCodes)
    labels = torch.arange(100) % 10
    images = torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8)
    acc = categorical_accuracy(_InfoGANLike(labels, eval_code=1), images, labels, batch_size=30)
    assert acc["cat_acc_per_code"] == [0.1, 1.0] and acc["cat_acc"] == 1.0
    assert categorical_accuracy(_InfoGANLike(labels, eval_code=0), images, labels)["cat_acc"] == 0.1  # the model's own code


def test_score_rejects_mismatched_image_shapes():
    f = torch.randn(50, 4)
    ref = RealReference(GaussianStats.from_features(f), f, (1, 28, 28))
    with pytest.raises(ValueError, match="real images are 1x28x28 but generated images are 3x32x32"):
        score(ref, Extracted(f, f), (3, 32, 32))


def test_find_checkpoints_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file or directory"):
        find_checkpoints(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt"):
        find_checkpoints(tmp_path)


def test_format_table_lists_scalar_metrics():
    t = format_table([{"name": "a", "test/fid": 1.23456, "model": "VAE"}, {"name": "b", "test/kid": 0.5}])
    lines = t.splitlines()
    assert lines[0].split() == ["run", "test/fid", "test/kid"] and lines[2].split() == ["a", "1.235", "-"]


@pytest.fixture(scope="module")
def digits():
    from xgen.data import DigitsDataModule

    return DigitsDataModule(val_size=0.1)


def test_real_vs_real_floor_is_far_below_noise(digits, tmp_path):
    ext = build_extractor("classifier", dataset="digits", arch="thesis")
    floor = real_vs_real(digits, ext, "test", num_samples=270, repeats=3, metrics=("fid",), cache_dir=tmp_path)
    noise = noise_baseline(digits, ext, "test", num_samples=270, metrics=("fid",), cache_dir=tmp_path)
    assert floor["disjoint_subsets"] and floor["repeats"] == 3
    assert 0 < floor["test/fid"] < 0.2 * noise["test/fid"]
    assert floor["test/fid_sd"] > 0


def test_eval_cli_errors_are_reported_not_raised(capsys, tmp_path):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "xgen eval: error:" in capsys.readouterr().err
    assert main(["--real-vs-real", "--data", "cifar"]) == 2
    assert "unknown data config 'cifar'" in capsys.readouterr().err
    assert main(["--real-vs-real", "--data", "digits", "--metrics", "fid,lpips"]) == 2
    assert "unknown metric(s) lpips" in capsys.readouterr().err


@pytest.mark.slow
def test_train_with_fid_callback_then_xgen_eval(tmp_path):
    """End to end: `xgen callbacks=fid` logs val/fid and test/fid; `xgen eval` writes eval.json."""
    run = tmp_path / "run"
    env_cache = str(tmp_path / "cache")
    cmd = [sys.executable, "-m", "xgen", "data=digits", "data.repeat=1", "model=vae", "model.latent_dim=4", "callbacks=fid",
           "callbacks.progress_bar=null", "callbacks.fid.num_samples=200", "callbacks.fid.num_samples_final=300",
           "callbacks.fid.arch=thesis", f"callbacks.fid.cache_dir={env_cache}", "trainer.max_epochs=2",
           "+trainer.limit_train_batches=5", "trainer.enable_model_summary=false", f"hydra.run.dir={run}"]
    subprocess.run(cmd, check=True, capture_output=True)
    summary = json.loads((run / "summary.json").read_text())["metrics"]
    for key in ("val/fid", "test/fid", "test/kid", "test/is", "test/precision", "test/recall"):
        assert np.isfinite(summary[key]), key
    assert main([str(run), "--num-samples", "300", "--arch", "thesis", "--iw-samples", "4", "--iw-images", "40",
                 "--cache-dir", env_cache]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["model"] == "VAE" and ev["num_samples"] == 300 and ev["iw_samples"] == 4
    assert ev["test/fid"] > 0 and ev["test/elbo"] < 0 and ev["test/iw_ll"] < 0
    assert "test/cat_acc" not in ev  # a VAE has no predict_codes


def _fake_run(run: Path, seed: int) -> None:
    """A run directory as training leaves it: config.yaml (digits) and checkpoints/last.ckpt of an
    untrained VAE (what load_model reads: state_dict, hyper_parameters, xgen_class)."""
    from omegaconf import OmegaConf

    from xgen.models import VAE
    from xgen.models.base import CLASS_KEY
    from xgen.registry import class_path

    torch.manual_seed(seed)
    m = VAE(image_shape=(1, 28, 28), latent_dim=4)
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams), CLASS_KEY: class_path(m)},
               run / "checkpoints" / "last.ckpt")
    OmegaConf.save({"data": {"_target_": "xgen.data.DigitsDataModule", "val_size": 0.1}}, run / "config.yaml")


def test_eval_multirun_labels_rows_and_writes_each_eval_json(tmp_path, capsys):
    sweep = tmp_path / "multirun"
    for job in (0, 1):
        _fake_run(sweep / str(job), seed=job)
    args = [str(sweep), "--metrics", "fid", "--num-samples", "80", "--arch", "thesis", "--iw-samples", "2",
            "--iw-images", "10", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    table = out.split("xgen eval: wrote")[0].splitlines()
    assert [line.split("  ")[0] for line in table[2:]] == ["0: VAE (digits)", "1: VAE (digits)"]
    rows = json.loads((sweep / "eval.json").read_text())
    assert [r["name"] for r in rows] == ["0: VAE (digits)", "1: VAE (digits)"]
    for job, row in zip((0, 1), rows):
        assert json.loads(RunDir(sweep / str(job)).eval_file.read_text()) == row
        assert f"xgen eval: wrote {sweep / str(job) / 'eval.json'}" in out
    assert f"xgen eval: wrote {sweep / 'eval.json'}" in out
    assert rows[0]["test/fid"] != rows[1]["test/fid"] and rows[0]["test/elbo"] < 0  # two different models


def test_real_vs_real_defaults_to_5_subsets_and_writes_under_outputs_eval(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XGEN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.chdir(tmp_path)
    assert main(["--real-vs-real", "--data", "digits", "--metrics", "fid", "--num-samples", "100",
                 "--arch", "thesis", "--cache-dir", str(tmp_path / "cache")]) == 0
    (written,) = (tmp_path / "outputs" / "eval").glob("*/eval.json")
    assert f"xgen eval: wrote {written}" in capsys.readouterr().out
    row = json.loads(written.read_text())
    assert row["repeats"] == 5 and row["disjoint_subsets"] and row["name"] == "real vs real (digits)"
    assert not (tmp_path / "eval.json").exists()  # nothing lands in the current folder
    # --out puts it where asked
    assert main(["--noise", "--data", "digits", "--metrics", "fid", "--num-samples", "80", "--arch", "thesis",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "x" / "noise.json")]) == 0
    assert json.loads((tmp_path / "x" / "noise.json").read_text())["model"] == "uniform noise"


def test_xgen_eval_scores_disentanglement_on_data_with_factors(tmp_path, capsys):
    """A VAE trained a few steps on dSprites 32x32: `xgen eval` adds MIG, the β-VAE/FactorVAE metrics,
    DCI and the covariance metric (auto: the model embeds and the data has 5 factors); off skips them."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "xgen", "data=dsprites32", "data.num_train=1000", "data.num_val=100",
           "data.num_test=300", "model=vae", "model/net=mlp", "model.latent_dim=4", "trainer.max_epochs=1",
           "test=false", "callbacks.sample_grids=null", f"hydra.run.dir={run}"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    args = [str(run), "--metrics", "", "--iw-samples", "0", "--disent-train", "600", "--disent-eval", "300",
            "--dci-model", "forest", "--out", str(tmp_path / "e.json")]
    assert main(args) == 0
    row = json.loads((tmp_path / "e.json").read_text())  # one row: one object
    for k in ("test/mig", "test/beta_vae_score", "test/factor_vae_score", "test/dci_disentanglement",
              "test/dci_informativeness", "test/covariance_metric"):
        assert k in row and math.isfinite(row[k]), k
    assert 0 <= row["test/mig"] <= 1 and 0 <= row["test/beta_vae_score"] <= 1
    assert main([*args[:-1], str(tmp_path / "off.json"), "--disentanglement", "off"]) == 0
    assert "test/mig" not in json.loads((tmp_path / "off.json").read_text())
