"""The one place xgen relies on Lightning's loop state beyond its documented API (DESIGN.md).

``speed.cuda_graph`` replays the GAN family's whole step (both players' optimiser steps) as a CUDA graph
on the bare ``torch.optim`` optimisers (:mod:`xgen.models.capture`), so Lightning's optimiser wrappers,
which count each step, are not called. Lightning has no public way to say "n optimiser steps ran"; its
manual-optimisation loop keeps the count in ``trainer.fit_loop.epoch_loop.manual_optimization
.optim_step_progress``, which ``trainer.global_step`` (and so ``max_steps``, the logger step,
checkpoint names) reads. :func:`count_optimizer_steps` advances it exactly as
``LightningOptimizer.step`` does under manual optimisation (ready, then completed, per step).

tests/models/test_lightning_private.py trains a tiny manual-optimisation model that steps the bare
optimisers and counts with this function: it fails when Lightning starts counting bare steps itself or
stops reading this counter for ``global_step`` and ``max_steps``.
"""

from __future__ import annotations

from typing import Any


def count_optimizer_steps(trainer: Any, n: int) -> None:
    """Count ``n`` optimiser steps taken outside Lightning's optimiser wrappers (manual optimisation)."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for _ in range(int(n)):
        progress.increment_ready()
        progress.increment_completed()
