"""dSprites (Matthey et al. 2017): 2-D shapes from six known generative factors, rendered on demand.

The published dataset (``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``) holds every combination of

=============  ====  ===========================================  ==================================
factor         size  values (``latents_values``)                  here
=============  ====  ===========================================  ==================================
color          1     1.0 (white)                                   a factor with one value (entropy 0)
shape          3     1, 2, 3 = square, ellipse, heart              the label of an image
scale          6     linspace(0.5, 1, 6)                           sprite size relative to the largest
orientation    40    linspace(0, 2π, 40), both ends included      0 and 2π render the same image
posX           32    linspace(0, 1, 32)                            left to right
posY           32    linspace(0, 1, 32)                            top to bottom (image rows)
=============  ====  ===========================================  ==================================

737,280 binary 64×64 images, image ``i`` having the factor indices ``c`` with ``i = dot(c, bases)``,
``bases = (737280, 245760, 40960, 1024, 32, 1)[1:] + (1,)`` — posY varies fastest.

:class:`DSpritesRenderer` draws any of them without the 3 GB array: each (shape, scale, orientation)
sprite is rasterised once into a 33×33 patch by testing whether every pixel centre lies inside the
rotated, scaled shape (no anti-aliasing), and an image is that patch pasted at the position's offset.
Positions move the sprite's centre by exactly one pixel per step over pixel centres 16..47 — the centre
half of the frame — and every sprite at scale 1 fits in a circle of radius ``RADIUS`` = 14 px around
its centre, so no sprite ever leaves the frame (tested).

What is ours, not measured from the published file (documented approximations): the sprites' absolute
size (enclosing radius 14 px at scale 1), the ellipse's aspect ratio (2 : 1.1), the heart's outline
(the implicit curve (x²+y²−1)³ = x²y³, centred on its bounding box), and the direction of rotation
(counter-clockwise). The factor grid, value ranges, index order, image count and binary pixels follow
the published definition. A user who has the official file can train on it instead
(``data.path=/path/to/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``): :func:`load_official_npz`.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from xgen.data.base import InMemoryDataModule
from xgen.errors import DataError, check

Tensor = torch.Tensor

FACTOR_NAMES: tuple[str, ...] = ("color", "shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES: tuple[int, ...] = (1, 3, 6, 40, 32, 32)
SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 737,280
BASES: tuple[int, ...] = tuple(int(math.prod(FACTOR_SIZES[k + 1:])) for k in range(len(FACTOR_SIZES)))
OFFICIAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

RADIUS = 14.0   # px: every sprite at scale 1 fits in a circle of this radius around its centre
PATCH = 33      # px: the patch a sprite is rasterised into; its centre pixel is (16, 16)
ELLIPSE_MINOR = 0.55  # semi-minor / semi-major axis of the ellipse


def factor_values() -> list[np.ndarray]:
    """The published ``latents_values`` of each factor (shape as 1, 2, 3 like the official file)."""
    return [np.array([1.0]), np.array([1.0, 2.0, 3.0]), np.linspace(0.5, 1.0, 6),
            np.linspace(0.0, 2 * np.pi, 40), np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32)]


def factors_to_index(factors: Tensor | np.ndarray) -> np.ndarray:
    """Factor indices (N, 6) -> image indices (N,) of the published order (posY fastest)."""
    f = np.asarray(factors, dtype=np.int64)
    _check_factors(f)
    return f @ np.asarray(BASES, dtype=np.int64)


def index_to_factors(index: Tensor | np.ndarray) -> np.ndarray:
    """Image indices (N,) -> factor indices (N, 6), the inverse of :func:`factors_to_index`."""
    i = np.asarray(index, dtype=np.int64)
    if i.size and (i.min() < 0 or i.max() >= NUM_IMAGES):
        raise DataError(f"dSprites image indices must lie in [0, {NUM_IMAGES}), got {i.min()}..{i.max()}")
    return np.stack([(i // b) % s for b, s in zip(BASES, FACTOR_SIZES)], axis=-1)


def _check_factors(f: np.ndarray) -> None:
    if f.ndim != 2 or f.shape[1] != len(FACTOR_SIZES):
        raise DataError(f"dSprites factors must be (N, {len(FACTOR_SIZES)}) indices "
                        f"({', '.join(FACTOR_NAMES)}), got shape {tuple(f.shape)}")
    bad = (f < 0) | (f >= np.asarray(FACTOR_SIZES))
    if bad.any():
        k = int(np.argwhere(bad)[0, 1])
        raise DataError(f"dSprites factor {FACTOR_NAMES[k]!r} takes indices 0..{FACTOR_SIZES[k] - 1}, "
                        f"got {int(f[np.argwhere(bad)[0, 0], k])}")


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the points (u, v) (units of the enclosing radius, v up) lie inside the shape."""
    if shape == 0:  # square whose corners touch the unit circle
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    if shape == 1:  # ellipse, major axis horizontal at orientation 0
        return u ** 2 + (v / ELLIPSE_MINOR) ** 2 <= 1.0
    # heart: (x²+y²−1)³ − x²y³ <= 0 spans x ∈ ±1.139, y ∈ [−1, 1.236]; centred on its bounding box and
    # scaled so that its farthest point (1.3366 from that centre) touches the unit circle
    k = 1.3366
    x, y = u * k, v * k + 0.118
    return (x ** 2 + y ** 2 - 1) ** 3 - x ** 2 * y ** 3 <= 0


