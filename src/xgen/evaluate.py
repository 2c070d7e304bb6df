"""``xgen eval``: sample quality and likelihood of trained models, written to ``eval.json``.

    xgen eval outputs/train/2026-01-01_12-00-00            # a run directory (config.yaml + checkpoints/)
    xgen eval path/to/last.ckpt --num-samples 10000         # a checkpoint
    xgen eval outputs/train/multirun/2026-01-01_12-00-00    # every run of a multirun, one table
    xgen eval --real-vs-real --data fashion_mnist           # the same-dataset FID floor (thesis fig. 4.6)

For every model: FID (and KID, IS, precision/recall) of generated samples against the real split,
with the offline classifier extractor unless ``--extractor inception``; for InfoGAN (a model that
:class:`~xgen.protocols.PredictsCodes`) the categorical-code accuracy under Hungarian
matching on the labelled split; for VAEs the test ELBO and an importance-weighted log-likelihood
estimate with k samples; for classifiers their accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from xgen.errors import ConfigError, XgenError
from xgen.protocols import Classifies, Generative, HasLikelihood, PredictsCodes

STAGE_METRICS = ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall")


# ----------------------------------------------------------------------------- finding runs
def find_runs(path: str | Path) -> list[tuple[Path, Path | None]]:
    """(checkpoint, run directory or None) for a checkpoint file, a run directory or a multirun directory."""
    p = Path(path).expanduser()
    if p.is_file():
        run = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        return [(p, run if (run / "config.yaml").is_file() else None)]
    if p.is_dir():
        last = p / "checkpoints" / "last.ckpt"
        if last.is_file():
            return [(last, p)]
        runs = sorted((c / "checkpoints" / "last.ckpt", c) for c in p.iterdir()
                      if (c / "checkpoints" / "last.ckpt").is_file())
        runs.sort(key=lambda r: (not r[1].name.isdigit(), int(r[1].name) if r[1].name.isdigit() else 0, r[1].name))
        if runs:
            return runs
        raise ConfigError(f"{p}: no checkpoints/last.ckpt in it or in its sub-directories; pass a run directory, "
                          "a multirun directory or a .ckpt file.")
    raise ConfigError(f"{p}: no such file or directory.")


def data_module(run_dir: Path | None, data: str | None):
    """The run's data module (from its config.yaml), or the named data config (``--data``)."""
    from hydra.utils import instantiate

    from xgen.safety import run_data_config

    if data is None and run_dir is not None:
        cfg_data = run_data_config(run_dir / "config.yaml")  # [harden] allow-listed data module only
        if cfg_data is not None:
            return instantiate(cfg_data)
    if data is None:
        raise ConfigError("--data: this checkpoint has no config.yaml beside it; name the data config "
                          "(e.g. --data fashion_mnist).")
    from hydra import compose, initialize_config_dir

    from xgen.cli import CONFIG_DIR

    available = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))
    if data not in available:
        raise ConfigError(f"--data: unknown data config {data!r}; choose one of {', '.join(available)}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={data}"])
    return instantiate(cfg.data)


# ----------------------------------------------------------------------------- the measurements
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
                   iw_samples: int = 100, iw_images: int = 1000, cache_dir: str | None = None) -> dict[str, Any]:
    """Every applicable measurement of one model, keyed ``<split>/<name>``."""
    from xgen.metrics.quality import cached_real_reference, generate_images, score

    images, labels = dm.split(split)
    out: dict[str, Any] = {"model": type(model).__name__, "data": dm.name, "split": split}
    t0 = time.perf_counter()
    if isinstance(model, Generative):
        ref = cached_real_reference(images, extractor, f"{dm.name}-{split}", cache_dir, batch_size=batch_size)
        gen = generate_images(model, num_samples, batch_size, seed)
        ex = extractor.extract(gen, model.value_range, batch_size)
        scores = score(ref, ex, gen.shape[1:], metrics, seed=seed)
        out.update({f"{split}/{k}": v for k, v in scores.items()})
        out["num_samples"] = num_samples
        out["extractor"] = extractor.cache_key
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


