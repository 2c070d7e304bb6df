"""scikit-learn's bundled 8x8 digits, resized to 28x28: real data with no files at all (fast tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xgen.data.base import InMemoryDataModule
from xgen.errors import check


class DigitsDataModule(InMemoryDataModule):
    """The 1,797 UCI handwritten digits bundled with scikit-learn, bilinearly resized to ``size``.

    There is no official split: ``test_fraction`` of the images (stratified by nothing, chosen with
    ``seed``) form the test split and ``val_size`` of the rest the validation split.
    """

    name = "digits"
    num_classes = 10
    class_names = tuple(str(i) for i in range(10))

    def __init__(self, size: int = 28, test_fraction: float = 0.15, val_size: int | float = 0.1, **kw):
        check(int(size) >= 8, "data.size", f"must be >= 8, got {size}")
        check(0 < float(test_fraction) < 1, "data.test_fraction", f"must be in (0, 1), got {test_fraction}")
        super().__init__(val_size=val_size, **kw)
        self.size = int(size)
        self.test_fraction = float(test_fraction)
        self.image_shape = (1, self.size, self.size)
        self._all = None

    def _load_all(self):
        if self._all is None:
            from sklearn.datasets import load_digits

            d = load_digits()
            x = torch.from_numpy(d.images).float().unsqueeze(1) / 16.0  # values 0..16
            if self.size != 8:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
            y = torch.from_numpy(d.target).long()
            perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1234))
            self._all = x[perm], y[perm]
        return self._all

    def load_split(self, split: str):
        x, y = self._load_all()
        n_test = int(round(self.test_fraction * x.shape[0]))
        if split == "test":
            return x[:n_test], y[:n_test]
        return x[n_test:], y[n_test:]
