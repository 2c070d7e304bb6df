"""Plots of a VAE's latent space: the aggregate posterior against the prior (vae-thesis fig. 5.2), a decoded
grid over a 2-D latent plane (fig. 5.3, the lecture's inverse-CDF grid), per-unit traversals annotated
with each unit's KL, and a heat map of the mutual information between latent units and factors.

Every function reads the model through :mod:`xgen.protocols` (``Encodes`` for posteriors, ``Decodes``
for images, ``Generative`` for the latent size), runs it in eval mode without gradients and writes
one PNG with labelled axes; the arrays behind each figure are returned for tests and tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from xgen.errors import ConfigError, check
from xgen.metrics.disentanglement import posterior_of_model
from xgen.protocols import Decodes, Encodes, Generative, require, value_range_of

__all__ = ["aggregate_gaussian", "plot_aggregate_posterior", "plot_latent_plane", "latent_plane", "disentanglement_figures",
           "per_unit_kl", "plot_traversals", "plot_mi_heatmap"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return out


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _decode(model: Any, z: torch.Tensor, tool: str) -> np.ndarray:
    """Decoded images (N, H, W) or (N, H, W, C) in [0, 1] for display."""
    m = require(model, Decodes, tool)
    lo, hi = value_range_of(m)
    was = m.training if isinstance(m, torch.nn.Module) else None
    if was is not None:
        m.eval()
    try:
        with torch.no_grad():
            x = m.decode(z.to(_device(m), torch.float32)).float().cpu()
    finally:
        if was is not None:
            m.train(was)
    x = ((x - lo) / (hi - lo)).clamp(0, 1).numpy()
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


# ------------------------------------------------------------------------------------- fig. 5.2
def aggregate_gaussian(mean: np.ndarray, logvar: np.ndarray, generator: torch.Generator | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(μ̃, Σ̃, z): one sample zᵢ ~ q(z|xᵢ) per image and their empirical mean and covariance — the
    vae-thesis's "mean representation" N(μ̃, Σ̃) of the aggregate posterior (§5.1)."""
    mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    eps = torch.randn(mean.shape, generator=generator, dtype=torch.float64).numpy()
    z = mean + np.exp(0.5 * logvar) * eps
    return z.mean(0), np.atleast_2d(np.cov(z, rowvar=False)), z


