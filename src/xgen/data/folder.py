"""Any ImageFolder tree (``root/<class>/<image>``): the thesis's ChestXRay, Furniture and ALOI datasets.

Images are converted to ``channels`` (1: grayscale, 3: RGB), centre-cropped to the output's aspect
ratio and resized to ``size``. A dataset that fits the memory budget is decoded once into one uint8
tensor (the fast path of :class:`InMemoryDataModule`); a larger one is streamed from disk by a normal
DataLoader with workers, whose uint8 batches are scaled on the device by ``on_after_batch_transfer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from xgen.data.base import InMemoryDataModule
from xgen.data.imagefiles import IMAGE_EXTENSIONS, decode_image, decode_many, fraction_split, parse_size
from xgen.errors import ConfigError, DataError, check

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
Files = tuple[list[Path], list[int]]


class ImageFiles(Dataset):
    """A map-style dataset of image files -> (uint8 (C, H, W), int64 label), decoded on access."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], channels: int,
                 out_hw: tuple[int, int], crop_hw: tuple[int, int] | None = None):
        self.paths, self.labels = list(paths), list(labels)
        self.channels, self.out_hw, self.crop_hw = channels, out_hw, crop_hw

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = decode_image(self.paths[i], self.channels, self.out_hw, self.crop_hw)
        return torch.from_numpy(x), self.labels[i]


