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