def plot_aggregate_posterior(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                             num_samples: int = 10_000, dims: Sequence[int] = (0, 1), seed: int = 0,
                             lim: float = 4.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fig. 5.2: ``num_samples`` draws of the prior N(0, I) next to draws of N(μ̃, Σ̃) for each panel
    (title -> (posterior means, log-variances) of a model on a data set), in latent units ``dims``."""
    check(len(dims) == 2, "dims", f"two latent units to plot, got {dims}")
    plt = _plt()
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.6 * (len(panels) + 1), 2.9), squeeze=False)
    axes = axes[0]
    prior = rng.standard_normal((num_samples, 2))
    axes[0].scatter(prior[:, 0], prior[:, 1], s=1, alpha=0.3, color="tab:blue")
    axes[0].set_title("prior P(z) = N(0, I)\nμ = (0, 0), tr Σ = 2", fontsize=8)
    stats = {}
    for ax, (title, (mu, lv)) in zip(axes[1:], panels.items()):
        mu, lv = np.asarray(mu), np.asarray(lv)
        if mu.shape[1] <= max(dims):
            raise ConfigError(f"dims: {tuple(dims)} but the latent of {title!r} has {mu.shape[1]} units")
        m, c, _ = aggregate_gaussian(mu[:, list(dims)], lv[:, list(dims)], g)
        s = rng.multivariate_normal(m, c, num_samples)
        ax.scatter(s[:, 0], s[:, 1], s=1, alpha=0.3, color="tab:orange")
        ax.set_title(f"{title}\nμ̃ = ({m[0]:.1f}, {m[1]:.1f}), tr Σ̃ = {np.trace(c):.3g}", fontsize=8)
        stats[title] = (m, c)
    for ax in axes:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel(f"z{dims[0]}")
    axes[0].set_ylabel(f"z{dims[1]}")
    fig.suptitle("Samples of the prior and of the aggregate posterior's Gaussian N(μ̃, Σ̃) (vae-thesis fig. 5.2)",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return stats


# ------------------------------------------------------------------------------------- fig. 5.3
def latent_plane(n: int = 15, eps: float = 0.05) -> np.ndarray:
    """The lecture's grid: n points evenly spaced in (eps, 1 − eps) pushed through the standard
    normal's inverse CDF, so the grid has equal prior mass between neighbours."""
    from scipy.stats import norm

    return norm.ppf(np.linspace(eps, 1 - eps, n))


def plot_latent_plane(model: Any, path: str | Path, dims: Sequence[int] = (0, 1), n: int = 15,
                      base: torch.Tensor | None = None, title: str = "") -> np.ndarray:
    """Fig. 5.3: images decoded over an n × n inverse-CDF grid in latent units ``dims`` (others at
    ``base``, the prior mean 0 by default). Returns the grid values."""
    m = require(model, Generative, "the latent-plane grid")
    d = m.latent.dim
    check(len(dims) == 2 and max(dims) < d and dims[0] != dims[1], "dims",
          f"two different latent units below {d}, got {tuple(dims)}")
    grid = latent_plane(n)
    z = torch.zeros(n * n, d) if base is None else base.reshape(1, d).repeat(n * n, 1).float()
    yy, xx = np.meshgrid(grid[::-1], grid, indexing="ij")  # row 0 at the top: the largest z_dims[1]
    z[:, dims[0]] = torch.from_numpy(xx.reshape(-1)).float()
    z[:, dims[1]] = torch.from_numpy(yy.reshape(-1)).float()
    imgs = _decode(model, z, "the latent-plane grid")
    h, w = imgs.shape[1:3]
    canvas = np.ones((n * h, n * w) + imgs.shape[3:])
    for i in range(n * n):
        r, c = divmod(i, n)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = imgs[i]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, extent=(0, n, 0, n), interpolation="nearest")
    ticks = np.arange(n) + 0.5
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{round(v, 1) + 0.0:.1f}" for v in grid], fontsize=7, rotation=90)
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{round(v, 1) + 0.0:.1f}" for v in grid], fontsize=7)
    ax.set_xlabel(f"z{dims[0]} (inverse normal CDF of an even grid)")
    ax.set_ylabel(f"z{dims[1]}")
    ax.set_title(title or "Decoded latent plane (vae-thesis fig. 5.3)", fontsize=10)
    _save(fig, path)
    return grid


