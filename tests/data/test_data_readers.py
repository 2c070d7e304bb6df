"""Dataset readers on small files written in each dataset's exact on-disk format (no network)."""

from __future__ import annotations

import io
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import xgen.data.celeba as celeba_mod
import xgen.data.locate as locate
from xgen.data import (CelebADataModule, FolderDataModule, FreyFacesDataModule, LFWDataModule,
                       SVHNDataModule)
from xgen.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real dataset folders: $XGEN_DATA and the system folder point into tmp_path."""
    monkeypatch.setenv("XGEN_DATA", str(tmp_path / "xgen_data"))
    monkeypatch.setattr(locate, "SYSTEM_DATASETS", tmp_path / "system")


def count_calls(monkeypatch, module, name: str) -> list:
    """Wrap module.name so that each call is recorded (and still does its work)."""
    calls, real = [], getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def rows_as_set(x: torch.Tensor) -> set[bytes]:
    return {bytes(r.numpy().tobytes()) for r in x}


# ============================================================================================ SVHN
def write_svhn(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 meaning digit 0
    scipy.io.savemat(path, {"X": X, "y": y})
    return X, y


def test_svhn_reads_mat_files_maps_label_10_to_0_and_splits(tmp_path):
    X, y = write_svhn(tmp_path / "train_32x32.mat", 12, 0)
    Xt, yt = write_svhn(tmp_path / "test_32x32.mat", 5, 1)
    dm = SVHNDataModule(root=str(tmp_path), download=False, val_size=3, batch_size=4)
    x_all, y_all = dm.load_split("train")
    assert x_all.dtype == torch.uint8 and tuple(x_all.shape) == (12, 3, 32, 32)
    assert y_all.dtype == torch.int64
    # pixel (row 5, col 7, channel 2) of image 4 in MATLAB order lands at [4, 2, 5, 7]
    assert x_all[4, 2, 5, 7].item() == X[5, 7, 2, 4]
    assert torch.equal(x_all, torch.from_numpy(X.transpose(3, 2, 0, 1).copy()))
    assert y_all.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    tr, va, te = dm.split("train"), dm.split("val"), dm.split("test")
    assert (tr[0].shape[0], va[0].shape[0], te[0].shape[0]) == (9, 3, 5)
    assert not rows_as_set(tr[0]) & rows_as_set(va[0])
    assert rows_as_set(tr[0]) | rows_as_set(va[0]) == rows_as_set(x_all)
    assert torch.equal(te[0], torch.from_numpy(Xt.transpose(3, 2, 0, 1).copy()))
    assert te[1].tolist() == [1, 2, 3, 4, 5]
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.dtype == torch.float32 and tuple(xb.shape) == (4, 3, 32, 32) and 0 <= xb.min() <= xb.max() <= 1


def test_svhn_extra_is_appended_to_train(tmp_path):
    write_svhn(tmp_path / "train_32x32.mat", 6, 0)
    write_svhn(tmp_path / "test_32x32.mat", 2, 1)
    Xe, _ = write_svhn(tmp_path / "extra_32x32.mat", 4, 2)
    x, y = SVHNDataModule(root=str(tmp_path), use_extra=True, download=False).load_split("train")
    assert x.shape[0] == 10 and torch.equal(x[6:], torch.from_numpy(Xe.transpose(3, 2, 0, 1).copy()))
    assert y[6:].tolist() == [1, 2, 3, 4]


def test_svhn_missing_files_offline_lists_folders(tmp_path):
    dm = SVHNDataModule(download=False)
    with pytest.raises(DataError) as e:
        dm.prepare_data()
    msg = str(e.value)
    assert msg.splitlines()[0] == "svhn: files not found: train_32x32.mat, test_32x32.mat."
    assert str(tmp_path / "xgen_data") in msg and str(tmp_path / "system" / "svhn") in msg
    assert "data.download=false" in msg and "ufldl.stanford.edu" in msg


def test_svhn_explicit_root_without_the_files_is_an_error_not_a_fallback(tmp_path):
    (tmp_path / "xgen_data").mkdir()
    write_svhn(tmp_path / "xgen_data" / "train_32x32.mat", 6, 0)
    write_svhn(tmp_path / "xgen_data" / "test_32x32.mat", 3, 1)
    with pytest.raises(DataError) as e:
        SVHNDataModule(root=str(tmp_path / "nowhere"), download=False).prepare_data()
    msg = str(e.value)
    assert msg.splitlines()[0] == "svhn: files not found: train_32x32.mat, test_32x32.mat."
    assert f"  - {tmp_path / 'nowhere'}\n" in msg and "xgen_data" not in msg
    assert f"data.root={tmp_path / 'nowhere'} is given, so only it was searched" in msg
    x, _ = SVHNDataModule(download=False).load_split("test")  # no root: $XGEN_DATA is searched
    assert x.shape == (3, 3, 32, 32)


def test_svhn_corrupt_or_wrong_mat_names_the_file(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated" + bytes(50))
    write_svhn(tmp_path / "test_32x32.mat", 2, 1)
    dm = SVHNDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="train_32x32.mat.*corrupt"):
        dm.load_split("train")
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"images": np.zeros((2, 2), np.uint8)})
    with pytest.raises(DataError, match=r"train_32x32.mat: variables \['X', 'y'\] are missing"):
        dm.load_split("train")


# ============================================================================================ Frey
def frey_faces(n: int) -> np.ndarray:
    """n distinct 28x20 faces, asymmetric: a bright bar in the top-left corner, image k's id at (1, 0)."""
    r, c = np.mgrid[0:28, 0:20]
    imgs = np.stack([(r * 7 + c * 3 + k) % 200 for k in range(n)]).astype(np.uint8)
    imgs[:, 1, 0] = np.arange(n)
    imgs[:, 0, :5] = 255
    return imgs