def sprite_patch(shape: int, scale: float, angle: float) -> np.ndarray:
    """A bool (33, 33) patch of one sprite centred on pixel (16, 16), rotated counter-clockwise by
    ``angle`` (radians, taken modulo 2π so that 0 and 2π are the same sprite)."""
    angle = math.fmod(float(angle), 2 * math.pi)
    r = np.arange(PATCH) - PATCH // 2
    dy, dx = np.meshgrid(-r, r, indexing="ij")  # pixel centres relative to the sprite's centre; up is +y
    c, s = math.cos(angle), math.sin(angle)
    rad = RADIUS * float(scale)
    u = (dx * c + dy * s) / rad
    v = (-dx * s + dy * c) / rad
    return _inside(int(shape), u, v)


class DSpritesRenderer:
    """Renders dSprites images from factor indices: uint8 ``(N, 1, res, res)`` with values 0/255.

    ``resolution`` 64 is the published size; 32 is the 64×64 image averaged over 2×2 blocks (grey
    edges, values 0, 64, 128, 191, 255), the variant for CPU runs.
    """

    def __init__(self, resolution: int = 64):
        check(int(resolution) in (32, 64), "data.resolution", f"must be 64 (published) or 32, got {resolution}")
        self.resolution = int(resolution)
        vals = factor_values()
        n_sh, n_sc, n_or = FACTOR_SIZES[1:4]
        self.patches = np.zeros((n_sh, n_sc, n_or, PATCH, PATCH), dtype=bool)
        for a in range(n_sh):
            for b in range(n_sc):
                for c in range(n_or):
                    self.patches[a, b, c] = sprite_patch(a, vals[2][b], vals[3][c])

    def render(self, factors: Tensor | np.ndarray) -> Tensor:
        f = np.asarray(factors, dtype=np.int64)
        _check_factors(f)
        n = f.shape[0]
        canvas = np.zeros((n, 64, 64), dtype=np.uint8)
        if n:
            patch = self.patches[f[:, 1], f[:, 2], f[:, 3]].astype(np.uint8) * 255
            r = np.arange(PATCH)
            rows = f[:, 5, None, None] + r[None, :, None]  # posY index = the patch's top row
            cols = f[:, 4, None, None] + r[None, None, :]
            canvas[np.arange(n)[:, None, None], rows, cols] = patch
        x = torch.from_numpy(canvas).unsqueeze(1)
        if self.resolution == 32:
            x = torch.nn.functional.avg_pool2d(x.float(), 2).round().to(torch.uint8)
        return x


