"""FID/KID/IS/precision-recall numerics against closed forms, SciPy/NumPy references and torchmetrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from xgen.metrics.fid import (GaussianStats, SingularCovarianceWarning, fid, fid_from_stats, inception_score, kid,
                              precision_recall)


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Independent reference: Heusel et al.'s formula with scipy.linalg.sqrtm."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def random_sets(seed: int, n1: int = 800, n2: int = 700, d: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d)) * 0.5
    b = rng.normal(size=(n2, d)) @ rng.normal(size=(d, d)) * 0.7 + rng.normal(size=d)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_equals_scipy_sqrtm_reference(seed):
    a, b = random_sets(seed)
    ref = scipy_fid(a, b)
    assert ref > 1.0
    assert fid(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(
        scipy_fid(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)), rel=1e-3)
    assert fid(a, b) == pytest.approx(ref, rel=1e-6)


def test_fid_closed_form_isotropic_gaussians():
    # N(0, I) vs N(m, s^2 I):  |m|^2 + d (1 - s)^2
    d, s = 10, 1.7
    m = torch.arange(d, dtype=torch.float64) / 10
    a = GaussianStats(mu=torch.zeros(d, dtype=torch.float64), sigma=torch.eye(d, dtype=torch.float64), n=10**6)
    b = GaussianStats(mu=m, sigma=s**2 * torch.eye(d, dtype=torch.float64), n=10**6)
    assert fid_from_stats(a, b) == pytest.approx(float(m.pow(2).sum()) + d * (1 - s) ** 2, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    a, _ = random_sets(3)
    assert abs(fid(a, a)) < 1e-8 * np.trace(np.cov(a, rowvar=False))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-7)


def test_fid_of_shifted_set_is_squared_shift():
    a, _ = random_sets(4)
    shift = np.full(a.shape[1], 0.5)
    assert fid(a, a + shift) == pytest.approx(float((shift ** 2).sum()), rel=1e-6)


class _Identity(torch.nn.Module):
    """torchmetrics' FID with features as inputs: a feature extractor that returns its input."""

    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def test_fid_matches_torchmetrics_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = random_sets(5)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tm = FrechetInceptionDistance(feature=_Identity(a.shape[1]), normalize=True)
    tm.update(ta, real=True)
    tm.update(tb, real=False)
    assert fid(ta, tb) == pytest.approx(float(tm.compute()), rel=1e-6)


def test_gaussian_stats_equal_numpy_mean_and_cov():
    a, _ = random_sets(6)
    s = GaussianStats.from_features(a)
    np.testing.assert_allclose(s.mu.numpy(), a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sigma.numpy(), np.cov(a, rowvar=False), rtol=1e-10, atol=1e-12)
    assert s.n == a.shape[0] and s.dim == a.shape[1]
    assert GaussianStats.from_dict(s.to_dict()).sigma.equal(s.sigma)


def test_fewer_samples_than_dimensions_warns_singular_covariance():
    rng = np.random.default_rng(7)
    small, big = rng.normal(size=(20, 32)), rng.normal(size=(500, 32))
    with pytest.warns(SingularCovarianceWarning, match="20 samples for 32 feature dimensions"):
        value = fid(big, small)
    assert np.isfinite(value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularCovarianceWarning)
        fid(big, rng.normal(size=(100, 32)))


def test_fid_rejects_bad_inputs():
    rng = np.random.default_rng(8)
    with pytest.raises(ValueError, match="16 dimensions but generated features have 8"):
        fid(rng.normal(size=(50, 16)), rng.normal(size=(50, 8)))
    with pytest.raises(ValueError, match=r"expected features of shape \(N, D\)"):
        fid(rng.normal(size=(50,)), rng.normal(size=(50, 8)))
    with pytest.raises(ValueError, match="NaN or inf"):
        fid(rng.normal(size=(50, 4)), np.full((50, 4), np.nan))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fid(rng.normal(size=(50, 4)), rng.normal(size=(1, 4)))


