"""Shared pieces of the image-file readers: decoding with crop/resize, threaded bulk decoding with a
progress bar, a ``.npy`` cache of decoded tensors, archive extraction, fraction splits, and the
"files not found" error every reader raises when it cannot find or fetch its files.
"""

from __future__ import annotations

import hashlib
import math
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from xgen.data.locate import describe_dirs
from xgen.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


# ------------------------------------------------------------------------------------------ config
def parse_size(size: int | Sequence[int], key: str = "data.size") -> tuple[int, int]:
    """`size` as (height, width): an int means a square, a pair is [height, width]."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        try:
            hw = (int(size[0]), int(size[1]))
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: must be an int or [height, width], got {size!r}") from None
    else:
        raise ConfigError(f"{key}: must be an int or [height, width], got {size!r}")
    if min(hw) < 1:
        raise ConfigError(f"{key}: must be positive, got {size!r}")
    return hw


# ------------------------------------------------------------------------------------------ decoding
def center_box(width: int, height: int, out_hw: tuple[int, int],
               crop_hw: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
    """The source box (left, top, right, bottom) that is resized to `out_hw`.

    First a centred `crop_hw` crop (clipped to the image), then, inside it, the largest centred region
    with the aspect ratio of the output: "resize the short side, then centre-crop" in one step.
    """
    cw, ch = float(width), float(height)
    if crop_hw is not None:
        ch, cw = min(float(crop_hw[0]), ch), min(float(crop_hw[1]), cw)
    out_h, out_w = out_hw
    if cw * out_h > ch * out_w:  # wider than the output: trim the sides
        cw = ch * out_w / out_h
    else:
        ch = cw * out_h / out_w
    left, top = (width - cw) / 2.0, (height - ch) / 2.0
    return (left, top, left + cw, top + ch)


def decode_image(path: str | os.PathLike, channels: int, out_hw: tuple[int, int],
                 crop_hw: tuple[int, int] | None = None) -> np.ndarray:
    """One image file -> uint8 (channels, H, W): optional centre crop, aspect-keeping centre crop to
    the output shape, bilinear (antialiased) resize. JPEGs are decoded at a reduced DCT scale when
    that still leaves at least the output resolution (much faster for large photos)."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as img:
            w0, h0 = img.size
            box0 = center_box(w0, h0, out_hw, crop_hw)
            if img.format == "JPEG":
                bw, bh = box0[2] - box0[0], box0[3] - box0[1]
                need = (math.ceil(w0 * out_hw[1] / bw), math.ceil(h0 * out_hw[0] / bh))
                img.draft(mode, need)
            w, h = img.size
            # DCT scaling divides by a power of two and rounds the size up: map by the factor itself
            f = 2.0 ** round(math.log2(w0 / w)) if (w, h) != (w0, h0) else 1.0
            box = tuple(min(c / f, lim) for c, lim in zip(box0, (w, h, w, h)))
            img = img.convert(mode)
            if img.size != (out_hw[1], out_hw[0]) or box != (0.0, 0.0, float(w), float(h)):
                img = img.resize((out_hw[1], out_hw[0]), Image.Resampling.BILINEAR, box=box)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError, truncated files
        raise DataError(f"{path}: cannot be decoded as an image ({type(e).__name__}: {e}). "
                        "Delete or replace the file and run again.") from e
    # a fresh, writable (C, H, W) array (PIL's buffer is read-only)
    return arr[None].copy() if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_many(paths: Sequence[Path], channels: int, out_hw: tuple[int, int],
                crop_hw: tuple[int, int] | None = None, workers: int = 0,
                description: str = "decoding images") -> np.ndarray:
    """Decode `paths` into one uint8 array (N, C, H, W), with threads and a progress bar.

    Pillow releases the GIL while decoding and resizing, so threads scale over cores without the
    cost of worker processes. ``workers=0`` uses up to 8 threads (one per core)."""
    n = len(paths)
    out = np.empty((n, channels, *out_hw), dtype=np.uint8)
    n_threads = workers if workers > 0 else min(8, os.cpu_count() or 1)
    chunk = 64

    def work(start: int) -> int:
        for i in range(start, min(start + chunk, n)):
            out[i] = decode_image(paths[i], channels, out_hw, crop_hw)
        return min(chunk, n - start)

    starts = range(0, n, chunk)
    with _Progress(n, description) as advance:
        if n_threads <= 1 or n <= chunk:
            for s in starts:
                advance(work(s))
        else:
            with ThreadPoolExecutor(n_threads) as pool:
                for done in pool.map(work, starts):
                    advance(done)
    return out