def real_vs_real(dm, extractor, split: str = "test", num_samples: int = 10000, repeats: int = 3,
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


# ----------------------------------------------------------------------------- output
def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: one row per evaluated model, one column per scalar metric."""
    cols = []
    for r in rows:
        for k, v in r.items():
            if "/" in k and isinstance(v, (int, float)) and k not in cols:
                cols.append(k)
    header = ["run", *cols]
    body = [[str(r.get("name", r.get("model", "?"))),
             *[(f"{r[c]:.4g}" if isinstance(r.get(c), (int, float)) and math.isfinite(r[c]) else "-") for c in cols]]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(b) for b in body)])


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xgen eval", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("paths", nargs="*", help="checkpoints, run directories or multirun directories")
    ap.add_argument("--real-vs-real", action="store_true",
                    help="FID of disjoint real subsets (other split) against --split: the same-dataset floor")
    ap.add_argument("--noise", action="store_true", help="also score uniform pixel noise (the ceiling)")
    ap.add_argument("--data", default=None, help="data config name (default: the run's own data config)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"), help="real split (default test)")
    ap.add_argument("--num-samples", type=int, default=10000, help="generated (or real-subset) images (default 10000)")
    ap.add_argument("--repeats", type=int, default=3, help="--real-vs-real: disjoint subsets to average (default 3)")
    ap.add_argument("--metrics", default="fid,kid,is,pr", help="comma-separated subset of fid,kid,is,pr")
    ap.add_argument("--extractor", default="classifier", choices=("classifier", "inception"))
    ap.add_argument("--arch", default="strong", choices=("strong", "thesis"), help="shipped classifier to use")
    ap.add_argument("--weights", default=None, help="extractor weight file (classifier or Inception-v3)")
    ap.add_argument("--iw-samples", type=int, default=100, help="VAEs: k of the importance-weighted log p(x); 0 = off")
    ap.add_argument("--iw-images", type=int, default=1000, help="VAEs: test images for the IW estimate")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ap.add_argument("--cache-dir", default=None, help="real-statistics cache (default $XGEN_CACHE/fid or ~/.cache/xgen/fid)")
    ap.add_argument("--out", default=None, help="eval.json path (default: in the run directory, or ./eval.json)")
    return ap


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    """eval.json: one object for one row, a list for several."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if k != "written"} for r in rows]
    path.write_text(json.dumps(clean[0] if len(clean) == 1 else clean, indent=2) + "\n")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Evaluate what ``args`` names; write eval.json file(s); return the rows."""
    from xgen.metrics.features import build_extractor
    from xgen.metrics.quality import check_metrics
    from xgen.models import load_model

    metrics = check_metrics([m for m in args.metrics.split(",") if m], "--metrics")
    if args.num_samples < 2:
        raise ConfigError(f"--num-samples: must be >= 2, got {args.num_samples}")
    if not args.paths and not (args.real_vs_real or args.noise):
        raise ConfigError("nothing to evaluate: give checkpoints/run directories, or --real-vs-real / --noise with --data")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    rows: list[dict[str, Any]] = []
    extractors: dict[str, Any] = {}

    def extractor_for(dm):
        if dm.name not in extractors:
            extractors[dm.name] = build_extractor(args.extractor, args.weights, dm.name, args.arch, device)
        return extractors[dm.name]

    common = dict(metrics=metrics, batch_size=args.batch_size, seed=args.seed, cache_dir=args.cache_dir)
    if args.real_vs_real or args.noise:
        dm = data_module(None, args.data or "fashion_mnist")
        if args.real_vs_real:
            rows.append({"name": f"real vs real ({dm.name})",
                         **real_vs_real(dm, extractor_for(dm), args.split, args.num_samples, args.repeats, **common)})
        if args.noise:
            rows.append({"name": "uniform noise", **noise_baseline(dm, extractor_for(dm), args.split,
                                                                  args.num_samples, **common)})
    for path in args.paths:
        for ckpt, run_dir in find_runs(path):
            model = load_model(str(ckpt), map_location=device)
            dm = data_module(run_dir, args.data)
            row = {"name": str(run_dir.name if run_dir else ckpt.name), "checkpoint": str(ckpt),
                   **evaluate_model(model, dm, extractor_for(dm), args.split, args.num_samples,
                                    iw_samples=args.iw_samples, iw_images=args.iw_images, **common)}
            if run_dir is not None and args.out is None:
                _write(run_dir / "eval.json", [row])
                row["written"] = str(run_dir / "eval.json")
            rows.append(row)
    if args.out:
        _write(Path(args.out), rows)
    else:
        multirun = [Path(p) for p in args.paths if Path(p).is_dir() and not (Path(p) / "checkpoints").is_dir()]
        for d in multirun:
            _write(d / "eval.json", [r for r in rows if str(r.get("checkpoint", "")).startswith(str(d))])
        if any(not r.get("written") for r in rows) and not multirun:
            _write(Path("eval.json"), [r for r in rows if not r.get("written")])
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``xgen eval``; returns the exit status."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rows = run(args)
    except XgenError as e:
        print(f"xgen eval: error: {e}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