def numpy_unbiased_poly_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Reference KID on one subset: unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    m = x.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def test_kid_equals_numpy_mmd_when_the_subset_is_the_whole_set():
    a, b = random_sets(9, n1=200, n2=200, d=8)
    mean, std = kid(a, b, subsets=5, subset_size=200)
    assert mean == pytest.approx(numpy_unbiased_poly_mmd(a, b), rel=1e-4)
    assert std == pytest.approx(0.0, abs=1e-6 * abs(mean))


def test_kid_subset_size_adapts_to_the_number_of_samples_with_a_warning():
    a, b = random_sets(10, n1=300, n2=150, d=8)
    with pytest.warns(UserWarning, match="using subset_size=150"):
        mean, _ = kid(a, b, subsets=10, subset_size=1000)
    assert mean > 0
    same_dist = kid(a[:150], a[150:], subsets=10, subset_size=150)[0]
    assert abs(same_dist) < 0.1 * mean


def test_inception_score_closed_forms():
    k = 10
    confident = torch.full((1000, k), -30.0)
    confident[torch.arange(1000), torch.arange(1000) % k] = 30.0  # one-hot, all classes equally often
    assert inception_score(confident, splits=1)[0] == pytest.approx(k, rel=1e-6)  # shuffled chunks are not balanced
    assert inception_score(torch.randn(1, k).repeat(500, 1), splits=5)[0] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="splits"):
        inception_score(confident[:5], splits=10)


def test_precision_recall_identical_and_disjoint_sets():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(300, 6))
    pr = precision_recall(a, a.copy())
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0
    far = precision_recall(a, a + 100.0)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    # generated samples collapsed on a small part of the real set: precise, little recall
    collapsed = a[np.argsort(a[:, 0])[:60]] + 0.01
    pr = precision_recall(a, collapsed)
    assert pr["precision"] > 0.9 and pr["recall"] < 0.5


# ----------------------------------------------------------------------------- the FID callback
def _tiny_vae():
    from xgen.models import VAE

    torch.manual_seed(0)
    return VAE(image_shape=(1, 28, 28), latent_dim=4,
               encoder={"_target_": "xgen.nets.vae.MLPEncoder", "hidden": [64]},
               decoder={"_target_": "xgen.nets.vae.MLPDecoder", "hidden": [64]})


def _trainer(callback, max_epochs: int):
    import lightning as L

    return L.Trainer(max_epochs=max_epochs, limit_train_batches=3, limit_val_batches=1, limit_test_batches=1,
                     callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)


@pytest.fixture(scope="module")
def digits_dm():
    from xgen.data import DigitsDataModule

    return DigitsDataModule(batch_size=64, eval_batch_size=500)


def test_fid_callback_logs_fid_every_n_epochs_and_at_the_end(digits_dm, tmp_path, monkeypatch):
    from xgen.callbacks import FID
    from xgen.metrics import quality
    from xgen.metrics.features import build_extractor

    cb = FID(every_n_epochs=2, num_samples=200, num_samples_final=300, arch="thesis", cache_dir=str(tmp_path),
             kid_subsets=10)
    model = _tiny_vae()
    trainer = _trainer(cb, max_epochs=3)
    trainer.fit(model, digits_dm)
    assert [(h["stage"], h["epoch"], h["n"]) for h in cb.history] == [("val", 1, 200), ("val", 2, 200)]
    # the logged value is the FID of the model's seeded samples against the real test split
    ext = build_extractor("classifier", dataset="digits", arch="thesis")
    real = ext.extract(digits_dm.split("test")[0]).features
    gen = ext.extract(quality.generate_images(model, 200, seed=0), model.value_range).features
    assert float(trainer.callback_metrics["val/fid"]) == pytest.approx(fid(real, gen), rel=1e-4)
    # the real statistics were cached once, under a key holding the extractor's weights hash
    cached = list(tmp_path.glob("*.pt"))
    assert len(cached) == 1 and cached[0].name.startswith("digits-test-n") and ext.weights_id in cached[0].name
    # at the end: more samples, all metrics; KID's subset size adapts to the 270 real test digits, with a warning
    cb.kid_subset_size = 1000
    with pytest.warns(UserWarning, match="using subset_size=270"):
        results = trainer.test(model, digits_dm, verbose=False)[0]
    assert cb.history[-1]["stage"] == "test" and cb.history[-1]["n"] == 300
    assert results["test/fid"] > 0 and 1.0 <= results["test/is"] <= 10.0
    assert 0 <= results["test/precision"] <= 1 and 0 <= results["test/recall"] <= 1 and "test/kid" in results
    # a new callback reads the cache instead of recomputing the real features
    monkeypatch.setattr(quality, "real_reference", lambda *a, **k: pytest.fail("real statistics recomputed"))
    cb2 = FID(arch="thesis", cache_dir=str(tmp_path))
    ref = cb2.reference(trainer, model)
    assert ref.stats.n == digits_dm.split("test")[0].shape[0] and ref.image_shape == (1, 28, 28)


