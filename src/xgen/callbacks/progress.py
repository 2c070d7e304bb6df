"""A progress bar that redraws a few times a second instead of after every batch.

Lightning's ``RichProgressBar`` rebuilds its metrics dict and redraws after every training batch
(about 1 ms a batch on a CPU, measured in docs/speed.md); this one does that work only when
``1 / refresh_per_second`` seconds have passed since the last redraw, and always at the last batch of
an epoch, so it shows the same counter and the same metrics (``train/nelbo_step`` ...) at a fraction of
the cost.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar

from xgen.errors import ConfigError


class ThrottledProgressBar(RichProgressBar):
    """``RichProgressBar`` redrawn at most ``refresh_per_second`` times a second during training and
    evaluation (and at the end of every epoch). Other arguments as ``RichProgressBar``."""

    def __init__(self, refresh_per_second: float = 4.0, leave: bool = False, **kwargs: Any):
        if not float(refresh_per_second) > 0:
            raise ConfigError(f"callbacks.progress_bar.refresh_per_second: must be > 0, got {refresh_per_second} "
                              "(no bar at all: callbacks.progress_bar=null)")
        super().__init__(refresh_rate=1, leave=leave, **kwargs)
        self.interval = 1.0 / float(refresh_per_second)
        self.next_draw = 0.0

    def due(self, current: int, total: float | int | None) -> bool:
        """Whether to redraw after batch ``current`` of ``total``: at most once per ``interval`` seconds,
        and always at the last batch. Public names on purpose: an underscore name on a subclass of
        Lightning's bar could shadow one of Lightning's own private members."""
        now = time.monotonic()
        if now >= self.next_draw or (total is not None and current >= total):
            self.next_draw = now + self.interval
            return True
        return False

    # A disabled bar (the processes of rank > 0 under DDP) has no totals to read: hand straight to Lightning.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.is_disabled or self.due(batch_idx + 1, self.total_train_batches) or self.train_progress_bar_id is None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.is_disabled or self.due(batch_idx + 1, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.is_disabled or self.due(batch_idx + 1, self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
