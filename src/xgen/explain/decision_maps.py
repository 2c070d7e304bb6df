"""InfoVAE Decision Maps (thesis §4.3 part three, §4.4 figs. 4.15–4.16, §4.5.2).

For each image: (1) encode it (posterior mean z), (2) decode z, (3) classify the reconstruction (class
c, probability p_c), (4) find the latent direction α of greatest change of p_c — its gradient, by
autograd (default) or by the thesis's forward finite differences with δ = 0.1 —, (5) step along it,
λ = 0.1, 0.2, … while λ < 10, until the predicted class changes, and (6) show decoded(z + λ·d) −
decoded(z) as a heat map.

Direction. Fig. 4.16 steps along +α, which *raises* p_c, so it can only flip the class by accident.
The default here is ``direction="lower"`` (d = −α: the class's probability falls fastest, the way to a
counterfactual); ``"raise"`` reproduces the figure literally. ``normalize=True`` (default) makes d a
unit vector so λ is a distance in the latent space (prior N(0, I)); the thesis used the raw α
(``normalize=False``), whose length shrinks to ~0 for confident predictions.

Any model that :class:`~xgen.protocols.Encodes` and :class:`~xgen.protocols.Decodes` works: every VAE
of xgen, and a GAN through an inversion encoder (:class:`xgen.explain.inversion.InvertedGAN`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from xgen.errors import ConfigError
from xgen.explain.common import write_csv, ExplainedClassifier, as_classifier, module_device, to_unit
from xgen.explain.figures import image_rows_figure
from xgen.protocols import Decodes, Encodes, Generative, require

__all__ = ["DecisionMapResult", "DecisionMaps", "decision_maps", "latent_direction", "DIRECTIONS", "GRADIENTS"]

DIRECTIONS = ("lower", "raise")
GRADIENTS = ("autograd", "finite")
NEEDS_ENCODER = ("A GAN has no encoder: train an inversion encoder first (xgen explain invert --model CKPT, "
                 "then --encoder FILE; or xgen.explain.train_inversion + InvertedGAN), or use a VAE.")


@dataclass
class DecisionMapResult:
    """What the search found for one image (``step`` is λ; ``None`` when no class change)."""

    index: int
    label: int | None
    original_class: int              # class of the reconstruction decoded(z)
    original_prob: float
    flipped: bool
    step: float | None
    new_class: int | None
    new_prob: float | None           # probability of the new class at z + λ·d
    original_prob_at_new: float | None
    map_l1: float                    # mean |map| (pixels in [0, 1] units)
    map_max: float
    gradient_norm: float
    data_class: int | None = None    # the classifier's class of the input image itself
    note: str = ""


@dataclass
class DecisionMaps:
    """Decision maps of a batch of images; tensors are on the CPU, in the model's ``value_range``."""

    images: Tensor
    reconstructions: Tensor
    counterfactuals: Tensor
    maps: Tensor                      # (B, H, W): counterfactual − reconstruction, channel mean, [0, 1] units
    results: list[DecisionMapResult]
    class_names: list[str]
    value_range: tuple[float, float]
    settings: dict = field(default_factory=dict)

    @property
    def flip_fraction(self) -> float:
        return sum(r.flipped for r in self.results) / max(len(self.results), 1)

    def summary(self) -> dict:
        steps = [r.step for r in self.results if r.flipped]
        return {"images": len(self.results), "flipped": sum(r.flipped for r in self.results),
                "flip_fraction": self.flip_fraction,
                "median_step": float(torch.tensor(steps).median()) if steps else None,
                "mean_step": float(sum(steps) / len(steps)) if steps else None,
                "settings": self.settings}

    def records(self) -> list[dict]:
        out = []
        for r in self.results:
            d = asdict(r)
            d["original_class_name"] = self.class_names[r.original_class]
            d["new_class_name"] = self.class_names[r.new_class] if r.new_class is not None else None
            out.append(d)
        return out

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": self.summary(), "images": self.records()}, indent=1))
        return path

    def save_csv(self, path: str | Path) -> Path:
        return write_csv(path, self.records())

    def save_maps(self, path: str | Path) -> Path:
        """The maps, counterfactuals and reconstructions as one ``.pt`` file of plain tensors."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"maps": self.maps, "counterfactuals": self.counterfactuals,
                    "reconstructions": self.reconstructions, "index": [r.index for r in self.results]}, path)
        return path

    def figure(self, path: str | Path | None = None, rows: int | None = None, title: str = "", start: int = 0):
        """Per image: original, reconstruction, counterfactual, and the map beside them (with a colour
        bar in pixel units), with both classes and their probabilities; images ``start`` to
        ``start + rows`` (default: every image, one row each)."""
        vr, names = self.value_range, self.class_names
        n = len(self.results)
        stop = n if rows is None else min(n, start + int(rows))
        panels = []
        for i in range(start, stop):
            r = self.results[i]
            lab = f" (label {names[r.label]})" if r.label is not None else ""
            orig = (to_unit(self.images[i], vr), f"test #{r.index}{lab}"[:34])
            rec = (to_unit(self.reconstructions[i], vr), f"{names[r.original_class]} p={r.original_prob:.2f}")
            if r.flipped:
                cf = (to_unit(self.counterfactuals[i], vr),
                      f"{names[r.new_class]} p={r.new_prob:.2f}\n({names[r.original_class][:11]} p={r.original_prob_at_new:.2f})")
                hm = (self.maps[i].numpy(), f"λ = {r.step:.1f}, max|Δ| = {r.map_max:.2f}")
            else:
                cf = (to_unit(self.counterfactuals[i], vr), f"no class change\nfor λ < {self.settings.get('max_step')}")
                hm = (self.maps[i].numpy(), f"at the λ bound, max|Δ| = {r.map_max:.2f}")
            panels.append([orig, rec, cf, hm])
        d = self.settings.get("direction", "lower")
        shown = f"images {start + 1}-{stop} of {n}" if (start, stop) != (0, n) else f"all {n} images"
        title = title or (f"{self.settings.get('model', 'model')} decision maps ({d} p(class), "
                          f"{self.settings.get('gradient')} gradient): "
                          f"{sum(r.flipped for r in self.results)}/{n} flipped; {shown}")
        return image_rows_figure(panels, path, col_titles=["original", "reconstruction", "counterfactual",
                                                           "map = counterfactual\n− reconstruction"],
                                 title=title, heat_cols=[3], heat_label="Δ pixel value (0–1 scale)")

    def figures(self, path: str | Path, per_page: int = 8, title: str = "") -> list[Path]:
        """Every image's row, ``per_page`` rows per file: ``path`` itself when they fit on one page, else
        ``<stem>_page1of3.png``, ``<stem>_page2of3.png``, … beside it."""
        if per_page < 1:
            raise ConfigError(f"--figure-rows: rows per page must be >= 1, got {per_page}")
        path = Path(path)
        n = len(self.results)
        pages = max(1, -(-n // int(per_page)))
        if pages == 1:
            return [self.figure(path, None, title)]
        return [self.figure(path.with_name(f"{path.stem}_page{k + 1}of{pages}{path.suffix}"), per_page, title,
                            start=k * per_page) for k in range(pages)]


def _probs(model: Decodes, clf: ExplainedClassifier, z: Tensor, vr) -> Tensor:
    return clf.probs(model.decode(z), vr)


def latent_direction(model: Decodes, clf: ExplainedClassifier, z: Tensor, cls: Tensor, value_range,
                     gradient: str = "autograd", delta: float = 0.1) -> Tensor:
    """α: ∂p_cls/∂z per latent, (B, dim) — autograd, or forward differences (p(z+δe_i) − p(z))/δ."""
    if gradient == "autograd":
        with torch.enable_grad():
            zz = z.detach().clone().requires_grad_(True)
            p = _probs(model, clf, zz, value_range).gather(1, cls[:, None].to(zz.device)).sum()
            (g,) = torch.autograd.grad(p, zz)
        return g.detach()
    if gradient != "finite":
        raise ConfigError(f"gradient: {gradient!r} is not one of {GRADIENTS}")
    if not delta > 0:
        raise ConfigError(f"delta: the finite-difference step must be > 0, got {delta}")
    with torch.no_grad():
        p0 = _probs(model, clf, z, value_range).gather(1, cls[:, None]).squeeze(1)
        b, d = z.shape
        zp = z[:, None, :].repeat(1, d, 1)
        zp[:, torch.arange(d), torch.arange(d)] += float(delta)
        pp = _probs(model, clf, zp.view(b * d, d), value_range).view(b, d, -1)
        return (pp.gather(2, cls.view(b, 1, 1).expand(b, d, 1)).squeeze(2) - p0[:, None]) / float(delta)


def decision_maps(model, classifier: ExplainedClassifier | nn.Module, images: Tensor,
                  direction: str = "lower", gradient: str = "autograd", delta: float = 0.1, step: float = 0.1,
                  max_step: float = 10.0, normalize: bool = True, labels: Sequence[int] | Tensor | None = None,
                  indices: Sequence[int] | None = None, batch_size: int = 32) -> DecisionMaps:
    """Decision maps of ``images`` (B, C, H, W) given in the model's ``value_range``.

    Args:
        model: Encodes + Decodes (a VAE, or :class:`~xgen.explain.inversion.InvertedGAN`).
        classifier: the classifier explained (any ``nn.Module`` returning logits).
        direction: ``lower`` (default; step against the gradient of the predicted class's probability)
            or ``raise`` (along it, fig. 4.16 literally).
        gradient: ``autograd`` (default) or ``finite`` (forward differences with ``delta``, fig. 4.15).
        step, max_step: λ = step, 2·step, … while λ < max_step (thesis: 0.1 and 10).
        normalize: unit-length direction (λ is then a latent distance); False uses the raw gradient.
        labels, indices: recorded in the per-image results (dataset labels and indices).
    """
    require(model, Encodes, "the Decision Maps", NEEDS_ENCODER)
    require(model, Decodes, "the Decision Maps")
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction: {direction!r} is not one of {DIRECTIONS}")
    if not (step > 0 and max_step > step):
        raise ConfigError(f"step/max_step: need 0 < step < max_step, got step={step}, max_step={max_step}")
    if images.ndim != 4:
        raise ConfigError(f"images: expected (B, C, H, W), got {tuple(images.shape)}")
    if isinstance(model, Generative) and tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ConfigError(f"images: {type(model).__name__} reads {tuple(model.image_shape)} images, got "
                          f"{tuple(images.shape[1:])}; use the dataset the model was trained on")
    clf = as_classifier(classifier)
    clf.check_input(images.shape[1:], "the images")
    vr = tuple(float(v) for v in model.value_range)
    dev = module_device(model)
    n_steps = int(math.ceil(max_step / step - 1e-9)) - 1   # λ = k·step for k = 1..n_steps (< max_step)
    lambdas = torch.arange(1, n_steps + 1, dtype=torch.float32) * float(step)
    sign = -1.0 if direction == "lower" else 1.0
    labels_t = torch.as_tensor(labels).view(-1) if labels is not None else None
    idx = list(indices) if indices is not None else list(range(len(images)))
    recs, cfs, maps, results = [], [], [], []
    for s in range(0, len(images), batch_size):
        x = images[s:s + batch_size].to(dev).float()
        b = len(x)
        with torch.no_grad():
            z = model.encode(x).mean.float()
            x0 = model.decode(z)
            p0 = clf.probs(x0, vr)
            conf0, c0 = p0.max(1)
            data_cls = clf.probs(x, vr).argmax(1)
        alpha = latent_direction(model, clf, z, c0, vr, gradient, delta)
        gnorm = alpha.norm(dim=1)
        d = sign * alpha
        if normalize:
            d = d / gnorm.clamp_min(1e-12)[:, None]
        with torch.no_grad():
            path = z[:, None, :] + lambdas.to(dev)[None, :, None] * d[:, None, :]          # (b, K, dim)
            flat = path.reshape(b * n_steps, -1)
            preds, probs = [], []
            for j in range(0, len(flat), 1024):
                pj = clf.probs(model.decode(flat[j:j + 1024]), vr)
                preds.append(pj.argmax(1))
                probs.append(pj)
            pred = torch.cat(preds).view(b, n_steps)
            prob = torch.cat(probs).view(b, n_steps, -1)
            changed = pred != c0[:, None]
            any_flip = changed.any(1) & (gnorm > 0)
            first = torch.where(any_flip, changed.float().argmax(1), torch.full_like(c0, n_steps - 1))
            z_new = path[torch.arange(b), first]
            x_new = model.decode(z_new)
        m = (to_unit(x_new, vr) - to_unit(x0, vr)).mean(1).float().cpu()
        recs.append(x0.float().cpu())
        cfs.append(x_new.float().cpu())
        maps.append(m)
        for i in range(b):
            k = int(first[i])
            flipped = bool(any_flip[i])
            pk = prob[i, k]
            note = "" if flipped else (
                "zero gradient: the classifier output does not change with the latent here" if float(gnorm[i]) == 0
                else f"no class change for λ < {max_step:g} along the {direction} direction")
            results.append(DecisionMapResult(
                index=int(idx[s + i]), label=int(labels_t[s + i]) if labels_t is not None else None,
                original_class=int(c0[i]), original_prob=float(conf0[i]), flipped=flipped,
                step=round(float(lambdas[k]), 6) if flipped else None,
                new_class=int(pred[i, k]) if flipped else None,
                new_prob=float(pk[pred[i, k]]) if flipped else None,
                original_prob_at_new=float(pk[c0[i]]) if flipped else None,
                map_l1=float(m[i].abs().mean()), map_max=float(m[i].abs().max()),
                gradient_norm=float(gnorm[i]), data_class=int(data_cls[i]), note=note))
    settings = {"direction": direction, "gradient": gradient, "delta": delta, "step": step, "max_step": max_step,
                "normalize": normalize, "model": type(model).__name__}
    return DecisionMaps(images.float().cpu(), torch.cat(recs), torch.cat(cfs), torch.cat(maps), results,
                        list(clf.class_names), vr, settings)
