"""CollapseGuard's sample signs: closed-form statistics, thresholds, and real runs on digits (a broken
configuration is flagged within a few epochs, a healthy one is not)."""

import math

import lightning as L
import pytest
import torch

from xgen.callbacks import CollapseGuard
from xgen.callbacks.collapse_guard import (TrainingFailed, class_statistics, high_frequency_share,
                                           mean_pairwise_distance)
from xgen.data import DigitsDataModule
from xgen.errors import ConfigError
from xgen.models import InfoGAN


def test_mean_pairwise_distance_known_points():
    x = torch.tensor([[0.0], [1.0], [3.0]]).view(3, 1, 1, 1)
    assert mean_pairwise_distance(x) == pytest.approx(2.0)  # pairs 1, 3, 2
    assert mean_pairwise_distance(torch.ones(5, 1, 4, 4)) == 0.0
    with pytest.raises(ValueError):
        mean_pairwise_distance(torch.ones(1, 1, 4, 4))


def test_high_frequency_share_closed_forms():
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    checker = ((i + j) % 2 * 2 - 1).view(1, 1, 8, 8)  # +-1: Laplacian 8x, energy 64, variance 1
    assert high_frequency_share(checker) == pytest.approx(64.0)
    ramp = (i + 2 * j).view(1, 1, 8, 8)  # linear: zero Laplacian
    assert high_frequency_share(ramp) == pytest.approx(0.0, abs=1e-9)
    assert high_frequency_share(torch.full((2, 1, 8, 8), 0.3)) == 0.0  # constant: no variation at all


def test_class_statistics_closed_forms():
    conf, ent = class_statistics(torch.zeros(6, 10))  # uniform predictions
    assert conf == pytest.approx(0.1) and ent == pytest.approx(math.log(10))
    sure_one_class = torch.zeros(6, 10)
    sure_one_class[:, 3] = 50.0
    conf, ent = class_statistics(sure_one_class)
    assert conf == pytest.approx(1.0) and ent == pytest.approx(0.0, abs=1e-6)
    every_class = torch.eye(10) * 50.0
    assert class_statistics(every_class)[1] == pytest.approx(math.log(10), abs=1e-6)


def test_signs_and_patience():
    g = CollapseGuard(min_diversity=0.3, max_hf_ratio=20, max_d_real_nll=5, min_confidence=0.5, min_class_entropy=1.0)
    healthy = {"diversity": 0.9, "hf_ratio": 1.4, "d_real_nll": 0.3, "cls_confidence": 0.93, "cls_entropy": 2.1}
    assert g.signs(healthy) == {}
    texture = {"diversity": 0.16, "hf_ratio": 354.0, "d_real_nll": 12.7, "cls_confidence": 0.44, "cls_entropy": 1.4}
    assert set(g.signs(texture)) == {"diversity", "noise", "d_wins", "unrecognisable"}
    assert set(g.signs({**healthy, "cls_entropy": 0.7})) == {"few_classes"}
    assert "354.0 x" in g.signs(texture)["noise"] and "12.70 nats" in g.signs(texture)["d_wins"]
    with pytest.raises(ConfigError, match="action"):
        CollapseGuard(action="explode")
    with pytest.raises(ConfigError, match="patience_epochs"):
        CollapseGuard(patience_epochs=0)


def test_a_sign_is_reported_only_when_it_persists_and_stalls():
    g = CollapseGuard(patience_epochs=3, min_progress=0.2)
    base = {"diversity": 0.9, "hf_ratio": 1.0}
    # a run still learning: noisy samples whose high-frequency share halves over three checks
    assert [g.update({**base, "hf_ratio": v}) for v in (245.0, 219.0, 110.0)] == [{}, {}, {}]
    # a stalled texture (the separate-batch InfoGAN on digits): reported at the third check
    g = CollapseGuard(patience_epochs=3, min_progress=0.2)
    out = [g.update({"diversity": d, "hf_ratio": h}) for d, h in ((0.169, 320.0), (0.174, 311.0), (0.178, 307.0))]
    assert out[:2] == [{}, {}] and set(out[2]) == {"diversity", "noise"}
    # a recovered sign ends its streak
    g = CollapseGuard(patience_epochs=2)
    assert g.update({**base, "hf_ratio": 300.0}) == {} and g.update(base) == {} and g.update({**base, "hf_ratio": 300.0}) == {}


# ----------------------------------------------------------------------------- real runs on digits
SMALL_G = {"_target_": "xgen.nets.gan.ConvGenerator", "channels": [32, 16], "hidden": 64}
SMALL_D = {"_target_": "xgen.nets.gan.ConvDiscriminator", "channels": [16, 32], "hidden": 64, "slope": 0.1}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _run(d_batch: str, action: str = "warn", epochs: int = 3) -> CollapseGuard:
    """Tiny InfoGAN on digits (2 passes = 42 steps per epoch); the guard measures 128 samples per epoch."""
    L.seed_everything(0, verbose=False)
    model = InfoGAN(image_shape=(1, 28, 28), latent={"noise": 8, "categorical": [10], "continuous": 2},
                    generator=SMALL_G, discriminator=SMALL_D, d_batch=d_batch)
    guard = CollapseGuard(num_samples=128, action=action)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=1, max_epochs=epochs, callbacks=[guard])
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=64, repeat=2, seed=0))
    return guard


def test_the_noise_texture_configuration_is_flagged_and_fails_the_run(caplog):
    # d_batch=separate: the configuration that made a noise texture on digits (docs/gan.md)
    with caplog.at_level("ERROR", logger="xgen"), pytest.raises(TrainingFailed, match="noise-like samples"):
        _run("separate", action="fail")
    text = caplog.text
    assert "CollapseGuard at step" in text and "(epoch 2)" in text and "hf_ratio=" in text
    assert "not evidence that G models the data" in text


def test_a_healthy_run_is_not_flagged():
    guard = _run("joint")
    assert guard.events == [] and len(guard.history) == 3
    # it was noisy at first, and improving: what the stall rule lets through
    assert guard.history[-1]["diversity"] > guard.history[0]["diversity"]
    assert guard.history[-1]["hf_ratio"] < guard.history[0]["hf_ratio"]


def test_digits_repeat_makes_an_epoch_of_whole_shuffled_passes():
    one, three = DigitsDataModule(batch_size=64, seed=0), DigitsDataModule(batch_size=64, seed=0, repeat=3)
    one.setup(), three.setup()
    n = one.split("train")[0].shape[0]
    assert len(one.train_dataloader()) == n // 64 and len(three.train_dataloader()) == 3 * n // 64
    idx = three.train_dataloader()._indices()
    for k in range(3):  # every pass visits every training image exactly once
        assert torch.equal(idx[k * n:(k + 1) * n].sort().values, torch.arange(n))
    assert not torch.equal(idx[:n], idx[n:2 * n])  # each pass in its own order
    assert torch.equal(three.split("train")[0], one.split("train")[0])  # the split itself is not duplicated
    with pytest.raises(ConfigError, match="data.repeat"):
        DigitsDataModule(repeat=0)
