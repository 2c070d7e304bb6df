"""scikit-learn's bundled 8x8 digits, resized to 28x28: real data with no files at all (fast tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xgen.data.base import InMemoryDataModule, TensorBatches
from xgen.errors import check


class RepeatedBatches(TensorBatches):
    """:class:`~xgen.data.base.TensorBatches` over ``repeat`` passes of the images: each pass visits
    every image once in its own shuffled order, so one epoch is ``repeat`` passes of the data."""

    def __init__(self, *args, repeat: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.repeat = int(repeat)

    def _num_local(self) -> int:
        n = self.images.shape[0] * self.repeat
        return n // self.world_size if self.world_size > 1 else n

    def _indices(self) -> torch.Tensor:
        n = self.images.shape[0]
        if self.shuffle:
            epoch = self.epoch_fn() if self.epoch_fn is not None else 0
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))
            idx = torch.cat([torch.randperm(n, generator=g) for _ in range(self.repeat)])
        else:
            idx = torch.arange(n * self.repeat) % n
        if self.world_size > 1:
            per_rank = idx.shape[0] // self.world_size
            idx = idx[self.rank::self.world_size][:per_rank]
        return idx.to(self.images.device, non_blocking=True)


class DigitsDataModule(InMemoryDataModule):
    """The 1,797 UCI handwritten digits bundled with scikit-learn, bilinearly resized to ``size``.

    There is no official split: ``test_fraction`` of the images (stratified by nothing, chosen with
    ``seed``) form the test split and ``val_size`` of the rest the validation split.

    ``repeat``: training passes over the 1,375 training images per epoch. With one pass an epoch is
    only ~21 steps at batch 64, too few for any model to learn digits in the epochs one gives a
    larger dataset; ``conf/data/digits.yaml`` sets the measured value (see docs/gan.md).
    """

    name = "digits"
    num_classes = 10
    class_names = tuple(str(i) for i in range(10))

    def __init__(self, size: int = 28, test_fraction: float = 0.15, val_size: int | float = 0.1,
                 repeat: int = 1, **kw):
        check(int(size) >= 8, "data.size", f"must be >= 8, got {size}")
        check(int(repeat) >= 1, "data.repeat", f"passes over the training images per epoch must be >= 1, got {repeat}")
        check(0 < float(test_fraction) < 1, "data.test_fraction", f"must be in (0, 1), got {test_fraction}")
        super().__init__(val_size=val_size, **kw)
        self.size = int(size)
        self.test_fraction = float(test_fraction)
        self.repeat = int(repeat)
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

    def _batches(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, **kwargs) -> TensorBatches:
        if not kwargs.get("shuffle") or self.repeat == 1:  # validation and test: one pass
            return super()._batches(images, labels, batch_size, **kwargs)
        return RepeatedBatches(images, labels, batch_size, repeat=self.repeat, **kwargs)