def _downscale(x: Tensor, resolution: int) -> Tensor:
    if resolution == 64:
        return x
    return torch.nn.functional.avg_pool2d(x.float(), 64 // resolution).round().to(torch.uint8)


def load_official_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(imgs uint8 (N, 64, 64) in {0, 1}, latents_classes int64 (N, 6), latents_values (N, 6))`` from
    the official file (or a subset of it written in the same format).

    The file is untrusted data: it is opened with ``allow_pickle=False`` and only its three arrays are
    read. The official file's ``metadata`` entry is a pickled Python dict; it is never read (unpickling
    can run code) — the factor names and sizes it describes are the constants of this module.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"dSprites file not found: {p}. Fix: data.path=/path/to/{OFFICIAL_FILE} "
                        "(from https://github.com/deepmind/dsprites-dataset), or data.path=null for the "
                        "procedural generator.")
    if not zipfile.is_zipfile(p):
        raise DataError(f"{p}: not a readable .npz file (not a zip archive); expected {OFFICIAL_FILE}.")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("imgs", "latents_classes", "latents_values") if k not in z.files]
            if missing:
                raise DataError(f"{p}: no {', '.join(missing)} in the file (it has {', '.join(z.files)}); "
                                f"expected the format of {OFFICIAL_FILE}.")
            imgs, classes, values = z["imgs"], z["latents_classes"], z["latents_values"]
    except DataError:
        raise
    except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"{p}: an array the loader needs is stored as pickled Python objects; xgen refuses "
                        f"to unpickle dataset files ({e}).") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}: {e}).") from e
    n = imgs.shape[0] if imgs.ndim else 0
    if imgs.ndim != 3 or tuple(imgs.shape[1:]) != (64, 64) or classes.shape != (n, 6) or values.shape != (n, 6):
        raise DataError(f"{p}: shapes imgs {imgs.shape}, latents_classes {classes.shape}, latents_values "
                        f"{values.shape}; expected (N, 64, 64), (N, 6), (N, 6).")
    if imgs.dtype != np.uint8 or (imgs.size and imgs.max() > 1):
        raise DataError(f"{p}: imgs must be uint8 in {{0, 1}} (binary), got {imgs.dtype} max {imgs.max()}.")
    classes = classes.astype(np.int64)
    _check_factors(classes)
    return imgs, classes, values.astype(np.float64)


