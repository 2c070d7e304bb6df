"""Data path: IDX reading, locating files, errors offline, device-resident batches."""

from __future__ import annotations

import gzip
import struct
import urllib.error

import numpy as np
import pytest
import torch

from xgen.data import DigitsDataModule, FashionMNISTDataModule, MNISTDataModule, TensorBatches
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
    dm = FashionMNISTDataModule(download=False)
    with pytest.raises(DataError) as e:
        dm.prepare_data()
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg
    assert str(no_system_data / "xgen_data") in msg and str(no_system_data / "system" / "fashion_mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.root" in msg


def _write_mnist_like(folder, seed: int = 1, n=(30, 10)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, k in zip(("train", "t10k"), n):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (k, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (k,)))


@pytest.mark.parametrize("cls,name", [(FashionMNISTDataModule, "fashion_mnist"), (MNISTDataModule, "mnist")])
def test_explicit_root_without_the_files_is_an_error_not_a_fallback(no_system_data, cls, name):
    """data.root given but empty: a DataError naming the missing files and that folder, even though the
    dataset sits in $XGEN_DATA and in the system folder (which serve only when no root is given)."""
    _write_mnist_like(no_system_data / "xgen_data" / name)
    _write_mnist_like(no_system_data / "system" / name, seed=2)
    empty = no_system_data / "nonexistent"
    with pytest.raises(DataError) as e:
        cls(root=str(empty), download=False, val_size=5).setup()
    msg = str(e.value)
    assert msg.splitlines()[0].startswith(f"{name}: files not found: train-images-idx3-ubyte")
    assert f"  - {empty}\n" in msg and f"data.root={empty} is given, so only it was searched" in msg
    assert "xgen_data" not in msg and str(no_system_data / "system") not in msg.split("(data.root")[0]
    dm = cls(download=False, val_size=5)  # no root: $XGEN_DATA first
    dm.setup()
    assert torch.equal(dm.split("test")[0][:, 0], torch.from_numpy(
        read_idx(no_system_data / "xgen_data" / name / "t10k-images-idx3-ubyte").copy()))


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


def test_batch_hands_out_model_ready_images(no_system_data):
    """dm.batch(split, n): float32 images in the data module's (= the model's) value range, with labels."""
    _write_mnist_like(no_system_data / "mine", n=(30, 12))
    dm = FashionMNISTDataModule(root=str(no_system_data / "mine"), download=False, val_size=5)
    raw, labels = dm.split("test")
    x, y = dm.batch("test", 4, start=2)
    assert x.dtype == torch.float32 and x.shape == (4, 1, 28, 28) and torch.equal(y, labels[2:6])
    torch.testing.assert_close(x, raw[2:6].float() / 255)
    dm.set_value_range((-1.0, 1.0))  # what a tanh GAN's setup does
    x, _ = dm.batch("test", 4, start=2)
    torch.testing.assert_close(x, raw[2:6].float() / 127.5 - 1)
    torch.testing.assert_close(dm.batch("test", 1, value_range=(0, 2))[0], raw[:1].float() / 127.5)
    assert dm.batch("val")[0].shape == (5, 1, 28, 28)  # n=None: the whole split
    with pytest.raises(ConfigError, match="n: asked for images 10 .. 13 of 'test', which has 12 images"):
        dm.batch("test", 4, start=10)
    with pytest.raises(ConfigError, match="split: use 'train', 'val' or 'test'"):
        dm.batch("tset", 4)
    with pytest.raises(ConfigError, match="value_range: must be .* low < high"):
        dm.batch("test", 2, value_range=(1, 0))


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


def test_tensor_batches_prefetch_thread_gives_the_same_batches_in_order():
    """The background thread prepares the next batch while the current one trains: same images, labels
    and order as without it, also from a resume position and when the consumer stops early; the
    batches after the first come from the worker thread; tensors off the CPU are not prefetched."""
    import threading

    class Where(TensorBatches):
        threads: list = []

        def _batch(self, idx, b):
            Where.threads.append(threading.current_thread().name)
            return super()._batch(idx, b)

    x = torch.randint(0, 256, (103, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(103)

    def make(prefetch, **kw):
        return Where(x, y, 10, shuffle=True, drop_last=False, value_range=(-1, 1), seed=3, prefetch=prefetch, **kw)

    plain, ahead = list(make(False)), list(make(True))
    assert len(plain) == len(ahead) == 11
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(plain, ahead))
    Where.threads.clear()
    list(make(True))
    assert len(Where.threads) == 11 and all(t.startswith("xgen-batches") for t in Where.threads)
    resumed = make(True)
    resumed.load_state_dict({"epoch": 0, "batches_done": 7})
    rest = list(resumed)
    assert len(rest) == 4 and all(torch.equal(a[1], b[1]) for a, b in zip(rest, plain[7:]))
    it = iter(make(True))
    first = [next(it) for _ in range(3)]
    it.close()  # the pending batch is waited for, the thread ends
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, plain[:3]))
    assert not any(t.name.startswith("xgen-batches") for t in threading.enumerate())
    Where.threads.clear()
    meta = Where(x.to("meta"), y.to("meta"), 10, shuffle=False, drop_last=True, value_range=(0, 1))
    assert len(list(meta)) == 10 and not any(t.startswith("xgen-batches") for t in Where.threads)


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


