"""Counterfactuals measured against baselines (issue 24): ``xgen explain evaluate``.

For a model that :class:`~xgen.protocols.Encodes` and :class:`~xgen.protocols.Decodes` (every VAE; a
GAN through an inversion encoder) and a set of test images, three counterfactuals per image are drawn
and scored the same way (:mod:`xgen.metrics.counterfactual`):

* ``generative`` — the Decision Map's counterfactual decoded(z + λ·d) (:mod:`xgen.explain.decision_maps`);
* ``pixel attack`` — the smallest L2 change of the pixels that flips the classifier
  (:func:`xgen.explain.baselines.pixel_attack`);
* ``nearest unlike neighbour`` — the closest training image of another class in the classifier's
  feature space (:func:`xgen.explain.baselines.nearest_unlike_neighbour`);

plus the ``original`` images themselves as the reference row (validity 0, proximity 0, real-image
realism). Validity is against the class the classifier gives the *input image*, for every method (the
Decision Map's own flip is against its reconstruction's class: ``flip_vs_reconstruction``); proximity,
sparsity and realism are averaged over the valid counterfactuals. Realism: FID in the features of
``--fid-classifier`` (default ``strong``, xgen's FID feature net — not the classifier explained, so the
attack cannot aim at it) against real test images of the class each counterfactual now has, beside the
real-vs-real floor of that class mix; and the distance to the nearest training image in the explained
classifier's feature space (the neighbours tool's measure), beside the median of real test images.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from xgen.explain.common import ExplainedClassifier, as_classifier, to_unit, write_csv
from xgen.metrics import counterfactual as cfm
from xgen.protocols import Decodes, Encodes, HasLikelihood, require

__all__ = ["Evaluation", "evaluate_counterfactuals", "counterfactual_scores", "decision_map_scores", "METHODS", "log_to_wandb"]

METHODS = ("original", "reconstruction", "generative", "pixel attack", "nearest unlike neighbour")


@dataclass
class Evaluation:
    """Per method: counterfactual images, per-image metrics, and a summary row."""

    images: Tensor                       # inputs, model value range (CPU)
    reconstructions: Tensor
    counterfactuals: dict[str, Tensor]   # method -> (N, C, H, W)
    per_image: dict[str, dict[str, Tensor]]
    table: list[dict]
    indices: list[int]
    class_names: list[str]
    value_range: tuple[float, float]
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, method: str) -> dict:
        return next(r for r in self.table if r["method"] == method)

    def save_csv(self, path: str | Path) -> Path:
        return write_csv(path, self.table)

    def save_per_image_csv(self, path: str | Path) -> Path:
        keys = list(dict.fromkeys(k for d in self.per_image.values() for k in d))
        rows = [{"method": m, "index": idx, **{k: _num(d[k][i]) if k in d else None for k in keys}}
                for m, d in self.per_image.items() for i, idx in enumerate(self.indices)]
        return write_csv(path, rows)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        per = {m: {k: [_num(x) for x in v] for k, v in d.items()} for m, d in self.per_image.items()}
        path.write_text(json.dumps({"table": self.table, "settings": self.settings, "notes": self.notes,
                                    "indices": self.indices, "per_image": per}, indent=1, default=str))
        return path

    def figure(self, path: str | Path | None = None, rows: int = 6, title: str = ""):
        """Per image: original | reconstruction | generative counterfactual | pixel attack | nearest unlike
        neighbour, each with its class, probability and distances underneath."""
        from xgen.explain.figures import image_rows_figure

        vr, names = self.value_range, self.class_names
        panels = []
        for i in range(min(rows, len(self.indices))):
            row = []
            for m in METHODS:
                d = self.per_image[m]
                cap = f"{names[int(d['class'][i])]} p={float(d['prob'][i]):.2f}"
                if m == "original":
                    cap = f"test #{self.indices[i]}\n{cap}, NN {float(d['nn_feature_distance'][i]):.1f}"
                else:
                    flip = "" if m == "reconstruction" or d["valid"][i] else " (no flip)"
                    cap += f"{flip}\nL2 {float(d['l2'][i]):.2f}"
                    if m == "generative":
                        cap += f", λ {float(d['latent_distance'][i]):.1f}"
                    cap += f", NN {float(d['nn_feature_distance'][i]):.1f}"
                row.append((to_unit(self.counterfactuals[m][i], vr), cap))
            panels.append(row)
        return image_rows_figure(panels, path, col_titles=list(METHODS), title=title or self.title(),
                                 cell_inches=1.55)

    def title(self, name: str = "") -> str:
        g, p, n = (self.row(m) for m in ("generative", "pixel attack", "nearest unlike neighbour"))
        return (f"{name or self.settings.get('model', '')}: counterfactuals vs baselines ({len(self.indices)} test "
                "images; first rows shown)\nL2: pixel distance to the original, [0, 1] units; λ: latent "
                "distance; NN: feature distance to the nearest training image\nmean L2, FID (real floor): "
                f"generative {_f(g['l2_mean'])}, {_f(g['fid'])} ({_f(g['fid_floor'])}); pixel attack "
                f"{_f(p['l2_mean'])}, {_f(p['fid'])} ({_f(p['fid_floor'])}); unlike neighbour "
                f"{_f(n['l2_mean'])}, {_f(n['fid'])} ({_f(n['fid_floor'])})")


def _num(v):
    v = float(v)
    return None if math.isnan(v) else v


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def channel_mean_change(a: Tensor, b: Tensor, vr) -> Tensor:
    return (to_unit(b, vr) - to_unit(a, vr)).mean(1)


def evaluate_counterfactuals(model, classifier: ExplainedClassifier, images: Tensor, train_images: Tensor,
                             test_images: Tensor, test_labels: Tensor, fid_features: Callable[[Tensor], Tensor],
                             second_classifier: Callable[[Tensor], Tensor] | None = None,
                             indices: Sequence[int] | None = None, labels: Tensor | None = None,
                             sparsity_threshold: float = 0.05, noise_std: float = 0.05, noise_draws: int = 3,
                             attack_steps: int = 30, attack_search: int = 8, reference_per_image: int = 4,
                             seed: int = 0, decision_map_kwargs: dict | None = None,
                             log: Callable[[str], None] = lambda m: None) -> Evaluation:
    """Draw and score the counterfactuals of ``images`` (in ``model.value_range``).

    Args:
        train_images: the training split (uint8 or [0, 1] floats): the unlike neighbours and the
            nearest-training-image distance come from it.
        test_images, test_labels: real images (uint8 or [0, 1]) for the class-matched FID and the real
            floors; the evaluated images should be left out by the caller.
        fid_features: [0, 1] images -> features (N, D) of the FID feature net.
        second_classifier: [0, 1] images -> logits of another classifier (the FID net's): the share of
            counterfactuals it puts in the same class as the classifier explained
            (``second_classifier_agrees``; a change that only fools one network scores low).
        noise_std, noise_draws: stability: each method is redrawn on ``noise_draws`` noisy copies of the
            input (Gaussian, std ``noise_std`` in [0, 1] units, clipped to the range).
    """
    from xgen.explain.baselines import nearest_unlike_neighbour, pixel_attack
    from xgen.explain.decision_maps import decision_maps
    from xgen.metrics.likelihood import elbo

    require(model, Encodes, "the counterfactual evaluation")
    require(model, Decodes, "the counterfactual evaluation")
    clf = as_classifier(classifier)
    clf.check_input(images.shape[1:], "the images")
    vr = tuple(float(v) for v in model.value_range)
    unit = lambda t: t.float() / 255.0 if t.dtype == torch.uint8 else t.float()  # noqa: E731
    kw = dict(decision_map_kwargs or {})
    idx = list(indices) if indices is not None else list(range(len(images)))
    x = images.float().cpu()
    n = len(x)
    times = {}

    def from_unit(u: Tensor) -> Tensor:
        return u * (vr[1] - vr[0]) + vr[0]

    # -------------------------------------------------------------------- the three counterfactuals
    t0 = time.perf_counter()
    dm = decision_maps(model, clf, x, labels=labels, indices=idx, **kw)
    times["generative"] = time.perf_counter() - t0
    log(f"decision maps: {sum(r.flipped for r in dm.results)}/{n} flipped ({times['generative']:.1f} s)")
    t0 = time.perf_counter()
    att = pixel_attack(clf, x, vr, steps=attack_steps, search=attack_search)
    times["pixel attack"] = time.perf_counter() - t0
    log(f"pixel attack: {int(att.success.sum())}/{n} flipped ({times['pixel attack']:.1f} s)")
    t0 = time.perf_counter()
    tr = unit(train_images)
    f_train = clf.features(tr, (0.0, 1.0))
    tr_cls, _, _ = clf.predict(tr, (0.0, 1.0))
    data_cls, _, _ = clf.predict(x, vr)
    nun = nearest_unlike_neighbour(clf.features(x, vr), data_cls, f_train, tr_cls)
    nun_images = from_unit(tr[nun.index])
    times["nearest unlike neighbour"] = time.perf_counter() - t0
    log(f"training features and unlike neighbours ({times['nearest unlike neighbour']:.1f} s)")
    rec = dm.reconstructions
    cfs = {"original": x, "reconstruction": rec, "generative": dm.counterfactuals, "pixel attack": att.images,
           "nearest unlike neighbour": nun_images}

    # -------------------------------------------------------------------- realism references
    te = unit(test_images)
    te_lab = torch.as_tensor(test_labels).view(-1).long()
    f_test_fid = fid_features(te)
    nn_floor = cfm.nearest_distance(clf.features(te[:1000], (0.0, 1.0)), f_train)
    likelihood = isinstance(model, HasLikelihood)

    def score_elbo(imgs: Tensor) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = [elbo(model, imgs[i:i + 256].to(_device(model))).double().cpu() for i in range(0, len(imgs), 256)]
        return torch.cat(out)

    per: dict[str, dict[str, Tensor]] = {}
    table = []
    notes = []
    for m, c in cfs.items():
        d = decision_map_scores(dm, clf, sparsity_threshold) if m == "generative" else \
            counterfactual_scores(clf, x, rec, c, vr, sparsity_threshold, data_cls)
        cls, valid = d["class"].long(), d["valid"]
        d["nn_feature_distance"] = cfm.nearest_distance(clf.features(c, vr), f_train)
        if likelihood:
            d["elbo"] = score_elbo(c)
        per[m] = d
        # the inputs and their reconstructions are scored whole; counterfactuals where they are valid
        mask = valid.bool() if m not in ("original", "reconstruction") else torch.ones(n, dtype=torch.bool)
        fid = None
        if int(mask.sum()) >= 2:
            fid = cfm.class_matched_fid(fid_features(to_unit(c[mask], vr).clamp(0, 1)), cls[mask], f_test_fid, te_lab,
                                        reference_per_image, seed)
            if fid["singular_covariance"]:
                notes.append(f"{m}: FID from {int(mask.sum())} counterfactuals in {f_test_fid.shape[1]} feature "
                             "dimensions: singular covariance, FID biased upward (the floor shares the bias)")
            if fid["per_class_singular"]:
                notes.append(f"{m}: per-class FID from fewer images per class than {f_test_fid.shape[1]} feature "
                             "dimensions: biased upward, compare with its floor only")
        if second_classifier is not None:
            d["second_classifier_agrees"] = (_batched(second_classifier, to_unit(c, vr).clamp(0, 1)).argmax(1)
                                             == cls).double()
        row = {"method": m, "images": n, "validity": float(valid.mean()),
               "target_prob": cfm.summarise(d["prob"], valid.bool())["mean"],
               **{f"{k}_mean": cfm.summarise(d[k], mask)["mean"] for k in ("l1", "l2", "l2_to_reconstruction")},
               "l2_median": cfm.summarise(d["l2"], mask)["median"],
               "latent_distance_mean": cfm.summarise(d["latent_distance"], mask)["mean"] if "latent_distance" in d else None,
               "sparsity_mean": cfm.summarise(d["sparsity"], mask)["mean"],
               "sparsity_vs_reconstruction_mean": cfm.summarise(d["sparsity_vs_reconstruction"], mask)["mean"],
               **{k: fid[k] if fid else None for k in ("fid", "fid_floor", "fid_per_class", "fid_per_class_floor")},
               "nn_feature_distance_median": cfm.summarise(d["nn_feature_distance"], mask)["median"],
               "second_classifier_agrees": (cfm.summarise(d["second_classifier_agrees"], mask)["mean"]
                                            if second_classifier is not None else None),
               "nn_feature_floor_median": float(nn_floor.median()),
               "elbo_mean": cfm.summarise(d["elbo"], mask)["mean"] if likelihood else None}
        row["flip_vs_reconstruction"] = float(d["flip_vs_reconstruction"].mean()) if m == "generative" else None
        table.append(row)
    log("metrics scored; stability draws next")

    # -------------------------------------------------------------------- stability under input noise
    base_maps = {"generative": dm.maps, "pixel attack": channel_mean_change(x, att.images, vr),
                 "nearest unlike neighbour": channel_mean_change(x, nun_images, vr)}
    base_cls = {m: per[m]["class"] for m in base_maps}
    stab = {m: {"spearman": [], "relative_change": [], "same_class": []} for m in base_maps}
    g = torch.Generator().manual_seed(int(seed) + 7)
    for r in range(int(noise_draws)):
        t0 = time.perf_counter()
        xn = from_unit((to_unit(x, vr) + noise_std * torch.randn(x.shape, generator=g)).clamp(0, 1))
        dmn = decision_maps(model, clf, xn, **kw)
        an = pixel_attack(clf, xn, vr, steps=attack_steps, search=attack_search)
        cn, _, _ = clf.predict(xn, vr)
        nn_ = nearest_unlike_neighbour(clf.features(xn, vr), cn, f_train, tr_cls)
        new = {"generative": (dmn.maps, dmn.counterfactuals),
               "pixel attack": (channel_mean_change(xn, an.images, vr), an.images),
               "nearest unlike neighbour": (channel_mean_change(xn, from_unit(tr[nn_.index]), vr), from_unit(tr[nn_.index]))}
        for m, (mp, imgs) in new.items():
            stab[m]["spearman"].append(cfm.spearman(base_maps[m], mp))
            stab[m]["relative_change"].append(cfm.relative_change(base_maps[m], mp))
            stab[m]["same_class"].append((clf.predict(imgs, vr)[0].double() == base_cls[m]).double())
        log(f"stability draw {r + 1}/{noise_draws} ({time.perf_counter() - t0:.1f} s)")
    for row in table:
        m = row["method"]
        if m in stab and noise_draws > 0:
            s = {k: torch.stack(v).mean(0) for k, v in stab[m].items()}
            per[m].update({f"stability_{k}": v for k, v in s.items()})
            row["stability_spearman"] = cfm.summarise(s["spearman"])["mean"]
            row["stability_relative_change_median"] = cfm.summarise(s["relative_change"])["median"]
            row["stability_same_class"] = cfm.summarise(s["same_class"])["mean"]
        else:
            row["stability_spearman"] = row["stability_relative_change_median"] = row["stability_same_class"] = None
        row["seconds"] = round(times.get(m, 0.0), 2)
    settings = {"model": type(model).__name__, "sparsity_threshold": sparsity_threshold, "noise_std": noise_std,
                "noise_draws": noise_draws, "attack_steps": attack_steps, "attack_search": attack_search,
                "reference_per_image": reference_per_image, "seed": seed, "decision_maps": dm.settings}
    return Evaluation(x, rec, cfs, per, table, idx, list(clf.class_names), vr, settings, notes)


def counterfactual_scores(classifier: ExplainedClassifier, images: Tensor, reconstructions: Tensor,
                          counterfactuals: Tensor, value_range, sparsity_threshold: float = 0.05,
                          input_class: Tensor | None = None) -> dict[str, Tensor]:
    """Per-image validity, proximity and sparsity of ``counterfactuals`` of ``images`` (both in
    ``value_range``): the class and probability reached, ``valid`` (class differs from the classifier's
    class of the input image, or ``input_class``), L1/L2 to the image, L2 to ``reconstructions`` (the
    model's own rendering of the image), and the share of pixels changed by > ``sparsity_threshold``
    from the image and from the reconstruction."""
    x, rec, c = images.float().cpu(), reconstructions.float().cpu(), counterfactuals.float().cpu()
    if input_class is None:
        input_class = classifier.predict(x, value_range)[0]
    cls, conf, probs = classifier.predict(c, value_range)
    return {"class": cls.double(), "prob": conf.double(), "valid": cfm.changed(input_class, probs),
            "l1": cfm.pixel_distance(x, c, 1, value_range), "l2": cfm.pixel_distance(x, c, 2, value_range),
            "l2_to_reconstruction": cfm.pixel_distance(rec, c, 2, value_range),
            "sparsity": cfm.changed_fraction(x, c, sparsity_threshold, value_range),
            "sparsity_vs_reconstruction": cfm.changed_fraction(rec, c, sparsity_threshold, value_range)}


def decision_map_scores(dm, classifier: ExplainedClassifier, sparsity_threshold: float = 0.05) -> dict[str, Tensor]:
    """:func:`counterfactual_scores` of a :class:`~xgen.explain.decision_maps.DecisionMaps`, plus its
    latent distance λ·‖d‖ (λ for a unit direction; NaN where nothing flipped) and whether it flipped the
    class of the reconstruction (the Decision Map's own criterion)."""
    d = counterfactual_scores(classifier, dm.images, dm.reconstructions, dm.counterfactuals, dm.value_range,
                              sparsity_threshold)
    steps = torch.tensor([r.step if r.flipped else math.nan for r in dm.results], dtype=torch.float64)
    scale = torch.ones(len(steps), dtype=torch.float64) if dm.settings.get("normalize", True) else \
        torch.tensor([r.gradient_norm for r in dm.results], dtype=torch.float64)
    d["latent_distance"] = steps * scale
    d["flip_vs_reconstruction"] = torch.tensor([float(r.flipped) for r in dm.results], dtype=torch.float64)
    return d


def _batched(fn: Callable[[Tensor], Tensor], u: Tensor, batch: int = 500) -> Tensor:
    return torch.cat([fn(u[i:i + batch]).float().cpu() for i in range(0, len(u), batch)])


def _device(model) -> torch.device:
    from xgen.explain.common import module_device

    return module_device(model)


# ============================================================================ command line


def log_to_wandb(project: str, res: dict, name: str) -> str:
    """The evaluation's table (a ``wandb.Table``), its summary numbers and figures as one W&B run, offline
    where there is no network (:func:`xgen.utils.loggers.wandb_mode`). Returns the run's directory."""
    import wandb

    from xgen.utils.loggers import wandb_mode

    run = wandb.init(project=project, job_type="explain-evaluate", name=name, mode=wandb_mode(None),
                     config={"model": name}, reinit=True)
    try:
        cols = sorted({k for r in res["table"] for k in r})
        run.log({"counterfactuals": wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in res["table"]]),
                 "figure": wandb.Image(res["figure"]),
                 **({"randomisation": wandb.Image(res["randomisation_figure"])} if "randomisation_figure" in res else {})})
        for r in res["table"]:
            for k, v in r.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    run.summary[f"{r.get('method')}/{k}"] = v
        return str(run.dir)
    finally:
        run.finish()

