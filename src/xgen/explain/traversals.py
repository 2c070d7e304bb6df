"""Latent traversals, 2-D code grids, interpolation and latent vector arithmetic.

Works for any :class:`~xgen.protocols.Generative` model that :class:`~xgen.protocols.Decodes`: InfoGAN
codes (``cat0``, ``cont1``), GAN noise units and VAE latent units (``z3``) alike, because all of them
describe their input with a :class:`~xgen.latent.LatentSpec` (a VAE's latent is all "noise").
Report §2.3 traverses continuous codes over [-2, 2], beyond the Unif(-1, 1) training range; thesis §4.4
draws 10×10 grids with the discrete code down and a continuous code across; report §1.2 (fig. 1.4)
averages the latents of 3 samples per concept, combines them and adds small noise to draw 9 images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from xgen.errors import ConfigError
from xgen.explain.common import Axis, default_axes, parse_axis, to_unit
from xgen.explain.figures import fmt, grid_figure
from xgen.protocols import Decodes, Encodes, Generative, require

__all__ = ["Traversal", "traverse", "grid2d", "lerp", "slerp", "interpolate", "interpolate_images",
           "Arithmetic", "latent_arithmetic", "concept_latents", "class_index", "decode_batched"]


def _generative(model, tool: str):
    require(model, Generative, tool)
    require(model, Decodes, tool)
    return model


@torch.no_grad()
def decode_batched(model: Decodes, latents: Tensor, batch_size: int = 256) -> Tensor:
    """``model.decode`` over a large batch of latents, in chunks, on the CPU."""
    outs = [model.decode(latents[i:i + batch_size].to(_device(model))).float().cpu()
            for i in range(0, len(latents), batch_size)]
    return torch.cat(outs)


def _device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@dataclass
class Traversal:
    """Images of a traversal or 2-D grid: ``images`` (R, C, ch, H, W) in the model's ``value_range``,
    ``latents`` (R, C, dim), and what the rows and columns vary."""

    images: Tensor
    latents: Tensor
    row_axis: str
    row_values: list[float | str]
    col_axis: str
    col_values: list[float | str]
    value_range: tuple[float, float]

    def figure(self, path: str | Path | None = None, title: str = ""):
        """The grid with labelled axes (which code, which values)."""
        return grid_figure(to_unit(self.images, self.value_range), self.row_values, self.col_values,
                           self.row_axis, self.col_axis, title, path)


def _base(model, n: int, base: Tensor | None, seed: int) -> Tensor:
    if base is not None:
        base = base.detach().float().cpu()
        if base.ndim == 1:
            base = base[None]
        if base.ndim != 2 or base.shape[1] != model.latent.dim:
            raise ConfigError(f"base: latents must be (B, {model.latent.dim}) for this model, got {tuple(base.shape)}")
        return base
    return model.latent.sample(n, generator=torch.Generator().manual_seed(int(seed)))


def _values(axis: Axis, values: Sequence[float] | None, steps: int, span: Sequence[float], key: str) -> list[float]:
    if values is None:
        return axis.default_values(steps, span)
    vals = [float(v) for v in values]
    if axis.kind == "cat":
        bad = [v for v in vals if not (v.is_integer() and 0 <= v < axis.size)]
        if bad:
            raise ConfigError(f"{key}: categorical code {axis.index} takes values 0..{axis.size - 1}; got {bad}")
    if not vals:
        raise ConfigError(f"{key}: no values to traverse")
    return vals


def traverse(model, axis: str | Axis = "cont0", values: Sequence[float] | None = None, steps: int = 10,
             span: Sequence[float] = (-2.0, 2.0), rows: int = 8, base: Tensor | None = None,
             seed: int = 0) -> Traversal:
    """Vary one axis of the latent (a code or a latent unit) over ``values`` (default ``steps`` values
    evenly over ``span``, report §2.3's [-2, 2]; every category of a categorical code), one row per base
    latent (``rows`` prior draws, or ``base``), everything else held fixed."""
    model = _generative(model, "traverse")
    ax = parse_axis(model.latent, axis)
    vals = _values(ax, values, steps, span, "values")
    b = _base(model, rows, base, seed)
    lat = torch.stack([torch.stack([ax.set(b[i:i + 1], v)[0] for v in vals]) for i in range(len(b))])
    imgs = decode_batched(model, lat.flatten(0, 1)).view(len(b), len(vals), *model.image_shape)
    return Traversal(imgs, lat, "base latent (prior draw #)", list(range(len(b))), ax.label, vals,
                     tuple(model.value_range))


def grid2d(model, row_axis: str | Axis | None = None, col_axis: str | Axis | None = None,
           row_values: Sequence[float] | None = None, col_values: Sequence[float] | None = None,
           steps: int = 10, span: Sequence[float] = (-1.0, 1.0), base: Tensor | None = None,
           seed: int = 0) -> Traversal:
    """A 2-D grid with one code per axis (thesis §4.4: 10×10, discrete code down, continuous across);
    one base latent (``base`` or a prior draw with ``seed``) fixes everything else."""
    model = _generative(model, "grid2d")
    dr, dc = default_axes(model.latent)
    ra, ca = parse_axis(model.latent, row_axis or dr, "rows"), parse_axis(model.latent, col_axis or dc, "cols")
    if ra == ca:
        raise ConfigError(f"rows/cols: both axes are {ra.kind}{ra.index}; pick two different codes")
    rv = _values(ra, row_values, steps, span, "row values")
    cv = _values(ca, col_values, steps, span, "col values")
    b = _base(model, 1, base, seed)[:1]
    lat = torch.stack([torch.stack([ca.set(ra.set(b, r), c)[0] for c in cv]) for r in rv])
    imgs = decode_batched(model, lat.flatten(0, 1)).view(len(rv), len(cv), *model.image_shape)
    return Traversal(imgs, lat, ra.label, rv, ca.label, cv, tuple(model.value_range))


# ============================================================================ interpolation
def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """(1-t)·a + t·b for each t: (T, dim)."""
    t = t.view(-1, 1).to(a.dtype)
    return (1 - t) * a.view(1, -1) + t * b.view(1, -1)


def slerp(a: Tensor, b: Tensor, t: Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for GAN latents): along the great circle
    between a and b, with the norm interpolated linearly; falls back to lerp for (anti)parallel vectors."""
    a, b = a.view(-1).double(), b.view(-1).double()
    t = t.view(-1, 1).double()
    na, nb = a.norm(), b.norm()
    if na < eps or nb < eps:
        return lerp(a, b, t).float()
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua @ ub).clamp(-1.0, 1.0))
    if omega.abs() < 1e-4 or (torch.pi - omega).abs() < 1e-4:
        return lerp(a, b, t).float()
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) / so) * ua + (torch.sin(t * omega) / so) * ub
    return (direction * ((1 - t) * na + t * nb)).float()


