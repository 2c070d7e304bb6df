"""dSprites: the procedural generator against the published definition, the official-file loader, the
data module's factor interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xgen.data.dsprites import (BASES, FACTOR_NAMES, FACTOR_SIZES, NUM_IMAGES, DSpritesDataModule, DSpritesRenderer,
                                factor_values, factors_to_index, index_to_factors, load_official_npz, sprite_patch)
from xgen.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def renderer() -> DSpritesRenderer:
    return DSpritesRenderer(64)


def test_grid_matches_published_definition():
    assert NUM_IMAGES == 737_280
    assert FACTOR_SIZES == (1, 3, 6, 40, 32, 32)
    assert FACTOR_NAMES == ("color", "shape", "scale", "orientation", "posX", "posY")
    assert BASES == (737_280, 245_760, 40_960, 1_024, 32, 1)
    v = factor_values()
    assert [len(a) for a in v] == list(FACTOR_SIZES)
    np.testing.assert_allclose(v[2], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert v[3][0] == 0.0 and v[3][-1] == pytest.approx(2 * math.pi) and v[3][1] == pytest.approx(2 * math.pi / 39)
    assert v[4][0] == 0 and v[4][-1] == 1 and v[5][1] == pytest.approx(1 / 31)
    np.testing.assert_array_equal(v[1], [1, 2, 3])


def test_index_factor_round_trip_and_order():
    idx = np.random.default_rng(0).integers(0, NUM_IMAGES, 5000)
    f = index_to_factors(idx)
    assert (f >= 0).all() and (f < np.array(FACTOR_SIZES)).all()
    np.testing.assert_array_equal(factors_to_index(f), idx)
    # the published order: posY fastest, then posX, orientation, scale, shape
    np.testing.assert_array_equal(index_to_factors([0, 1, 32, 1024, 40960, 245759]),
                                  [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0],
                                   [0, 0, 1, 0, 0, 0], [0, 0, 5, 39, 31, 31]])
    np.testing.assert_array_equal(index_to_factors([NUM_IMAGES - 1]), [[0, 2, 5, 39, 31, 31]])
    with pytest.raises(DataError, match="indices must lie"):
        index_to_factors([NUM_IMAGES])
    with pytest.raises(DataError, match="orientation"):
        factors_to_index([[0, 0, 0, 40, 0, 0]])


def test_images_binary_and_zero_equals_two_pi(renderer):
    f = index_to_factors(np.random.default_rng(1).integers(0, NUM_IMAGES, 300))
    x = renderer.render(f)
    assert x.shape == (300, 1, 64, 64) and x.dtype == torch.uint8
    assert set(torch.unique(x).tolist()) == {0, 255}
    assert (x.flatten(1).amax(1) == 255).all()  # every image shows a sprite
    a, b = f.copy(), f.copy()
    a[:, 3], b[:, 3] = 0, 39
    assert torch.equal(renderer.render(a), renderer.render(b))
    # but other orientations of the heart differ (no accidental symmetry)
    c = a.copy()
    c[:, 1], c[:, 3] = 2, 10
    a[:, 1] = 2
    assert not torch.equal(renderer.render(a), renderer.render(c))


def test_sprites_stay_inside_frame_and_positions_cover_centre_half(renderer):
    # no sprite touches its patch border, so pasting never clips: every sprite is whole in the frame
    p = renderer.patches
    assert not (p[..., 0, :].any() or p[..., -1, :].any() or p[..., :, 0].any() or p[..., :, -1].any())
    # centre of mass of the largest, unrotated square moves 1 px per position step over pixels 16..47
    f = np.array([[0, 0, 5, 0, i, j] for i, j in ((0, 0), (31, 31), (15, 0))])
    x = renderer.render(f)[:, 0].float()
    rows, cols = torch.arange(64.0), torch.arange(64.0)
    cy = (x.sum(2) * rows).sum(1) / x.sum((1, 2))
    cx = (x.sum(1) * cols).sum(1) / x.sum((1, 2))
    torch.testing.assert_close(cx, torch.tensor([16.0, 47.0, 31.0]))
    torch.testing.assert_close(cy, torch.tensor([16.0, 47.0, 16.0]))  # posY runs down the rows
    # at the extreme positions the biggest sprite of every shape and orientation is inside and whole
    for shape in range(3):
        area = p[shape, 5].sum((1, 2))
        for i in (0, 31):
            f = np.array([[0, shape, 5, o, i, i] for o in range(40)])
            assert torch.equal(renderer.render(f).flatten(1).sum(1) // 255, torch.from_numpy(area).long())


def test_scale_grows_area_quadratically(renderer):
    area = renderer.patches.sum((3, 4)).mean(2)  # (shape, scale)
    ratio = area[:, -1] / area[:, 0]  # scale 1 vs 0.5: (1/0.5)^2 = 4 up to rasterisation
    assert np.all(np.abs(ratio - 4) < 0.4), ratio
    assert np.all(np.diff(area, axis=1) > 0)


def test_downscaled_variant_is_block_average(renderer):
    f = index_to_factors(np.arange(0, NUM_IMAGES, 7919))
    x64 = renderer.render(f).float()
    x32 = DSpritesRenderer(32).render(f)
    assert x32.shape == (f.shape[0], 1, 32, 32)
    torch.testing.assert_close(x32.float(), torch.nn.functional.avg_pool2d(x64, 2).round())


def test_docs_grid_exists_and_patch_shapes():
    assert sprite_patch(0, 1.0, 0.0).sum() == 19 * 19  # half side 14/sqrt(2) = 9.9 px: pixel centres -9..9
    from pathlib import Path

    assert (Path(__file__).resolve().parents[2] / "docs" / "img" / "dsprites_grid.png").is_file()


def _write_official(path, rows: np.ndarray, renderer: DSpritesRenderer, pickled_imgs: bool = False) -> None:
    """A subset file in the exact format of the official npz (metadata: a pickled dict, as published)."""
    classes = index_to_factors(rows)
    values = np.stack([factor_values()[k][classes[:, k]] for k in range(6)], 1)
    imgs = (renderer.render(classes)[:, 0].numpy() // 255).astype(np.uint8)
    meta = np.array({"latents_sizes": np.array(FACTOR_SIZES), "latents_names": FACTOR_NAMES}, dtype=object)
    np.savez_compressed(path, imgs=imgs.astype(object) if pickled_imgs else imgs, latents_values=values,
                        latents_classes=classes, metadata=meta)


def test_official_loader_and_module_on_subset_file(tmp_path, renderer):
    rows = np.sort(np.random.default_rng(3).choice(NUM_IMAGES, 400, replace=False))
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    _write_official(path, rows, renderer)
    imgs, classes, values = load_official_npz(path)  # metadata (a pickle) is never read
    assert imgs.shape == (400, 64, 64) and set(np.unique(imgs)) == {0, 1}
    np.testing.assert_array_equal(factors_to_index(classes), rows)
    np.testing.assert_allclose(values[:, 2], factor_values()[2][classes[:, 2]])

    dm = DSpritesDataModule(path=str(path), num_train=300, num_val=50, num_test=50, batch_size=32)
    x, y = dm.split("train")
    f = dm.factors("train")
    assert x.shape == (300, 1, 64, 64) and f.shape == (300, 6)
    torch.testing.assert_close(y, f[:, 1])
    assert torch.equal(x, renderer.render(f.numpy()))  # the file's images are the generator's
    s = dm.sample_factors(64, torch.Generator().manual_seed(0))
    assert set(factors_to_index(s.numpy())) <= set(rows.tolist())  # only rows the file holds
    assert torch.equal(dm.images_from_factors(s), renderer.render(s.numpy()))
    absent = np.setdiff1d(np.arange(1000), rows)[:1]
    with pytest.raises(DataError, match="holds no image"):
        dm.images_from_factors(index_to_factors(absent))
    with pytest.raises(DataError, match="exceeds the 400 images"):
        DSpritesDataModule(path=str(path), num_train=400).split("train")


def test_official_loader_refuses_pickles_and_bad_files(tmp_path, renderer):
    p = tmp_path / "pickled.npz"
    _write_official(p, np.arange(10), renderer, pickled_imgs=True)
    with pytest.raises(DataError, match="refuses to unpickle"):
        load_official_npz(p)
    q = tmp_path / "garbage.npz"
    q.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_official_npz(q)
    r = tmp_path / "wrong.npz"
    np.savez(r, imgs=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(DataError, match="no latents_classes"):
        load_official_npz(r)
    with pytest.raises(DataError, match="not found"):
        load_official_npz(tmp_path / "missing.npz")


def test_procedural_module_splits_and_factor_interface():
    dm = DSpritesDataModule(resolution=32, num_train=200, num_val=40, num_test=60, batch_size=16, train_subset=150)
    x, y = dm.split("train")
    assert x.shape == (150, 1, 32, 32) and dm.image_shape == (1, 32, 32)
    f = dm.factors("train")
    assert f.shape == (150, 6) and f.dtype == torch.int64
    assert torch.equal(x, dm.images_from_factors(f))
    ids = [set(factors_to_index(dm.factors(s).numpy()).tolist()) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # disjoint splits
    assert dm.factor_sizes == FACTOR_SIZES and dm.factor_names == FACTOR_NAMES
    g = torch.Generator().manual_seed(0)
    s = dm.sample_factors(4000, g)
    assert s.shape == (4000, 6) and (s.max(0).values == torch.tensor(FACTOR_SIZES) - 1).all()
    assert torch.equal(dm.sample_factors(5, torch.Generator().manual_seed(1)),
                       dm.sample_factors(5, torch.Generator().manual_seed(1)))
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (16, 1, 32, 32) and xb.dtype == torch.float32 and float(xb.max()) <= 1.0
    with pytest.raises(ConfigError, match="data.resolution"):
        DSpritesDataModule(resolution=48)


def test_hydra_config_instantiates():
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module(config_module="xgen.conf", version_base=None):
        cfg = compose(config_name="train", overrides=["data=dsprites32", "data.num_train=64", "data.num_val=8",
                                                      "data.num_test=8"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, DSpritesDataModule) and dm.resolution == 32
    assert dm.split("val")[0].shape == (8, 1, 32, 32)
