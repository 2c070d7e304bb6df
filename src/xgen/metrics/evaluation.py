"""What ``xgen eval`` measures on a model or a dataset, as functions of a model and a data module.

:func:`evaluate_model` runs every measurement a model's capabilities allow (:mod:`xgen.protocols`):
sample quality (FID, KID, IS, precision/recall) for a :class:`~xgen.protocols.Generative` model,
categorical-code accuracy for one that :class:`~xgen.protocols.PredictsCodes`, ELBO and importance-
weighted log-likelihood for one that :class:`~xgen.protocols.HasLikelihood`, accuracy for a
:class:`~xgen.protocols.Classifies`. :func:`real_vs_real` and :func:`noise_baseline` give the floor
and the ceiling of the quality scores. The command line around them is :mod:`xgen.runtime.cli.eval`.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from xgen.protocols import Classifies, Conditional, Generative, HasLikelihood, PredictsCodes

STAGE_METRICS = ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall")


def _batches(x: torch.Tensor, size: int):
    for i in range(0, x.shape[0], size):
        yield x[i:i + size]


@torch.no_grad()
def categorical_accuracy(model: PredictsCodes, images: torch.Tensor, labels: torch.Tensor,
                         batch_size: int = 500) -> dict[str, Any]:
    """Hungarian-matched accuracy of every categorical code the model reads back from images
    (:class:`xgen.protocols.PredictsCodes`). ``cat_acc`` is the accuracy of ``model.eval_code``."""
    from xgen.data import to_value_range
    from xgen.metrics.clustering import cluster_accuracy

    sizes = list(model.latent.categorical)
    was_training = model.training
    model.eval()
    try:
        codes = torch.cat([torch.stack([model.predict_code(to_value_range(b, model.value_range).to(model.device),
                                                           code=j).cpu() for j in range(len(sizes))], 1)
                           for b in _batches(images, batch_size)])
    finally:
        model.train(was_training)
    n_classes = int(labels.max()) + 1
    accs = [cluster_accuracy(codes[:, j], labels, num_clusters=k, num_classes=max(k, n_classes))
            for j, k in enumerate(sizes)]
    return {"cat_acc": accs[int(model.eval_code)], "cat_acc_per_code": accs}


@torch.no_grad()
def vae_likelihood(model: HasLikelihood, images: torch.Tensor, k: int, iw_images: int, batch_size: int,
                   seed: int) -> dict[str, float]:
    """Test ELBO over all ``images`` and the k-sample importance-weighted log p(x) over the first
    ``iw_images`` (nats per image; higher is better)."""
    from xgen.data import to_value_range
    from xgen.metrics.likelihood import elbo, iw_log_likelihood

    vr = model.value_range
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        e = torch.cat([elbo(model, to_value_range(b, vr).to(model.device)).cpu() for b in _batches(images, batch_size)])
        out = {"elbo": float(e.mean())}
        if k > 0 and iw_images > 0:
            per = max(1, min(batch_size, 2000 // max(1, min(k, 100))))
            ll = torch.cat([iw_log_likelihood(model, to_value_range(b, vr).to(model.device), k).cpu()
                            for b in _batches(images[:iw_images], per)])
            out["iw_ll"] = float(ll.mean())
    return out


def evaluate_model(model: torch.nn.Module, dm, extractor, split: str = "test", num_samples: int = 10000,
                   metrics: Sequence[str] = ("fid", "kid", "is", "pr"), batch_size: int = 500, seed: int = 0,
                   iw_samples: int = 100, iw_images: int = 1000, cache_dir: str | None = None,
                   classifier: Any = None) -> dict[str, Any]:
    """Every applicable measurement of one model, keyed ``<split>/<name>``. For a
    :class:`~xgen.protocols.Conditional` model also the class consistency of ``classifier`` (a
    :class:`~xgen.protocols.Classifies`, e.g. xgen's shipped one) on ``num_samples`` generated images and,
    with FID asked for, the FID of each class (:mod:`xgen.metrics.conditional`)."""
    from xgen.metrics.quality import cached_real_reference, generate_images, score

    images, labels = dm.split(split)
    out: dict[str, Any] = {"model": type(model).__name__, "data": dm.name, "split": split}
    t0 = time.perf_counter()
    if isinstance(model, Generative) and metrics:  # --metrics "" skips sample quality (e.g. no extractor for the data)
        ref = cached_real_reference(images, extractor, f"{dm.name}-{split}", cache_dir, batch_size=batch_size)
        gen = generate_images(model, num_samples, batch_size, seed)
        ex = extractor.extract(gen, model.value_range, batch_size)
        scores = score(ref, ex, gen.shape[1:], metrics, seed=seed)
        out.update({f"{split}/{k}": v for k, v in scores.items()})
        out["num_samples"] = num_samples
        out["extractor"] = extractor.cache_key
    if isinstance(model, Conditional):
        from xgen.metrics.conditional import class_consistency, per_class_fid

        if classifier is not None:
            cc = class_consistency(model, classifier, num_samples, batch_size, seed)
            out[f"{split}/class_consistency"] = cc["accuracy"]
            out[f"{split}/class_consistency_per_class"] = cc["per_class"]
        if extractor is not None and "fid" in metrics:
            out[f"{split}/fid_per_class"] = per_class_fid(model, images, labels, extractor, f"{dm.name}-{split}",
                                                          num_samples, batch_size, seed, cache_dir)
    if isinstance(model, Classifies):  # xgen.models.Classifier
        from xgen.data import to_value_range

        pred = torch.cat([model.predict(to_value_range(b, model.value_range))[0].cpu() for b in _batches(images, batch_size)])
        out[f"{split}/acc"] = float((pred == labels).float().mean())
    if isinstance(model, PredictsCodes) and model.latent.num_categorical:
        cat = categorical_accuracy(model, images, labels, batch_size)
        out[f"{split}/cat_acc"] = cat["cat_acc"]
        out[f"{split}/cat_acc_per_code"] = cat["cat_acc_per_code"]
    if isinstance(model, HasLikelihood):
        lik = vae_likelihood(model, images, iw_samples, iw_images, batch_size, seed)
        out.update({f"{split}/{k}": v for k, v in lik.items()})
        if "iw_ll" in lik:
            out["iw_samples"], out["iw_images"] = iw_samples, min(iw_images, images.shape[0])
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def real_vs_real(dm, extractor, split: str = "test", num_samples: int = 10000, repeats: int = 5,
                 metrics: Sequence[str] = ("fid", "kid", "is", "pr"), batch_size: int = 500, seed: int = 0,
                 cache_dir: str | None = None) -> dict[str, Any]:
    """FID of disjoint random subsets of real images (from the other split) against the ``split``
    statistics: the floor a perfect generator would score with ``num_samples`` samples (fig. 4.6)."""
    from xgen.metrics.quality import cached_real_reference, score

    images, _ = dm.split(split)
    other_split = "train" if split != "train" else "test"
    pool, _ = dm.split(other_split)
    n = min(int(num_samples), pool.shape[0])
    ref = cached_real_reference(images, extractor, f"{dm.name}-{split}", cache_dir, batch_size=batch_size)
    perm = torch.randperm(pool.shape[0], generator=torch.Generator().manual_seed(seed))
    disjoint = repeats * n <= pool.shape[0]
    runs = []
    for r in range(int(repeats)):
        idx = perm[r * n:(r + 1) * n] if disjoint else torch.randperm(
            pool.shape[0], generator=torch.Generator().manual_seed(seed + r + 1))[:n]
        ex = extractor.extract(pool[idx], (0.0, 1.0), batch_size)
        runs.append(score(ref, ex, pool.shape[1:], metrics, seed=seed + r))
    out: dict[str, Any] = {"model": f"real {other_split} subset", "data": dm.name, "split": split,
                           "num_samples": n, "repeats": int(repeats), "disjoint_subsets": disjoint,
                           "extractor": extractor.cache_key}
    for k in (k for k in runs[0] if not k.endswith("_std")):  # the spread over repeats replaces KID/IS's own
        vals = torch.tensor([r[k] for r in runs], dtype=torch.float64)
        out[f"{split}/{k}"] = float(vals.mean())
        if len(runs) > 1:
            out[f"{split}/{k}_sd"] = float(vals.std())
    return out


def noise_baseline(dm, extractor, split: str = "test", num_samples: int = 10000,
                   metrics: Sequence[str] = ("fid", "kid", "is", "pr"), batch_size: int = 500, seed: int = 0,
                   cache_dir: str | None = None) -> dict[str, Any]:
    """Scores of uniform pixel noise: the ceiling every model should be far below."""
    from xgen.metrics.quality import cached_real_reference, score

    images, _ = dm.split(split)
    ref = cached_real_reference(images, extractor, f"{dm.name}-{split}", cache_dir, batch_size=batch_size)
    noise = torch.randint(0, 256, (int(num_samples), *images.shape[1:]), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(seed))
    scores = score(ref, extractor.extract(noise, (0.0, 1.0), batch_size), noise.shape[1:], metrics, seed=seed)
    return {"model": "uniform noise", "data": dm.name, "split": split, "num_samples": int(num_samples),
            "extractor": extractor.cache_key, **{f"{split}/{k}": v for k, v in scores.items()}}