def _interp_latents(latent_spec, a: Tensor, b: Tensor, steps: int, method: str) -> Tensor:
    t = torch.linspace(0.0, 1.0, int(steps))
    if method == "linear":
        return lerp(a, b, t)
    if method != "slerp":
        raise ConfigError(f"method: unknown interpolation {method!r}; use linear or slerp")
    n = latent_spec.noise  # slerp the Gaussian noise part; codes (one-hot / uniform) move linearly
    out = lerp(a, b, t)
    if n:
        out[:, :n] = slerp(a[:n], b[:n], t)
    return out


def interpolate(model, a: Tensor, b: Tensor, steps: int = 10, method: str = "linear") -> Traversal:
    """Images along the path between two latents, linear or spherical (slerp on the noise part, where a
    Gaussian prior puts its mass on a shell; codes move linearly)."""
    model = _generative(model, "interpolate")
    a, b = a.detach().float().cpu().view(-1), b.detach().float().cpu().view(-1)
    for name, v in (("a", a), ("b", b)):
        if v.numel() != model.latent.dim:
            raise ConfigError(f"{name}: a latent of this model has {model.latent.dim} values, got {v.numel()}")
    lat = _interp_latents(model.latent, a, b, steps, method)
    imgs = decode_batched(model, lat).view(1, len(lat), *model.image_shape)
    t = torch.linspace(0.0, 1.0, int(steps)).tolist()
    return Traversal(imgs, lat[None], "", ["a → b"], f"t ({method} interpolation: 0 = latent a, 1 = latent b)", t,
                     tuple(model.value_range))


@torch.no_grad()
def interpolate_images(model, x_a: Tensor, x_b: Tensor, steps: int = 10, method: str = "linear") -> Traversal:
    """Encode two images (posterior means; ``model`` must :class:`~xgen.protocols.Encodes`, e.g. a VAE or
    an :class:`~xgen.explain.inversion.InvertedGAN`) and interpolate between their latents. The first
    and last columns are the two reconstructions."""
    require(model, Encodes, "interpolate between images", "Fix: use a VAE, or invert a GAN first "
            "(xgen explain invert / xgen.explain.train_inversion).")
    x = torch.stack([x_a.view(*model.image_shape), x_b.view(*model.image_shape)]).to(_device(model))
    mu = model.encode(x).mean.float().cpu()
    t = interpolate(model, mu[0], mu[1], steps, method)
    t.row_values = ["image a → b"]
    t.col_axis = f"t ({method} interpolation: 0 = encoded image a, 1 = encoded image b)"
    return t