def test_frey_column_major_file_lands_right_way_up_and_splits(tmp_path):
    imgs = frey_faces(40)
    ff = imgs.reshape(40, 560).T  # Roweis's layout: 560 x N, one image per column, row-major inside
    assert ff.shape == (560, 40)
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": ff})
    dm = FreyFacesDataModule(root=str(tmp_path), download=False, test_fraction=0.25, val_size=0.2)
    tr, va, te = dm.split("train"), dm.split("val"), dm.split("test")
    assert (tr[0].shape[0], va[0].shape[0], te[0].shape[0]) == (24, 6, 10)
    ids = {s: x[:, 0, 1, 0].tolist() for s, (x, _) in zip("tvs", (tr, va, te))}
    assert sorted(ids["t"] + ids["v"] + ids["s"]) == list(range(40))  # disjoint and complete
    for x, y in (tr, va, te):
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (1, 28, 20)
        assert y.dtype == torch.int64 and not y.any()
        for img in x:
            assert torch.equal(img[0], torch.from_numpy(imgs[img[0, 1, 0].item()]))
            assert (img[0, 0, :5] == 255).all() and (img[0, -1, -5:] != 255).all()  # top-left bar
    # the test split is fixed by split_seed, not by the training seed
    other = FreyFacesDataModule(root=str(tmp_path), download=False, test_fraction=0.25, val_size=0.2, seed=7)
    assert torch.equal(other.split("test")[0], te[0])


def test_frey_accepts_transposed_layout(tmp_path):
    imgs = frey_faces(12)
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": imgs.reshape(12, 560)})  # N x 560
    x, _ = FreyFacesDataModule(root=str(tmp_path), download=False, test_fraction=0.25).load_split("test")
    assert x.shape[0] == 3
    for img in x:
        assert torch.equal(img[0], torch.from_numpy(imgs[img[0, 1, 0].item()]))


def test_frey_download_offline_and_online(tmp_path, monkeypatch):
    import xgen.data.imagefiles as imagefiles

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(imagefiles.urllib.request, "urlopen", offline)
    dm = FreyFacesDataModule(download=True)
    with pytest.raises(DataError) as e:
        dm.prepare_data()
    msg = str(e.value)
    assert "frey_rawface.mat" in msg and "URLError" in msg and "cs.nyu.edu/~roweis" in msg
    assert str(tmp_path / "xgen_data" / "frey_faces") in msg and str(tmp_path / "system") in msg
    # "online": serve a valid file and check it is saved into the cache and read
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"ff": frey_faces(10).reshape(10, 560).T})
    seen = []

    def online(url, timeout):
        seen.append(url)
        return io.BytesIO(buf.getvalue())

    monkeypatch.setattr(imagefiles.urllib.request, "urlopen", online)
    x, _ = FreyFacesDataModule(download=True, test_fraction=0.2).split("test")
    assert seen == ["https://cs.nyu.edu/~roweis/data/frey_rawface.mat"]
    assert (tmp_path / "xgen_data" / "frey_faces" / "frey_rawface.mat").is_file()
    assert x.shape == (2, 1, 28, 20)


