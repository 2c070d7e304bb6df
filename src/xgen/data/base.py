"""Data modules over in-memory uint8 tensors: one tensor on the training device, batches by indexing.

MNIST-size datasets fit in memory many times over. Keeping them as a single uint8 tensor that is moved
to the training device once, and drawing shuffled batches by indexing it, avoids per-image PIL
transforms, worker processes and host-to-device copies on every step (DESIGN.md, "Data path").

Every data module here yields ``(images, labels)`` with images float32 ``(B, C, H, W)`` in the data
module's ``value_range`` and labels int64 ``(B,)``. Labels are for evaluation only; models train
unsupervised.

**Value range.** A data module never asks the model: the range is passed in. ``xgen`` (``build()`` in
:mod:`xgen.runtime.train`) hands the model's ``value_range`` to the data module once both are built
(:meth:`InMemoryDataModule.set_value_range`); from Python, pass ``value_range=model.value_range`` to the
constructor or call ``dm.set_value_range(model.value_range)`` — e.g. (-1, 1) for a GAN's tanh
generator. A data module given neither hands out images in (0, 1).

**Ground-truth factors.** Disentanglement metrics and explainability tools read what generated each
image through three members of every data module:

* ``factor_names: list[str]`` — one name per factor, e.g. ``["label"]``;
* ``factor_sizes: list[int]`` — the number of values of each factor, e.g. ``[10]``;
* ``factors(split) -> Tensor`` — int64 ``(N, K)``, row ``i`` the factors of image ``i`` of
  ``split(split)``, each column ``k`` in ``0 .. factor_sizes[k] - 1``.

A dataset with only a class label exposes it as the single factor ``"label"`` of size ``num_classes``;
one without labels (Frey Faces, CelebA) has ``K = 0`` factors. A dataset with real factors (dSprites:
shape, scale, orientation, x, y) returns them from :meth:`InMemoryDataModule.load_split` as a third
element ``(N, K)``, which follows its images through the train/val carving and ``train_subset``.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import lightning as L
import torch

from xgen.data.labelled import UNLABELLED, check_subset_args, labelled_subset
from xgen.errors import ConfigError, check

Tensor = torch.Tensor


def to_value_range(x: Tensor, value_range: Sequence[float]) -> Tensor:
    """uint8 images in [0, 255] -> float32 in [lo, hi]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return x.to(torch.float32).mul_((hi - lo) / 255.0).add_(lo)


def convert_range(x: Tensor, src: Sequence[float], dst: Sequence[float]) -> Tensor:
    """Map pixel values linearly from range ``src`` to range ``dst`` (differentiable)."""
    (a, b), (c, d) = (float(src[0]), float(src[1])), (float(dst[0]), float(dst[1]))
    if (a, b) == (c, d):
        return x
    return (x - a) * ((d - c) / (b - a)) + c


def parse_value_range(value_range: Sequence[float], key: str = "data.value_range") -> tuple[float, float]:
    """``[low, high]`` as two floats with low < high, else a ConfigError naming ``key``."""
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: must be [low, high], got {value_range!r}") from None
    check(lo < hi, key, f"must be [low, high] with low < high, got {list(value_range)}")
    return lo, hi


