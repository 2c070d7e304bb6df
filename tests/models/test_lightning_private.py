"""xgen.models.lightning_private: the one reliance on Lightning's loop state (the CUDA-graph step counts its
optimiser steps by hand). Checked by behaviour on a CPU, not by signature: a manual-optimisation model that
steps its bare optimisers advances ``trainer.global_step`` only through :func:`count_optimizer_steps`,
and ``max_steps`` stops it on that count."""

from __future__ import annotations

import lightning as L
import torch

from xgen.models.lightning_private import count_optimizer_steps


class BareSteps(L.LightningModule):
    """Two bare (unwrapped) optimiser steps a batch, as a replayed CUDA graph takes them."""

    def __init__(self, count: bool):
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
        self.count = count
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        x = batch[0]
        for net, opt in zip((self.a, self.b), self.trainer.optimizers):  # torch.optim, not Lightning's wrappers
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
        if self.count:
            count_optimizer_steps(self.trainer, 2)
        self.seen.append(self.trainer.global_step)

    def configure_optimizers(self):
        return [torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)]


def _fit(model: L.LightningModule, **kw) -> L.Trainer:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(40, 2)), batch_size=8)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **kw)
    trainer.fit(model, train_dataloaders=data)
    return trainer


def test_bare_optimiser_steps_are_not_counted_by_lightning():
    model = BareSteps(count=False)
    trainer = _fit(model, max_epochs=2)
    assert trainer.global_step == 0 and model.seen == [0] * 10  # if this fails, drop count_optimizer_steps


def test_counted_steps_drive_global_step_and_max_steps():
    model = BareSteps(count=True)
    trainer = _fit(model, max_epochs=2)
    assert model.seen == list(range(2, 21, 2)) and trainer.global_step == 20
    model = BareSteps(count=True)
    trainer = _fit(model, max_epochs=5, max_steps=7)  # stops after the batch that reaches 7
    assert trainer.global_step == 8 and len(model.seen) == 4
