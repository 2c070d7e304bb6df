"""LightningDataModules. In-memory datasets are one uint8 tensor on the training device."""

from xgen.data.base import InMemoryDataModule, TensorBatches, to_value_range
from xgen.data.digits import DigitsDataModule
from xgen.data.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = ["InMemoryDataModule", "TensorBatches", "to_value_range", "DigitsDataModule",
           "FashionMNISTDataModule", "MNISTDataModule"]
