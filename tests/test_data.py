"""Data path: IDX reading, locating files, errors offline, device-resident batches."""

from __future__ import annotations

import gzip
import struct
import urllib.error

import numpy as np
import pytest
import torch

from xgen.data import DigitsDataModule, FashionMNISTDataModule, TensorBatches
from xgen.data import locate
from xgen.data.idx import read_idx
from xgen.errors import ConfigError, DataError


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    a = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    p = tmp_path / ("x.gz" if compress else "x")
    write_idx(p, a, compress)
    np.testing.assert_array_equal(read_idx(p), a)


def test_truncated_idx_names_file_and_fix(tmp_path):
    a = np.zeros((10, 28, 28), dtype=np.uint8)
    p = tmp_path / "train-images-idx3-ubyte"
    write_idx(p, a)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as e:
        read_idx(p)
    assert str(p) in str(e.value) and "download it again" in str(e.value)


def test_bad_magic(tmp_path):
    p = tmp_path / "junk"
    p.write_bytes(b"\x89PNG....")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(p)


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Point every search location at empty temporary folders."""
    monkeypatch.setattr(locate, "SYSTEM_DATASETS", tmp_path / "system")
    monkeypatch.setenv("XGEN_DATA", str(tmp_path / "xgen_data"))
    return tmp_path


def test_missing_files_offline_lists_places_and_fix(no_system_data):
    dm = FashionMNISTDataModule(root=str(no_system_data / "mine"), download=False)
    with pytest.raises(DataError) as e:
        dm.prepare_data()
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg
    assert str(no_system_data / "mine") in msg and str(no_system_data / "system" / "fashion_mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.root" in msg


def test_download_failure_offline_is_reported(no_system_data, monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    dm = FashionMNISTDataModule(root=str(no_system_data / "mine"), download=True)
    with pytest.raises(DataError, match="Download into .* failed"):
        dm.prepare_data()


def test_idx_files_found_in_root_and_split(no_system_data):
    root = no_system_data / "mine"
    root.mkdir()
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), True)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))
    dm = FashionMNISTDataModule(root=str(root), download=False, val_size=10, batch_size=8)
    dm.setup()
    tx, ty = dm.split("train")
    vx, _ = dm.split("val")
    sx, _ = dm.split("test")
    assert tx.shape == (40, 1, 28, 28) and vx.shape == (10, 1, 28, 28) and sx.shape == (20, 1, 28, 28)
    assert tx.dtype == torch.uint8 and ty.dtype == torch.int64
    # train and val are a partition of the file's 50 images
    allx = torch.from_numpy(read_idx(root / "train-images-idx3-ubyte.gz").copy()).unsqueeze(1)
    both = torch.cat([tx, vx]).flatten(1)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, allx.flatten(1).tolist()))


def test_real_fashion_mnist(fashion_available):
    dm = FashionMNISTDataModule(download=False)
    dm.setup()
    assert dm.split("train")[0].shape == (55000, 1, 28, 28)
    assert dm.split("val")[0].shape == (5000, 1, 28, 28)
    x, y = dm.split("test")
    assert x.shape == (10000, 1, 28, 28) and torch.bincount(y).tolist() == [1000] * 10


def _batches(n=103, **kw):
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.arange(n)
    return TensorBatches(x, y, 10, value_range=(0, 1), **kw)


def test_tensor_batches_shuffle_is_seeded_per_epoch():
    epoch = {"e": 0}
    b = _batches(shuffle=True, drop_last=True, seed=3, epoch_fn=lambda: epoch["e"])
    first = torch.cat([y for _, y in b])
    again = torch.cat([y for _, y in b])
    epoch["e"] = 1
    second = torch.cat([y for _, y in b])
    assert len(b) == 10 and first.numel() == 100 and len(set(first.tolist())) == 100
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_tensor_batches_scale_and_labels_match():
    b = _batches(shuffle=True, drop_last=False, seed=0)
    for x, y in b:
        assert x.dtype == torch.float32
        torch.testing.assert_close(x[:, 0, 0, 0], y.float() / 255)
    assert len(b) == 11 and sum(x.shape[0] for x, _ in b) == 103


def test_tensor_batches_ddp_ranks_are_disjoint():
    seen = [torch.cat([y for _, y in _batches(shuffle=True, drop_last=True, seed=5, rank=r, world_size=2)])
            for r in range(2)]
    assert seen[0].numel() == seen[1].numel() == 50
    assert not set(seen[0].tolist()) & set(seen[1].tolist())


def test_digits_splits_and_value_range():
    dm = DigitsDataModule(size=28, value_range=(-1, 1), batch_size=16)
    dm.setup()
    sizes = [dm.split(s)[0].shape[0] for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes[2] == round(0.15 * 1797)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.min() >= -1 and x.max() <= 1 and x.min() < -0.99


def test_value_range_follows_the_model():
    class Dummy:
        value_range = (-1.0, 1.0)

    dm = DigitsDataModule()
    assert dm.resolved_value_range() == (0.0, 1.0)
    dm.trainer = type("T", (), {"lightning_module": Dummy()})()
    assert dm.resolved_value_range() == (-1.0, 1.0)


@pytest.mark.parametrize("kw,key", [({"batch_size": 0}, "data.batch_size"), ({"val_size": -1}, "data.val_size"),
                                    ({"value_range": [1, 0]}, "data.value_range")])
def test_bad_data_config(kw, key):
    with pytest.raises(ConfigError, match=key):
        DigitsDataModule(**kw)