class TensorBatches:
    """An iterable of batches drawn by indexing device-resident tensors.

    Shuffling uses a generator seeded from ``(seed, epoch)``, so the order of every epoch is
    reproducible and a resumed run sees the same batches as an uninterrupted one. Under DDP each rank
    takes a disjoint, equally long slice of the same permutation.

    With ``prefetch`` (the default) and the images in host memory, the next batch is gathered and
    scaled in a background thread while the current one trains: the indexing and the uint8 -> float
    conversion (0.3-0.4 ms of a 15 ms MLP-VAE step on one CPU thread, docs/speed.md) leave the training
    thread, as a DataLoader worker would take them, with the same batches in the same order. Tensors on
    a GPU are not prefetched (their kernels are queued asynchronously anyway).
    """

    prefetch_default: bool = True

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, *, shuffle: bool,
                 drop_last: bool, value_range: Sequence[float], seed: int = 0,
                 epoch_fn: Callable[[], int] | None = None, rank: int = 0, world_size: int = 1,
                 position_fn: Callable[[], int] | None = None, prefetch: bool | None = None,
                 labelled: tuple[Tensor, Tensor] | None = None, labelled_batch_size: int = 0):
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        self.images, self.labels = images, labels
        # semi-supervised training: (indices into images, their labels) of the labelled subset this
        # process draws from; every batch gets labelled_batch_size of them appended (after the stream)
        self.labelled = labelled if labelled is not None and labelled[0].numel() and labelled_batch_size else None
        self.labelled_batch_size = int(labelled_batch_size) if self.labelled is not None else 0
        self._tail: Tensor | None = None
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.value_range = tuple(value_range)
        self.seed, self.epoch_fn = int(seed), epoch_fn
        self.rank, self.world_size = int(rank), int(world_size)
        # exact resume: batches of the current epoch already trained on (Lightning saves state_dict()
        # in mid-epoch checkpoints and hands it back to load_state_dict() before iterating again)
        self.position_fn = position_fn
        self.prefetch = self.prefetch_default if prefetch is None else bool(prefetch)
        self._yielded = 0
        self._resume: tuple[int, int] | None = None

    def _num_local(self) -> int:
        n = self.images.shape[0]
        return n // self.world_size if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self._num_local()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _indices(self) -> Tensor:
        n = self.images.shape[0]
        if self.shuffle:
            epoch = self.epoch_fn() if self.epoch_fn is not None else 0
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        if self.world_size > 1:
            per_rank = n // self.world_size
            idx = idx[self.rank::self.world_size][:per_rank]
        return idx.to(self.images.device, non_blocking=True)

    def _epoch(self) -> int:
        return int(self.epoch_fn()) if self.epoch_fn is not None else 0

    def state_dict(self) -> dict:
        """Where this epoch's iteration stands: (epoch, batches already trained on)."""
        done = int(self.position_fn()) if self.position_fn is not None else self._yielded
        return {"epoch": self._epoch(), "batches_done": done}

    def load_state_dict(self, state: dict) -> None:
        from xgen.checkpoint.schema import check_mapping
        from xgen.errors import ConfigError

        state = check_mapping(state, {"epoch": int, "batches_done": int}, "checkpoint", "loops/.../dataloader_state")
        epoch, done = state.get("epoch", -1), state.get("batches_done", 0)
        if epoch < -1 or done < 0:
            raise ConfigError(f"checkpoint: the data loader position (epoch {epoch}, batch {done}) is not one a run reaches.")
        self._resume = (epoch, done)

    def _tail_order(self) -> Tensor | None:
        """This epoch's labelled draws: positions into ``labelled``, ``labelled_batch_size`` per batch,
        from passes over the subset each in its own order (a function of seed, epoch and rank)."""
        if self.labelled is None:
            return None
        n_lab, need = self.labelled[0].numel(), len(self) * self.labelled_batch_size
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self._epoch() * 7_919 + self.rank * 104_729 + 1)
        passes = -(-need // n_lab)
        order = torch.cat([torch.randperm(n_lab, generator=g) for _ in range(max(passes, 1))])[:need]
        return order.to(self.labelled[0].device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self._indices()
        self._tail = self._tail_order()
        start = 0
        if self._resume is not None:
            if self._resume[0] == self._epoch():
                start = min(self._resume[1], len(self))
            self._resume = None
        self._yielded = start
        n = len(self)
        if not self.prefetch or self.images.device.type != "cpu" or n - start < 2:
            for b in range(start, n):
                self._yielded = b + 1
                yield self._batch(idx, b)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="xgen-batches") as pool:
            pending = pool.submit(self._batch, idx, start)
            for b in range(start, n):
                batch = pending.result()
                if b + 1 < n:
                    pending = pool.submit(self._batch, idx, b + 1)
                self._yielded = b + 1
                yield batch

    def _batch(self, idx: Tensor, b: int) -> tuple[Tensor, Tensor]:
        """Batch ``b`` of the order ``idx``: images scaled to the value range, and their labels."""
        sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
        if self._tail is None:
            return to_value_range(self.images[sel], self.value_range), self.labels[sel]
        m = self.labelled_batch_size
        pos = self._tail[b * m:(b + 1) * m]
        lab_idx, lab_y = self.labelled[0][pos], self.labelled[1][pos]
        return (to_value_range(self.images[torch.cat([sel, lab_idx])], self.value_range),
                torch.cat([self.labels[sel], lab_y]))


class InMemoryDataModule(L.LightningDataModule):
    """Base class: a dataset held as one uint8 tensor ``(N, C, H, W)`` plus int64 labels.

    Subclasses set ``name`` and ``image_shape`` and implement :meth:`load_split` (and, where files can
    be fetched, :meth:`download`). The validation split is carved from the training split
    (``val_size`` images, chosen with ``seed``) unless the dataset has its own.

    Args:
        root: directory searched first for the dataset's files (see :mod:`xgen.data.locate`).
        batch_size: training batch size (per process under DDP); the last partial batch is dropped.
        eval_batch_size: batch size for validation/test (default: ``batch_size``).
        val_size: images held out of the training split for validation (int) or a fraction (float).
        train_subset: keep only the first N training images (after the split); ``None`` keeps all.
        value_range: range of the float images handed to the model; ``None``: (0, 1) until
            :meth:`set_value_range` is called (``xgen`` passes the model's range).
        on_device: move the tensors to the training device once (``True``) or keep them in host
            memory and copy each batch (``False``).
        download: allow downloading missing files when online.
        seed: seed of the train/val split, of the shuffling and of the labelled subset.
        labels_per_class, label_fraction: keep the training labels of only this many images per class
            (or this fraction of each class), drawn by ``seed`` from the training split after the
            validation split is carved out (:mod:`xgen.data.labelled`). Then every training image in the
            shuffled stream carries the label -1, and each training batch gets ``labelled_batch_size``
            images of the labelled subset appended with their labels (a batch of ``batch_size +
            labelled_batch_size``; under DDP each process draws from its own share of the subset).
            ``None`` (both, the default): every training label, plain batches, as before. Validation,
            test and :meth:`factors` always keep every label.
        labelled_batch_size: labelled images appended to every training batch (semi-supervised only).
    """

    name: str = "dataset"
    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int | None = None
    has_val_split: bool = False  # the dataset ships its own validation split
    DEFAULT_VALUE_RANGE: tuple[float, float] = (0.0, 1.0)

    def __init__(self, root: str | None = None, batch_size: int = 128, eval_batch_size: int | None = None,
                 val_size: int | float = 5000, train_subset: int | None = None,
                 value_range: Sequence[float] | None = None, on_device: bool = True,
                 download: bool = True, seed: int = 0, labels_per_class: int | None = None,
                 label_fraction: float | None = None, labelled_batch_size: int = 32):
        super().__init__()
        check_subset_args(labels_per_class, label_fraction)
        check(int(labelled_batch_size) >= 1, "data.labelled_batch_size", f"must be >= 1, got {labelled_batch_size}")
        check(int(batch_size) >= 1, "data.batch_size", f"must be >= 1, got {batch_size}")
        check(eval_batch_size is None or int(eval_batch_size) >= 1, "data.eval_batch_size",
              f"must be >= 1 or null, got {eval_batch_size}")
        check(float(val_size) >= 0, "data.val_size", f"must be >= 0, got {val_size}")
        check(train_subset is None or int(train_subset) >= 1, "data.train_subset",
              f"must be >= 1 or null, got {train_subset}")
        self._value_range: tuple[float, float] | None = None
        if value_range is not None:
            self.set_value_range(value_range)
        self.root = root
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.val_size = val_size
        self.train_subset = train_subset
        self.on_device = on_device
        self.download_allowed = download
        self.seed = int(seed)
        self.labels_per_class = None if labels_per_class is None else int(labels_per_class)
        self.label_fraction = None if label_fraction is None else float(label_fraction)
        self.labelled_batch_size = int(labelled_batch_size)
        self._train_labels: Tensor | None = None  # the training labels batches carry (masked: -1)
        self._splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._factors: dict[str, Tensor] = {}  # from load_split's optional third element
        self._device_splits: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    # ----------------------------------------------------------------------------- to override
    def load_split(self, split: str) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        """Return ``(images uint8 (N, C, H, W), labels int64 (N,))`` for split 'train' or 'test'
        (and 'val' when ``has_val_split``), optionally with a third element, the ground-truth factors
        int64 ``(N, K)`` (then also set ``factor_names``/``factor_sizes``). Raise DataError when files
        are missing or corrupt."""
        raise NotImplementedError

    def download(self) -> None:
        """Fetch missing files (online only). The default: nothing to download."""

    # ----------------------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        """Called on one process: make sure files exist (download when allowed), else raise."""
        self.download()

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        train_x, train_y, train_f = self._load("train")
        self._check_images(train_x, "train")
        if self.has_val_split:
            val_x, val_y, val_f = self._load("val")
        else:
            n_val = self._num_val(train_x.shape[0])
            g = torch.Generator().manual_seed(self.seed)
            perm = torch.randperm(train_x.shape[0], generator=g)
            val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
            val_x, val_y = train_x[val_idx], train_y[val_idx]
            val_f = train_f[val_idx] if train_f is not None else None
            train_x, train_y = train_x[train_idx], train_y[train_idx]
            train_f = train_f[train_idx] if train_f is not None else None
        if self.train_subset is not None:
            n = int(self.train_subset)
            train_x, train_y = train_x[:n], train_y[:n]
            train_f = train_f[:n] if train_f is not None else None
        test_x, test_y, test_f = self._load("test")
        self._splits = {"train": (train_x, train_y), "val": (val_x, val_y), "test": (test_x, test_y)}
        self._factors = {k: f for k, f in (("train", train_f), ("val", val_f), ("test", test_f)) if f is not None}

    def _load(self, split: str) -> tuple[Tensor, Tensor, Tensor | None]:
        """load_split's images, labels and (when it returns them) factors, checked against each other."""
        out = self.load_split(split)
        x, y, f = (out[0], out[1], out[2] if len(out) > 2 else None)
        if f is not None:
            k = len(self.factor_names)
            if f.dtype != torch.int64 or f.ndim != 2 or f.shape != (x.shape[0], k) or len(self.factor_sizes) != k:
                raise ValueError(f"{type(self).__name__}.load_split('{split}') returned factors "
                                 f"{tuple(f.shape)} {f.dtype}; expected int64 ({x.shape[0]}, {k}) for "
                                 f"factor_names {self.factor_names} and factor_sizes {self.factor_sizes}")
            sizes = torch.tensor(self.factor_sizes, dtype=torch.int64)
            if x.shape[0] and (bool((f.min(0).values < 0).any()) or bool((f.max(0).values >= sizes).any())):
                raise ValueError(f"{type(self).__name__}.load_split('{split}'): factor values outside "
                                 f"0 .. size - 1 for factor_sizes {self.factor_sizes}")
        return x, y, f

    def _num_val(self, n_train: int) -> int:
        v = self.val_size
        n_val = int(round(float(v) * n_train)) if isinstance(v, float) and v < 1 else int(v)
        if n_val >= n_train:
            raise ConfigError(f"data.val_size: {v} leaves no training images out of {n_train}; "
                              "choose a smaller validation split.")
        return n_val

    def _check_images(self, x: Tensor, split: str) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"{type(self).__name__}.load_split('{split}') returned {tuple(x.shape)} "
                             f"{x.dtype}; expected uint8 (N, {', '.join(map(str, self.image_shape))})")

    # ----------------------------------------------------------------------------- access
    def split(self, split: str) -> tuple[Tensor, Tensor]:
        """The uint8 images and labels of a split (host memory), loading them on first use. The images
        are stored pixels, not model input: use :meth:`batch` (or :meth:`scale`) for that."""
        if not self._splits:
            self.prepare_data()
            self.setup()
        if split not in self._splits:
            raise KeyError(f"unknown split {split!r}; use 'train', 'val' or 'test'")
        return self._splits[split]

    def batch(self, split: str = "test", n: int | None = None, start: int = 0,
              value_range: Sequence[float] | None = None) -> tuple[Tensor, Tensor]:
        """Model-ready images: ``(images, labels)`` for images ``start .. start + n - 1`` of ``split``
        (all of it for ``n=None``), the images float32 ``(n, C, H, W)`` on the CPU in ``value_range`` —
        by default the data module's :attr:`value_range`, which is the model's once the model has been
        fitted on this data module (or after ``dm.set_value_range(model.value_range)``). E.g.
        ``images, labels = dm.batch("test", 64)`` then ``model.encode(images)``."""
        check(split in ("train", "val", "test"), "split", f"use 'train', 'val' or 'test', got {split!r}")
        x, y = self.split(split)
        check(int(start) >= 0, "start", f"must be >= 0, got {start}")
        stop = x.shape[0] if n is None else int(start) + int(n)
        check(n is None or int(n) >= 1, "n", f"must be >= 1 or None, got {n}")
        if stop > x.shape[0] or int(start) >= x.shape[0]:
            raise ConfigError(f"n: asked for images {start} .. {stop - 1} of '{split}', which has "
                              f"{x.shape[0]} images; ask for fewer.")
        vr = self.value_range if value_range is None else parse_value_range(value_range, "value_range")
        return to_value_range(x[int(start):stop], vr), y[int(start):stop]

    # ----------------------------------------------------------------------------- labelled subset
    @property
    def semi_supervised(self) -> bool:
        """Whether training batches carry only a labelled subset's labels (``labels_per_class`` or
        ``label_fraction`` set)."""
        return self.labels_per_class is not None or self.label_fraction is not None

    def labelled_indices(self) -> Tensor:
        """Indices into ``split("train")`` of the images whose label training batches carry (all of
        them unless ``labels_per_class`` / ``label_fraction`` is set)."""
        _, y = self.split("train")
        return labelled_subset(y, self.labels_per_class, self.label_fraction, seed=self.seed,
                               num_classes=self._label_classes())

    def train_labels(self) -> Tensor:
        """The labels the shuffled training stream carries: the training split's, or -1 for every image
        when semi-supervised (the labelled subset's labels come with the appended images only)."""
        if self._train_labels is None:
            _, y = self.split("train")
            self._train_labels = torch.full_like(y, UNLABELLED) if self.semi_supervised else y
        return self._train_labels

    # ----------------------------------------------------------------------------- factors
    @property
    def factor_names(self) -> list[str]:
        """Names of the ground-truth factors (columns of :meth:`factors`): ``["label"]`` for a dataset
        with class labels, ``[]`` for one without; datasets with real factors override it."""
        return ["label"] if self._label_classes() is not None else []

    @property
    def factor_sizes(self) -> list[int]:
        """Number of values of each factor: ``[num_classes]`` for a labelled dataset."""
        n = self._label_classes()
        return [int(n)] if n is not None else []

    def factors(self, split: str) -> Tensor:
        """Ground-truth factors of every image of ``split``: int64 ``(N, K)``, row ``i`` belonging to
        image ``i`` of :meth:`split` (``K = len(factor_names)``; the class label when that is all)."""
        x, y = self.split(split)
        if split in self._factors:
            return self._factors[split]
        names = self.factor_names
        if names == []:
            return torch.zeros(x.shape[0], 0, dtype=torch.int64)
        if names != ["label"]:
            raise NotImplementedError(f"{type(self).__name__} names factors {names} but load_split did not "
                                      "return them (a third element, int64 (N, K))")
        return y.to(torch.int64).view(-1, 1)

    def _label_classes(self) -> int | None:
        """The number of classes when the label is a factor (None: no labels). Data modules that learn
        ``num_classes`` from their files (folders, LFW) override this to read them first."""
        return self.num_classes

    # ----------------------------------------------------------------------------- value range
    @property
    def value_range(self) -> tuple[float, float]:
        """Range of the float images handed out: as given or set, else (0, 1)."""
        return self._value_range if self._value_range is not None else self.DEFAULT_VALUE_RANGE

    @value_range.setter
    def value_range(self, value_range: Sequence[float]) -> None:
        self.set_value_range(value_range)

    def set_value_range(self, value_range: Sequence[float]) -> "InMemoryDataModule":
        """Hand out images in ``value_range`` (the model's: ``dm.set_value_range(model.value_range)``);
        returns the data module. ``xgen`` calls it when it builds the model and the data."""
        self._value_range = parse_value_range(value_range)
        return self

    @property
    def value_range_given(self) -> bool:
        """Whether a range was given (constructor or :meth:`set_value_range`) rather than defaulted."""
        return self._value_range is not None

    def resolved_value_range(self) -> tuple[float, float]:
        """The same as :attr:`value_range` (kept for callers of xgen 0.1)."""
        return self.value_range

    def scale(self, x_uint8: Tensor) -> Tensor:
        """uint8 images -> float images in the resolved value range."""
        return to_value_range(x_uint8, self.value_range)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        if self.on_device and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _on_device(self, split: str) -> tuple[Tensor, Tensor]:
        device = self._device()
        key = (split, str(device))
        if key not in self._device_splits:
            x, y = self.split(split)
            if split == "train":
                y = self.train_labels()
            self._device_splits = {k: v for k, v in self._device_splits.items() if k[1] == str(device)}
            self._device_splits[key] = (x.to(device), y.to(device))
        return self._device_splits[key]

    def _loader(self, split: str, batch_size: int, shuffle: bool, drop_last: bool) -> TensorBatches:
        x, y = self._on_device(split)
        trainer = getattr(self, "trainer", None)
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        if drop_last and x.shape[0] // world < batch_size:
            raise ConfigError(f"data.batch_size: {batch_size} is larger than the {x.shape[0] // world} "
                              f"'{split}' images each process gets; lower data.batch_size.")
        labelled = None
        if split == "train" and self.semi_supervised:
            keep = self.labelled_indices()[rank::world]  # this process's share of the labelled subset
            labelled = (keep.to(x.device), self.split("train")[1][keep].to(x.device))
        return self._batches(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, labelled=labelled,
                             labelled_batch_size=self.labelled_batch_size,
                             value_range=self.value_range, seed=self.seed,
                             epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
                             rank=rank, world_size=world,
                             position_fn=(lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed)
                             if trainer is not None and shuffle else None)

    def _batches(self, images: Tensor, labels: Tensor, batch_size: int, **kwargs) -> TensorBatches:
        """The batch iterable of a split (subclasses return their own kind, e.g. repeated passes)."""
        return TensorBatches(images, labels, batch_size, **kwargs)

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", self.eval_batch_size, shuffle=False, drop_last=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", self.eval_batch_size, shuffle=False, drop_last=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batches from streaming loaders arrive as uint8: scale them on the device."""
        x, y = batch
        if x.dtype == torch.uint8:
            x = self.scale(x)
        return x, y

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """The data module's saved state is its seed (the data order is a function of seed and epoch); a
        checkpoint whose seed differs from the configured one is refused instead of silently reordering."""
        from xgen.checkpoint.schema import check_mapping
        from xgen.errors import ConfigError

        state = check_mapping(state, {"seed": int}, "checkpoint", type(self).__qualname__)
        if "seed" in state and state["seed"] != self.seed:
            raise ConfigError(f"checkpoint: entry '{type(self).__qualname__}/seed' is {state['seed']}, but the data module "
                              f"is configured with data.seed={self.seed}; resume with the run's own config.")