# ============================================================================ arithmetic
@dataclass
class Arithmetic:
    """Latent vector arithmetic (report fig. 1.4): per-concept mean latents, their signed sum and the
    ``images`` decoded from that sum plus small noise. ``group_titles`` name each concept (e.g. its
    class) and ``captions``/``result_captions`` say what the classifier reads in each image, when one
    was used (:meth:`classify`)."""

    group_images: dict[str, Tensor]     # name -> (k, ch, H, W)
    group_means: dict[str, Tensor]      # name -> (dim,)
    coefficients: dict[str, float]
    result: Tensor                      # (dim,)
    images: Tensor                      # (n, ch, H, W)
    value_range: tuple[float, float]
    mean_images: dict[str, Tensor] = field(default_factory=dict)   # name -> (ch, H, W): decode(mean)
    group_titles: dict[str, str] = field(default_factory=dict)
    captions: dict[str, list[str]] = field(default_factory=dict)   # name -> k + 1 (samples, then the mean)
    result_captions: list[str] = field(default_factory=list)
    noise_std: float = 0.0

    def classify(self, classifier) -> dict:
        """Caption every image with the classifier's class and probability; returns the classes
        (``{"groups": {name: [class of each sample]}, "results": [...]}``)."""
        from xgen.explain.common import as_classifier

        clf = as_classifier(classifier)
        out: dict = {"groups": {}, "means": {}, "results": []}

        def read(x: Tensor) -> tuple[list[int], list[str]]:
            cls, conf, _ = clf.predict(x, self.value_range)
            return cls.tolist(), [f"{clf.name_of(int(c))} p={float(p):.2f}" for c, p in zip(cls, conf)]

        for nm, imgs in self.group_images.items():
            batch = torch.cat([imgs, self.mean_images[nm][None]]) if nm in self.mean_images else imgs
            cls, cap = read(batch)
            out["groups"][nm] = [clf.name_of(c) for c in cls[:len(imgs)]]
            if nm in self.mean_images:
                out["means"][nm] = clf.name_of(cls[-1])
            self.captions[nm] = cap
        cls, self.result_captions = read(self.images)
        out["results"] = [clf.name_of(c) for c in cls]
        return out

    def expression(self) -> str:
        terms = [f"{'+' if c >= 0 else '−'} {'' if abs(c) == 1 else fmt(abs(c)) + '·'}"
                 f"{self.group_titles.get(n, n)}" for n, c in self.coefficients.items()]
        return " ".join(terms).lstrip("+ ")

    def figure(self, path: str | Path | None = None, title: str = ""):
        """One row per concept: its samples and the image of their mean latent (report fig. 1.4 shows
        the means below the columns), and the results at the bottom, each captioned with what the
        classifier reads in it when :meth:`classify` was called."""
        from xgen.explain.figures import image_rows_figure

        rows, row_titles = [], []
        for name, imgs in self.group_images.items():
            c = self.coefficients[name]
            caps = self.captions.get(name, [])
            row = [(to_unit(im, self.value_range), f"sample {i}" + (f"\n{caps[i]}" if i < len(caps) else ""))
                   for i, im in enumerate(imgs)]
            if name in self.mean_images:
                row.append((to_unit(self.mean_images[name], self.value_range),
                            "decode(mean)" + (f"\n{caps[-1]}" if len(caps) > len(imgs) else "")))
            rows.append(row)
            row_titles.append(f"{'+' if c >= 0 else '−'}{fmt(abs(c))} × {name}\n{self.group_titles.get(name, name)}"[:40])
        rows.append([(to_unit(im, self.value_range), f"result {i}" + (f"\n{self.result_captions[i]}"
                      if i < len(self.result_captions) else "")) for i, im in enumerate(self.images)])
        row_titles.append("= results\n(+ noise)")
        title = title or (f"latent arithmetic: {self.expression()}; mean of "
                          f"{', '.join(str(len(v)) for v in self.group_images.values())} samples per concept, "
                          f"{len(self.images)} results with N(0, {self.noise_std:g}²) noise")
        return image_rows_figure(rows, path, title=title, cell_inches=1.0, row_titles=row_titles)


