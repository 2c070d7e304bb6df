"""The images a run contributes to the human evaluation: generated ones (from its checkpoint, with a
seed, or cut out of its ``samples/`` grids) and as many real ones from its data module's test split."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import torch

from xgen.errors import ConfigError


class RunImages(NamedTuple):
    key: str           # resolved run directory
    name: str          # display name
    source: str        # "checkpoint <path> seed <s>" or "samples <files>"
    real: list[bytes]  # PNGs
    fake: list[bytes]


def to_png(img: torch.Tensor) -> bytes:
    """One uint8 image (C, H, W) as PNG bytes (grey for C = 1, RGB for C = 3)."""
    from PIL import Image

    arr = img.detach().cpu()
    if arr.dtype != torch.uint8:
        raise TypeError(f"to_png wants uint8, got {arr.dtype}")
    c = arr.shape[0]
    if c == 1:
        pil = Image.fromarray(arr[0].numpy(), mode="L")
    elif c == 3:
        pil = Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    else:
        raise ConfigError(f"human-eval: images must have 1 or 3 channels, got {c}")
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def to_uint8(images: torch.Tensor, value_range) -> torch.Tensor:
    """Float images in ``value_range`` -> uint8 [0, 255]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1).mul(255).round().to(torch.uint8)


def split_grid(path: Path, image_shape: tuple[int, int, int], padding: int = 2) -> list[torch.Tensor]:
    """The tiles of a grid written by :func:`torchvision.utils.make_grid` (``padding`` pixels between and
    around tiles, as xgen's sample callbacks write them), skipping all-padding tiles."""
    from PIL import Image

    c, h, w = image_shape
    with Image.open(path) as im:
        arr = torch.from_numpy(__import__("numpy").array(im.convert("RGB" if c == 3 else "L")))
    if arr.ndim == 2:
        arr = arr.unsqueeze(-1)
    arr = arr.permute(2, 0, 1)
    gh, gw = arr.shape[1:]
    rows, cols = (gh - padding) // (h + padding), (gw - padding) // (w + padding)
    if rows < 1 or cols < 1 or rows * (h + padding) + padding != gh or cols * (w + padding) + padding != gw:
        raise ConfigError(f"{path}: a {gw}x{gh} image is not a grid of {w}x{h} tiles with {padding}-pixel padding; "
                          "human-eval needs the run's checkpoint, or sample grids of the run's image size.")
    tiles = []
    for r in range(rows):
        for q in range(cols):
            y, x = padding + r * (h + padding), padding + q * (w + padding)
            t = arr[:, y:y + h, x:x + w]
            if not bool((t == 255).all()):  # an empty slot of the last row is all padding (white)
                tiles.append(t)
    return tiles


def run_images(run_dir: str | Path, n: int, seed: int = 0, data: str | None = None,
               device: str = "cpu") -> RunImages:
    """``n`` generated and ``n`` real images of one run directory (a real image never repeats).

    Generated images come from ``checkpoints/last.ckpt`` (any :class:`~xgen.protocols.Generative` model,
    ``generate`` with a seeded generator) or, without a checkpoint, from the tiles of the PNG grids in
    ``samples/`` (newest first)."""
    from xgen.runtime.compose import data_module  # reads the run's config.yaml (or --data)
    from xgen.checkpoint.runs import RunDir
    from xgen.protocols import Generative

    p = Path(run_dir).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{p}: not a run directory (no such directory).")
    if n < 1:
        raise ConfigError(f"--num-images: must be >= 1, got {n}")
    ckpt = p / "checkpoints" / "last.ckpt"
    raw = p / "samples" / "raw"  # the bare grids (samples/*.png are labelled figures since SampleGrids labels them)
    tiles_dir = raw if raw.is_dir() else p / "samples"
    grids = sorted(tiles_dir.glob("*.png"), key=lambda f: (f.stat().st_mtime, f.name), reverse=True) \
        if tiles_dir.is_dir() else []
    if not ckpt.is_file() and not grids:
        raise ConfigError(f"{p}: has neither checkpoints/last.ckpt nor PNG grids in samples/; "
                          "pass the directory of a training run (xgen ... writes both), or train one first.")
    if data is None and not (p / "config.yaml").is_file():
        raise ConfigError(f"{p}: has no config.yaml to find its data; pass --data (e.g. --data fashion_mnist).")
    dm = data_module(RunDir(p) if data is None else None, data)
    real_all, _ = dm.split("test")
    image_shape = tuple(int(s) for s in real_all.shape[1:])
    if ckpt.is_file():
        from xgen.models import load_model

        model = load_model(ckpt, map_location=device, expect=Generative, tool="human-eval")
        with torch.no_grad():
            fake = to_uint8(model.generate(n, generator=torch.Generator(device=device).manual_seed(seed)),
                            model.value_range)
        if tuple(fake.shape[1:]) != image_shape:
            raise ConfigError(f"{p}: the model makes {tuple(fake.shape[1:])} images but its data is "
                              f"{image_shape}.")
        fakes = list(fake)
        source = f"checkpoint {ckpt} (seed {seed})"
    else:
        fakes = []
        used = []
        for g in grids:
            fakes += split_grid(g, image_shape)  # type: ignore[arg-type]
            used.append(g.name)
            if len(fakes) >= n:
                break
        fakes = fakes[:n]
        source = f"samples {', '.join(used)}"
    n_real = min(len(fakes), real_all.shape[0])
    idx = torch.randperm(real_all.shape[0], generator=torch.Generator().manual_seed(seed))[:n_real]
    return RunImages(str(p.resolve()), p.name, source, [to_png(real_all[i]) for i in idx.tolist()],
                     [to_png(f) for f in fakes])
