"""Activation maximisation (kgans §2.2, fig. 10): find an input that drives a chosen layer (or one unit of
it) of a network as high as possible, to see what that layer responds to.

Three ways to search, from least to most constrained:

* :func:`maximize_pixels` — optimise the pixels directly, with the usual regularisers (Simonyan et al.
  2013; Mahendran & Vedaldi 2016): an L2 penalty towards mid-grey, total variation, random jitter
  (the image is shifted by a few pixels every step, so the result must not rely on exact positions),
  pixels kept in the network's value range;
* :func:`maximize_latent` — optimise the latent of a trained generator or decoder of the library (any
  :class:`~xgen.protocols.Generative` that :class:`~xgen.protocols.Decodes`): the generator is the image
  prior, every candidate is one of its images;
* :func:`maximize_feature_prior` — the thesis's prior (kgans §2.2, after Nguyen et al. 2016): a generator
  trained (:func:`train_feature_prior`, adversarial + reconstruction loss) to turn the network's own
  feature maps at some layer back into images; the search runs over those feature maps.

The objective is the mean of the layer's output (all units), or the mean over one channel/unit
(``unit``). Every search records the objective at every step and a few snapshots of the image, which
:func:`save_figure` draws as a strip above the activation curve. Networks are any ``nn.Module``; layers are
named as in ``net.named_modules()``. Images are handed to the network in its ``value_range`` (a module
without one reads [0, 1], :func:`xgen.protocols.value_range_of`).

Entry points for the command line: :func:`main` (``xgen explain activation-max ...``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xgen.errors import ConfigError
from xgen.protocols import Decodes, Generative, require, value_range_of

Tensor = torch.Tensor

__all__ = ["ActMaxResult", "resolve_module", "layer_activation", "maximize_pixels", "maximize_latent",
           "FeaturePrior", "train_feature_prior", "maximize_feature_prior", "nearest_feature_distance",
           "save_figure", "unit_description"]


# ----------------------------------------------------------------------------- layers
def resolve_module(root: nn.Module, name: str, arg: str = "--layer") -> nn.Module:
    """The submodule called ``name`` in ``root.named_modules()`` ('' is ``root`` itself); a
    :class:`ConfigError` naming ``arg`` and the closest existing names otherwise."""
    modules = dict(root.named_modules())
    if name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"its layers include {', '.join(names[:12])}" + \
        (" ..." if len(names) > 12 else "")
    raise ConfigError(f"{arg}: {type(root).__name__} has no layer named {name!r}; {hint} "
                      "(names as in net.named_modules())")


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]  # a discriminator's (logits, features): the first output
    raise ConfigError(f"--layer: the chosen layer returns {type(out).__name__}, not a tensor")


def unit_mean(act: Tensor, unit: int | None) -> Tensor:
    """Per-image objective (B,): the mean over all units, or over channel/unit ``unit`` (dim 1)."""
    if act.ndim == 1:
        act = act[:, None]
    if unit is not None:
        if not 0 <= int(unit) < act.shape[1]:
            raise ConfigError(f"--unit: the layer has {act.shape[1]} units/channels (0..{act.shape[1] - 1}), got {unit}")
        act = act[:, int(unit)]
    return act.reshape(act.shape[0], -1).mean(1)


def layer_activation(net: nn.Module, layer: str, x: Tensor, unit: int | None = None) -> Tensor:
    """The objective (B,) of images ``x`` (in the net's value range): the layer's mean activation."""
    target = resolve_module(net, layer)
    box: dict[str, Tensor] = {}

    def hook(_m, _i, out):
        box["out"] = _first_tensor(out)

    h = target.register_forward_hook(hook)
    try:
        net(x)
    finally:
        h.remove()
    if "out" not in box:
        raise ConfigError(f"--layer: {layer!r} is not used when {type(net).__name__} runs forward")
    return unit_mean(box["out"], unit)


@torch.no_grad()
def activation_scale(net: nn.Module, layer: str, image_shape: Sequence[int], unit: int | None = None,
                     n: int = 16, seed: int = 0) -> float:
    """The objective's natural spread: its standard deviation over ``n`` uniform-noise images in the
    net's value range. The searches divide the activation by it, so that a regulariser weight means the
    same for a layer whose activations are ~0.1 as for one whose logits are ~10."""
    vr = value_range_of(net)
    dev = next((p.device for p in net.parameters()), torch.device("cpu"))
    x = vr[0] + (vr[1] - vr[0]) * torch.rand(n, *image_shape, generator=torch.Generator().manual_seed(seed))
    s = float(layer_activation(net, layer, x.to(dev), unit).std())
    return s if math.isfinite(s) and s > 1e-8 else 1.0


def _frozen(net: nn.Module):
    """Eval mode, no parameter gradients (restored by the caller via the returned state)."""
    state = (net.training, [p.requires_grad for p in net.parameters()])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return state


def _restore(net: nn.Module, state) -> None:
    net.train(state[0])
    for p, r in zip(net.parameters(), state[1]):
        p.requires_grad_(r)


@dataclass
class ActMaxResult:
    """A search: snapshots (S, C, H, W) in [0, 1] at ``snapshot_steps``, the objective at every step
    (before that step's update, plus the final value), the final image (C, H, W) in [0, 1]."""

    method: str
    layer: str
    unit: int | None
    snapshots: Tensor
    snapshot_steps: list[int]
    activation: list[float]
    final: Tensor
    extra: dict[str, Any] = field(default_factory=dict)


def _snapshot_at(steps: int, n: int) -> set[int]:
    return {int(round(i * steps / max(1, n - 1))) for i in range(n)}


def _to_unit(x: Tensor, vr: Sequence[float]) -> Tensor:
    return ((x.detach().float().cpu() - vr[0]) / (vr[1] - vr[0])).clamp(0, 1)


def total_variation(x: Tensor) -> Tensor:
    """Sum of absolute differences of neighbouring pixels (anisotropic TV, per image: summed over pixels,
    averaged over the batch)."""
    return ((x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum()) / x.shape[0]


# ----------------------------------------------------------------------------- (a) pixel space
def maximize_pixels(net: nn.Module, layer: str, image_shape: Sequence[int], unit: int | None = None,
                    steps: int = 200, lr: float = 0.05, l2: float = 0.01, tv: float = 0.05, jitter: int = 1,
                    seed: int = 0, snapshots: int = 8, init_std: float = 0.05) -> ActMaxResult:
    """Gradient ascent on the pixels: maximise activation/s − l2·Σ((x − mid)/range)² − tv·TV(x/range), s the
    activation's spread over noise images (:func:`activation_scale`), sums over the pixels, with a random
    shift of up to ``jitter`` pixels each step; pixels are clipped to the net's value range after each
    Adam step. Starts from mid-grey plus N(0, ``init_std``·range) noise."""
    if steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {steps}")
    resolve_module(net, layer)
    vr = value_range_of(net)
    span, mid = vr[1] - vr[0], (vr[0] + vr[1]) / 2
    dev = next((p.device for p in net.parameters()), torch.device("cpu"))
    g = torch.Generator().manual_seed(int(seed))
    x = (mid + init_std * span * torch.randn(1, *image_shape, generator=g)).clamp(*vr).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr * span)
    state = _frozen(net)
    scale = activation_scale(net, layer, image_shape, unit, seed=seed)
    curve: list[float] = []
    snaps, snap_steps = [], []
    at = _snapshot_at(steps, snapshots)
    try:
        for t in range(steps + 1):
            with torch.no_grad():
                curve.append(float(layer_activation(net, layer, x, unit).mean()))
            if t in at:
                snaps.append(_to_unit(x[0], vr))
                snap_steps.append(t)
            if t == steps:
                break
            dx, dy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g)) if jitter else (0, 0)
            xs = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            act = layer_activation(net, layer, xs, unit).mean()
            loss = -act / scale + l2 * ((x - mid) / span).pow(2).sum() + tv * total_variation(x / span)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(*vr)
    finally:
        _restore(net, state)
    return ActMaxResult("pixels", layer, unit, torch.stack(snaps), snap_steps, curve, _to_unit(x[0], vr),
                        {"l2": l2, "tv": tv, "jitter": jitter, "lr": lr, "scale": scale})