class FolderDataModule(InMemoryDataModule):
    """An ImageFolder tree: class labels from the sorted sub-folder names, images resized to ``size``.

    Splits: when ``root`` holds ``train/`` (and optionally ``val/`` and ``test/``, each an ImageFolder
    tree) those are used; a missing test split is ``test_fraction`` of the training images (chosen
    with ``split_seed``) and a missing validation split ``val_size`` of the rest (chosen with ``seed``).
    Without split folders, both are carved from all images the same way. A root holding images but no
    class folders is one class.

    Args:
        root: the folder (required).
        channels: 1 (grayscale) or 3 (RGB); images are converted.
        size: output size, an int (square) or [height, width].
        crop: optional centre crop (int or [height, width]) applied before resizing.
        in_memory: ``auto`` decodes everything into one uint8 tensor when its size is at most
            ``memory_budget_gb``, else streams; ``true`` / ``false`` force one path.
        memory_budget_gb: the largest decoded dataset (GiB) that ``auto`` keeps in memory.
        num_workers: DataLoader worker processes when streaming.
        pin_memory: pin streamed batches (when CUDA is available) for faster copies to the GPU.
        decode_threads: threads decoding the in-memory path (0: one per core, up to 8).
        extensions: file name endings counted as images.
        name: the dataset's name in logs and messages (e.g. chest_xray).
    """

    has_val_split = True  # the validation split is chosen at the file level, the same for both paths

    def __init__(self, root: str | None = None, channels: int = 3, size: int | list[int] = 64,
                 crop: int | list[int] | None = None, in_memory: bool | str = "auto",
                 memory_budget_gb: float = 4.0, num_workers: int = 4, pin_memory: bool = True,
                 decode_threads: int = 0, test_fraction: float = 0.1, val_size: int | float = 0.05,
                 split_seed: int = 1234, extensions: list[str] | None = None, name: str = "folder",
                 batch_size: int = 64, eval_batch_size: int | None = None,
                 train_subset: int | None = None, value_range: list[float] | None = None,
                 on_device: bool = True, seed: int = 0):
        if not root:
            raise ConfigError("data.root: the folder dataset needs the path of an ImageFolder tree "
                              "(root/<class>/<image>, optionally under train/ val/ test/); set "
                              "data.root=/path/to/images on the command line or in the config.")
        check(int(channels) in (1, 3), "data.channels", f"must be 1 (grayscale) or 3 (RGB), got {channels}")
        self.size = parse_size(size, "data.size")
        self.crop = parse_size(crop, "data.crop") if crop is not None else None
        mode = str(in_memory).lower()
        check(mode in ("auto", "true", "false"), "data.in_memory", f"must be auto, true or false, got {in_memory!r}")
        check(float(memory_budget_gb) >= 0, "data.memory_budget_gb", f"must be >= 0, got {memory_budget_gb}")
        check(int(num_workers) >= 0, "data.num_workers", f"must be >= 0, got {num_workers}")
        check(int(decode_threads) >= 0, "data.decode_threads", f"must be >= 0, got {decode_threads}")
        check(0 <= float(test_fraction) < 1, "data.test_fraction", f"must be in [0, 1), got {test_fraction}")
        super().__init__(root=root, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_size=val_size, train_subset=train_subset, value_range=value_range,
                         on_device=on_device, download=False, seed=seed)
        self.name = str(name)
        self.channels = int(channels)
        self.image_shape = (self.channels, *self.size)
        self.in_memory = mode
        self.memory_budget_gb = float(memory_budget_gb)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.decode_threads = int(decode_threads)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower()
                                for e in (extensions or IMAGE_EXTENSIONS))
        self.num_classes: int | None = None
        self.class_names: tuple[str, ...] = ()
        self._files: dict[str, Files] | None = None

    def _label_classes(self) -> int | None:
        """The class folders are the one factor ("label"); indexing the tree finds them."""
        self._index()
        return self.num_classes

    # ----------------------------------------------------------------------------- indexing files
    def _root(self) -> Path:
        return Path(str(self.root)).expanduser()

    def download(self) -> None:
        """Nothing to download; check that the folder exists so a bad path fails before training."""
        root = self._root()
        if not root.is_dir():
            raise DataError(f"{self.name}: data.root={root} is not a folder. Fix: point data.root at an "
                            "ImageFolder tree (root/<class>/<image>, optionally under train/ val/ test/).")

    def _images_under(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in self.extensions and p.is_file())

    def _classes(self, trees: Sequence[Path]) -> list[str]:
        names = {d.name for t in trees for d in t.iterdir() if d.is_dir() and self._images_under(d)}
        return sorted(names)

    def _list(self, tree: Path, classes: list[str]) -> Files:
        if not classes:  # no class folders: the images directly in the tree form one class
            paths = sorted(p for p in tree.iterdir() if p.suffix.lower() in self.extensions and p.is_file())
            return paths, [0] * len(paths)
        paths, labels = [], []
        for i, c in enumerate(classes):
            if (tree / c).is_dir():
                found = self._images_under(tree / c)
                paths += found
                labels += [i] * len(found)
        return paths, labels

    @staticmethod
    def _take(files: Files, idx: torch.Tensor) -> Files:
        return [files[0][i] for i in idx.tolist()], [files[1][i] for i in idx.tolist()]

    def _index(self) -> dict[str, Files]:
        """The image files and labels of each split (the same for the in-memory and streaming paths)."""
        if self._files is not None:
            return self._files
        self.download()
        root = self._root()
        trees = {s: next((root / n for n in names if (root / n).is_dir()), None)
                 for s, names in SPLIT_FOLDERS.items()}
        if trees["train"] is None:
            trees = {"train": root, "val": None, "test": None}
        present = [t for t in trees.values() if t is not None]
        classes = self._classes(present)
        files = {s: self._list(t, classes) for s, t in trees.items() if t is not None}
        train = files["train"]
        if not train[0]:
            raise DataError(f"{self.name}: no images ({', '.join(self.extensions)}) under {trees['train']}. "
                            "Fix: point data.root at an ImageFolder tree (root/<class>/<image>).")
        if "test" not in files:
            test_idx, rest = fraction_split(len(train[0]), self.test_fraction, self.split_seed)
            files["test"], train = self._take(train, test_idx), self._take(train, rest)
        if "val" not in files:
            n_val = self._num_val(len(train[0]))
            val_idx, rest = fraction_split(len(train[0]), n_val / len(train[0]), self.seed)
            files["val"], train = self._take(train, val_idx), self._take(train, rest)
        files["train"] = train
        self.class_names = tuple(classes) if classes else (root.name,)
        self.num_classes = len(self.class_names)
        self._files = files
        return files

    # ----------------------------------------------------------------------------- in memory or not
    def estimated_bytes(self) -> int:
        """Bytes of all splits decoded to uint8."""
        files = self._index()
        n = sum(len(f[0]) for f in files.values())
        return n * self.channels * self.size[0] * self.size[1]

    def streaming(self) -> bool:
        """Whether batches are streamed from disk (``in_memory`` false, or auto and over budget)."""
        if self.in_memory == "auto":
            return self.estimated_bytes() > self.memory_budget_gb * 2**30
        return self.in_memory == "false"

    def _decode(self, files: Files, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = decode_many(files[0], self.channels, self.size, self.crop, self.decode_threads,
                        f"{self.name}: decoding {len(files[0])} '{split}' images")
        return torch.from_numpy(x), torch.tensor(files[1], dtype=torch.int64)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode every image of `split` into one uint8 tensor."""
        return self._decode(self._index()[split], split)

    def setup(self, stage: str | None = None) -> None:
        self._index()
        if not self.streaming():
            super().setup(stage)

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images and labels of a split; when streaming, decoded anew on every call."""
        if self.streaming():
            if split not in ("train", "val", "test"):
                raise KeyError(f"unknown split {split!r}; use 'train', 'val' or 'test'")
            return self._decode(self._stream_files(split), split)
        return super().split(split)

    # ----------------------------------------------------------------------------- streaming loaders
    def _stream_files(self, split: str) -> Files:
        paths, labels = self._index()[split]
        if split == "train" and self.train_subset is not None:
            paths, labels = paths[: int(self.train_subset)], labels[: int(self.train_subset)]
        return paths, labels

    def _stream_loader(self, split: str, batch_size: int, train: bool) -> DataLoader:
        paths, labels = self._stream_files(split)
        if train and len(paths) < batch_size:
            raise ConfigError(f"data.batch_size: {batch_size} is larger than the {len(paths)} '{split}' "
                              "images; lower data.batch_size.")
        return DataLoader(ImageFiles(paths, labels, self.channels, self.size, self.crop),
                          batch_size=batch_size, shuffle=train, drop_last=train,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=self.pin_memory and torch.cuda.is_available(),
                          generator=torch.Generator().manual_seed(self.seed) if train else None)

    def train_dataloader(self):
        self._index()
        if self.streaming():
            return self._stream_loader("train", self.batch_size, train=True)
        return super().train_dataloader()

    def val_dataloader(self):
        self._index()
        if self.streaming():
            return self._stream_loader("val", self.eval_batch_size, train=False)
        return super().val_dataloader()

    def test_dataloader(self):
        self._index()
        if self.streaming():
            return self._stream_loader("test", self.eval_batch_size, train=False)
        return super().test_dataloader()