def test_frey_corrupt_or_misshaped_mat_names_the_file(tmp_path):
    (tmp_path / "frey_rawface.mat").write_bytes(b"\x00garbage" * 40)
    dm = FreyFacesDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="frey_rawface.mat.*not a readable MATLAB"):
        dm.load_split("train")
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": np.zeros((100, 7), np.uint8)})
    with pytest.raises(DataError, match=r"frey_rawface.mat: 'ff' is \(100, 7\)"):
        FreyFacesDataModule(root=str(tmp_path), download=False).load_split("train")


# ============================================================================================ CelebA
def celeba_image(k: int) -> np.ndarray:
    """178x218 RGB: red rises left to right, green top to bottom, blue is 20*k."""
    y, x = np.mgrid[0:218, 0:178].astype(np.float64)
    return np.stack([x * 255 / 177, y * 255 / 217, np.full_like(x, 20.0 * k)], -1).round().astype(np.uint8)


def write_celeba(base: Path, n: int = 12, zipped: bool = False, identity: bool = True) -> list[int]:
    """torchvision's layout: base/celeba/{img_align_celeba/, list_eval_partition.txt, identity_CelebA.txt}."""
    d = base / "celeba"
    (d / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for k, name in enumerate(names):
        Image.fromarray(celeba_image(k)).save(d / "img_align_celeba" / name, quality=95)
    parts = [0] * (n // 2) + [1] * (n // 4) + [2] * (n - n // 2 - n // 4)
    (d / "list_eval_partition.txt").write_text("".join(f"{a} {p}\n" for a, p in zip(names, parts)))
    if identity:
        (d / "identity_CelebA.txt").write_text("".join(f"{a} {100 + k}\n" for k, a in enumerate(names)))
    if zipped:
        with zipfile.ZipFile(d / "img_align_celeba.zip", "w") as z:
            for name in names:
                z.write(d / "img_align_celeba" / name, f"img_align_celeba/{name}")
        for name in names:
            (d / "img_align_celeba" / name).unlink()
        (d / "img_align_celeba").rmdir()
    return parts


def expected_celeba(k: int, crop: int, size: int) -> np.ndarray:
    """The analytic image after a centred crop x crop and a resize to size (pixel centres)."""
    left, top = (178 - crop) / 2, (218 - crop) / 2
    centres = (np.arange(size) + 0.5) * crop / size - 0.5
    xs, ys = np.meshgrid(left + centres, top + centres)
    return np.stack([xs * 255 / 177, ys * 255 / 217, np.full_like(xs, 20.0 * k)])


def test_celeba_partition_crop_resize_labels_and_cache(tmp_path, monkeypatch):
    parts = write_celeba(tmp_path)
    dm = CelebADataModule(root=str(tmp_path), size=32, crop=140, download=False, batch_size=2)
    tr, va, te = dm.split("train"), dm.split("val"), dm.split("test")
    assert [s[0].shape[0] for s in (tr, va, te)] == [parts.count(0), parts.count(1), parts.count(2)]
    assert tr[0].dtype == torch.uint8 and tuple(tr[0].shape[1:]) == (3, 32, 32)
    # labels: identity - 1 in partition order; blue channel carries the image number too
    assert tr[1].tolist() == [99 + k for k in range(6)] and te[1].tolist() == [108, 109, 110]
    for x, y in (tr, va, te):
        for img, label in zip(x, y):
            k = int(label) - 99
            diff = np.abs(img.numpy().astype(np.float64) - expected_celeba(k, 140, 32))
            # per channel: a crop off by one source pixel moves red or green by ~1.4 on average
            assert diff.mean(axis=(1, 2)).max() < 1.0 and diff.max() < 6, (k, diff.mean(), diff.max())
    caches = sorted((tmp_path / "celeba").glob("*.npy"))
    assert len(caches) == 1 and "crop140_size32" in caches[0].name
    # second load: served from the cache, no decoding at all
    calls = count_calls(monkeypatch, celeba_mod, "decode_many")
    again = CelebADataModule(root=str(tmp_path), size=32, crop=140, download=False)
    assert torch.equal(again.split("train")[0], tr[0]) and torch.equal(again.split("test")[0], te[0])
    assert calls == []
    # another size is another cache entry, so it decodes (once, for all three splits)
    CelebADataModule(root=str(tmp_path), size=16, crop=140, download=False).split("train")
    assert len(calls) == 1 and len(list((tmp_path / "celeba").glob("*.npy"))) == 2


def test_celeba_zip_without_identity_file(tmp_path):
    write_celeba(tmp_path, n=8, zipped=True, identity=False)
    dm = CelebADataModule(root=str(tmp_path / "celeba"), size=16, crop=None, cache=False, download=False)
    x, y = dm.split("val")
    assert tuple(x.shape) == (2, 3, 16, 16) and y.tolist() == [0, 0]
    assert (tmp_path / "celeba" / "img_align_celeba" / "000008.jpg").is_file()  # extracted
    # crop=None: the largest centred square, 178x178
    diff = np.abs(x[0].numpy().astype(np.float64) - expected_celeba(4, 178, 16))
    assert diff.mean(axis=(1, 2)).max() < 1.0 and diff.max() < 6


def test_celeba_missing_offline_lists_folders(tmp_path):
    with pytest.raises(DataError) as e:
        CelebADataModule(root=str(tmp_path / "faces"), download=False).prepare_data()
    msg = str(e.value)
    assert "list_eval_partition.txt" in msg and "img_align_celeba" in msg
    assert str(tmp_path / "faces" / "celeba") in msg and "mmlab.ie.cuhk.edu.hk" in msg


# ============================================================================================ LFW
PEOPLE = {"Aaron_Peirsol": (200, 30, 30), "Zico": (30, 200, 30), "Gerhard_Schroeder": (30, 30, 200),
          "Laura_Bush": (120, 120, 20)}


def write_lfw_tgz(path: Path, per_person: int = 3) -> None:
    """A real lfw-deepfunneled.tgz: lfw-deepfunneled/<Name>/<Name>_000k.jpg, 250x250, one colour each."""
    with tarfile.open(path, "w:gz") as tar:
        for name, colour in PEOPLE.items():
            for k in range(1, per_person + 1):
                img = np.zeros((250, 250, 3), np.uint8)
                img[:] = colour
                img[:125, :, 0] = colour[0] // 2 + 60 * (k - 1)  # top half differs per image
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"lfw-deepfunneled/{name}/{name}_{k:04d}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)


def test_lfw_tgz_is_extracted_labels_follow_sorted_names(tmp_path, monkeypatch):
    write_lfw_tgz(tmp_path / "lfw-deepfunneled.tgz")
    dm = LFWDataModule(root=str(tmp_path), size=32, download=False, test_fraction=0.25, val_size=2)
    tr, va, te = dm.split("train"), dm.split("val"), dm.split("test")
    assert (tr[0].shape[0], va[0].shape[0], te[0].shape[0]) == (7, 2, 3)
    assert (tmp_path / "lfw-deepfunneled" / "Zico" / "Zico_0003.jpg").is_file()
    names = sorted(PEOPLE)
    assert dm.num_classes == 4 and list(dm.class_names) == names
    seen = []
    for x, y in (tr, va, te):
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, 32, 32)
        for img, label in zip(x, y):
            colour = torch.tensor(PEOPLE[names[label]], dtype=torch.float32)
            bottom = img[:, 20:, :].float().mean(dim=(1, 2))  # untouched bottom half: the person's colour
            assert (bottom - colour).abs().max() < 4, (names[label], bottom)
            seen.append((int(label), int(img[0, 2, 16])))  # top-left red = image number within person
    assert len(set(seen)) == 12  # disjoint splits covering all 12 images
    # cached: a second module does not decode again
    import xgen.data.lfw as lfw_mod

    calls = count_calls(monkeypatch, lfw_mod, "decode_many")
    assert torch.equal(LFWDataModule(root=str(tmp_path), size=32, download=False, test_fraction=0.25,
                                     val_size=2).split("test")[0], te[0])
    assert calls == []


def test_lfw_folder_layout_crop_then_resize(tmp_path):
    """Extracted layout; grey window = the 100x100 centre crop narrowed to 2:1, white outside it."""
    img = np.full((250, 250, 3), 255, np.uint8)
    img[75:175, 100:150] = 128
    for name in ("B_Person", "A_Person"):
        (tmp_path / "lfw-deepfunneled" / name).mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / "lfw-deepfunneled" / name / f"{name}_0001.jpg", quality=95)
    kw = dict(root=str(tmp_path), size=[20, 10], cache=False, download=False, test_fraction=0.5, val_size=0)
    x, y = LFWDataModule(crop=100, **kw).load_split("train")
    assert tuple(x.shape) == (1, 3, 20, 10)
    inner = x[0, :, 1:-1, 1:-1].float()
    assert (inner - 128).abs().max() < 4  # only the window, right way round (a 20x10 tall strip)
    whole = LFWDataModule(crop=None, **kw).load_split("train")[0][0].float()
    assert whole.mean() > 200  # without the crop the white surround dominates


