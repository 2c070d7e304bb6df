"""The model tells the data module its value range at setup; a contradicting range is refused."""

from __future__ import annotations

import lightning as L
import pytest

from xgen.data import DigitsDataModule
from xgen.errors import ConfigError
from xgen.models import GAN, VAE


class _Ranges(L.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((float(batch[0].min()), float(batch[0].max())))


def _fit(model, dm, callbacks=()):
    L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks)).fit(model, datamodule=dm)


def test_a_data_module_built_without_a_range_takes_the_models():
    rec = _Ranges()
    dm = DigitsDataModule(batch_size=32)
    assert dm.value_range == (0.0, 1.0) and not dm.value_range_given
    _fit(GAN(), dm, [rec])                       # tanh generator: the data must arrive in [-1, 1]
    assert dm.value_range == (-1.0, 1.0)
    assert all(lo == -1.0 and hi == 1.0 for lo, hi in rec.seen)


def test_a_contradicting_range_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"data.value_range: .*\(-1.0, 1.0\).*VAE reads and writes \(0.0, 1.0\)"):
        _fit(VAE(), DigitsDataModule(batch_size=32, value_range=(-1, 1)))