class DSpritesDataModule(InMemoryDataModule):
    """dSprites as an in-memory data module with its factor interface for the disentanglement metrics.

    The train/val/test splits are disjoint random sets of images (``num_train``/``num_val``/``num_test``,
    drawn with ``split_seed``) rendered once into uint8 tensors; labels are the shape (0 square,
    1 ellipse, 2 heart). ``path`` reads the official ``.npz`` instead of rendering (a subset file works:
    the splits and ``sample_factors`` then draw from the rows it holds).

    Factor interface: :meth:`factors` (indices per image of a split), ``factor_names``, ``factor_sizes``,
    :meth:`factor_values`, :meth:`sample_factors` and :meth:`images_from_factors` (any combination).
    """

    name = "dsprites"
    num_classes = 3
    class_names = SHAPES
    has_val_split = True
    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_sizes: tuple[int, ...] = FACTOR_SIZES

    def __init__(self, resolution: int = 64, num_train: int = 50_000, num_val: int = 5_000,
                 num_test: int = 10_000, path: str | None = None, split_seed: int = 1234, **kw):
        check(int(resolution) in (32, 64), "data.resolution", f"must be 64 (published) or 32, got {resolution}")
        for key, v, lo in (("data.num_train", num_train, 1), ("data.num_val", num_val, 1),
                           ("data.num_test", num_test, 1)):
            check(int(v) >= lo, key, f"must be >= {lo}, got {v}")
        kw.setdefault("val_size", 0)
        super().__init__(**kw)
        self.resolution = int(resolution)
        self.image_shape = (1, self.resolution, self.resolution)
        self.num_train, self.num_val, self.num_test = int(num_train), int(num_val), int(num_test)
        self.path = path
        self.split_seed = int(split_seed)
        self._renderer: DSpritesRenderer | None = None
        self._file: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._row_of: dict[int, int] | None = None
        self._split_factors: dict[str, Tensor] = {}

    # ----------------------------------------------------------------------------- sources
    @property
    def renderer(self) -> DSpritesRenderer:
        if self._renderer is None:
            self._renderer = DSpritesRenderer(64)
        return self._renderer

    def _official(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._file is None:
            self._file = load_official_npz(self.path)  # type: ignore[arg-type]
            idx = factors_to_index(self._file[1])
            self._row_of = {int(i): r for r, i in enumerate(idx)}
        return self._file

    def _pool_size(self) -> int:
        return self._official()[0].shape[0] if self.path else NUM_IMAGES

    def _split_rows(self) -> dict[str, np.ndarray]:
        total = self._pool_size()
        need = self.num_test + self.num_val + self.num_train
        if need > total:
            raise DataError(f"dsprites: num_train + num_val + num_test = {need} exceeds the {total} images "
                            f"available; lower data.num_train.")
        perm = np.random.default_rng(self.split_seed).permutation(total)
        a, b = self.num_test, self.num_test + self.num_val
        return {"test": perm[:a], "val": perm[a:b], "train": perm[b:need]}

    def load_split(self, split: str) -> tuple[Tensor, Tensor]:
        rows = np.sort(self._split_rows()[split])
        if self.path:
            imgs, classes, _ = self._official()
            f = torch.from_numpy(classes[rows])
            x = _downscale(torch.from_numpy(imgs[rows].astype(np.uint8) * 255).unsqueeze(1), self.resolution)
        else:
            f = torch.from_numpy(index_to_factors(rows))
            x = self.images_from_factors(f)
        self._split_factors[split] = f
        return x, f[:, 1].clone()

    # ----------------------------------------------------------------------------- factor interface
    def factors(self, split: str) -> Tensor:
        """Factor indices (N, 6) of the images of ``split``, row for row."""
        x, _ = self.split(split)
        return self._split_factors[split][: x.shape[0]]

    def factor_values(self) -> list[np.ndarray]:
        """Per factor, the value of each index (the published ``latents_values``)."""
        return factor_values()

    def sample_factors(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n factor-index vectors drawn uniformly from the grid (or from the official file's rows)."""
        if self.path:
            classes = self._official()[1]
            rows = torch.randint(classes.shape[0], (int(n),), generator=generator)
            return torch.from_numpy(classes[rows.numpy()])
        return torch.stack([torch.randint(s, (int(n),), generator=generator) for s in FACTOR_SIZES], 1)

    def images_from_factors(self, factor_indices: Tensor | np.ndarray) -> Tensor:
        """uint8 images (N, 1, res, res) of the given factor indices (values 0..255)."""
        f = np.asarray(factor_indices, dtype=np.int64)
        if self.path:
            imgs = self._official()[0]
            assert self._row_of is not None
            idx = factors_to_index(f)
            missing = [int(i) for i in idx if int(i) not in self._row_of]
            if missing:
                raise DataError(f"{self.path}: holds no image for factors {index_to_factors(missing[:1])[0].tolist()} "
                                f"(index {missing[0]}); draw factors with sample_factors, which only picks "
                                "rows the file holds.")
            rows = np.array([self._row_of[int(i)] for i in idx], dtype=np.int64)
            x = torch.from_numpy(imgs[rows].astype(np.uint8) * 255).unsqueeze(1)
            return _downscale(x, self.resolution)
        x = self.renderer.render(f)
        return _downscale(x, self.resolution)


def save_grid(path: str | Path, scales: Sequence[int] = (0, 2, 5), orientations: Sequence[int] = (0, 5, 10, 20, 30, 39),
              resolution: int = 64) -> Path:
    """A labelled figure of the three shapes (rows: shape × scale) at several orientations (columns),
    all at the central position — the generator's fidelity check (docs/img/dsprites_grid.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = factor_values()
    rows = [(s, c) for s in range(3) for c in scales]
    fig, axes = plt.subplots(len(rows), len(orientations), figsize=(1.3 * len(orientations) + 1.2, 1.3 * len(rows) + 0.6),
                             squeeze=False)
    renderer = DSpritesRenderer(resolution)
    for i, (s, c) in enumerate(rows):
        f = np.array([[0, s, c, o, 15, 15] for o in orientations])
        x = renderer.render(f)[:, 0].numpy()
        for j, o in enumerate(orientations):
            ax = axes[i, j]
            ax.imshow(x[j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == len(rows) - 1:
                ax.set_xlabel(f"orient. {o}\n{np.degrees(vals[3][o]):.0f}°", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{SHAPES[s]}\nscale {vals[2][c]:.1f}", fontsize=8)
    fig.suptitle(f"dSprites (procedural, {resolution}×{resolution}): shape × scale (rows), orientation (columns), "
                 "posX = posY = index 15", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
