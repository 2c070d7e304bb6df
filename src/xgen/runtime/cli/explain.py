"""``xgen explain <tool> ...``: the explainability tools on checkpoints, writing figures and results.

Tools: traverse, interpolate, arithmetic, grid (InfoGAN Explainability Grid), decision-map (InfoVAE
Decision Maps; GANs through an inversion encoder), invert (train that encoder), neighbours
(memorisation check). ``--model`` takes a checkpoint path or the name of a shipped checkpoint
(``infogan``, ``infovae``); the defaults use the shipped Fashion-MNIST checkpoints and classifier.
Every failure is one ``xgen explain: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from xgen.errors import ConfigError, XgenError
from xgen.runtime.cli.explain_args import (DATASETS, ArgParser, UsageError, images_in_range, load_classifier,
                                          load_explain_model, load_split, parse_indices)

TOOLS = ("traverse", "interpolate", "arithmetic", "grid", "decision-map", "invert", "neighbours", "activation-max", "evaluate")
# the default concepts of `xgen explain arithmetic`: classes 9 - 7 + 5 (Fashion-MNIST: ankle boot - sneaker + sandal)
DEFAULT_CONCEPTS = ("a=9", "b=7", "c=5")


# ============================================================================ loading


def _out(args, name: str) -> Path:
    p = Path(args.out)
    p.mkdir(parents=True, exist_ok=True)
    return p / name


def _model_name(args, model) -> str:
    """``InfoGAN (shipped infogan)`` / ``VAE (runs/x/last.ckpt)``: the model class and the checkpoint."""
    from xgen.explain.shipped import SHIPPED

    if args.model in SHIPPED:  # explain_<name>_<dataset>.pt
        where = f"shipped {args.model}, {Path(SHIPPED[args.model]).stem.split('_', 2)[-1]}"
    else:
        where = Path(args.model).name
    return f"{type(model).__name__} ({where})"


def _print(obj) -> None:
    print(json.dumps(obj, indent=1, default=str))


# ============================================================================ tools
def cmd_traverse(args) -> int:
    from xgen.explain.traversals import grid2d, traverse

    from xgen.explain.common import default_axes

    model = load_explain_model(args.model, device=args.device)
    span = tuple(args.span)
    args.code = args.code or default_axes(model.latent)[1]
    if args.by:
        t = grid2d(model, args.by, args.code, steps=args.steps, span=span, seed=args.seed)
        name = f"grid_{args.by}_{args.code}.png"
    else:
        t = traverse(model, args.code, steps=args.steps, span=span, rows=args.rows, seed=args.seed)
        name = f"traverse_{args.code}.png"
    what = (f"{t.row_axis} down by {t.col_axis} across over [{span[0]:g}, {span[1]:g}], the rest one prior draw "
            f"(seed {args.seed})" if args.by else
            f"{t.col_axis} over [{span[0]:g}, {span[1]:g}], one row per prior draw (seed {args.seed})")
    path = t.figure(_out(args, args.prefix + name), title=f"{_model_name(args, model)}: {what}")
    _print({"figure": str(path), "rows": t.row_axis, "cols": t.col_axis, "col_values": t.col_values})
    return 0


def cmd_interpolate(args) -> int:
    from xgen.explain.traversals import interpolate, interpolate_images

    model = load_explain_model(args.model, args.encoder, args.refine_steps, device=args.device)
    paths = {}
    for method in (["linear", "slerp"] if args.method == "both" else [args.method]):
        if args.images:
            x, _ = load_split(args.data, "test", args.data_root)
            ij = parse_indices(args.images, len(x))
            if len(ij) != 2:
                raise ConfigError(f"--images: give exactly two test indices, e.g. --images 0,1 (got {len(ij)})")
            i, j = ij
            xs = images_in_range(x[[i, j]], model.value_range)
            t = interpolate_images(model, xs[0], xs[1], args.steps, method)
            t.row_values = [f"test #{i} → #{j}"]
            title = f"{_model_name(args, model)}: {method} interpolation between {args.data} test images #{i} and #{j}"
        else:
            g = torch.Generator().manual_seed(args.seed)
            a, b = model.latent.sample(2, generator=g)
            t = interpolate(model, a, b, args.steps, method)
            title = f"{_model_name(args, model)}: {method} interpolation between two prior draws a, b (seed {args.seed})"
        paths[method] = str(t.figure(_out(args, f"{args.prefix}interpolate_{method}.png"), title=title))
    _print({"figures": paths})
    return 0


def cmd_arithmetic(args) -> int:
    from xgen.explain.common import as_classifier
    from xgen.explain.traversals import concept_latents, latent_arithmetic

    model = load_explain_model(args.model, args.encoder, args.refine_steps, device=args.device)
    clf = as_classifier(load_classifier(args.classifier, args.data, device=args.device), model)
    if args.group and args.concept:
        raise ConfigError("--group and --concept: use one kind of group (class names, or indices)")
    if args.images and not args.group:
        raise ConfigError("--images: give the test images of each concept with --group NAME=i,j,k")
    groups, info, titles = {}, {}, {}
    if args.images:
        from xgen.protocols import Encodes, require

        require(model, Encodes, "arithmetic on images", "Fix: use a VAE, or a GAN with --encoder.")
        x, y = load_split(args.data, "test", args.data_root)
    elif args.group:
        bank = model.latent.sample(args.bank, generator=torch.Generator().manual_seed(args.seed))
    for spec in args.group or []:
        name, _, rest = spec.partition("=")
        if not name or not rest:
            raise ConfigError(f"--group: {spec!r}; write NAME=i,j,k")
        if args.images:
            idx = parse_indices(rest, len(x), "--group")
            with torch.no_grad():
                groups[name] = model.encode(images_in_range(x[idx], model.value_range)).mean.cpu()
            info[name] = {"test_images": idx, "labels": [clf.name_of(int(v)) for v in y[idx]]}
            titles[name] = f"test #{rest}"
        else:
            idx = parse_indices(rest, args.bank, "--group")
            groups[name] = bank[idx]
            info[name] = {"draws": idx}
            titles[name] = f"prior draws {rest}"
    if not args.group:
        concepts = {}
        for spec in args.concept or DEFAULT_CONCEPTS:
            name, _, cls = spec.partition("=")
            if not name or not cls:
                raise ConfigError(f"--concept: {spec!r}; write NAME=CLASS (a class name of the classifier or its index)")
            concepts[name] = cls
        groups, info = concept_latents(model, clf, concepts, args.per_concept, args.bank, args.seed)
        titles = {n: v["class"] for n, v in info.items()}
    sub_names = args.sub if args.sub is not None else list(groups)[1::2]
    unknown = [n for n in sub_names if n not in groups]
    if unknown:
        raise ConfigError(f"--sub: no group named {unknown[0]!r} (groups: {', '.join(groups)})")
    coefs = {n: (-1.0 if n in sub_names else 1.0) for n in groups}
    a = latent_arithmetic(model, groups, coefs, n=args.n, noise_std=args.noise_std, seed=args.seed,
                          group_titles=titles)
    read = a.classify(clf)
    path = a.figure(_out(args, f"{args.prefix}arithmetic.png"),
                    title=f"{_model_name(args, model)}: {a.expression()}\nmean of "
                          f"{'/'.join(sorted({str(len(g)) for g in groups.values()}))} samples per concept; {args.n} results "
                          f"with N(0, {args.noise_std:g}²) noise on the noise part; captions: {args.classifier} classifier")
    _print({"figure": str(path), "expression": a.expression(), "coefficients": coefs, "groups": info,
            "classifier_reads": read})
    return 0


def cmd_grid(args) -> int:
    from xgen.explain.common import as_classifier
    from xgen.explain.grids import explainability_grid

    t0 = time.perf_counter()
    model = load_explain_model(args.model, device=args.device)
    clf = as_classifier(load_classifier(args.classifier, args.data, device=args.device), model)
    g = explainability_grid(model, clf, args.rows, args.cols, steps=args.steps, span=tuple(args.span), seed=args.seed)
    png = g.figure(_out(args, f"{args.prefix}explainability_grid.png"))
    csv_p = g.save_csv(_out(args, f"{args.prefix}explainability_grid.csv"))
    js = g.save_json(_out(args, f"{args.prefix}explainability_grid.json"))
    out = {"figure": str(png), "csv": str(csv_p), "json": str(js), **g.counts(),
           "seconds": round(time.perf_counter() - t0, 2)}
    _print(out)
    return 0


def cmd_decision_map(args) -> int:
    from xgen.explain.decision_maps import decision_maps

    t0 = time.perf_counter()
    model = load_explain_model(args.model, args.encoder, args.refine_steps, device=args.device)
    x, y = load_split(args.data, "test", args.data_root)
    idx = parse_indices(args.images, len(x))
    clf = load_classifier(args.classifier, args.data, device=args.device)
    if args.as_class is not None:
        return _class_swap(args, model, clf, x, y, idx, t0)
    dm = decision_maps(model, clf, images_in_range(x[idx], model.value_range), direction=args.direction,
                       gradient=args.gradient, delta=args.delta, step=args.step, max_step=args.max_step,
                       normalize=not args.raw, labels=y[idx], indices=idx)
    pngs = dm.figures(_out(args, f"{args.prefix}decision_maps.png"), per_page=args.figure_rows)
    js = dm.save_json(_out(args, f"{args.prefix}decision_maps.json"))
    cs = dm.save_csv(_out(args, f"{args.prefix}decision_maps.csv"))
    mp = dm.save_maps(_out(args, f"{args.prefix}decision_maps.pt"))
    for r in dm.results:
        if r.flipped:
            print(f"#{r.index}: {dm.class_names[r.original_class]} ({r.original_prob:.2f}) -> "
                  f"{dm.class_names[r.new_class]} ({r.new_prob:.2f}) at λ={r.step:.1f}")
        else:
            print(f"#{r.index}: {dm.class_names[r.original_class]} ({r.original_prob:.2f}): {r.note}")
    print(f"figure: all {len(dm.results)} images, {len(pngs)} page(s) of up to {args.figure_rows} rows "
          "(--figure-rows): " + ", ".join(str(p) for p in pngs))
    from xgen.explain.common import as_classifier
    from xgen.explain.evaluate import decision_map_scores  # every decision map comes with its numbers

    scores = decision_map_scores(dm, as_classifier(clf, model))
    measured = {k: round(float(v[~v.isnan()].mean()), 4) if bool((~v.isnan()).any()) else None
                for k, v in scores.items() if v.dtype.is_floating_point and k != "class"}
    _print({"figure": str(pngs[0]), "figures": [str(p) for p in pngs], "json": str(js), "csv": str(cs),
            "maps": str(mp), **dm.summary(), "scores (mean over images; xgen explain evaluate for baselines)": measured,
            "seconds": round(time.perf_counter() - t0, 2)})
    return 0


def _class_swap(args, model, clf, x, y, idx, t0) -> int:
    """``decision-map --as-class``: each image decoded as the classes asked for (a conditional GAN)."""
    from xgen.explain.class_swap import class_swap

    targets = None if args.as_class == "all" else parse_indices(args.as_class, 10 ** 6, "--as-class")
    cs = class_swap(model, clf, images_in_range(x[idx], model.value_range), targets=targets, labels=y[idx], indices=idx)
    png = cs.figure(_out(args, f"{args.prefix}class_swap.png"), rows=args.figure_rows)
    js, csv_p = cs.save_json(_out(args, f"{args.prefix}class_swap.json")), cs.save_csv(_out(args, f"{args.prefix}class_swap.csv"))
    _print({"figure": str(png), "json": str(js), "csv": str(csv_p), **cs.summary(),
            "seconds": round(time.perf_counter() - t0, 2)})
    return 0


def cmd_invert(args) -> int:
    from xgen.explain.inversion import InvertedGAN, reconstruction_error, save_encoder, train_inversion
    from xgen.protocols import Encodes

    t0 = time.perf_counter()
    model = load_explain_model(args.model, device=args.device)
    if isinstance(model, Encodes):
        raise ConfigError(f"--model: {type(model).__name__} already has an encoder; invert is for GANs")
    real = None
    if args.real > 0:
        xt, _ = load_split(args.data, "train", args.data_root)
        real = images_in_range(xt[:args.real], model.value_range)
    enc = train_inversion(model, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          image_weight=args.image_weight, real_images=real, seed=args.seed,
                          log_every=max(args.steps // 10, 1))
    x, _ = load_split(args.data, "test", args.data_root)
    xt = images_in_range(x[:args.test], model.value_range)
    scores = {"encoder": reconstruction_error(InvertedGAN(model, enc), xt)}
    if args.refine_steps:
        scores[f"refined_{args.refine_steps}"] = reconstruction_error(InvertedGAN(model, enc, args.refine_steps), xt)
    path = save_encoder(args.out_file or _out(args, f"{args.prefix}inversion_encoder.pt"), enc, gan=str(args.model), steps=args.steps, real=args.real,
                        test_reconstruction=scores)
    _print({"encoder": str(path), "test_reconstruction_mse": scores, "seconds": round(time.perf_counter() - t0, 1)})
    return 0


def cmd_neighbours(args) -> int:
    from xgen.explain.neighbours import nearest_neighbours
    from xgen.protocols import Generative, require

    model = require(load_explain_model(args.model, device=args.device), Generative, "the nearest-neighbour check")
    clf = load_classifier(args.classifier, args.data, device=args.device)
    with torch.no_grad():
        s = model.generate(model.latent.sample(args.n, generator=torch.Generator().manual_seed(args.seed))).cpu()
    tr, _ = load_split(args.data, "train", args.data_root)
    te, _ = load_split(args.data, "test", args.data_root)
    nn_ = nearest_neighbours(s, model.value_range, tr, te, clf, k=args.k, num_test=args.num_test)
    png = nn_.figure(_out(args, f"{args.prefix}neighbours.png"), rows=args.figure_rows)
    js = nn_.save_json(_out(args, f"{args.prefix}neighbours.json"))
    _print({"figure": str(png), "json": str(js), **nn_.summary()})
    return 0


# ============================================================================ parser
def build_parser() -> argparse.ArgumentParser:
    ap = ArgParser(prog="xgen explain", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="tool", metavar="TOOL", parser_class=ArgParser)

    def common(p, model: str, classifier: bool = False, encoder: bool = False):
        p.add_argument("--model", default=model, help=f"checkpoint path or shipped name (default {model})")
        p.add_argument("--out", default=f"xgen_explain/{p.prog.split()[-1]}", help="output folder")
        p.add_argument("--prefix", default="", help="prefix of the output file names")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--data", default="fashion_mnist", choices=DATASETS)
        p.add_argument("--data-root", default=None, help="dataset folder (default: xgen's search path)")
        p.add_argument("--device", default="cpu", help="cpu (default: the documented figures are made there) or cuda[:N]")
        if classifier:
            p.add_argument("--classifier", default="thesis",
                           help="thesis (fig. 4.8 CNN, default) | strong | a classifier weight file or checkpoint")
        if encoder:
            p.add_argument("--encoder", default=None,
                           help="inversion encoder file for a GAN (xgen explain invert); 'shipped' for the shipped InfoGAN's")
            p.add_argument("--refine-steps", type=int, default=0, help="per-image latent refinement steps (GAN)")

    p = sub.add_parser("traverse", help="traverse one code/latent unit (or a 2-D grid with --by)")
    common(p, "infogan")
    p.add_argument("--code", default=None, help="axis across: cat<i> | cont<i> | z<i> (default cont0, or z1 for a VAE)")
    p.add_argument("--by", default=None, help="axis down for a 2-D grid (e.g. cat0); default: rows are prior draws")
    p.add_argument("--span", type=float, nargs=2, default=(-2.0, 2.0), help="range (default -2 2, report §2.3)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rows", type=int, default=8, help="prior draws (rows) of a 1-D traversal")
    p.set_defaults(func=cmd_traverse)

    p = sub.add_parser("interpolate", help="linear / spherical interpolation between latents or test images")
    common(p, "infovae", encoder=True)
    p.add_argument("--images", default=None, help="two test indices, e.g. 0,1 (default: two prior draws)")
    p.add_argument("--method", default="both", choices=("linear", "slerp", "both"))
    p.add_argument("--steps", type=int, default=10)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("arithmetic", help="latent vector arithmetic on named concepts (report fig. 1.4)")
    common(p, "infogan", classifier=True, encoder=True)
    p.add_argument("--concept", action="append", default=None,
                   help="NAME=CLASS: a concept by a class of the classifier (name, e.g. Sandal, or index); its "
                        "--per-concept most confident prior draws of that class are averaged (repeatable; "
                        "default a=9 b=7 c=5: Ankle boot - Sneaker + Sandal)")
    p.add_argument("--group", action="append", default=None,
                   help="NAME=i,j,k: a concept by indices into --bank prior draws, or into the test split "
                        "with --images (repeatable; instead of --concept)")
    p.add_argument("--sub", nargs="*", default=None, help="groups subtracted (default: every second: a - b + c)")
    p.add_argument("--images", action="store_true", help="--group indexes encoded test images")
    p.add_argument("--per-concept", type=int, default=3, help="samples averaged per --concept (report: 3)")
    p.add_argument("--bank", type=int, default=512, help="prior draws the concepts are picked from / --group indexes")
    p.add_argument("--n", type=int, default=9)
    p.add_argument("--noise-std", type=float, default=0.5,
                   help="std of the noise added to the result's noise part for each of the --n images")
    p.set_defaults(func=cmd_arithmetic)

    p = sub.add_parser("grid", help="InfoGAN Explainability Grid (thesis §4.5.1)")
    common(p, "infogan", classifier=True)
    p.add_argument("--rows", default=None, help="axis down (default cat0)")
    p.add_argument("--cols", default=None, help="axis across (default cont0)")
    p.add_argument("--span", type=float, nargs=2, default=(-1.0, 1.0))
    p.add_argument("--steps", type=int, default=10)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("decision-map", help="InfoVAE Decision Maps (thesis §4.3, §4.5.2)")
    common(p, "infovae", classifier=True, encoder=True)
    p.add_argument("--images", default="0-7", help="test indices, e.g. 0-49 or 1001 (default 0-7)")
    p.add_argument("--direction", default="lower", choices=("lower", "raise"),
                   help="lower (default): against the gradient of the class probability; raise: fig. 4.16 literally")
    p.add_argument("--gradient", default="autograd", choices=("autograd", "finite"))
    p.add_argument("--delta", type=float, default=0.1, help="finite-difference step (fig. 4.15)")
    p.add_argument("--step", type=float, default=0.1, help="λ increment (fig. 4.16)")
    p.add_argument("--max-step", type=float, default=10.0, help="λ bound (fig. 4.16: λ < 10)")
    p.add_argument("--raw", action="store_true", help="use the raw gradient (thesis) instead of a unit direction")
    p.add_argument("--figure-rows", type=int, default=8,
                   help="images (rows) per figure page; more images make more pages (default 8)")
    p.add_argument("--as-class", default=None, metavar="all|K[,K...]",
                   help="a conditional GAN (acgan, cgan, ss_infogan) with --encoder: decode each image as these "
                        "classes (swap its class code) and map the difference, instead of the gradient search")
    p.set_defaults(func=cmd_decision_map)

    p = sub.add_parser("invert", help="train an inversion encoder for a GAN")
    common(p, "infogan")
    p.add_argument("--out-file", default=None,
                   help="encoder file (default <--out>/<prefix>inversion_encoder.pt, i.e. xgen_explain/invert/)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--image-weight", type=float, default=1.0)
    p.add_argument("--real", type=int, default=10000, help="real training images in the image term (0: none)")
    p.add_argument("--test", type=int, default=1000, help="test images scored")
    p.add_argument("--refine-steps", type=int, default=0, help="also score with per-image refinement")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("neighbours", help="nearest training images of generated samples")
    common(p, "infogan", classifier=True)
    p.add_argument("--n", type=int, default=200, help="generated samples")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--num-test", type=int, default=1000)
    p.add_argument("--figure-rows", type=int, default=8)
    p.set_defaults(func=cmd_neighbours)

    sub.add_parser("activation-max", add_help=False,
                   help="activation maximisation of a layer/unit, in pixels or through an image prior "
                        "(xgen explain activation-max --help)")
    sub.add_parser("evaluate", add_help=False, help="score counterfactuals against baselines (xgen explain evaluate --help)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xgen explain``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "activation-max":  # its own parser (xgen.runtime.cli.activation_max, kgans §2.2)
        from xgen.runtime.cli.activation_max import main as activation_max_main

        return activation_max_main(argv[1:])
    if argv and argv[0] == "evaluate":  # its own parser (xgen.runtime.cli.explain_evaluate)
        from xgen.runtime.cli.explain_evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "tool", None):
            raise UsageError(f"choose a tool: {', '.join(TOOLS)}")
        return int(args.func(args))
    except (UsageError, XgenError) as e:
        print(f"xgen explain: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
