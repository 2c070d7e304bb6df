"""``xgen explain evaluate``: the command line of :mod:`xgen.explain.evaluate` (counterfactuals measured
against baselines: the table, per-method numbers, figures, optionally a W&B run)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch

from xgen.errors import ConfigError, XgenError
from xgen.explain.common import as_classifier
from xgen.explain.evaluate import channel_mean_change, evaluate_counterfactuals, log_to_wandb



def _parser() -> argparse.ArgumentParser:
    from xgen.runtime.cli.explain_args import DATASETS, ArgParser

    ap = ArgParser(prog="xgen explain evaluate",
                 description="Score the Decision Maps' counterfactuals against a pixel attack and the nearest "
                             "unlike neighbour: validity, proximity, sparsity, realism, stability (and the "
                             "model-randomisation check with --randomisation N).")
    ap.add_argument("--model", default="infovae", help="checkpoint path or shipped name (default infovae)")
    ap.add_argument("--encoder", default=None, help="inversion encoder file for a GAN; 'shipped' for the shipped InfoGAN's")
    ap.add_argument("--refine-steps", type=int, default=0, help="per-image latent refinement steps (GAN)")
    ap.add_argument("--classifier", default="thesis", help="the classifier explained: thesis (default) | strong | a file")
    ap.add_argument("--fid-classifier", default="strong", help="feature net of the FID: strong (default) | thesis | a file")
    ap.add_argument("--images", default="0-49", help="test indices (default 0-49)")
    ap.add_argument("--data", default="fashion_mnist", choices=DATASETS)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ap.add_argument("--out", default="xgen_explain/evaluate", help="output folder (default xgen_explain/evaluate)")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sparsity-threshold", type=float, default=0.05, help="[0, 1] units (default 0.05)")
    ap.add_argument("--noise-std", type=float, default=0.05, help="stability: input noise std, [0, 1] units")
    ap.add_argument("--noise-draws", type=int, default=3, help="stability: noisy redraws (0: skip)")
    ap.add_argument("--attack-steps", type=int, default=30)
    ap.add_argument("--attack-search", type=int, default=8)
    ap.add_argument("--randomisation", type=int, default=0, metavar="N",
                    help="also run the cascading model-randomisation check on the first N images (0: skip)")
    ap.add_argument("--threshold", type=float, default=0.5, help="randomisation: rank correlation that counts as unchanged")
    ap.add_argument("--train-images", type=int, default=0, metavar="N",
                    help="first N training images as the neighbour bank (default 0: the whole split)")
    ap.add_argument("--test-images", type=int, default=0, metavar="N",
                    help="first N other test images as the real reference of the FID and floors (default 0: all)")
    ap.add_argument("--figure-rows", type=int, default=6)
    ap.add_argument("--wandb", default=None, metavar="PROJECT",
                    help="also log the table and figures to this W&B project (offline without a network; "
                         "$WANDB_MODE wins)")
    return ap


def _run(args) -> dict:
    from xgen.runtime.cli.explain_args import images_in_range, load_classifier, load_explain_model, load_split, parse_indices
    from xgen.metrics.features import ClassifierExtractor

    t_start = time.perf_counter()
    torch.manual_seed(args.seed)
    say = lambda m: print(f"[{time.perf_counter() - t_start:6.1f} s] {m}", flush=True)  # noqa: E731
    for k in ("noise_draws", "attack_steps", "attack_search", "randomisation", "figure_rows", "train_images", "test_images"):
        if getattr(args, k) < 0:
            raise ConfigError(f"--{k.replace('_', '-')}: must be >= 0, got {getattr(args, k)}")
    if not args.noise_std >= 0 or not args.sparsity_threshold >= 0:
        raise ConfigError("--noise-std / --sparsity-threshold: must be >= 0")
    model = load_explain_model(args.model, args.encoder, args.refine_steps, device=args.device)
    clf = as_classifier(load_classifier(args.classifier, args.data, device=args.device), model)
    fspec = args.fid_classifier
    if fspec in ("thesis", "strong"):
        ext = ClassifierExtractor(dataset=args.data, arch=fspec)
    else:
        ext = ClassifierExtractor(weights=fspec)
    x, y = load_split(args.data, "test", args.data_root)
    idx = parse_indices(args.images, len(x))
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[idx] = False
    keep_i = torch.nonzero(keep).view(-1)
    keep_i = keep_i[:args.test_images] if args.test_images else keep_i
    tr, _ = load_split(args.data, "train", args.data_root)
    tr = tr[:args.train_images] if args.train_images else tr
    say(f"{type(model).__name__}, {len(idx)} test images, classifier {args.classifier}, FID features {fspec}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ev = evaluate_counterfactuals(
            model, clf, images_in_range(x[idx], model.value_range), tr, x[keep_i], y[keep_i],
            lambda u: ext.extract(u, (0.0, 1.0)).features, lambda u: ext.extract(u, (0.0, 1.0)).logits,
            indices=idx, labels=y[idx],
            sparsity_threshold=args.sparsity_threshold, noise_std=args.noise_std, noise_draws=args.noise_draws,
            attack_steps=args.attack_steps, attack_search=args.attack_search, seed=args.seed, log=say)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    p = args.prefix
    name = f"{args.model}" + (" (through its inversion encoder)" if args.encoder else "")
    res = {"table_csv": str(ev.save_csv(out / f"{p}evaluate_table.csv")),
           "per_image_csv": str(ev.save_per_image_csv(out / f"{p}evaluate_per_image.csv")),
           "json": str(ev.save_json(out / f"{p}evaluate.json")),
           "figure": str(ev.figure(out / f"{p}evaluate.png", rows=max(args.figure_rows, 1), title=ev.title(name)))}
    if args.randomisation:
        from xgen.explain.baselines import pixel_attack
        from xgen.explain.faithfulness import randomisation_check
        from xgen.protocols import Generative

        n = min(args.randomisation, len(idx))
        xs = images_in_range(x[idx[:n]], model.value_range)
        vr = tuple(model.value_range)
        attack = {"pixel attack (change)": lambda c: channel_mean_change(
            xs, pixel_attack(c, xs, vr, steps=args.attack_steps, search=args.attack_search).images, vr)}
        rc = randomisation_check(model, clf, xs, grid_model=model if isinstance(model, Generative) else None,
                                 threshold=args.threshold, seed=args.seed, extra=attack, log=say)
        res["randomisation_csv"] = str(rc.save_csv(out / f"{p}randomisation.csv"))
        res["randomisation_figure"] = str(rc.figure(out / f"{p}randomisation.png", title=(
            f"Model-randomisation check: decision maps of {name}\n({n} test images; band: quartiles)")))
        res["randomisation"] = rc.records()
        res["faithfulness"] = rc.not_faithful()
    res["table"] = ev.table
    res["notes"] = ev.notes
    if args.wandb:
        say(f"logging to W&B project {args.wandb}")
        res["wandb"] = log_to_wandb(args.wandb, res, name)
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """``xgen explain evaluate``; returns the exit status (2 with one error line on bad input)."""
    from xgen.runtime.cli.explain_args import UsageError

    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        res = _run(args)
    except (UsageError, XgenError) as e:
        print(f"xgen explain evaluate: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
