"""Frey Faces (Brendan Frey's 1,965 28x20 face images; vae-thesis §4.1) from ``frey_rawface.mat``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xgen.data.base import InMemoryDataModule
from xgen.data.imagefiles import download_url, fetch_or_fail, fraction_split
from xgen.data.locate import cache_dir, candidate_dirs, find_file
from xgen.data.matfile import read_mat
from xgen.errors import DataError, check

FILENAME = "frey_rawface.mat"
URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
HEIGHT, WIDTH = 28, 20


def frey_images(ff: np.ndarray, path: Path | str = FILENAME) -> np.ndarray:
    """The ``ff`` matrix -> uint8 (N, 1, 28, 20).

    Roweis's file stores one image per column (560 x 1965), each column being a 28x20 image in
    row-major order; the transposed layout (1965 x 560, one image per row) is accepted as well.
    """
    if ff.ndim != 2 or HEIGHT * WIDTH not in ff.shape:
        raise DataError(f"{path}: 'ff' is {ff.shape}; expected 560 x N (one 28x20 image per column) "
                        "or N x 560. Delete the file and download it again.")
    rows = ff.T if ff.shape[0] == HEIGHT * WIDTH else ff  # documented layout wins when both are 560
    if rows.dtype != np.uint8:
        if rows.size and (rows.min() < 0 or rows.max() > 255):
            raise DataError(f"{path}: 'ff' values span {rows.min()}..{rows.max()}, expected 0..255.")
        rows = rows.astype(np.uint8)
    return np.ascontiguousarray(rows).reshape(-1, 1, HEIGHT, WIDTH)


class FreyFacesDataModule(InMemoryDataModule):
    """Frey Faces: 1,965 grayscale 1x28x20 images of one face, no labels (all zeros), no split.

    ``test_fraction`` of the images (chosen with ``split_seed``, fixed so that the test set does not
    move with the training seed) form the test split and ``val_size`` of the rest the validation split.
    """

    name = "frey_faces"
    image_shape = (1, HEIGHT, WIDTH)
    num_classes = None

    def __init__(self, root: str | None = None, test_fraction: float = 0.1, split_seed: int = 1234,
                 batch_size: int = 100, eval_batch_size: int | None = None, val_size: int | float = 0.1,
                 train_subset: int | None = None, value_range: list[float] | None = None,
                 on_device: bool = True, download: bool = True, seed: int = 0):
        check(0 < float(test_fraction) < 1, "data.test_fraction", f"must be in (0, 1), got {test_fraction}")
        super().__init__(root=root, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_size=val_size, train_subset=train_subset, value_range=value_range,
                         on_device=on_device, download=download, seed=seed)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self._all: torch.Tensor | None = None

    def _dirs(self) -> list[Path]:
        return candidate_dirs(self.name, self.root, ("frey", "frey-faces", "FreyFaces"))

    def _find(self) -> Path | None:
        return find_file(self._dirs(), FILENAME, ("",))

    def download(self) -> None:
        """Fetch frey_rawface.mat from Sam Roweis's data page into data.root or the xgen cache."""
        target = Path(self.root).expanduser() if self.root else cache_dir(self.name)
        fetch_or_fail(self.name, lambda: [] if self._find() else [FILENAME], self._dirs(),
                      self.download_allowed, lambda: download_url(URL, target / FILENAME), target,
                      f"download {URL} into one of those folders.", root=self.root)

    def _load_all(self) -> torch.Tensor:
        if self._all is None:
            path = self._find()
            if path is None:
                self.download()
                path = self._find()
            self._all = torch.from_numpy(frey_images(read_mat(path, ("ff",))["ff"], path))
        return self._all

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """'test': the held-out fraction; 'train': the rest (validation is carved from it)."""
        x = self._load_all()
        test_idx, train_idx = fraction_split(x.shape[0], self.test_fraction, self.split_seed)
        idx = test_idx if split == "test" else train_idx
        return x[idx], torch.zeros(idx.shape[0], dtype=torch.int64)