# ----------------------------------------------------------------------------- (b) a generator as prior
def _to_range(x: Tensor, src: Sequence[float], dst: Sequence[float]) -> Tensor:
    return (x - src[0]) * ((dst[1] - dst[0]) / (src[1] - src[0])) + dst[0]


def _ascend(render, var: Tensor, net: nn.Module, layer: str, unit: int | None, steps: int, lr: float, l2: float,
            scale: float, snapshots: int, vr: Sequence[float], to_net=lambda img: img):
    """Gradient ascent through an image prior, shared by the generator and feature priors: Adam on ``var``
    maximising activation(net(to_net(render(var))))/scale − l2·‖var‖². Returns the snapshot images (in
    [0, 1]), their steps and the activation curve (steps + 1 values)."""
    opt = torch.optim.Adam([var], lr=lr)
    curve: list[float] = []
    snaps, snap_steps = [], []
    at = _snapshot_at(steps, snapshots)
    for t in range(steps + 1):
        img = render(var)
        act = layer_activation(net, layer, to_net(img), unit).mean()
        curve.append(float(act.detach()))
        if t in at:
            snaps.append(_to_unit(img[0], vr))
            snap_steps.append(t)
        if t == steps:
            break
        loss = -act / scale + l2 * var.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.stack(snaps), snap_steps, curve


