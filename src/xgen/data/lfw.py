"""Labeled Faces in the Wild, deep-funneled (Huang et al. 2012; kgans §3.1): 13,233 250x250 RGB faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xgen.data.base import InMemoryDataModule
from xgen.data.imagefiles import (IMAGE_EXTENSIONS, cached_decode, decode_many, extract_archive,
                                  fetch_or_fail, files_key, fraction_split, parse_size)
from xgen.data.locate import cache_dir, candidate_dirs
from xgen.errors import DataError, check

FOLDER, ARCHIVE = "lfw-deepfunneled", "lfw-deepfunneled.tgz"


class LFWDataModule(InMemoryDataModule):
    """LFW deep-funneled: ``lfw-deepfunneled/<Person_Name>/<Person_Name>_0001.jpg`` (or the .tgz).

    Images are optionally centre-cropped to ``crop`` and resized to ``size`` (the k-GANs thesis:
    250 -> 128). Labels are the person's index among the sorted names (``num_classes`` is set once the
    files are read). No official split for this use: ``test_fraction`` of the images (chosen with
    ``split_seed``) form the test split and ``val_size`` of the rest the validation split. Decoded
    images are cached as ``.npy`` keyed by crop, size and file list.
    """

    name = "lfw"

    def __init__(self, root: str | None = None, size: int | list[int] = 128, crop: int | None = None,
                 test_fraction: float = 0.1, split_seed: int = 1234, decode_threads: int = 0,
                 cache: bool = True, batch_size: int = 64, eval_batch_size: int | None = None,
                 val_size: int | float = 0.05, train_subset: int | None = None,
                 value_range: list[float] | None = None, on_device: bool = True,
                 download: bool = True, seed: int = 0):
        self.size = parse_size(size)
        check(crop is None or int(crop) >= 1, "data.crop", f"must be >= 1 or null, got {crop}")
        check(0 < float(test_fraction) < 1, "data.test_fraction", f"must be in (0, 1), got {test_fraction}")
        check(int(decode_threads) >= 0, "data.decode_threads", f"must be >= 0, got {decode_threads}")
        super().__init__(root=root, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         val_size=val_size, train_subset=train_subset, value_range=value_range,
                         on_device=on_device, download=download, seed=seed)
        self.crop = int(crop) if crop is not None else None
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.decode_threads = int(decode_threads)
        self.cache = bool(cache)
        self.image_shape = (3, *self.size)
        self.num_classes: int | None = None
        self.class_names: tuple[str, ...] = ()
        self._all: tuple[torch.Tensor, torch.Tensor] | None = None

    def _label_classes(self) -> int | None:
        """The person is the one factor ("label"); its number of values is known once the files are read."""
        if self.num_classes is None:
            self._load_all()
        return self.num_classes

    def _dirs(self) -> list[Path]:
        return candidate_dirs(self.name, self.root, ("LFW", "lfw-py"), ("lfw-py",))

    def _source(self) -> Path | None:
        """The first image folder, or failing that the first archive, found."""
        dirs = self._dirs()
        for d in dirs:
            if (d / FOLDER).is_dir():
                return d / FOLDER
        for d in dirs:
            if (d / ARCHIVE).is_file():
                return d / ARCHIVE
        return None

    def download(self) -> None:
        """Fetch the archive with torchvision (LFWPeople, deep-funneled) into data.root or the cache."""
        target = Path(self.root).expanduser() if self.root else cache_dir(self.name)

        def fetch() -> None:
            import torchvision

            torchvision.datasets.LFWPeople(str(target), image_set="deepfunneled", download=True)

        fetch_or_fail(self.name, lambda: [] if self._source() else [f"{FOLDER}/ (or {ARCHIVE})"],
                      self._dirs(), self.download_allowed, fetch, target,
                      f"download {ARCHIVE} from http://vis-www.cs.umass.edu/lfw/ into one of those "
                      "folders (it is extracted on first use).", root=self.root)

    def _folder(self) -> Path:
        src = self._source()
        if src is None:
            self.download()
            src = self._source()
        if src.is_dir():
            return src
        where = extract_archive(src, [src.parent, cache_dir(self.name)])
        if not (where / FOLDER).is_dir():
            raise DataError(f"{src}: the archive holds no '{FOLDER}/' folder; is it the deep-funneled LFW?")
        return where / FOLDER

    def _load_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._all is not None:
            return self._all
        folder = self._folder()
        people = sorted(p.name for p in folder.iterdir() if p.is_dir())
        paths, labels = [], []
        for i, person in enumerate(people):
            files = sorted(f for f in (folder / person).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            paths += files
            labels += [i] * len(files)
        if not paths:
            raise DataError(f"{folder}: no images found in <Person_Name>/ sub-folders; the folder is "
                            "empty or not LFW. Delete it and download the archive again.")
        out_hw = self.size
        crop = (self.crop, self.crop) if self.crop else None

        def decode() -> np.ndarray:
            return decode_many(paths, 3, out_hw, crop, self.decode_threads,
                               f"LFW: decoding {len(paths)} images")

        if self.cache:
            key = files_key(paths, "lfw", crop, out_hw)
            name = f"{FOLDER}_crop{self.crop or 'none'}_{out_hw[0]}x{out_hw[1]}_{key}.npy"
            images = cached_decode([folder.parent, cache_dir(self.name)], name, decode,
                                   (len(paths), 3, *out_hw))
        else:
            images = decode()
        self.class_names = tuple(people)
        self.num_classes = len(people)
        self._all = (torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64))
        return self._all

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """'test': the held-out fraction; 'train': the rest (validation is carved from it)."""
        x, y = self._load_all()
        test_idx, train_idx = fraction_split(x.shape[0], self.test_fraction, self.split_seed)
        idx = test_idx if split == "test" else train_idx
        return x[idx], y[idx]

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self._all = None  # the splits hold their own copies
