"""CelebA aligned faces (Liu et al. 2015): ``img_align_celeba/*.jpg`` + ``list_eval_partition.txt``.

The 202,599 JPEGs are decoded once (centre crop, resize) into one uint8 array that is cached as a
``.npy`` keyed by crop, size and file list, next to the files or in ``~/.cache/xgen/celeba``; later runs
load it in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xgen.data.base import InMemoryDataModule
from xgen.data.imagefiles import cached_decode, decode_many, extract_archive, fetch_or_fail, files_key
from xgen.data.locate import cache_dir, candidate_dirs
from xgen.errors import DataError, check

IMAGES, IMAGES_ZIP = "img_align_celeba", "img_align_celeba.zip"
PARTITION, IDENTITY = "list_eval_partition.txt", "identity_CelebA.txt"
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


def read_name_table(path: Path) -> tuple[list[str], np.ndarray]:
    """A CelebA text table of ``<file name> <integer>`` lines -> (names, int64 values)."""
    names, values = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{path}:{lineno}: expected '<image>.jpg <integer>', got {line.strip()!r}. "
                                "The file is corrupt; download it again.")
            names.append(parts[0])
            values.append(int(parts[1]))
    return names, np.asarray(values, dtype=np.int64)


class CelebADataModule(InMemoryDataModule):
    """CelebA aligned and cropped: 162,770 train / 19,867 val / 19,962 test RGB faces (178x218).

    Each image is centre-cropped to ``crop`` x ``crop`` (``null``: the largest centred square) and
    resized to ``size`` x ``size``. Labels are the identity (0-based) when ``identity_CelebA.txt`` is
    present, otherwise zeros; they are for evaluation only. The official validation split is used.
    """

    name = "celeba"
    num_classes = None  # 10,177 identities: not a classification target
    has_val_split = True

    def __init__(self, root: str | None = None, size: int = 64, crop: int | None = 140,
                 decode_threads: int = 0, cache: bool = True, batch_size: int = 128,
                 eval_batch_size: int | None = None, train_subset: int | None = None,
                 value_range: list[float] | None = None, on_device: bool = True,
                 download: bool = True, seed: int = 0):
        check(int(size) >= 4, "data.size", f"must be >= 4, got {size}")
        check(crop is None or int(crop) >= 1, "data.crop", f"must be >= 1 or null, got {crop}")
        check(int(decode_threads) >= 0, "data.decode_threads", f"must be >= 0, got {decode_threads}")
        super().__init__(root=root, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_size=0, train_subset=train_subset, value_range=value_range,
                         on_device=on_device, download=download, seed=seed)
        self.size = int(size)
        self.crop = int(crop) if crop is not None else None
        self.decode_threads = int(decode_threads)
        self.cache = bool(cache)
        self.image_shape = (3, self.size, self.size)
        self._all: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None

    def _dirs(self) -> list[Path]:
        return candidate_dirs(self.name, self.root, ("CelebA",), ("celeba",))

    def _data_dir(self) -> Path | None:
        """The first folder holding the partition file and the images (folder or zip)."""
        for d in self._dirs():
            if (d / PARTITION).is_file() and ((d / IMAGES).is_dir() or (d / IMAGES_ZIP).is_file()):
                return d
        return None

    def _missing(self) -> list[str]:
        return [] if self._data_dir() is not None else [f"{IMAGES}/ (or {IMAGES_ZIP})", PARTITION]

    def download(self) -> None:
        """Fetch the files with torchvision (from Google Drive, which often refuses: quota limits)."""
        target = Path(self.root).expanduser() if self.root else cache_dir(self.name).parent

        def fetch() -> None:
            import torchvision

            torchvision.datasets.CelebA(str(target), split="all", target_type="identity", download=True)

        fetch_or_fail(self.name, self._missing, self._dirs(), self.download_allowed, fetch,
                      Path(target) / "celeba",
                      f"get {IMAGES_ZIP}, {PARTITION} (and {IDENTITY} for labels) from "
                      "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and put them in one of those "
                      f"folders; the zip is extracted on first use.", root=self.root)

    def _load_all(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        if self._all is not None:
            return self._all
        d = self._data_dir()
        if d is None:
            self.download()
            d = self._data_dir()
        names, parts = read_name_table(d / PARTITION)
        if not names:
            raise DataError(f"{d / PARTITION}: lists no images; download it again.")
        if not (d / IMAGES).is_dir():
            extract_archive(d / IMAGES_ZIP, [d, cache_dir(self.name)])
            if not (d / IMAGES).is_dir():  # extracted into the cache because d is read-only
                d = cache_dir(self.name)
                if not (d / IMAGES).is_dir():
                    raise DataError(f"{IMAGES_ZIP} did not contain a '{IMAGES}' folder.")
        paths = [d / IMAGES / n for n in names]
        shape = (len(paths), 3, self.size, self.size)

        def decode() -> np.ndarray:
            return decode_many(paths, 3, (self.size, self.size),
                               (self.crop, self.crop) if self.crop else None, self.decode_threads,
                               f"CelebA: decoding {len(paths)} images (once; cached)")

        if self.cache:
            key = files_key(paths, "celeba", self.crop, self.size)
            cache_name = f"{IMAGES}_crop{self.crop or 'max'}_size{self.size}_{key}.npy"
            images = cached_decode([d, cache_dir(self.name)], cache_name, decode, shape)
        else:
            images = decode()
        labels = np.zeros(len(names), dtype=np.int64)
        ident = self._identity_file(d)
        if ident is not None:
            id_names, ids = read_name_table(ident)
            lookup = dict(zip(id_names, ids - 1))
            try:
                labels = np.asarray([lookup[n] for n in names], dtype=np.int64)
            except KeyError as e:
                raise DataError(f"{ident}: has no identity for {e.args[0]}; download it again.") from None
        self._all = (torch.from_numpy(images), torch.from_numpy(labels), parts)
        return self._all

    def _identity_file(self, d: Path) -> Path | None:
        for folder in [d, *self._dirs()]:
            if (folder / IDENTITY).is_file():
                return folder / IDENTITY
        return None

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The official 'train' / 'val' / 'test' partition."""
        images, labels, parts = self._load_all()
        idx = torch.from_numpy(np.flatnonzero(parts == _SPLIT_CODE[split]))
        return images[idx], labels[idx]

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self._all = None  # the splits hold their own copies; free the full array