def test_value_range_is_passed_in_never_read_from_the_trainer():
    """(0, 1) unless given or set; a trainer's model is never consulted (the builder passes it in)."""
    class Model:
        value_range = (-1.0, 1.0)

    dm = DigitsDataModule(batch_size=16)
    assert dm.value_range == (0.0, 1.0) and not dm.value_range_given
    dm.trainer = type("T", (), {"lightning_module": Model(), "strategy": None})()  # must be ignored
    assert dm.value_range == (0.0, 1.0)
    del dm.trainer
    assert dm.set_value_range(Model.value_range) is dm and dm.value_range == (-1.0, 1.0) and dm.value_range_given
    x, _ = next(iter(dm.train_dataloader()))
    assert x.min() >= -1 and x.min() < -0.99 and x.max() <= 1
    torch.testing.assert_close(dm.scale(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([-1.0, 1.0]))
    dm.value_range = [0, 2]  # the property setter validates the same way
    assert dm.value_range == (0.0, 2.0)
    for bad in ([1, 0], [0, 1, 2], "ab", None):
        with pytest.raises(ConfigError, match="data.value_range"):
            dm.set_value_range(bad)


def test_data_modules_never_read_the_running_model():
    """No data module reaches into trainer.lightning_module any more (the builder passes the range)."""
    import xgen.data as pkg
    from pathlib import Path

    offenders = [p.name for p in Path(pkg.__file__).parent.glob("*.py") if "lightning_module" in p.read_text()]
    assert offenders == []


def test_digits_factors_are_the_label():
    dm = DigitsDataModule(batch_size=16)
    assert dm.factor_names == ["label"] and dm.factor_sizes == [10]
    for split in ("train", "val", "test"):
        f = dm.factors(split)
        x, y = dm.split(split)
        assert f.dtype == torch.int64 and f.shape == (x.shape[0], 1)
        assert torch.equal(f[:, 0], y) and 0 <= int(f.min()) and int(f.max()) == 9


class _Factored(DigitsDataModule):
    """Digits with two synthetic factors that encode each image's identity, to check alignment."""

    factor_names = ["label", "row"]

    @property
    def factor_sizes(self):
        return [10, 2000]

    def load_split(self, split):
        x, y = super().load_split(split)
        x = x.clone()
        rows = torch.arange(x.shape[0]) + (1000 if split == "test" else 0)
        x[:, 0, 0, 0] = (rows % 251).to(torch.uint8)  # the row number, readable from the image
        x[:, 0, 0, 1] = (rows // 251).to(torch.uint8)
        return x, y, torch.stack([y, rows], 1)


def test_factors_from_load_split_follow_the_images_through_val_carving_and_subset():
    dm = _Factored(batch_size=16, val_size=0.2, train_subset=300, seed=3)
    for split in ("train", "val", "test"):
        x, y = dm.split(split)
        f = dm.factors(split)
        assert f.shape == (x.shape[0], 2)
        assert torch.equal(f[:, 0], y)
        assert torch.equal(f[:, 1], x[:, 0, 0, 0].long() + 251 * x[:, 0, 0, 1].long())
    assert dm.factors("train").shape[0] == 300 and dm.factors("val").shape[0] == round(0.2 * (1797 - 270))


def test_factors_of_the_wrong_shape_are_refused():
    class Bad(_Factored):
        factor_names = ["label"]  # two columns returned, one name

    with pytest.raises(ValueError, match=r"factors .* expected int64 \(1527, 1\)"):
        Bad().split("train")

    class OutOfRange(_Factored):
        @property
        def factor_sizes(self):
            return [10, 100]  # the row factor goes up to 1,526

    with pytest.raises(ValueError, match=r"factor values outside 0 .. size - 1 for factor_sizes \[10, 100\]"):
        OutOfRange().split("train")

    class Undelivered(DigitsDataModule):
        factor_names = ["shape", "scale"]  # named, but load_split returns no factors

    with pytest.raises(NotImplementedError, match=r"names factors \['shape', 'scale'\]"):
        Undelivered().factors("test")


@pytest.mark.parametrize("kw,key", [({"batch_size": 0}, "data.batch_size"), ({"val_size": -1}, "data.val_size"),
                                    ({"value_range": [1, 0]}, "data.value_range")])
def test_bad_data_config(kw, key):
    with pytest.raises(ConfigError, match=key):
        DigitsDataModule(**kw)


def _BatchRange():
    """A Lightning callback recording the (min, max) of every training batch the model receives."""
    import lightning as L

    class Rec(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.append((float(batch[0].min()), float(batch[0].max())))

    return Rec()


def _fit_one_batch(model, dm, rec):
    import lightning as L

    L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=1, limit_val_batches=0,
              logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[rec]).fit(model, datamodule=dm)
    return rec.seen


def test_a_tanh_gan_gets_data_in_minus_one_one_through_xgen(compose, tmp_path):
    """xgen's builder hands the GAN's (-1, 1) to the data module: batches span [-1, 1]."""
    from xgen.runtime.train import build

    cfg = compose(["data=digits", "model=gan", "callbacks=none", "logger=csv", "trainer.max_epochs=1",
                   "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=0", "trainer.accelerator=cpu",
                   "data.batch_size=32"])
    dm, model, trainer, _ = build(cfg, tmp_path / "run")
    assert model.value_range == (-1.0, 1.0) and dm.value_range == (-1.0, 1.0)
    rec = _BatchRange()
    trainer.callbacks.append(rec)
    trainer.fit(model, datamodule=dm)
    assert len(rec.seen) == 2 and all(lo < -0.99 and hi <= 1.0 and lo >= -1.0 for lo, hi in rec.seen)
    # a VAE (sigmoid decoder) gets (0, 1) from the same data config
    dm, model, _, _ = build(compose(["data=digits", "model=vae", "callbacks=none"]), tmp_path / "vae")
    assert dm.value_range == model.value_range == (0.0, 1.0)


def test_a_hand_set_data_value_range_that_contradicts_the_model_is_refused(compose, tmp_path):
    from xgen.runtime.train import build

    with pytest.raises(ConfigError, match=r"data.value_range: \[0.0, 1.0\] differs .* \[-1.0, 1.0\] that GAN"):
        build(compose(["data=digits", "model=gan", "callbacks=none", "data.value_range=[0,1]"]), tmp_path / "r")
    dm, _, _, _ = build(compose(["data=digits", "model=gan", "callbacks=none", "data.value_range=[-1,1]"]),
                        tmp_path / "ok")
    assert dm.value_range == (-1.0, 1.0)


def test_a_tanh_gan_gets_data_in_minus_one_one_through_python():
    """The documented Python route: pass value_range=model.value_range, or call set_value_range."""
    from xgen.models import GAN

    torch.manual_seed(0)
    model = GAN(image_shape=(1, 28, 28))
    for dm in (DigitsDataModule(batch_size=32, value_range=model.value_range),
               DigitsDataModule(batch_size=32).set_value_range(model.value_range)):
        seen = _fit_one_batch(model, dm, _BatchRange())
        assert len(seen) == 1 and all(-1.0 <= lo < -0.99 and hi <= 1.0 for lo, hi in seen)
    # without either, the model tells the data module its range at setup (tests/models/test_value_range.py)
    seen = _fit_one_batch(model, DigitsDataModule(batch_size=32), _BatchRange())
    assert len(seen) == 1 and all(-1.0 <= lo < -0.99 and hi <= 1.0 for lo, hi in seen)