# ------------------------------------------------------------------------------------- traversals
def per_unit_kl(mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(q(z_j|x) ‖ N(0, 1)) per latent unit, averaged over images (nats): active units carry KL."""
    mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    return (0.5 * (mean ** 2 + np.exp(logvar) - 1.0 - logvar)).mean(0)


def plot_traversals(model: Any, images: torch.Tensor, path: str | Path, steps: int = 9, span: float = 2.5,
                    image_index: int = 0, units: Sequence[int] | None = None, title: str = "") -> np.ndarray:
    """One row per latent unit (sorted by KL, largest first): the posterior mean of ``images[image_index]``
    with that unit swept over [−span, span]; each row is labelled with the unit's KL (nats, averaged
    over ``images``). Returns the per-unit KL."""
    require(model, Encodes, "the latent traversals")
    check(steps >= 2, "steps", f">= 2, got {steps}")
    mu, lv = posterior_of_model(model, images)
    kl = per_unit_kl(mu, lv)
    order = list(units) if units is not None else list(np.argsort(-kl))
    base = torch.from_numpy(mu[image_index]).float()
    values = np.linspace(-span, span, steps)
    z = base.repeat(len(order) * steps, 1)
    for r, j in enumerate(order):
        z[r * steps:(r + 1) * steps, j] = torch.from_numpy(values).float()
    imgs = _decode(model, z, "the latent traversals")
    plt = _plt()
    fig, axes = plt.subplots(len(order), steps, figsize=(0.8 * steps + 1.6, 0.8 * len(order) + 0.8), squeeze=False)
    for r, j in enumerate(order):
        for c in range(steps):
            ax = axes[r, c]
            ax.imshow(imgs[r * steps + c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"z{j}\nKL {kl[j]:.2f}", fontsize=7, rotation=0, ha="right", va="center")
            if r == len(order) - 1:
                ax.set_xlabel(f"{values[c]:+.1f}", fontsize=7)
    fig.suptitle(title or "Latent traversals (rows: units by KL in nats; columns: unit value)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return kl


# ------------------------------------------------------------------------------------- MI heat map
def plot_mi_heatmap(mi: np.ndarray, factor_names: Sequence[str], path: str | Path,
                    entropy: np.ndarray | None = None, title: str = "") -> np.ndarray:
    """Heat map of I(z_j; v_k) (rows: latent units, columns: factors), normalised by H(v_k) when
    ``entropy`` is given (1 = the unit determines the factor). Returns the plotted matrix."""
    mi = np.asarray(mi, np.float64)
    if mi.ndim != 2 or mi.shape[1] != len(factor_names):
        raise ConfigError(f"factor_names: {len(factor_names)} names for an MI matrix of shape {mi.shape}")
    val = mi / np.where(np.asarray(entropy) > 0, entropy, np.nan) if entropy is not None else mi
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.1 * mi.shape[1] + 2.2, 0.42 * mi.shape[0] + 1.4))
    im = ax.imshow(val, cmap="viridis", aspect="auto", vmin=0, vmax=1 if entropy is not None else None)
    for (j, k), v in np.ndenumerate(val):
        if np.isfinite(v):
            ax.text(k, j, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.5 * np.nanmax(val) else "black")
    ax.set_xticks(range(mi.shape[1]))
    ax.set_xticklabels(factor_names)
    ax.set_yticks(range(mi.shape[0]))
    ax.set_yticklabels([f"z{j}" for j in range(mi.shape[0])])
    ax.set_xlabel("generative factor")
    ax.set_ylabel("latent unit")
    fig.colorbar(im, ax=ax, label="I(z_j; v_k) / H(v_k)" if entropy is not None else "I(z_j; v_k) [nats]")
    ax.set_title(title or "Mutual information between latent units and factors", fontsize=9)
    _save(fig, path)
    return val


def disentanglement_figures(model: Any, datamodule: Any, out_dir: str | Path, prefix: str = "disent",
                            num_images: int = 5000, num_bins: int = 20, seed: int = 0, title: str = "") -> dict[str, Path]:
    """The per-model figures for a data module with factors (e.g. dSprites): KL-annotated traversals of
    its first validation image, the MI heat map (normalised by factor entropy) on ``num_images`` random
    factor draws, and the inverse-CDF plane over its two units of largest KL."""
    from xgen.metrics.disentanglement import codes_of_model, discrete_factors, entropy, mutual_information_matrix

    out = Path(out_dir)
    x, _ = datamodule.split("val")
    kl = plot_traversals(model, x[:num_images], out / f"{prefix}_traversals.png", title=title and f"{title}: traversals")
    g = torch.Generator().manual_seed(seed)
    f = np.asarray(datamodule.sample_factors(num_images, g))
    c = codes_of_model(model, datamodule.images_from_factors(torch.from_numpy(f)))
    names = list(datamodule.factor_names)
    fd = discrete_factors(f, num_bins)
    keep = [k for k in range(fd.shape[1]) if len(np.unique(fd[:, k])) > 1]
    mi = mutual_information_matrix(c, fd[:, keep], num_bins)
    h = np.array([entropy(fd[:, k]) for k in keep])
    plot_mi_heatmap(mi, [names[k] for k in keep], out / f"{prefix}_mi.png", entropy=h,
                    title=title and f"{title}: I(z_j; v_k) / H(v_k)")
    top = [int(j) for j in np.argsort(-kl)[:2]]
    plot_latent_plane(model, out / f"{prefix}_plane.png", dims=top, n=11, title=title and f"{title}: latent plane")
    return {k: out / f"{prefix}_{k}.png" for k in ("traversals", "mi", "plane")}