def latent_arithmetic(model, groups: dict[str, Tensor], coefficients: dict[str, float] | None = None,
                      n: int = 9, noise_std: float = 0.1, seed: int = 0,
                      group_titles: dict[str, str] | None = None) -> Arithmetic:
    """Average the latents of each group (report fig. 1.4: 3 samples per concept), combine the means
    with ``coefficients`` (default ``+a - b + c`` in the groups' order: "smiling woman − neutral woman +
    neutral man"), add N(0, noise_std²) to the combination ``n`` times and decode. The noise goes into
    the latent's noise part only when it also has codes (one-hot / uniform codes stay as combined)."""
    model = _generative(model, "latent arithmetic")
    if not groups:
        raise ConfigError("groups: give at least one group of latents")
    names = list(groups)
    if coefficients is None:
        coefficients = {nm: (1.0 if i % 2 == 0 else -1.0) for i, nm in enumerate(names)}
    missing = [nm for nm in names if nm not in coefficients]
    if missing:
        raise ConfigError(f"coefficients: no coefficient for group(s) {missing}")
    means, imgs = {}, {}
    for nm in names:
        g = groups[nm].detach().float().cpu()
        if g.ndim != 2 or g.shape[1] != model.latent.dim or len(g) < 1:
            raise ConfigError(f"groups[{nm!r}]: latents must be (k>=1, {model.latent.dim}), got {tuple(g.shape)}")
        means[nm] = g.mean(0)
        imgs[nm] = decode_batched(model, g)
    mean_imgs = decode_batched(model, torch.stack([means[nm] for nm in names]))
    result = sum(float(coefficients[nm]) * means[nm] for nm in names)
    gen = torch.Generator().manual_seed(int(seed))
    eps = float(noise_std) * torch.randn(int(n), result.numel(), generator=gen)
    noisy_cols = model.latent.noise if (model.latent.noise and model.latent.num_codes) else result.numel()
    eps[:, noisy_cols:] = 0.0
    return Arithmetic(imgs, means, {nm: float(coefficients[nm]) for nm in names}, result,
                      decode_batched(model, result[None] + eps), tuple(model.value_range),
                      mean_images={nm: mean_imgs[i] for i, nm in enumerate(names)},
                      group_titles=dict(group_titles or {}), noise_std=float(noise_std))


def class_index(clf, name: str, key: str = "--concept") -> int:
    """A class of the classifier by name (case-insensitive; ``ankle boot``, ``T-shirt/top``) or index."""
    names = list(clf.class_names or [])
    s = str(name).strip()
    low = [n.lower() for n in names]
    if s.lower() in low:
        return low.index(s.lower())
    if s.isdigit() and int(s) < len(names):
        return int(s)
    raise ConfigError(f"{key}: {name!r} is not a class of the classifier; its classes are "
                      f"{', '.join(f'{i}={n}' for i, n in enumerate(names))}")


@torch.no_grad()
def concept_latents(model, classifier, concepts: dict[str, str | int], per_concept: int = 3,
                    bank: int = 512, seed: int = 0) -> tuple[dict[str, Tensor], dict[str, dict]]:
    """Latents of prior draws the classifier puts in each named class: ``bank`` draws are generated and
    classified, and each concept (name -> class name or index) gets the ``per_concept`` draws with the
    highest probability of its class among those classified as it (report fig. 1.4: samples of one
    concept). Returns (name -> (per_concept, dim) latents, name -> {class, probabilities, draws})."""
    from xgen.explain.common import as_classifier

    model = _generative(model, "concept latents")
    clf = as_classifier(classifier, model)
    if per_concept < 1:
        raise ConfigError(f"--per-concept: at least 1 sample per concept, got {per_concept}")
    z = model.latent.sample(int(bank), generator=torch.Generator().manual_seed(int(seed)))
    cls, _, probs = clf.predict(decode_batched(model, z), tuple(model.value_range))
    groups, info = {}, {}
    for nm, want in concepts.items():
        k = class_index(clf, str(want))
        idx = torch.nonzero(cls == k).view(-1)
        if len(idx) < per_concept:
            raise ConfigError(f"--concept {nm}={want}: only {len(idx)} of {bank} prior draws are classified as "
                              f"{clf.name_of(k)}, {per_concept} needed. Fix: a larger --bank, a smaller "
                              "--per-concept, or another class.")
        best = idx[probs[idx, k].argsort(descending=True)[:per_concept]]
        groups[nm] = z[best]
        info[nm] = {"class": clf.name_of(k), "class_index": k, "draws": best.tolist(),
                    "probabilities": [round(float(p), 4) for p in probs[best, k]],
                    "draws_of_class": int(len(idx)), "bank": int(bank)}
    return groups, info
