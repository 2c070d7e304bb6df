import math

import pytest
import torch

from xgen.errors import ConfigError
from xgen.latent import Codes, LatentSpec


def test_dims_and_entropy_closed_forms():
    spec = LatentSpec(noise=62, categorical=[10], continuous=2)
    assert spec.dim == 74 and spec.code_dim == 12 and spec.num_codes == 3
    assert spec.entropy_categorical() == pytest.approx(math.log(10))
    assert spec.entropy_continuous() == pytest.approx(2 * math.log(2))
    svhn = LatentSpec(noise=124, categorical=[10, 10, 10, 10], continuous=4)
    assert svhn.dim == 168
    assert svhn.entropy() == pytest.approx(4 * math.log(10) + 4 * math.log(2))
    assert LatentSpec(noise=0, categorical=[10], continuous=2).dim == 12  # thesis run 118


def test_sample_layout_and_priors():
    spec = LatentSpec(noise=5, categorical=[3, 4], continuous=2)
    g = torch.Generator().manual_seed(0)
    x = spec.sample(20000, generator=g)
    assert x.shape == (20000, 14)
    onehots = (x[:, 5:8], x[:, 8:12])
    for oh, k in zip(onehots, (3, 4)):
        assert torch.all(oh.sum(1) == 1) and set(oh.unique().tolist()) == {0.0, 1.0}
        freq = oh.mean(0)  # uniform categorical: each value 1/k, within 4 standard errors
        assert torch.allclose(freq, torch.full((k,), 1 / k), atol=4 * math.sqrt(1 / k / 20000))
    cont = x[:, 12:]
    assert cont.min() >= -1 and cont.max() <= 1
    assert cont.mean().abs() < 0.02 and cont.var().item() == pytest.approx(1 / 3, abs=0.01)  # Unif(-1,1)
    assert x[:, :5].std().item() == pytest.approx(1.0, abs=0.02)  # N(0, 1) noise


def test_sampling_is_reproducible_and_split_inverts_assemble():
    spec = LatentSpec(noise=3, categorical=[5], continuous=1)
    a = spec.sample(8, generator=torch.Generator().manual_seed(1))
    b = spec.sample(8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    codes = spec.sample_codes(16, generator=torch.Generator().manual_seed(2))
    back = spec.split(spec.assemble(codes))
    assert torch.equal(back.categorical, codes.categorical)
    assert torch.equal(back.continuous, codes.continuous) and torch.equal(back.noise, codes.noise)


def test_uniform_noise_prior():
    spec = LatentSpec(noise=4, categorical=[], continuous=0, noise_prior="uniform")
    z = spec.sample(5000, generator=torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1 and z.var().item() == pytest.approx(1 / 3, abs=0.02)


def test_traversal_grid_rows_are_categories_columns_are_continuous():
    spec = LatentSpec(noise=4, categorical=[10, 3], continuous=2)
    grid = spec.traversal(categorical=0, continuous=1, steps=7, span=(-2, 2))
    assert grid.shape == (70, spec.dim)
    codes = spec.split(grid)
    assert torch.equal(codes.categorical[:, 0], torch.arange(10).repeat_interleave(7))
    assert torch.allclose(codes.continuous[:, 1], torch.linspace(-2, 2, 7).repeat(10))
    # everything else is one shared draw
    assert torch.all(codes.noise == codes.noise[0]) and torch.all(codes.categorical[:, 1] == codes.categorical[0, 1])
    assert torch.all(codes.continuous[:, 0] == codes.continuous[0, 0])


def test_from_config_and_validation_messages():
    spec = LatentSpec.from_config({"noise": 62, "categorical": 10, "continuous": 2})
    assert spec.categorical == [10]
    with pytest.raises(ConfigError, match=r"^model\.latent\.categorical: code 1 has 1 value.*needs >= 2"):
        LatentSpec.from_config({"noise": 10, "categorical": [10, 1], "continuous": 0})
    with pytest.raises(ConfigError, match=r"model.latent.noise"):
        LatentSpec(noise=-1)
    with pytest.raises(ConfigError, match=r"^gen\.latent\.noise: must be >= 0"):
        LatentSpec.from_config({"noise": -2}, key="gen.latent")
    with pytest.raises(ConfigError, match=r"unknown field"):
        LatentSpec.from_config({"noise": 1, "discrete": [3]})
    with pytest.raises(ConfigError, match=r"at least one code"):
        LatentSpec(noise=10, categorical=[], continuous=0).require_codes()
    with pytest.raises(ConfigError, match=r"at least one input"):
        LatentSpec(noise=0, categorical=[], continuous=0)


def test_codes_dataclass_roundtrip_on_device_without_generator():
    spec = LatentSpec(noise=2, categorical=[4], continuous=3)
    c = spec.sample_codes(6, device="cpu")
    assert isinstance(c, Codes) and c.categorical.dtype == torch.long and c.categorical.shape == (6, 1)
    assert c.continuous.shape == (6, 3)
