import math

import lightning as L
import pytest
import torch
from PIL import Image

from xgen.callbacks import CollapseGuard, DropoutSchedule, SampleGrids
from xgen.data import DigitsDataModule
from xgen.errors import ConfigError
from xgen.models import GAN, InfoGAN
from xgen.nets.gan import ScheduledDropout

SMALL_G = {"_target_": "xgen.nets.gan.ConvGenerator", "channels": [32, 16], "hidden": 64}
SMALL_D = {"_target_": "xgen.nets.gan.ConvDiscriminator", "channels": [16, 32], "hidden": 64, "slope": 0.1}
LATENT = {"noise": 8, "categorical": [10], "continuous": 2}


def _trainer(callbacks, **kw):
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    base.update(kw)
    return L.Trainer(callbacks=callbacks, **base)


def _model(cls=InfoGAN):
    torch.manual_seed(0)
    return cls(image_shape=(1, 28, 28), latent=LATENT, generator=SMALL_G, discriminator=SMALL_D)


class _Probe(L.Callback):
    """Records, at the start of each epoch (after DropoutSchedule has switched), whether D drops."""

    def __init__(self):
        self.drops, self.eval_drops = {}, {}

    def on_train_epoch_start(self, trainer, pl_module):
        d = pl_module.discriminator
        x = torch.ones(4, 1, 28, 28)
        with torch.no_grad():
            d.train()
            a, b = d(x)[1], d(x)[1]  # same input, same batch statistics: only dropout can differ
            self.drops[trainer.current_epoch] = not torch.equal(a, b)
            d.eval()
            c, e = d(x)[1], d(x)[1]
            self.eval_drops[trainer.current_epoch] = not torch.equal(c, e)
            d.train()


def test_dropout_schedule_on_for_the_first_half_then_off_and_never_in_eval():
    model, probe = _model(GAN), _Probe()
    sched = DropoutSchedule(p=0.25, layers=2, fraction=0.5)
    _trainer([sched, probe], max_epochs=4, limit_train_batches=2).fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert sched.switch_epoch(4) == 2
    assert len(sched.modules) == 2 and all(isinstance(m, ScheduledDropout) for m in sched.modules)
    # dropout sits right after the first two blocks of D's body
    assert isinstance(model.discriminator.body[0][-1], ScheduledDropout)
    assert isinstance(model.discriminator.body[1][-1], ScheduledDropout)
    assert not any(isinstance(m, ScheduledDropout) for m in model.discriminator.body[2].modules())
    assert probe.drops == {0: True, 1: True, 2: False, 3: False}
    assert probe.eval_drops == {0: False, 1: False, 2: False, 3: False}
    # switched off after training
    assert not any(m.active for m in sched.modules)


def test_scheduled_dropout_statistics():
    drop = ScheduledDropout(p=0.25)
    drop.train()
    y = drop(torch.ones(200_000))
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert y.unique().tolist() == pytest.approx([0.0, 1 / 0.75])  # kept units scaled by 1/(1-p)
    drop.active = False
    assert torch.equal(drop(torch.ones(10)), torch.ones(10))
    drop.active = True
    drop.eval()
    assert torch.equal(drop(torch.ones(10)), torch.ones(10))


def test_dropout_schedule_rejects_bad_settings():
    with pytest.raises(ConfigError, match="callbacks.dropout_schedule.p"):
        DropoutSchedule(p=1.5)
    model = _model(GAN)
    sched = DropoutSchedule(layers=7)
    with pytest.raises(ConfigError, match="has 3 blocks"):
        sched.setup(None, model, "fit")


def test_collapse_guard_logic():
    g = CollapseGuard(d_threshold=0.05, patience=3)
    assert g.check(0, 0.7, 1.0) is None
    assert g.check(1, 0.01, 2.0) is None
    assert g.check(2, 0.01, 3.0) is None
    assert g.check(3, 0.01, 4.0) == "collapse"  # 3 checks below threshold, G loss up from 2.0
    g.reset()
    # D near 0 but G not growing: a good discriminator, not a collapse
    assert [g.check(i, 0.01, 2.0) for i in range(5)] == [None] * 5
    assert g.check(9, float("nan"), 1.0) == "nonfinite"
    assert g.check(9, 0.5, math.inf) == "nonfinite"


