"""Model-randomisation sanity check of the Decision Maps and Explainability Grids (Adebayo et al. 2018,
"Sanity Checks for Saliency Maps", cascading randomisation).

An explanation of a classifier must depend on the classifier. The classifier's parameterised layers are
re-initialised one after the other, from the output layer down (cascading: stage k has the top k
layers random), and the Decision Maps (and, for a generative model, the labels of an Explainability
Grid) are recomputed with each. Per stage we report the Spearman rank correlation of each image's map
with its map under the trained classifier — of the signed maps and of |map| — and the share of grid
cells that keep their label. A faithful explanation decorrelates as the layers go; a map whose rank
correlation stays at or above ``threshold`` with every layer random is reported as not faithful.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from xgen.explain.common import ExplainedClassifier, as_classifier, write_csv
from xgen.metrics.counterfactual import spearman, summarise

__all__ = ["parameter_layers", "randomise_layers", "RandomisationCheck", "randomisation_check"]


def parameter_layers(module: nn.Module, image_shape) -> list[str]:
    """Names of the modules that hold parameters of their own, in the order a forward pass on one
    zero image of ``image_shape`` calls them (first call counts)."""
    order: list[str] = []
    handles = []
    for name, m in module.named_modules():
        if any(True for _ in m.parameters(recurse=False)):
            handles.append(m.register_forward_hook(lambda mod, i, o, n=name: order.append(n) if n not in order else None))
    try:
        with torch.no_grad():
            dev = next(module.parameters()).device
            module(torch.zeros(1, *image_shape, device=dev))
    finally:
        for h in handles:
            h.remove()
    return order


def randomise_layers(module: nn.Module, names: list[str], seed: int = 0) -> nn.Module:
    """A copy of ``module`` with the named layers re-initialised: their own ``reset_parameters`` (the
    layer's initial distribution) where they have one, else N(0, std of the trained values) per tensor."""
    out = copy.deepcopy(module)
    mods = dict(out.named_modules())
    for i, n in enumerate(names):
        m = mods[n]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) * 1000 + i)
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
            else:
                with torch.no_grad():
                    for p in m.parameters(recurse=False):
                        p.normal_(0.0, float(p.std()) if p.numel() > 1 else 1.0)
    return out.eval()


@dataclass
class RandomisationCheck:
    """Per stage (``trained``, then one more layer random each): map rank correlations with the trained
    maps, flip fraction, grid-label agreement."""

    stages: list[str]
    spearman: Tensor            # (S, B) signed maps
    spearman_abs: Tensor        # (S, B) |maps|
    flip_fraction: list[float]
    grid_agreement: list[float | None]
    threshold: float
    settings: dict = field(default_factory=dict)
    extra_curves: dict = field(default_factory=dict)   # name -> (S, B) rank correlations of other explanations

    def records(self) -> list[dict]:
        rows = []
        for s, name in enumerate(self.stages):
            a, b = summarise(self.spearman[s]), summarise(self.spearman_abs[s])
            row = {"stage": s, "randomised": name, "spearman_mean": a["mean"], "spearman_median": a["median"],
                   "spearman_abs_mean": b["mean"], "maps_compared": a["n"], "flip_fraction": self.flip_fraction[s],
                   "grid_label_agreement": self.grid_agreement[s]}
            for k, v in self.extra_curves.items():
                row[f"{k}_spearman_mean"] = summarise(v[s])["mean"]
            rows.append(row)
        return rows

    def not_faithful(self) -> dict:
        """Maps whose rank correlation with the trained map stays >= threshold with every layer random."""
        out = {"threshold": self.threshold}
        for key, v in (("signed", self.spearman[-1]), ("abs", self.spearman_abs[-1])):
            ok = torch.isfinite(v)
            bad = (v >= self.threshold) & ok
            out[key] = {"not_faithful": int(bad.sum()), "of": int(ok.sum()),
                        "fraction": float(bad.sum()) / max(int(ok.sum()), 1), "faithful": bool(int(bad.sum()) == 0)}
        return out

    def save_csv(self, path: str | Path) -> Path:
        return write_csv(path, self.records())

    def figure(self, path: str | Path | None = None, title: str = ""):
        from xgen.explain.figures import _mpl, save

        plt = _mpl()
        x = list(range(len(self.stages)))
        fig, ax = plt.subplots(figsize=(10.5, 4.8))
        curves = [("decision map (signed)", self.spearman, "C0"), ("decision map |Δ|", self.spearman_abs, "C1")]
        curves += [(k, v, f"C{4 + i}") for i, (k, v) in enumerate(self.extra_curves.items())]
        for label, v, col in curves:
            mean = torch.tensor([summarise(v[s])["mean"] or float("nan") for s in x])
            q1 = torch.tensor([float(torch.nanquantile(v[s], 0.25)) for s in x])
            q3 = torch.tensor([float(torch.nanquantile(v[s], 0.75)) for s in x])
            ax.plot(x, mean, "o-", color=col, label=f"{label}: mean rank correlation")
            ax.fill_between(x, q1, q3, color=col, alpha=0.15)
        if any(g is not None for g in self.grid_agreement):
            ax.plot(x, [g if g is not None else float("nan") for g in self.grid_agreement], "s--", color="C2",
                    label="grid labels: share of cells unchanged")
        ax.plot(x, self.flip_fraction, "^:", color="gray", label="share of decision maps that flip the class")
        ax.axhline(self.threshold, color="red", linewidth=0.8, linestyle="--", label=f"not-faithful threshold {self.threshold:g}")
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_xticks(x)
        ax.set_xticklabels(["trained"] + [f"+{s.split('+')[-1]}" for s in self.stages[1:]], rotation=0)
        ax.set_xlabel("classifier layers randomised (cascading, from the output layer down)")
        ax.set_ylabel("Spearman rank correlation with the trained maps / share")
        ax.set_ylim(-0.5, 1.05)
        ax.set_title(title or f"Model-randomisation check ({self.settings.get('model', '')}, "
                              f"{self.spearman.shape[1]} images; band: quartiles)", fontsize=10)
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return save(fig, path)


