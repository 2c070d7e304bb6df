"""Image grids written to the run directory and sent to whichever image-capable logger is active.

Peers' image callbacks often assume TensorBoard; here a grid is always saved as a PNG under
``<run dir>/samples/`` and additionally logged to W&B (``WandbLogger.log_image``) and/or TensorBoard
(``add_image``) when those loggers are in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from xgen.protocols import Decodes, Encodes, Generative


def to_unit(images: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((images.detach().float().cpu() - lo) / (hi - lo)).clamp_(0, 1)


def samples_dir(trainer: L.Trainer) -> Path:
    d = Path(trainer.default_root_dir) / "samples"
    d.mkdir(parents=True, exist_ok=True)
    return d


@rank_zero_only
def log_grid(trainer: L.Trainer, key: str, images: torch.Tensor, nrow: int, value_range=(0.0, 1.0),
             filename: str | None = None) -> Path:
    """Save ``images`` (B, C, H, W) as one PNG grid and log it to W&B / TensorBoard if active.

    Returns the PNG's path: ``<run dir>/samples/<filename or key_epochNNN>.png``.
    """
    grid = make_grid(to_unit(images, value_range), nrow=nrow, padding=2, pad_value=1.0)
    name = filename or f"{key.replace('/', '_')}_epoch{trainer.current_epoch:03d}"
    path = samples_dir(trainer) / f"{name}.png"
    save_image(grid, path)
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "WandbLogger":
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        elif kind == "TensorBoardLogger":
            logger.experiment.add_image(key, grid, global_step=trainer.global_step)
    return path


class SampleGrids(L.Callback):
    """Every ``every_n_epochs`` (and at the end of training) saves a grid of samples from fixed prior
    draws and, for models with ``reconstruct``, a grid of fixed validation images (odd rows) above
    their reconstructions (even rows). For models with a ``latent`` (:class:`xgen.latent.LatentSpec`)
    that has codes, also a traversal grid: one row per value of categorical code ``traversal_categorical``,
    continuous code ``traversal_continuous`` stepped across ``traversal_span``, noise and other codes fixed.

    The model is read through :mod:`xgen.protocols`: a :class:`~xgen.protocols.Generative` model gets
    sample (and traversal) grids, one that also :class:`~xgen.protocols.Encodes` and
    :class:`~xgen.protocols.Decodes` gets reconstructions; any other model (a classifier) gets none.
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 64, num_reconstructions: int = 32,
                 nrow: int = 8, seed: int = 0, traversal: bool = True, traversal_categorical: int = 0,
                 traversal_continuous: int = 0, traversal_steps: int = 10,
                 traversal_span: tuple[float, float] = (-1.0, 1.0)):
        if every_n_epochs < 1:
            raise ValueError(f"callbacks.sample_grids.every_n_epochs must be >= 1, got {every_n_epochs}")
        if traversal_steps < 2:
            raise ValueError(f"callbacks.sample_grids.traversal_steps must be >= 2, got {traversal_steps}")
        self.every_n_epochs, self.num_samples, self.num_rec = every_n_epochs, num_samples, num_reconstructions
        self.nrow, self.seed = nrow, seed
        self.traversal, self.trav_cat, self.trav_cont = bool(traversal), int(traversal_categorical), int(traversal_continuous)
        self.trav_steps, self.trav_span = int(traversal_steps), tuple(float(v) for v in traversal_span)
        self._latent = None
        self._real = None
        self._trav = None

    def _fixed_traversal(self, pl_module):
        """(latent grid, columns) for a model with codes, else None."""
        spec = pl_module.latent
        if not self.traversal or spec.num_codes == 0:
            return None
        if self._trav is None:
            cat = min(self.trav_cat, spec.num_categorical - 1) if spec.num_categorical else None
            cont = min(self.trav_cont, spec.continuous - 1) if spec.continuous else None
            g = torch.Generator().manual_seed(self.seed)
            self._trav = spec.traversal(cat, cont, steps=self.trav_steps, span=self.trav_span, generator=g)
        return self._trav.to(pl_module.device), self.trav_steps

    def _fixed_latent(self, pl_module):
        if self._latent is None:
            g = torch.Generator().manual_seed(self.seed)
            self._latent = pl_module.sample_latent(self.num_samples, generator=g)
        return self._latent.to(pl_module.device)

    def _fixed_real(self, trainer):
        if self._real is None and self.num_rec > 0:
            dm = trainer.datamodule
            if dm is not None and hasattr(dm, "split"):
                x, _ = dm.split("val")
                self._real = dm.scale(x[: self.num_rec])
        return self._real

    @torch.no_grad()
    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool = False) -> list[Path]:
        if not isinstance(pl_module, Generative):
            return []  # e.g. xgen.models.Classifier: nothing to sample
        was_training = pl_module.training
        pl_module.eval()
        paths = []
        vr = pl_module.value_range
        suffix = "final" if final else None
        try:
            imgs = pl_module.generate(self._fixed_latent(pl_module))
            paths.append(log_grid(trainer, "samples", imgs, self.nrow, vr,
                                  filename="samples_final" if suffix else None))
            trav = self._fixed_traversal(pl_module)
            if trav is not None:
                paths.append(log_grid(trainer, "traversal", pl_module.generate(trav[0]), trav[1], vr,
                                      filename="traversal_final" if suffix else None))
            reconstructs = isinstance(pl_module, Encodes) and isinstance(pl_module, Decodes)
            real = self._fixed_real(trainer) if reconstructs else None
            if real is not None:
                real = real.to(pl_module.device)
                rec = pl_module.decode(pl_module.encode(real).mean)
                rows = [t for i in range(0, real.shape[0], self.nrow) for t in (real[i:i + self.nrow], rec[i:i + self.nrow])]
                paths.append(log_grid(trainer, "reconstructions", torch.cat(rows), self.nrow, vr,
                                      filename="reconstructions_final" if suffix else None))
        finally:
            pl_module.train(was_training)
        return paths

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.write(trainer, pl_module, final=True)
