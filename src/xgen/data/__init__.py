"""LightningDataModules. In-memory datasets are one uint8 tensor on the training device."""

from xgen.data.base import InMemoryDataModule, TensorBatches, convert_range, to_value_range
from xgen.data.celeba import CelebADataModule
from xgen.data.digits import DigitsDataModule
from xgen.data.dsprites import DSpritesDataModule, DSpritesRenderer
from xgen.data.folder import FolderDataModule, ImageFiles
from xgen.data.frey import FreyFacesDataModule
from xgen.data.lfw import LFWDataModule
from xgen.data.mnist import FashionMNISTDataModule, MNISTDataModule
from xgen.data.svhn import SVHNDataModule

__all__ = ["InMemoryDataModule", "TensorBatches", "convert_range", "to_value_range", "DigitsDataModule", "DSpritesDataModule", "DSpritesRenderer",
           "FashionMNISTDataModule", "MNISTDataModule", "SVHNDataModule", "CelebADataModule",
           "FreyFacesDataModule", "LFWDataModule", "FolderDataModule", "ImageFiles"]
