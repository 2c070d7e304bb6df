"""Decision maps "as class k" for a conditional generator (issue 23): invert an image, swap its label,
decode, and map the difference.

A conditional model (:class:`~xgen.protocols.Conditional`: AC-GAN, cGAN, semi-supervised InfoGAN) keeps
the class in one categorical code of its latent. Given an image ``x`` and an encoder into that latent
(a GAN's inversion encoder, :class:`~xgen.explain.inversion.InvertedGAN`), the counterfactual "this
image as class k" is ``G(z with the class code set to k)`` for ``z = E(x)``: everything the encoder
read except the class is held fixed. The map ``G(z_k) − G(z)`` (red: brighter, blue: darker, in pixel
units of a [0, 1] scale) shows what the model changes to make the image class k.

Unlike the gradient search of :mod:`xgen.explain.decision_maps` there is no step size to choose: the
label is the direction. The numbers that come with each map:

* ``hit``: the classifier reads class k in the swapped image (the counterfactual is valid for k);
* ``prob_k``: its probability of k there; ``l1``: mean |map|; ``sparsity``: share of pixels changed by
  more than 0.05;
* per image, the class the encoder read (``encoded_class``) and the classifier's class of the
  reconstruction; over the batch, the hit rate per target class and the share of images whose label the
  encoder read correctly (a wrong read makes "as class k" start from the wrong class).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from xgen.errors import ConfigError
from xgen.explain.common import ExplainedClassifier, as_classifier, module_device, parse_axis, to_unit, write_csv
from xgen.explain.figures import _mpl, save, wrap
from xgen.protocols import Conditional, Decodes, Encodes, Generative, require

__all__ = ["ClassSwap", "class_swap", "NEEDS_CONDITIONAL"]

NEEDS_CONDITIONAL = ("Decision maps 'as class k' swap the class code of a conditional model (model=acgan, cgan or "
                     "ss_infogan); for any other model use the gradient decision maps (xgen explain decision-map).")
SPARSITY_THRESHOLD = 0.05


@dataclass
class ClassSwap:
    """Images, their reconstructions, and each image decoded as every target class.

    ``swapped`` is (B, K, C, H, W) and ``maps`` (B, K, H, W) (swapped − reconstruction, channel mean,
    [0, 1] units), both in the order of ``targets``; ``probs`` (B, K, num_classes) is the classifier's
    softmax on each swapped image.
    """

    images: Tensor
    reconstructions: Tensor
    swapped: Tensor
    maps: Tensor
    probs: Tensor
    targets: list[int]
    encoded_class: Tensor            # (B,) the class code the encoder read
    reconstruction_class: Tensor     # (B,) the classifier's class of the reconstruction
    labels: Tensor | None
    indices: list[int]
    class_names: list[str]
    value_range: tuple[float, float]
    settings: dict = field(default_factory=dict)

    @property
    def predicted(self) -> Tensor:
        """(B, K) the classifier's class of each swapped image."""
        return self.probs.argmax(-1)

    @property
    def hits(self) -> Tensor:
        """(B, K) bool: the classifier reads the target class in the swapped image."""
        return self.predicted == torch.tensor(self.targets)[None, :]

    def _off_diagonal(self) -> Tensor:
        """(B, K) bool: the target differs from the class the encoder read (a real swap, not a re-draw)."""
        return torch.tensor(self.targets)[None, :] != self.encoded_class[:, None]

    def summary(self) -> dict:
        """Hit rates (overall and per target class, over swaps to another class than the one read), mean
        |map|, sparsity, and how often the encoder read the image's label."""
        hits, off = self.hits, self._off_diagonal()
        l1 = self.maps.abs().mean((2, 3))
        sparse = (self.maps.abs() > SPARSITY_THRESHOLD).float().mean((2, 3))
        p_target = self.probs[:, torch.arange(len(self.targets)), torch.tensor(self.targets)]  # (B, K)

        def over_swaps(values: Tensor, mask: Tensor, digits: int = 4) -> float | None:
            return round(float(values[mask].float().mean()), digits) if bool(mask.any()) else None

        out = {"images": int(len(self.images)), "targets": [self.class_names[k] for k in self.targets],
               "swaps": int(off.sum()), "hit_rate": over_swaps(hits, off),
               "hit_rate_per_target": {self.class_names[k]: over_swaps(hits[:, j], off[:, j])
                                       for j, k in enumerate(self.targets)},
               "mean_prob_target": over_swaps(p_target, off), "mean_abs_map": over_swaps(l1, off, 5),
               "sparsity": over_swaps(sparse, off),
               "reconstruction_keeps_class": round(float((self.reconstruction_class == self.encoded_class).float().mean()), 4),
               "settings": self.settings}
        if self.labels is not None:
            out["encoder_reads_label"] = round(float((self.encoded_class == self.labels).float().mean()), 4)
        return out

    def records(self) -> list[dict]:
        """One dict per (image, target class)."""
        hits = self.hits
        out = []
        for i in range(len(self.images)):
            for j, k in enumerate(self.targets):
                m = self.maps[i, j]
                out.append({"index": int(self.indices[i]),
                            "label": int(self.labels[i]) if self.labels is not None else None,
                            "encoded_class": int(self.encoded_class[i]),
                            "reconstruction_class": int(self.reconstruction_class[i]),
                            "target": int(k), "target_name": self.class_names[k],
                            "predicted": int(self.predicted[i, j]), "hit": bool(hits[i, j]),
                            "prob_target": round(float(self.probs[i, j, k]), 6),
                            "l1": round(float(m.abs().mean()), 6), "max_abs": round(float(m.abs().max()), 6),
                            "sparsity": round(float((m.abs() > SPARSITY_THRESHOLD).float().mean()), 6)})
        return out

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": self.summary(), "swaps": self.records()}, indent=1))
        return path

    def save_csv(self, path: str | Path) -> Path:
        return write_csv(path, self.records())

    def figure(self, path: str | Path | None = None, rows: int | None = 6, title: str = ""):
        """Two rows per image: the image, its reconstruction and the image as each target class (with
        the classifier's probability of that class), then the maps under them on one colour scale per
        image (colour bar at the right, pixel units)."""
        plt = _mpl()
        vr, names = self.value_range, self.class_names
        n = len(self.images) if rows is None else min(len(self.images), int(rows))
        k = len(self.targets)
        cell = 0.95
        fig, axes = plt.subplots(2 * n, k + 2, figsize=(1.2 + (k + 2) * cell, 1.0 + 2 * n * (cell + 0.2)),
                                 squeeze=False)
        h = fig.get_figheight()
        fig.subplots_adjust(left=0.03, right=0.93, top=1 - 0.75 / h, bottom=0.25 / h, hspace=0.5, wspace=0.12)
        hits = self.hits
        for i in range(n):
            top, bot = axes[2 * i], axes[2 * i + 1]
            for ax in (*top, *bot):
                ax.set_xticks([])
                ax.set_yticks([])
            lab = f"label {names[int(self.labels[i])]}" if self.labels is not None else f"#{self.indices[i]}"
            top[0].imshow(_gray(to_unit(self.images[i], vr)), cmap="gray", vmin=0, vmax=1)
            top[0].set_xlabel(f"test #{self.indices[i]}\n{lab}"[:40], fontsize=6)
            top[1].imshow(_gray(to_unit(self.reconstructions[i], vr)), cmap="gray", vmin=0, vmax=1)
            top[1].set_xlabel(f"read as {names[int(self.encoded_class[i])]}"[:24], fontsize=6)
            bot[0].axis("off")
            bot[1].axis("off")
            vmax = max(float(self.maps[i].abs().max()), 1e-6)
            im = None
            for j, c in enumerate(self.targets):
                ax = top[j + 2]
                ax.imshow(_gray(to_unit(self.swapped[i, j], vr)), cmap="gray", vmin=0, vmax=1)
                p = float(self.probs[i, j, c])
                same = int(c) == int(self.encoded_class[i])
                ax.set_xlabel(f"p={p:.2f}" + (" (read)" if same else ("" if bool(hits[i, j]) else " ✗")), fontsize=6,
                              color="black" if same or bool(hits[i, j]) else "red")
                im = bot[j + 2].imshow(self.maps[i, j].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
                bot[j + 2].set_xlabel(f"|Δ|={float(self.maps[i, j].abs().mean()):.3f}", fontsize=6)
                if i == 0:
                    ax.set_title(f"as {names[c]}"[:14], fontsize=7)
            if i == 0:
                top[0].set_title("image", fontsize=7)
                top[1].set_title("reconstruction", fontsize=7)
            if im is not None:
                pos = bot[-1].get_position()  # one colour bar per image, right of its maps
                cb = fig.colorbar(im, cax=fig.add_axes((pos.x1 + 0.006, pos.y0, 0.008, pos.height)),
                                  ticks=[-vmax, 0, vmax])
                cb.ax.set_yticklabels([f"{-vmax:.2f}", "0", f"{vmax:+.2f}"])
                cb.ax.tick_params(labelsize=6)
                cb.set_label("Δ pixel (0–1)", fontsize=6)
        s = self.summary()
        hr = "n/a" if s["hit_rate"] is None else f"{s['hit_rate']:.2f}"
        title = title or (f"{self.settings.get('model', 'model')}: test images decoded as each class "
                          f"(class code swapped, rest as encoded). Classifier reads the asked class in {hr} of "
                          f"{s['swaps']} swaps; maps (second row) = as class k − reconstruction, "
                          f"red brighter, blue darker")
        fig.suptitle(wrap(title, fig.get_figwidth()), fontsize=8, y=1 - 0.12 / fig.get_figheight())
        return save(fig, path, title)


def _gray(x: Tensor):
    return x.mean(0).numpy() if x.shape[0] != 3 else x.permute(1, 2, 0).numpy()


@torch.no_grad()
def class_swap(model, classifier: ExplainedClassifier | nn.Module, images: Tensor,
               targets: Sequence[int] | None = None, labels: Sequence[int] | Tensor | None = None,
               indices: Sequence[int] | None = None, batch_size: int = 64) -> ClassSwap:
    """Decode ``images`` (B, C, H, W, in the model's ``value_range``) as each class in ``targets``
    (default: every class).

    Args:
        model: Encodes + Decodes + Conditional (an :class:`~xgen.explain.inversion.InvertedGAN` of a
            conditional GAN: ``xgen explain invert`` trains its encoder).
        classifier: scores each swapped image (any ``nn.Module`` returning logits).
        labels, indices: the images' dataset labels and indices, for the records and the encoder's read rate.
    """
    require(model, Encodes, "decision maps as class k", "Fix: invert the GAN first (xgen explain invert), then "
            "pass --encoder FILE.")
    require(model, Decodes, "decision maps as class k")
    require(model, Conditional, "decision maps as class k", NEEDS_CONDITIONAL)
    if images.ndim != 4:
        raise ConfigError(f"images: expected (B, C, H, W), got {tuple(images.shape)}")
    if isinstance(model, Generative) and tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ConfigError(f"images: {type(model).__name__} reads {tuple(model.image_shape)} images, got "
                          f"{tuple(images.shape[1:])}; use the dataset the model was trained on")
    k_all = int(model.num_classes)
    tg = list(range(k_all)) if targets is None else [int(t) for t in targets]
    bad = [t for t in tg if not 0 <= t < k_all]
    if bad or not tg:
        raise ConfigError(f"--classes: the model has classes 0..{k_all - 1}, got {bad or 'none'}")
    clf = as_classifier(classifier, model)
    clf.check_input(images.shape[1:], "the images")
    if clf.num_classes != k_all:
        raise ConfigError(f"classifier: it has {clf.num_classes} classes, the model {k_all}; use the classifier of "
                          "the dataset the model was trained on")
    axis = parse_axis(model.latent, f"cat{int(model.class_code)}")
    vr = tuple(float(v) for v in model.value_range)
    dev = module_device(model)
    recs, swaps, maps, probs, enc_cls, rec_cls = [], [], [], [], [], []
    for s in range(0, len(images), batch_size):
        x = images[s:s + batch_size].to(dev).float()
        b = len(x)
        with torch.enable_grad():  # InvertedGAN's optional refinement steps need gradients
            z = model.encode(x).mean.detach().float()
        x0 = model.decode(z)
        zs = torch.stack([axis.set(z, t) for t in tg], 1).flatten(0, 1)             # (b·K, dim)
        xs = model.decode(zs)
        p = clf.probs(xs, vr).view(b, len(tg), -1)
        m = (to_unit(xs, vr).view(b, len(tg), *xs.shape[1:]) - to_unit(x0, vr)[:, None]).mean(2)
        recs.append(x0.float().cpu())
        swaps.append(xs.view(b, len(tg), *xs.shape[1:]).float().cpu())
        maps.append(m.float().cpu())
        probs.append(p.float().cpu())
        enc_cls.append(axis.get(z).long().cpu())
        rec_cls.append(clf.probs(x0, vr).argmax(1).cpu())
    lab = torch.as_tensor(labels).view(-1).long() if labels is not None else None
    idx = list(indices) if indices is not None else list(range(len(images)))
    return ClassSwap(images.float().cpu(), torch.cat(recs), torch.cat(swaps), torch.cat(maps), torch.cat(probs), tg,
                     torch.cat(enc_cls), torch.cat(rec_cls), lab, idx, list(clf.class_names), vr,
                     {"model": type(getattr(model, "gan", model)).__name__, "class_code": int(model.class_code),
                      "sparsity_threshold": SPARSITY_THRESHOLD})
