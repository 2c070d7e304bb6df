import math

import lightning as L
import pytest
import torch
from torch import nn

from xgen.data import DigitsDataModule
from xgen.errors import ConfigError
from xgen.models import DCGAN, GAN, InfoGAN, discriminator_loss, generator_loss, gradient_penalty
from xgen.nets.gan import ConvDiscriminator, ConvGenerator, auto_channels

SMALL_G = {"_target_": "xgen.nets.gan.ConvGenerator", "channels": [32, 16], "hidden": 128}
SMALL_D = {"_target_": "xgen.nets.gan.ConvDiscriminator", "channels": [16, 32], "hidden": 128, "slope": 0.1}


def test_bce_losses_closed_form():
    zero = torch.zeros(4)
    # D(x) = sigmoid(0) = 1/2 everywhere: -log(1/2) - log(1/2) = 2 log 2 nats
    assert discriminator_loss("bce", zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_loss("bce", zero).item() == pytest.approx(math.log(2))
    assert generator_loss("minimax", zero).item() == pytest.approx(-math.log(2))
    big = torch.full((4,), 30.0)
    # a perfect discriminator: loss -> 0; the non-saturating G loss stays large (30 nats), not 0
    assert discriminator_loss("bce", big, -big).item() == pytest.approx(0, abs=1e-10)
    assert generator_loss("bce", -big).item() == pytest.approx(30, abs=1e-6)
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    assert discriminator_loss("wgan_gp", real, fake).item() == pytest.approx(-1.5 - 1.25)
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx(0.25 + 0.5)
    with pytest.raises(ConfigError, match="model.loss"):
        discriminator_loss("lsgan", real, fake)


def test_gradient_penalty_zero_for_unit_norm_linear_critic_and_grows_with_scale():
    torch.manual_seed(0)
    real, fake = torch.randn(64, 1, 4, 4), torch.randn(64, 1, 4, 4)
    w = torch.randn(16)
    w = w / w.norm()

    def critic(scale):
        lin = nn.Linear(16, 1, bias=True)
        with torch.no_grad():
            lin.weight.copy_(scale * w[None])
        return lambda x: lin(x.flatten(1)).squeeze(1)

    assert gradient_penalty(critic(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    # gradient norm = s everywhere, so the penalty is (s - 1)^2 exactly
    for s in (0.5, 2.0, 4.0):
        assert gradient_penalty(critic(s), real, fake).item() == pytest.approx((s - 1) ** 2, rel=1e-5)
    assert gradient_penalty(critic(4.0), real, fake) > gradient_penalty(critic(2.0), real, fake)


def test_resolution_aware_conv_nets():
    assert auto_channels(28, 28) == [64, 128]
    assert auto_channels(64, 64) == [64, 128, 256, 512]
    for size in (28, 32, 64):
        g, d = ConvGenerator((3, size, size), 10), ConvDiscriminator((3, size, size))
        x = g(torch.randn(2, 10))
        assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
        logits, feats = d(x)
        assert logits.shape == (2,) and feats.shape == (2, d.feature_dim)


def test_thesis_aloi_nets_shapes():
    g = ConvGenerator((1, 64, 64), 112, channels=[1024, 256, 128, 64], norm=[True, True, True, False],
                      output="sigmoid", bias=False)
    d = ConvDiscriminator((1, 64, 64), channels=[32, 128, 256, 1024], norm=[False, True, True, True],
                          slope=0.1, bias=False)
    x = g(torch.randn(2, 112))
    assert x.shape == (2, 1, 64, 64) and 0 <= x.min() and x.max() <= 1
    assert d.feature_dim == 1024 * 4 * 4 and d(x)[0].shape == (2,)
    model = InfoGAN(image_shape=(1, 64, 64), latent={"noise": 100, "categorical": [10], "continuous": 2},
                    generator={"_target_": "xgen.nets.gan.ConvGenerator", "channels": [1024, 256, 128, 64],
                               "norm": [True, True, True, False], "output": "sigmoid", "bias": False},
                    discriminator={"_target_": "xgen.nets.gan.ConvDiscriminator", "channels": [32, 128, 256, 1024],
                                   "norm": [False, True, True, True], "slope": 0.1, "bias": False})
    assert model.value_range == (0.0, 1.0) and model.latent.dim == 112


@pytest.mark.parametrize("kwargs, pattern", [
    ({"latent": {"noise": 62, "categorical": [], "continuous": 0}}, r"^model\.latent: InfoGAN needs at least one code"),
    ({"latent": {"noise": 62, "categorical": [1], "continuous": 2}}, r"^model\.latent\.categorical: code 0 has 1 value"),
    ({"lambda_cat": -1.0}, r"model.lambda_cat: the information weight must be >= 0"),
    ({"lambda_cont": -0.1}, r"model.lambda_cont"),
    ({"loss": "wasserstein"}, r"model.loss: unknown loss"),
    ({"n_critic": 0}, r"model.n_critic"),
    ({"lr_d": 0.0}, r"model.d.lr"),
])
def test_bad_infogan_config_stops_with_message(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        InfoGAN(image_shape=(1, 28, 28), **kwargs)


def test_nets_that_do_not_fit_the_data_stop_before_training():
    # three stride-2 layers cannot take 28x28 (28 is not divisible by 8)
    with pytest.raises(ConfigError, match=r"model.discriminator: 3 stride-2 layers need .* divisible by 8"):
        DCGAN(image_shape=(1, 28, 28), discriminator={"_target_": "xgen.nets.gan.ConvDiscriminator",
                                                      "channels": [16, 32, 64]})
    # a generator made for 64x64 paired with 28x28 data
    g64 = ConvGenerator((1, 64, 64), 74)
    with pytest.raises(ConfigError, match=r"model.generator: .* makes \(1, 64, 64\) images but the data is \(1, 28, 28\)"):
        InfoGAN(image_shape=(1, 28, 28), generator=g64)
    # a discriminator built for other images
    d64 = ConvDiscriminator((1, 64, 64))
    with pytest.raises(ConfigError, match=r"model.discriminator: .* cannot take \(1, 28, 28\)"):
        GAN(image_shape=(1, 28, 28), discriminator=d64)


def _digits(batch_size=64):
    return DigitsDataModule(batch_size=batch_size, eval_batch_size=500, seed=0)


def _trainer(**kw):
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0)
    base.update(kw)
    return L.Trainer(**base)


def test_k_discriminator_steps_per_generator_step():
    torch.manual_seed(0)
    model = GAN(image_shape=(1, 28, 28), n_critic=3)
    counts = {"g": 0, "d": 0}
    orig_g, orig_d = model.generator_terms, model.discriminator_terms

    def g_terms(*a):
        counts["g"] += 1
        return orig_g(*a)

    def d_terms(*a):
        counts["d"] += 1
        return orig_d(*a)

    model.generator_terms, model.discriminator_terms = g_terms, d_terms
    _trainer(max_steps=-1, max_epochs=1, limit_train_batches=9, limit_val_batches=0).fit(model, datamodule=_digits(32))
    assert counts == {"d": 9, "g": 3}


@pytest.mark.parametrize("loss", ["wgan_gp", "hinge", "wgan"])
def test_every_loss_trains_and_stays_finite(loss):
    torch.manual_seed(0)
    model = DCGAN(image_shape=(1, 28, 28), loss=loss, generator=SMALL_G,
                  discriminator={**SMALL_D, "norm": False})
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    _trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0).fit(model, datamodule=_digits(32))
    assert all(torch.isfinite(v) for v in model._last_losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.discriminator.parameters()))
    if loss == "wgan_gp":
        assert "gp" in model._last_losses
    if loss == "wgan":
        assert max(p.abs().max().item() for p in model.discriminator.parameters()) <= 0.01 + 1e-7


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = InfoGAN(image_shape=(1, 28, 28), generator=SMALL_G, discriminator=SMALL_D,
                    latent={"noise": 8, "categorical": [10], "continuous": 2})
    trainer = _trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=_digits(32))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path, weights_only=False)  # explicit: Lightning 2.6 logs a notice otherwise
    loaded = InfoGAN.load_from_checkpoint(path)  # from the checkpoint alone
    assert loaded.latent.to_dict() == model.latent.to_dict()
    z = model.latent.sample(4, generator=torch.Generator().manual_seed(0))
    model.eval(), loaded.eval()
    assert torch.allclose(model.generate(z), loaded.generate(z))