def maximize_latent(net: nn.Module, layer: str, prior: Any, unit: int | None = None, steps: int = 200,
                    lr: float = 0.05, latent_l2: float = 1e-3, seed: int = 0, snapshots: int = 8) -> ActMaxResult:
    """Gradient ascent on the latent z of a trained generator/decoder (``prior``: Generative + Decodes):
    maximise activation(net(decode(z)))/s − latent_l2·‖z‖² (s: :func:`activation_scale`), z starting from one
    prior draw."""
    require(prior, Generative, "activation maximisation with a generator prior")
    require(prior, Decodes, "activation maximisation with a generator prior")
    if steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {steps}")
    resolve_module(net, layer)
    vr_net, vr_prior = value_range_of(net), tuple(float(v) for v in prior.value_range)
    z = prior.sample_latent(1, generator=torch.Generator().manual_seed(int(seed))).detach().clone().requires_grad_(True)
    state, pstate = _frozen(net), _frozen(prior)
    scale = activation_scale(net, layer, tuple(prior.image_shape), unit, seed=seed)
    device = next((p.device for p in net.parameters()), None)
    try:
        snaps, snap_steps, curve = _ascend(
            prior.decode, z, net, layer, unit, steps, lr, latent_l2, scale, snapshots, vr_prior,
            to_net=lambda img: _to_range(img, vr_prior, vr_net).to(device or img.device))
    finally:
        _restore(net, state)
        _restore(prior, pstate)
    with torch.no_grad():
        final = _to_unit(prior.decode(z)[0], vr_prior)
    return ActMaxResult("generator prior", layer, unit, snaps, snap_steps, curve, final,
                        {"lr": lr, "latent_l2": latent_l2})


# ----------------------------------------------------------------------------- (c) the thesis's feature prior
class FeaturePrior(nn.Module):
    """A generator from a network's feature maps at ``feature_layer`` (flattened) back to images in the
    network's value range, with the per-dimension statistics of the training features (the search
    starts from and stays inside the range the prior was trained on)."""

    def __init__(self, feature_dim: int, image_shape: Sequence[int], value_range: Sequence[float],
                 feature_layer: str, channels: Sequence[int] = (64, 32, 16)):
        super().__init__()
        from xgen.nets.kgan import KGANGenerator

        self.feature_layer, self.feature_dim = feature_layer, int(feature_dim)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.generator = KGANGenerator(self.image_shape, self.feature_dim, channels=channels, output="sigmoid")
        for name in ("f_mean", "f_std", "f_min", "f_max"):
            self.register_buffer(name, torch.zeros(self.feature_dim))

    def decode(self, h: Tensor) -> Tensor:
        """Feature vectors (B, feature_dim) -> images in ``value_range``."""
        return _to_range(self.generator(h), (0.0, 1.0), self.value_range)


def features_at(net: nn.Module, layer: str, x: Tensor) -> Tensor:
    """The flattened output (B, D) of ``layer`` for images ``x`` (no gradient through the net)."""
    target = resolve_module(net, layer, "--feature-layer")
    box: dict[str, Tensor] = {}
    h = target.register_forward_hook(lambda _m, _i, out: box.__setitem__("out", _first_tensor(out)))
    try:
        with torch.no_grad():
            net(x)
    finally:
        h.remove()
    return box["out"].flatten(1)