def test_lfw_missing_offline_lists_folders(tmp_path):
    with pytest.raises(DataError) as e:
        LFWDataModule(root=str(tmp_path / "x"), download=False).prepare_data()
    msg = str(e.value)
    assert "lfw-deepfunneled.tgz" in msg and str(tmp_path / "x" / "lfw-py") in msg


def test_lfw_corrupt_archive_names_the_file(tmp_path):
    (tmp_path / "lfw-deepfunneled.tgz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="lfw-deepfunneled.tgz: cannot be extracted"):
        LFWDataModule(root=str(tmp_path), download=False).load_split("train")


# ============================================================================================ folder
def write_tree(root: Path, counts: dict[str, int], hw: tuple[int, int] = (12, 16), seed: int = 0) -> dict:
    """root/<class>/<i>.png, lossless random RGB images; returns {path: array}."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / cls / f"{i:03d}.png")
            out[root / cls / f"{i:03d}.png"] = a
    return out


def test_folder_in_memory_exact_pixels_labels_and_fraction_splits(tmp_path):
    arrays = write_tree(tmp_path / "imgs", {"dog": 8, "cat": 6, "ant": 6})
    dm = FolderDataModule(root=str(tmp_path / "imgs"), channels=3, size=[12, 16], test_fraction=0.2,
                          val_size=4, num_workers=0, batch_size=4)
    tr, va, te = dm.split("train"), dm.split("val"), dm.split("test")
    assert (tr[0].shape[0], va[0].shape[0], te[0].shape[0]) == (12, 4, 4)
    assert dm.class_names == ("ant", "cat", "dog") and dm.num_classes == 3 and not dm.streaming()
    by_bytes = {a.transpose(2, 0, 1).tobytes(): p.parent.name for p, a in arrays.items()}
    seen = []
    for x, y in (tr, va, te):
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, 12, 16)
        for img, label in zip(x, y):
            cls = by_bytes[img.numpy().tobytes()]  # KeyError unless the pixels round-trip exactly
            assert dm.class_names[label] == cls
            seen.append(img.numpy().tobytes())
    assert len(set(seen)) == 20


def test_folder_resize_crop_and_grayscale(tmp_path):
    img = np.zeros((32, 48, 3), np.uint8)  # H 32, W 48: red | green | blue thirds
    img[:, :16, 0] = 255
    img[:, 16:32, 1] = 255
    img[:, 32:, 2] = 255
    (tmp_path / "t" / "only").mkdir(parents=True)
    Image.fromarray(img).save(tmp_path / "t" / "only" / "a.png")
    Image.fromarray(img).save(tmp_path / "t" / "only" / "b.png")
    dm = FolderDataModule(root=str(tmp_path / "t"), size=16, test_fraction=0.5, val_size=0, num_workers=0)
    x = dm.load_split("test")[0][0]
    # centre square = columns 8..40: red 8..16 -> output columns 0..3, green 4..11, blue 12..15
    assert x[0, :, 1].min() > 240 and x[1, :, 8].min() > 240 and x[2, :, 14].min() > 240
    assert x[1, :, 1].max() < 15 and x[0, :, 8].max() < 15
    g = FolderDataModule(root=str(tmp_path / "t"), channels=1, size=16, test_fraction=0.5, val_size=0,
                         num_workers=0).load_split("test")[0][0]
    assert g.shape == (1, 16, 16) and abs(int(g[0, 5, 8]) - round(0.587 * 255)) <= 1  # ITU-R 601 luma


def test_folder_split_folders_and_streaming_matches_in_memory(tmp_path):
    root = tmp_path / "xray"
    write_tree(root / "train", {"NORMAL": 6, "PNEUMONIA": 7}, seed=1)
    write_tree(root / "test", {"NORMAL": 2, "PNEUMONIA": 3}, seed=2)
    write_tree(root / "val", {"NORMAL": 1, "PNEUMONIA": 2}, seed=3)
    kw = dict(root=str(root), channels=1, size=[8, 8], batch_size=4, eval_batch_size=3, num_workers=0)
    mem = FolderDataModule(in_memory="auto", **kw)
    stream = FolderDataModule(in_memory="auto", memory_budget_gb=1e-9, **kw)  # over budget: streams
    assert not mem.streaming() and stream.streaming()
    assert [mem.split(s)[0].shape[0] for s in ("train", "val", "test")] == [13, 3, 5]
    mem.setup()
    for split, loader in (("val", stream.val_dataloader()), ("test", stream.test_dataloader())):
        batches = list(loader)
        assert all(b[0].dtype == torch.uint8 for b in batches)
        xs, ys = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        assert torch.equal(xs, mem.split(split)[0]) and torch.equal(ys, mem.split(split)[1])
        assert torch.equal(xs, stream.split(split)[0])
    train = list(stream.train_dataloader())
    assert len(train) == 3 and all(tuple(b[0].shape) == (4, 1, 8, 8) for b in train)  # drop_last
    got = rows_as_set(torch.cat([b[0] for b in train]))
    assert got < rows_as_set(mem.split("train")[0]) and len(got) == 12
    x, y = stream.on_after_batch_transfer(train[0], 0)  # the base class scales uint8 on the device
    assert x.dtype == torch.float32 and torch.allclose(x * 255, train[0][0].float(), atol=1e-4)


def test_folder_streaming_with_a_worker_process(tmp_path):
    write_tree(tmp_path / "w", {"a": 5}, hw=(8, 8))
    dm = FolderDataModule(root=str(tmp_path / "w"), size=8, in_memory=False, num_workers=1, batch_size=2,
                          test_fraction=0.2, val_size=0)
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and batches[0][0].dtype == torch.uint8 and batches[0][1].dtype == torch.int64


def test_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.root: the folder dataset needs"):
        FolderDataModule(root=None)
    with pytest.raises(ConfigError, match="data.channels"):
        FolderDataModule(root=str(tmp_path), channels=2)
    with pytest.raises(ConfigError, match="data.in_memory"):
        FolderDataModule(root=str(tmp_path), in_memory="sometimes")
    with pytest.raises(ConfigError, match="data.size"):
        FolderDataModule(root=str(tmp_path), size=[3, 4, 5])
    with pytest.raises(DataError, match="is not a folder"):
        FolderDataModule(root=str(tmp_path / "absent")).prepare_data()
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        FolderDataModule(root=str(tmp_path / "empty")).setup()
    write_tree(tmp_path / "bad", {"a": 3}, hw=(8, 8))
    (tmp_path / "bad" / "a" / "zz.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"zz.png: cannot be decoded"):
        FolderDataModule(root=str(tmp_path / "bad"), size=8, test_fraction=0, val_size=0).setup()


# ============================================================================================ configs
@pytest.mark.parametrize("name,shape", [("svhn", (3, 32, 32)), ("celeba", (3, 64, 64)),
                                        ("frey_faces", (1, 28, 20)), ("lfw", (3, 128, 128)),
                                        ("folder", (3, 64, 64)), ("chest_xray", (1, 256, 256)),
                                        ("furniture", (1, 256, 256)), ("aloi", (1, 64, 64))])
def test_data_configs_instantiate(name, shape, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import xgen

    conf = Path(xgen.__file__).parent / "conf"
    with initialize_config_dir(str(conf), version_base=None):
        cfg = compose("train", overrides=[f"data={name}", f"data.root={tmp_path}"])
        dm = instantiate(cfg.data)
        assert tuple(dm.image_shape) == shape
        if name in ("folder", "chest_xray", "furniture", "aloi"):
            bare = compose("train", overrides=[f"data={name}"])
            with pytest.raises(Exception, match="data.root: the folder dataset needs"):
                instantiate(bare.data)
