"""MNIST and Fashion-MNIST from their IDX files (local first, torchvision download when online)."""

from __future__ import annotations

import torch

from xgen.data.base import InMemoryDataModule
from xgen.data.idx import read_idx
from xgen.data.locate import cache_dir, candidate_dirs, describe_dirs, find_file
from xgen.errors import DataError

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class _IDXDataModule(InMemoryDataModule):
    image_shape = (1, 28, 28)
    num_classes = 10
    aliases: tuple[str, ...] = ()
    torchvision_name = ""  # torchvision's class name, also the sub-folder it downloads into
    install_hint = ""

    def _dirs(self):
        sub = (f"{self.torchvision_name}/raw", "raw")
        return candidate_dirs(self.name, self.root, self.aliases, sub)

    def _find(self, filename: str):
        return find_file(self._dirs(), filename)

    def _missing(self) -> list[str]:
        return [f for pair in _FILES.values() for f in pair if self._find(f) is None]

    def download(self) -> None:
        missing = self._missing()
        if not missing:
            return
        target = self.root or cache_dir(self.name)
        if self.download_allowed:
            import torchvision

            cls = getattr(torchvision.datasets, self.torchvision_name)
            try:
                for train in (True, False):
                    cls(str(target), train=train, download=True)
            except Exception as e:  # offline: URLError, socket errors, HTTP errors
                reason = f"Download into {target} failed ({type(e).__name__}: {e})."
            else:
                if not self._missing():
                    return
                reason = f"Download into {target} did not produce the expected files."
        else:
            reason = "Downloading is switched off (data.download=false)."
        raise DataError(
            f"{self.name}: files not found: {', '.join(missing)} (with or without .gz).\n"
            f"Looked in:\n{describe_dirs(self._dirs(), self.root)}\n{reason}\n"
            f"Fix: {self.install_hint}put the four IDX files in one of those folders, or set "
            f"data.root=/path/to/folder (or $XGEN_DATA); online, xgen downloads them by itself.")

    def load_split(self, split: str):
        img_name, lbl_name = _FILES[split]
        img_path, lbl_path = self._find(img_name), self._find(lbl_name)
        if img_path is None or lbl_path is None:
            self.download()
            img_path, lbl_path = self._find(img_name), self._find(lbl_name)
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(f"{img_path} / {lbl_path}: shapes {images.shape} and {labels.shape} do not "
                            "form an image set with one label per image; re-download the files.")
        if tuple(images.shape[1:]) != self.image_shape[1:]:
            raise DataError(f"{img_path}: images are {images.shape[1:]}, expected 28x28.")
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        y = torch.from_numpy(labels.astype("int64"))
        return x, y


class FashionMNISTDataModule(_IDXDataModule):
    """Fashion-MNIST (Xiao et al. 2017): 60k train / 10k test 28x28 grayscale, 10 classes."""

    name = "fashion_mnist"
    aliases = ("fashion-mnist", "FashionMNIST")
    torchvision_name = "FashionMNIST"
    install_hint = "on Debian/Ubuntu `apt-get install dataset-fashion-mnist`; or "
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


class MNISTDataModule(_IDXDataModule):
    """MNIST (LeCun et al. 1998): 60k train / 10k test 28x28 grayscale digits."""

    name = "mnist"
    aliases = ("MNIST",)
    torchvision_name = "MNIST"
    class_names = tuple(str(i) for i in range(10))