def test_fid_callback_validates_its_config():
    from xgen.callbacks import FID
    from xgen.errors import ConfigError

    with pytest.raises(ConfigError, match="callbacks.fid.extractor: unknown extractor 'vgg'"):
        FID(extractor="vgg")
    with pytest.raises(ConfigError, match="callbacks.fid.metrics: unknown metric"):
        FID(metrics=["fid", "lpips"])
    with pytest.raises(ConfigError, match="callbacks.fid.real_split"):
        FID(real_split="holdout")


@pytest.mark.slow
def test_fid_callback_under_ddp_on_cpu(tmp_path):
    """Two gloo processes: each generates half the samples, features are gathered once, and both ranks
    log the same FID over all of them."""
    import json
    import subprocess
    import sys

    run, cache = tmp_path / "run", tmp_path / "cache"
    subprocess.run([sys.executable, "-m", "xgen", "data=digits", "data.repeat=1", "model=vae", "model.latent_dim=4", "trainer=ddp_cpu",
                    "callbacks=fid", "callbacks.progress_bar=null", "callbacks.sample_grids=null",
                    "callbacks.fid.num_samples=201", "callbacks.fid.num_samples_final=300",
                    "callbacks.fid.final_metrics=[fid]", "callbacks.fid.arch=thesis",
                    f"callbacks.fid.cache_dir={cache}", "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
                    "trainer.enable_model_summary=false", f"hydra.run.dir={run}"],
                   check=True, capture_output=True, timeout=600)
    metrics = json.loads((run / "summary.json").read_text())["metrics"]
    assert np.isfinite(metrics["val/fid"]) and np.isfinite(metrics["test/fid"])
    assert len(list(cache.glob("*.pt"))) == 1  # one cache file, written by rank 0


def test_callbacks_fid_config_adds_fid_to_the_default_callbacks():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from xgen.callbacks import FID, SampleGrids
    from xgen.runtime.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["callbacks=fid", "callbacks.fid.every_n_epochs=5"])
    assert {"model_checkpoint", "sample_grids", "fid"} <= set(cfg.callbacks)
    cb = instantiate(cfg.callbacks.fid)
    assert isinstance(cb, FID) and cb.every_n_epochs == 5 and cb.num_samples == 1000
    assert cb.num_samples_final == 10000 and cb.extractor_name == "classifier" and cb.metrics == ("fid",)
    assert isinstance(instantiate(cfg.callbacks.sample_grids), SampleGrids)


def test_generate_images_shards_are_the_single_process_stream():
    """Under DDP each rank decodes its block of batches of the same latent stream; concatenated in rank
    order they equal what one process generates (so DDP and single-process FID see the same images)."""
    from xgen.metrics.quality import generate_images, shard_batches
    from xgen.models import VAE

    torch.manual_seed(0)
    model = VAE(image_shape=(1, 8, 8), latent_dim=3,
                encoder={"_target_": "xgen.nets.vae.MLPEncoder", "hidden": [16]},
                decoder={"_target_": "xgen.nets.vae.MLPDecoder", "hidden": [16]})
    single = generate_images(model, 1050, batch_size=100, seed=5)
    for world in (2, 3, 4):
        parts = [generate_images(model, 1050, batch_size=100, seed=5, rank=r, world=world) for r in range(world)]
        assert torch.equal(torch.cat(parts), single)
        assert sum(len(shard_batches(1050, 100, r, world)) for r in range(world)) == 11
