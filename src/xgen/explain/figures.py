"""Matplotlib figures of image grids whose axes say which code and which values they show."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _cell(img: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> an array imshow draws (H, W) gray or (H, W, 3)."""
    a = img.detach().float().clamp(0, 1).cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def mosaic(images: Tensor, pad: int = 2) -> np.ndarray:
    """(R, C, ch, H, W) in [0, 1] -> one (R*(H+pad)-pad, C*(W+pad)-pad[, 3]) array, white padding."""
    r, c, ch, h, w = images.shape
    out = np.ones((r * (h + pad) - pad, c * (w + pad) - pad) + ((3,) if ch == 3 else ()), dtype=np.float32)
    for i in range(r):
        for j in range(c):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = _cell(images[i, j])
    return out


def fmt(v: float | str) -> str:
    """A tick label: strings as they are, whole numbers without decimals, others with two."""
    if isinstance(v, str):
        return v
    return f"{v:g}" if float(v).is_integer() else f"{v:.2f}"


def grid_figure(images: Tensor, row_values: Sequence[float | str] | None, col_values: Sequence[float | str] | None,
                ylabel: str, xlabel: str, title: str = "", path: str | Path | None = None,
                cell_text: Sequence[Sequence[str]] | None = None, marks: Sequence[tuple[int, int]] = (),
                cell_inches: float = 0.75, fixed_layout: bool = False, dpi: int = 150):
    """Draw an (R, C) image grid with ticks at each row/column labelled by its code value (or a string).

    ``cell_text[r][c]`` is written under each image (Explainability Grids); ``marks`` are (r, c) cells
    whose right edge is a decision turning point (a red bar between c and c+1). ``fixed_layout`` places
    the axes by margins computed from the label lengths instead of ``tight_layout`` (half the time:
    for figures drawn every epoch).
    """
    plt = _mpl()
    r, c, ch, h, w = images.shape
    pad = 2
    text_h = 0.35 if cell_text is not None else 0.0
    if fixed_layout and cell_text is None:
        rows_txt = [fmt(v) for v in row_values] if row_values is not None else [str(r - 1)]
        left = 0.45 + 0.065 * max(len(t) for t in rows_txt) + (0.2 if ylabel else 0.0)
        lines = wrap(title, left + c * cell_inches).count("\n") + 1 if title else 0
        top, bottom, right = 0.12 + 0.19 * lines, 0.55 if xlabel else 0.35, 0.15
        fw, fh = left + c * cell_inches + right, top + bottom + r * cell_inches * h / w
        fig = plt.figure(figsize=(fw, fh))
        ax = fig.add_axes((left / fw, bottom / fh, c * cell_inches / fw, r * cell_inches * h / w / fh))
    else:
        fig, ax = plt.subplots(figsize=(1.4 + c * cell_inches, 1.1 + r * (cell_inches + text_h)))
    if cell_text is None:
        ax.imshow(mosaic(images, pad), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ys = [i * (h + pad) + h / 2 for i in range(r)]
        xs = [j * (w + pad) + w / 2 for j in range(c)]
        ax.set_xlim(-0.5, c * (w + pad) - pad - 0.5)
        ax.set_ylim(r * (h + pad) - pad - 0.5, -0.5)
    else:  # leave a text band under each image
        th = int(round(h * 0.55))
        for i in range(r):
            for j in range(c):
                y0 = i * (h + th + pad)
                x0 = j * (w + pad)
                ax.imshow(_cell(images[i, j]), cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                          extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5))
                ax.text(x0 + w / 2 - 0.5, y0 + h + th * 0.45, cell_text[i][j], ha="center", va="center",
                        fontsize=5.2, linespacing=0.95)
        for (i, j) in marks:
            y0, x = i * (h + th + pad), (j + 1) * (w + pad) - pad / 2 - 0.5
            ax.plot([x, x], [y0 - 0.5, y0 + h + th - 0.5], color="red", linewidth=2.0)
        ys = [i * (h + th + pad) + h / 2 for i in range(r)]
        xs = [j * (w + pad) + w / 2 for j in range(c)]
        ax.set_xlim(-0.5, c * (w + pad) - pad - 0.5)
        ax.set_ylim(r * (h + th + pad) - pad - 0.5, -0.5)
    ax.set_xticks(xs)
    ax.set_xticklabels([fmt(v) for v in col_values] if col_values is not None else [str(j) for j in range(c)],
                       fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels([fmt(v) for v in row_values] if row_values is not None else [str(i) for i in range(r)],
                       fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(wrap(title, fig.get_figwidth()), fontsize=9)
    if not (fixed_layout and cell_text is None):
        fig.tight_layout()
    return save(fig, path, title, dpi)


def wrap(text: str, width_inches: float, fontsize: float = 9) -> str:
    """``text`` with each line wrapped to what fits ``width_inches`` at ``fontsize`` (explicit newlines kept)."""
    import textwrap

    chars = max(20, int(width_inches * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def save(fig, path: str | Path | None, title: str = "", dpi: int = 150):
    """Write ``fig`` to ``path`` (folders created; ``title`` also as the PNG's Title text, which image
    viewers and ``PIL.Image.open(path).text`` show) and close it; return the path (or the figure)."""
    if path is None:
        return fig
    plt = _mpl()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Title": " ".join(title.split())} if title and path.suffix.lower() == ".png" else None
    fig.savefig(path, dpi=dpi, metadata=meta)
    plt.close(fig)
    return path


def image_rows_figure(rows: Sequence[Sequence[tuple[Tensor | np.ndarray, str]]], path: str | Path | None,
                      col_titles: Sequence[str] = (), title: str = "", heat_cols: Sequence[int] = (),
                      cell_inches: float = 1.5, heat_label: str = "value", row_titles: Sequence[str] = ()):
    """Rows of (image or heat map, caption) panels. Columns in ``heat_cols`` are drawn as diverging
    heat maps (red: brighter than the reference, blue: darker), each on its own symmetric scale
    ±max|value| (a shared scale hides the small maps) with a colour bar labelled ``heat_label`` (say
    the units). ``row_titles`` label each row at its left."""
    plt = _mpl()
    nr, nc = len(rows), max(len(r) for r in rows)
    extra = 0.6 * bool(heat_cols) + 0.9 * bool(row_titles)
    fig, axes = plt.subplots(nr, nc, figsize=(nc * cell_inches + 0.4 + extra, nr * (cell_inches + 0.4) + 0.6),
                             squeeze=False)
    for i, r in enumerate(rows):
        for j in range(nc):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(r):
                ax.axis("off")
                continue
            img, cap = r[j]
            if j in heat_cols:
                a = np.asarray(img)
                vmax = max(float(np.abs(a).max()), 1e-6)
                im = ax.imshow(a, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
                cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, ticks=[-vmax, 0, vmax])
                cb.ax.set_yticklabels([f"{-vmax:.2f}", "0", f"{vmax:+.2f}"])
                cb.ax.tick_params(labelsize=6)
                cb.set_label(heat_label, fontsize=6)
            else:
                a = _cell(img) if isinstance(img, Tensor) else np.asarray(img)
                ax.imshow(a, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xlabel(cap, fontsize=7)
            if i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
            if j == 0 and i < len(row_titles):
                ax.set_ylabel(row_titles[i], fontsize=8)
    if title:
        fig.suptitle(wrap(title, fig.get_figwidth()), fontsize=9)
    fig.tight_layout()
    return save(fig, path, title)


def as_numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


__all__ = ["grid_figure", "image_rows_figure", "mosaic", "save", "as_numpy", "wrap", "torch"]