def randomisation_check(model, classifier: ExplainedClassifier | nn.Module, images: Tensor,
                        grid_model=None, threshold: float = 0.5, seed: int = 0,
                        decision_map_kwargs: dict | None = None,
                        extra: dict[str, Callable[[ExplainedClassifier], Tensor]] | None = None,
                        log: Callable[[str], None] | None = None) -> RandomisationCheck:
    """Cascading randomisation of ``classifier``; Decision Maps of ``images`` (in ``model.value_range``)
    recomputed per stage, and the labels of ``grid_model``'s Explainability Grid when given (any
    Generative model). ``extra``: name -> function(classifier) -> maps (B, H, W) of other explanations
    scored the same way (e.g. the pixel attack's change)."""
    from xgen.explain.decision_maps import decision_maps
    from xgen.explain.grids import explainability_grid

    clf = as_classifier(classifier)
    clf.check_input(images.shape[1:], "the images")
    layers = parameter_layers(clf.module, tuple(images.shape[1:]))[::-1]     # output layer first
    kw = dict(decision_map_kwargs or {})

    def with_module(m: nn.Module) -> ExplainedClassifier:
        return ExplainedClassifier(m, clf.value_range, clf.class_names, clf.image_shape)

    stages, sp, spa, flips, grid_agree = [], [], [], [], []
    extra_maps: dict[str, list[Tensor]] = {k: [] for k in (extra or {})}
    base_maps, base_grid, base_extra = None, None, {}
    for s in range(len(layers) + 1):
        c = clf if s == 0 else with_module(randomise_layers(clf.module, layers[:s], seed))
        dm = decision_maps(model, c, images, **kw)
        name = "trained" if s == 0 else "+".join(layers[:s])
        if s == 0:
            base_maps = dm.maps
        stages.append(name)
        sp.append(spearman(base_maps, dm.maps))
        spa.append(spearman(base_maps.abs(), dm.maps.abs()))
        flips.append(dm.flip_fraction)
        if grid_model is not None:
            g = explainability_grid(grid_model, c, seed=seed).classes
            base_grid = g if s == 0 else base_grid
            grid_agree.append(float((g == base_grid).double().mean()))
        else:
            grid_agree.append(None)
        for k, fn in (extra or {}).items():
            m = fn(c)
            base_extra.setdefault(k, m)
            extra_maps[k].append(spearman(base_extra[k], m))
        if log:
            log(f"randomisation stage {s}/{len(layers)} ({name}): mean map rank correlation "
                f"{summarise(sp[-1])['mean']}, flipped {dm.flip_fraction:.2f}")
    return RandomisationCheck(stages, torch.stack(sp), torch.stack(spa), flips, grid_agree, float(threshold),
                              {"model": type(model).__name__, "layers": layers, **{k: v for k, v in kw.items()}},
                              {k: torch.stack(v) for k, v in extra_maps.items()})