class _Progress:
    """A Rich progress bar for long decodes (hidden for small ones, where it would only be noise)."""

    def __init__(self, total: int, description: str, min_total: int = 2000):
        self.total, self.description, self.enabled = total, description, total >= min_total
        self._bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda k: None
        from rich.progress import Progress

        self._bar = Progress(transient=False)
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda k: self._bar.advance(task, k)  # type: ignore[union-attr]

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


# ------------------------------------------------------------------------------------------ cache
def files_key(paths: Sequence[Path], *parts: object) -> str:
    """A short hash of the file names (relative to their common parent) and the decode settings."""
    h = hashlib.sha1()
    for p in parts:
        h.update(repr(p).encode())
    for p in paths:
        h.update(f"{p.parent.name}/{p.name}\n".encode())
    return h.hexdigest()[:12]


def cached_decode(cache_dirs: Sequence[Path], cache_name: str, decode: Callable[[], np.ndarray],
                  expected_shape: tuple[int, ...]) -> np.ndarray:
    """Load `cache_name` (.npy) from the first of `cache_dirs` that has it with `expected_shape`;
    otherwise run `decode` and save the result to the first writable directory (atomically)."""
    for d in cache_dirs:
        p = d / cache_name
        if p.is_file():
            try:
                arr = np.load(p, mmap_mode="r")
            except (OSError, ValueError):
                continue  # a damaged cache is rebuilt below
            if arr.shape == tuple(expected_shape) and arr.dtype == np.uint8:
                return np.array(arr)  # read it all now, do not keep the file mapped
    arr = decode()
    for d in cache_dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=cache_name, suffix=".tmp")
        except OSError:
            continue  # read-only (e.g. /usr/share/datasets): try the next one
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, d / cache_name)
            break
        except OSError:
            Path(tmp).unlink(missing_ok=True)
    return arr


# ------------------------------------------------------------------------------------------ archives
def extract_archive(archive: Path, targets: Sequence[Path]) -> Path:
    """Extract a .tgz/.tar/.zip into the first writable directory of `targets`; returns it."""
    errors = []
    for target in targets:
        try:
            target.mkdir(parents=True, exist_ok=True)
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(target)
            else:
                with tarfile.open(archive) as t:
                    if hasattr(tarfile, "data_filter"):  # refuses absolute paths and links out
                        t.extractall(target, filter="data")
                    else:
                        t.extractall(target)
            return target
        except PermissionError as e:
            errors.append(f"{target}: {e}")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise DataError(f"{archive}: cannot be extracted ({type(e).__name__}: {e}). The archive is "
                            "corrupt or truncated; delete it and download it again.") from e
    raise DataError(f"{archive}: no writable folder to extract it into:\n" + "\n".join(errors))


def download_url(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Fetch `url` to `dest` (written to a temporary file first, so an interrupted download leaves
    nothing half-written behind)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            while block := r.read(1 << 20):
                f.write(block)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ errors
def fetch_or_fail(name: str, missing: Callable[[], list[str]], dirs: Sequence[Path], allowed: bool,
                  fetch: Callable[[], None], target: Path | str, fix: str, root: str | None = None) -> None:
    """Run `fetch` when files are `missing` and downloading is allowed; raise a DataError listing the
    missing files, the folders looked in (and that only the explicit `root` was), why fetching did not
    help, and `fix`, if files stay missing."""
    lost = missing()
    if not lost:
        return
    if allowed:
        try:
            fetch()
        except Exception as e:  # offline: URLError, socket errors, HTTP errors, quota errors
            reason = f"Download into {target} failed ({type(e).__name__}: {e})."
        else:
            if not missing():
                return
            reason = f"Download into {target} did not produce the expected files."
    else:
        reason = "Downloading is switched off (data.download=false)."
    raise DataError(f"{name}: files not found: {', '.join(lost)}.\nLooked in:\n{describe_dirs(dirs, root)}\n"
                    f"{reason}\nFix: {fix} Or set data.root=/path/to/folder (or $XGEN_DATA).")


# ------------------------------------------------------------------------------------------ splits
def fraction_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (held_out, rest) of a random split of `n` items, `fraction` of them held out, each
    sorted; fixed by `seed` so the test split does not move when the training seed changes."""
    n_out = int(round(fraction * n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[:n_out].sort().values, perm[n_out:].sort().values