def train_feature_prior(net: nn.Module, feature_layer: str, images: Tensor, epochs: int = 2,
                        batch_size: int = 64, lr: float = 2e-4, rec_weight: float = 100.0, adv_weight: float = 1.0,
                        seed: int = 0, channels: Sequence[int] = (64, 32, 16),
                        log: Any = None) -> tuple[FeaturePrior, list[dict[str, float]]]:
    """Train :class:`FeaturePrior` on uint8 ``images`` (N, C, H, W): G(features(x)) should look like x —
    ``adv_weight``·non-saturating GAN loss against a two-conv discriminator (:mod:`xgen.nets.kgan`) plus
    ``rec_weight``·mean squared pixel error (kgans §2.2: adversarial + reconstruction). Returns the prior
    and per-epoch mean losses."""
    from xgen.losses import discriminator_loss, generator_loss
    from xgen.nets.kgan import KGANDiscriminator

    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ConfigError("feature prior: images must be uint8 (N, C, H, W)")
    if epochs < 1 or images.shape[0] < batch_size:
        raise ConfigError(f"feature prior: need epochs >= 1 and at least batch_size={batch_size} images, "
                          f"got epochs={epochs}, {images.shape[0]} images")
    torch.manual_seed(int(seed))
    vr = value_range_of(net)
    state = _frozen(net)
    try:
        def scaled(b: Tensor) -> Tensor:
            return _to_range(b.float() / 255.0, (0.0, 1.0), vr)

        feats = torch.cat([features_at(net, feature_layer, scaled(images[i:i + 500])) for i in range(0, len(images), 500)])
        prior = FeaturePrior(feats.shape[1], images.shape[1:], vr, feature_layer, channels)
        prior.f_mean.copy_(feats.mean(0)), prior.f_std.copy_(feats.std(0))
        prior.f_min.copy_(feats.min(0).values), prior.f_max.copy_(feats.max(0).values)
        d = KGANDiscriminator(images.shape[1:], channels=(32, 64))
        opt_g = torch.optim.Adam(prior.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
        g = torch.Generator().manual_seed(int(seed))
        history = []
        for epoch in range(int(epochs)):
            perm = torch.randperm(len(images), generator=g)
            sums = {"loss_d": 0.0, "loss_adv": 0.0, "loss_rec": 0.0}
            nb = 0
            for i in range(0, len(images) - batch_size + 1, batch_size):
                idx = perm[i:i + batch_size]
                x = images[idx].float() / 255.0  # D and the reconstruction work in [0, 1]
                fake = prior.generator(feats[idx])
                loss_d = discriminator_loss("bce", d(x)[0], d(fake.detach())[0])
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                adv = generator_loss("bce", d(fake)[0])
                rec = F.mse_loss(fake, x)
                opt_g.zero_grad()
                (adv_weight * adv + rec_weight * rec).backward()
                opt_g.step()
                sums["loss_d"] += float(loss_d.detach())
                sums["loss_adv"] += float(adv.detach())
                sums["loss_rec"] += float(rec.detach())
                nb += 1
            history.append({k: v / max(1, nb) for k, v in sums.items()} | {"epoch": epoch})
            if log:
                log(f"feature prior epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if k != "epoch"))
    finally:
        _restore(net, state)
    prior.eval()
    return prior, history


def maximize_feature_prior(net: nn.Module, layer: str, prior: FeaturePrior, unit: int | None = None,
                           steps: int = 200, lr: float = 0.05, l2: float = 1e-3, seed: int = 0,
                           snapshots: int = 8) -> ActMaxResult:
    """Gradient ascent on the feature vector h fed to the thesis's prior: maximise
    activation(net(prior(h)))/s − l2·‖(h − mean)/std‖² (s: :func:`activation_scale`), h kept inside the
    training features' per-dimension [min, max]; h starts at mean + std·N(0, 1) (clipped)."""
    if steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {steps}")
    resolve_module(net, layer)
    std = prior.f_std.clamp_min(1e-6)
    g = torch.Generator().manual_seed(int(seed))
    h = (prior.f_mean + std * torch.randn(1, prior.feature_dim, generator=g)).clamp(prior.f_min, prior.f_max)
    u = ((h - prior.f_mean) / std).requires_grad_(True)  # optimise in standardised units
    state, pstate = _frozen(net), _frozen(prior)
    scale = activation_scale(net, layer, prior.image_shape, unit, seed=seed)
    vr = prior.value_range

    def image(u_: Tensor) -> Tensor:
        hh = torch.maximum(torch.minimum(prior.f_mean + std * u_, prior.f_max), prior.f_min)
        return prior.decode(hh)

    try:
        snaps, snap_steps, curve = _ascend(image, u, net, layer, unit, steps, lr, l2, scale, snapshots, vr)
    finally:
        _restore(net, state)
        _restore(prior, pstate)
    with torch.no_grad():
        final = _to_unit(image(u)[0], vr)
    return ActMaxResult("feature prior", layer, unit, snaps, snap_steps, curve, final,
                        {"lr": lr, "l2": l2, "feature_layer": prior.feature_layer})


# ----------------------------------------------------------------------------- measures and figures
@torch.no_grad()
def nearest_feature_distance(images_unit: Tensor, reference_unit: Tensor, embed: Any,
                             batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """For each image (in [0, 1]) the Euclidean distance, in the feature space ``embed`` maps [0, 1]
    images to, to its nearest reference image, and that reference's index."""
    ref = torch.cat([embed(reference_unit[i:i + batch_size]) for i in range(0, len(reference_unit), batch_size)])
    q = embed(images_unit)
    d = torch.cdist(q.double(), ref.double())
    best = d.min(1)
    return best.values.float(), best.indices


def save_figure(results: Sequence[ActMaxResult], path: str | Path, title: str = "", unit_name: str = "") -> Path:
    """One row of snapshots per search (labelled with the step), and the activation curves below;
    ``unit_name`` says what the maximised unit is (e.g. ``fc2[3] = logit of class 'Dress'``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_snap = max(len(r.snapshots) for r in results)
    fig = plt.figure(figsize=(1.2 * n_snap + 0.8, 1.35 * len(results) + 2.6))
    gs = fig.add_gridspec(len(results) + 1, n_snap, height_ratios=[1] * len(results) + [1.9], hspace=0.55)
    for r_i, r in enumerate(results):
        for s_i in range(n_snap):
            ax = fig.add_subplot(gs[r_i, s_i])
            ax.set_xticks([]), ax.set_yticks([])
            if s_i < len(r.snapshots):
                img = r.snapshots[s_i].detach().float().cpu()
                ax.imshow((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"step {r.snapshot_steps[s_i]}", fontsize=7)
            if s_i == 0:
                ax.set_ylabel(r.method, fontsize=8)
    ax = fig.add_subplot(gs[-1, :])
    for r in results:
        ax.plot(range(len(r.activation)), r.activation, label=r.method)
    unit = results[0].unit
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("mean activation\n" + (unit_name or f"{results[0].layer}" + (f"[{unit}]" if unit is not None else "")),
                  fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- command line


DEFAULT_OUT = "xgen_explain/activation-max"


def unit_description(net: nn.Module, layer: str, unit: int | None) -> str:
    """``fc2[3] = logit of class 'Dress'`` when ``layer`` is the output (logit) layer of a network with
    ``class_names``; ``fc2[3]`` / ``fc1`` (all units) otherwise."""
    base = f"{layer or 'output'}" + (f"[{unit}]" if unit is not None else " (all units)")
    names = getattr(net, "class_names", None)
    shape = getattr(net, "image_shape", None)
    if unit is None or not names or shape is None:
        return base
    target = resolve_module(net, layer)
    box: dict = {}
    h = target.register_forward_hook(lambda _m, _i, out: box.__setitem__("out", _first_tensor(out)))
    try:
        with torch.no_grad():
            final = net(torch.zeros(1, *shape, device=next(net.parameters()).device))
    finally:
        h.remove()
    out = box.get("out")
    if out is not None and tuple(out.shape) == tuple(final.shape) and final.shape[-1] == len(names) \
            and 0 <= unit < len(names):
        return f"{base} = logit of class {unit} '{names[unit]}'"
    return base

