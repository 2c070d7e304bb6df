"""SVHN cropped digits (Netzer et al. 2011) from the official ``*_32x32.mat`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xgen.data.base import InMemoryDataModule
from xgen.data.locate import cache_dir, candidate_dirs, find_file
from xgen.data.imagefiles import fetch_or_fail
from xgen.data.matfile import read_mat
from xgen.errors import DataError

_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


class SVHNDataModule(InMemoryDataModule):
    """SVHN: 73,257 train / 26,032 test (+ 531,131 extra) 3x32x32 house-number digits, 10 classes.

    The .mat files hold ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1) with digits 1..9 as themselves and
    0 as label 10; labels are mapped back to 0..9. ``use_extra`` appends the extra set to training.
    """

    name = "svhn"
    image_shape = (3, 32, 32)
    num_classes = 10
    class_names = tuple(str(i) for i in range(10))

    def __init__(self, root: str | None = None, use_extra: bool = False, batch_size: int = 128,
                 eval_batch_size: int | None = None, val_size: int | float = 5000,
                 train_subset: int | None = None, value_range: list[float] | None = None,
                 on_device: bool = True, download: bool = True, seed: int = 0,
                 labels_per_class: int | None = None, label_fraction: float | None = None,
                 labelled_batch_size: int = 32):
        super().__init__(root=root, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_size=val_size, train_subset=train_subset, value_range=value_range,
                         on_device=on_device, download=download, seed=seed,
                         labels_per_class=labels_per_class, label_fraction=label_fraction,
                         labelled_batch_size=labelled_batch_size)
        self.use_extra = bool(use_extra)

    def _dirs(self) -> list[Path]:
        return candidate_dirs(self.name, self.root, ("SVHN",))

    def _needed(self) -> list[str]:
        return [_FILES["train"], _FILES["test"]] + ([_FILES["extra"]] if self.use_extra else [])

    def _missing(self) -> list[str]:
        return [f for f in self._needed() if find_file(self._dirs(), f, ("",)) is None]

    def download(self) -> None:
        """Fetch the missing .mat files with torchvision (it saves them directly into the target)."""
        target = Path(self.root).expanduser() if self.root else cache_dir(self.name)

        def fetch() -> None:
            import torchvision

            wanted = set(self._missing())
            for split, filename in _FILES.items():
                if filename in wanted:
                    torchvision.datasets.SVHN(str(target), split=split, download=True)

        fetch_or_fail(self.name, self._missing, self._dirs(), self.download_allowed, fetch, target,
                      "download train_32x32.mat and test_32x32.mat (and extra_32x32.mat with "
                      "data.use_extra=true) from http://ufldl.stanford.edu/housenumbers/ into one of "
                      "those folders.", root=self.root)

    def _read(self, filename: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = find_file(self._dirs(), filename, ("",))
        if path is None:
            self.download()
            path = find_file(self._dirs(), filename, ("",))
        m = read_mat(path, ("X", "y"))
        x, y = m["X"], m["y"].reshape(-1)
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
            raise DataError(f"{path}: X is {x.shape} and y {m['y'].shape}; expected X (32, 32, 3, N) "
                            "and y (N, 1). Delete the file and download it again.")
        if x.dtype != np.uint8:
            raise DataError(f"{path}: X is {x.dtype}, expected uint8; delete it and download it again.")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() > 10):
            raise DataError(f"{path}: labels outside 0..10 (found {y.min()}..{y.max()}); not SVHN.")
        y[y == 10] = 0
        images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
        return images, torch.from_numpy(y)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The 'train' split (plus 'extra' when ``use_extra``) or the 'test' split."""
        x, y = self._read(_FILES[split])
        if split == "train" and self.use_extra:
            ex, ey = self._read(_FILES["extra"])
            x, y = torch.cat([x, ex]), torch.cat([y, ey])
        return x, y