class _Poison(L.Callback):
    """Makes the model's last losses look like a collapse from batch ``start`` on."""

    def __init__(self, start):
        self.start = start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.start:
            k = batch_idx - self.start
            pl_module._last_losses = {  # what last_losses returns
                "loss_d": torch.tensor(1e-3), "loss_g": torch.tensor(5.0 + k)}


def test_collapse_guard_stops_training_with_the_step(caplog):
    model = _model(GAN)
    guard = CollapseGuard(patience=3, check_every_n_steps=1, action="stop")
    trainer = _trainer([_Poison(start=2), guard], max_epochs=1, limit_train_batches=15)
    with caplog.at_level("WARNING", logger="xgen"):
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert len(guard.events) == 1 and guard.events[0]["kind"] == "collapse"
    # batches 2, 3, 4 are below threshold; the third fires (G grows from 5 to 7): global step counts both players
    assert guard.events[0]["step"] == 2 * 5
    assert "CollapseGuard at step 10" in caplog.text and "training collapse" in caplog.text
    assert trainer.global_step == 10  # stopped right there


def test_collapse_guard_restores_the_last_healthy_state():
    model = _model(GAN)
    guard = CollapseGuard(patience=2, check_every_n_steps=1, action="restore", snapshot_every_n_checks=1)
    seen = {}

    class _Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 3:  # the last healthy snapshot is taken at this batch
                seen["w"] = pl_module.generator.fc[0].weight.detach().clone()

    # order: spy, poison (from batch 4 on), guard; the guard fires at batch 5 and restores batch 3's state
    trainer = _trainer([_Spy(), _Poison(start=4), guard], max_epochs=1, limit_train_batches=6)
    restored = {}

    class _After(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 5:
                restored["w"] = pl_module.generator.fc[0].weight.detach().clone()

    trainer.callbacks.append(_After())
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert [e["kind"] for e in guard.events] == ["collapse"]
    assert torch.equal(restored["w"], seen["w"])


def test_sample_grids_traversal_one_row_per_category(tmp_path):
    model = _model(InfoGAN)
    grids = SampleGrids(every_n_epochs=1, num_samples=16, nrow=4, traversal_steps=10)
    trainer = _trainer([grids], max_epochs=1, limit_train_batches=2, limit_val_batches=1, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    path = tmp_path / "samples" / "raw" / "traversal_final.png"  # the bare grid (samples/*.png: labelled figures)
    assert path.is_file() and (tmp_path / "samples" / "traversal_epoch000.png").is_file()
    w, h = Image.open(path).size
    assert (w, h) == (10 * 30 + 2, 10 * 30 + 2)  # 10 columns (continuous steps) x 10 rows (categories), 2 px padding
    trav = grids._trav
    codes = model.latent.split(trav)
    assert torch.equal(codes.categorical[:, 0], torch.arange(10).repeat_interleave(10))
    # a GAN without codes gets no traversal grid
    gan = GAN(image_shape=(1, 28, 28))
    assert SampleGrids()._fixed_traversal(gan) is None


def test_batch_stats_normalises_with_the_batch_and_leaves_running_stats_alone():
    from xgen.nets.gan import batch_stats

    bn = torch.nn.BatchNorm1d(3)
    net = torch.nn.Sequential(torch.nn.Dropout(0.5), bn)
    net.train()
    x = torch.randn(64, 3) * 5 + 2
    before = bn.running_mean.clone(), bn.running_var.clone()
    with batch_stats(net):
        y = net(x)
        assert not net[0].training and bn.training
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-5)  # normalised by the batch's own statistics
    assert net.training and net[0].training and bn.momentum == 0.1  # everything restored
