"""Image grids written to the run directory and sent to whichever image-capable logger is active.

Every grid is saved twice under ``<run dir>/samples/``: ``<name>.png`` is a labelled figure (title with
the model, the dataset and the epoch; row and column labels saying what varies: which code and its
values, which rows are originals and which reconstructions) and ``raw/<name>.png`` is the bare
:func:`torchvision.utils.make_grid` tiling (2-pixel padding), which tools that cut tiles out of a grid
read (``xgen human-eval`` on a run without a checkpoint). W&B (``WandbLogger.log_image``) gets the
labelled figure, TensorBoard (``add_image``) the raw grid tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from xgen.protocols import Conditional, Decodes, Encodes, Generative

RAW = "raw"  # sub-folder of samples/ with the bare grids


def to_unit(images: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((images.detach().float().cpu() - lo) / (hi - lo)).clamp_(0, 1)


def samples_dir(trainer: L.Trainer) -> Path:
    d = Path(trainer.default_root_dir) / "samples"
    d.mkdir(parents=True, exist_ok=True)
    return d


def grid_title(trainer: L.Trainer, pl_module: L.LightningModule, what: str, final: bool = False) -> str:
    """``<Model> on <dataset>: <what>, epoch E (S steps)`` — what a grid shows and when it was drawn."""
    dm = trainer.datamodule
    data = getattr(dm, "name", None) or (type(dm).__name__ if dm is not None else "unknown data")
    when = (f"end of training, {trainer.global_step} steps" if final else
            f"epoch {trainer.current_epoch} (0-based), {trainer.global_step} steps")
    import textwrap

    return textwrap.fill(f"{type(pl_module).__name__} on {data}: {what}", 72) + f"\n{when}"


@rank_zero_only
def log_grid(trainer: L.Trainer, key: str, images: torch.Tensor, nrow: int, value_range=(0.0, 1.0),
             filename: str | None = None, title: str = "", row_labels: Sequence[str] | None = None,
             col_labels: Sequence[str] | None = None, ylabel: str = "", xlabel: str = "") -> Path:
    """Save ``images`` (B, C, H, W) as a labelled figure and a raw grid, and log them to W&B / TensorBoard.

    ``row_labels``/``col_labels`` name each row/column (default: the index of its first image / the
    column number). Returns the figure's path: ``<run dir>/samples/<filename or key_epochNNN>.png``;
    the raw grid is ``samples/raw/`` of the same name.
    """
    from xgen.explain.figures import grid_figure

    unit = to_unit(images, value_range)
    grid = make_grid(unit, nrow=nrow, padding=2, pad_value=1.0)
    name = filename or f"{key.replace('/', '_')}_epoch{trainer.current_epoch:03d}"
    d = samples_dir(trainer)
    (d / RAW).mkdir(exist_ok=True)
    save_image(grid, d / RAW / f"{name}.png")
    b = unit.shape[0]
    rows = -(-b // nrow)
    cells = torch.ones(rows * nrow, *unit.shape[1:])  # an incomplete last row stays white, as in make_grid
    cells[:b] = unit
    rl = list(row_labels) if row_labels is not None else [f"#{r * nrow}" for r in range(rows)]
    cl = list(col_labels) if col_labels is not None else [str(c) for c in range(nrow)]
    path = grid_figure(cells.view(rows, nrow, *unit.shape[1:]), rl, cl, ylabel, xlabel, title, d / f"{name}.png",
                       cell_inches=0.85, fixed_layout=True, dpi=100)  # fixed layout: cheap enough for every epoch
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
    Each grid is a labelled figure (see the module docstring); the raw grids are in ``samples/raw/``.

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
        self._trav_axes: tuple[int | None, int | None] = (None, None)

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
            self._trav_axes = (cat, cont)
        return self._trav.to(pl_module.device), self.trav_steps

    def _traversal_labels(self, n_rows: int, pl_module=None, trainer=None) -> dict:
        """Row/column labels of the traversal grid: which code varies along which axis, and its values
        (for a :class:`~xgen.protocols.Conditional` model whose class code varies: the class names)."""
        cat, cont = self._trav_axes
        if cont is not None:
            vals = torch.linspace(self.trav_span[0], self.trav_span[1], self.trav_steps).tolist()
            cols, xlabel = [f"{v:.2f}" for v in vals], f"continuous code cont{cont} (value)"
        else:
            cols, xlabel = [str(c) for c in range(self.trav_steps)], "noise draw (no continuous code)"
        if cat is not None and isinstance(pl_module, Conditional) and cat == pl_module.class_code:
            names = list(getattr(getattr(trainer, "datamodule", None), "class_names", None) or [])
            rows = [f"class {k}" + (f": {names[k]}" if k < len(names) and names[k] != str(k) else "")
                    for k in range(n_rows)]
            ylabel = f"class asked for (cat{cat}, the label)"
        elif cat is not None:
            rows, ylabel = [f"cat{cat}={k}" for k in range(n_rows)], f"categorical code cat{cat} (category)"
        else:
            rows, ylabel = [f"draw {k}" for k in range(n_rows)], "noise draw (no categorical code)"
        other = "noise and the other codes fixed (one draw)"
        return {"row_labels": rows, "col_labels": cols, "ylabel": ylabel, "xlabel": xlabel,
                "what": f"traversal, rows: {ylabel.split(' (')[0]}, columns: {xlabel.split(' (')[0]}; {other}"}

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
                                  filename="samples_final" if suffix else None,
                                  title=grid_title(trainer, pl_module, f"samples of {len(imgs)} fixed prior draws "
                                                   f"(seed {self.seed})", final),
                                  ylabel="prior draws", xlabel="column (draw index = row's first + column)"))
            trav = self._fixed_traversal(pl_module)
            if trav is not None:
                n_rows = len(trav[0]) // trav[1]
                lab = self._traversal_labels(n_rows, pl_module, trainer)
                paths.append(log_grid(trainer, "traversal", pl_module.generate(trav[0]), trav[1], vr,
                                      filename="traversal_final" if suffix else None,
                                      title=grid_title(trainer, pl_module, lab.pop("what"), final), **lab))
            reconstructs = isinstance(pl_module, Encodes) and isinstance(pl_module, Decodes)
            real = self._fixed_real(trainer) if reconstructs else None
            if real is not None:
                real = real.to(pl_module.device)
                rec = pl_module.decode(pl_module.encode(real).mean)
                rows = [t for i in range(0, real.shape[0], self.nrow) for t in (real[i:i + self.nrow], rec[i:i + self.nrow])]
                labels = [s for i in range(0, real.shape[0], self.nrow)
                          for s in (f"original #{i}-{min(i + self.nrow, real.shape[0]) - 1}", "reconstruction")]
                paths.append(log_grid(trainer, "reconstructions", torch.cat(rows), self.nrow, vr,
                                      filename="reconstructions_final" if suffix else None,
                                      title=grid_title(trainer, pl_module, "reconstructions: validation images (original "
                                                       "rows), each above decode(posterior mean)", final),
                                      row_labels=labels, ylabel="validation images",
                                      xlabel="column (image index = row's first + column)"))
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
