"""``xgen explain activation-max``: the command line of :mod:`xgen.explain.activation_max` (maximise the
mean activation of a layer or unit of a network: pixels, a generator prior or a feature prior; kgans §2.2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch import nn

from xgen.errors import ConfigError, XgenError
from xgen.explain.activation_max import (DEFAULT_OUT, maximize_feature_prior, maximize_latent, maximize_pixels,
                                         resolve_module, save_figure, train_feature_prior, unit_description)



def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xgen explain activation-max",
                                 description="Maximise the mean activation of a layer (or unit) of a network.")
    ap.add_argument("--net", required=True,
                    help="classifier:<dataset>[:strong|thesis] (a shipped classifier), or a checkpoint / run directory")
    ap.add_argument("--part", default="",
                    help="with a checkpoint: the submodule that takes images, e.g. discriminator, discriminators.0")
    ap.add_argument("--layer", required=True, help="layer name as in named_modules() of the network (or --part)")
    ap.add_argument("--unit", type=int, default=None, help="one channel/unit of the layer (default: all)")
    ap.add_argument("--method", default="pixels", choices=("pixels", "generator", "feature-prior"))
    ap.add_argument("--prior", default=None, help="--method generator: checkpoint or run directory of a generator/decoder")
    ap.add_argument("--feature-layer", default=None, help="--method feature-prior: the layer whose maps the prior inverts")
    ap.add_argument("--data", default="fashion_mnist", help="--method feature-prior: data config to train the prior on")
    ap.add_argument("--prior-images", type=int, default=10000, help="training images for the feature prior")
    ap.add_argument("--prior-epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--tv", type=float, default=0.05)
    ap.add_argument("--jitter", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help=f"output folder (default {DEFAULT_OUT}, as every xgen explain tool): "
                         "<prefix>activation_max.png and the curve's .json")
    ap.add_argument("--prefix", default="", help="prefix of the output file names")
    return ap


def output_paths(out: str, prefix: str = "") -> tuple[Path, Path]:
    """(figure, json) under the output folder ``out``; a file name given as ``--out`` is refused."""
    p = Path(out)
    if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".json"):
        raise ConfigError(f"--out: {out!r} looks like a file; --out is the output folder (default {DEFAULT_OUT}), "
                          f"the figure is written as <out>/{prefix}activation_max.png. Fix: --out {p.parent / p.stem}")
    return p / f"{prefix}activation_max.png", p / f"{prefix}activation_max.json"


def _checkpoint(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "last.ckpt"
    if not p.is_file():
        raise ConfigError(f"{path}: no checkpoint (a .ckpt file or a run directory with checkpoints/last.ckpt)")
    return p


def load_net(spec: str, part: str = "") -> nn.Module:
    """A network from ``classifier:<dataset>[:arch]`` or a checkpoint/run directory (+ ``part``)."""
    if spec.startswith("classifier:"):
        from xgen.metrics.features import ClassifierExtractor

        bits = spec.split(":")
        ext = ClassifierExtractor(dataset=bits[1], arch=bits[2] if len(bits) > 2 else "strong")
        net = ext.net.eval()
        net.image_shape = ext.image_shape  # the input size the pixel-space search starts from
        if ext.record.get("dataset") == "fashion_mnist":
            from xgen.explain.common import FASHION_MNIST_CLASSES

            net.class_names = list(FASHION_MNIST_CLASSES)  # the figure names the class a logit unit stands for
        elif int(ext.record.get("num_classes", 0)) == 10 and ext.record.get("dataset") in ("mnist", "digits"):
            net.class_names = [str(i) for i in range(10)]
        return net
    from xgen.models import load_model  # the registry loader (the CLI layer; library functions take modules)

    model = load_model(_checkpoint(spec))
    return resolve_module(model, part, "--part") if part else model


def main(argv: list[str] | None = None) -> int:
    """``xgen explain activation-max``: run one search, write the figure and a JSON of the curve."""
    import json

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        fig_path, json_path = output_paths(args.out, args.prefix)
        net = load_net(args.net, args.part)
        shape = getattr(net, "image_shape", None)  # any nn.Module: a user network may not declare its input size
        if args.method == "pixels":
            if shape is None:
                raise ConfigError("--net: cannot tell the input size of this network (no image_shape)")
            res = maximize_pixels(net, args.layer, shape, args.unit, args.steps, args.lr, args.l2, args.tv,
                                  args.jitter, args.seed)
        elif args.method == "generator":
            if not args.prior:
                raise ConfigError("--prior: --method generator needs a generator/decoder checkpoint or run directory")
            from xgen.models import load_model

            prior = load_model(_checkpoint(args.prior))
            res = maximize_latent(net, args.layer, prior, args.unit, args.steps, args.lr, seed=args.seed)
        else:
            if not args.feature_layer:
                raise ConfigError("--feature-layer: --method feature-prior needs the layer whose maps the prior inverts")
            from xgen.runtime.compose import data_module

            images = data_module(None, args.data).split("train")[0][: args.prior_images]
            prior, _ = train_feature_prior(net, args.feature_layer, images, epochs=args.prior_epochs, seed=args.seed,
                                           log=lambda m: print(m, flush=True))
            res = maximize_feature_prior(net, args.layer, prior, args.unit, args.steps, args.lr, seed=args.seed)
        what = unit_description(net, args.layer, args.unit)
        out = save_figure([res], fig_path, f"Activation maximisation ({res.method}, {args.steps} steps) of {args.net}: "
                          f"{what}", unit_name=what)
        json_path.write_text(json.dumps(
            {"method": res.method, "layer": res.layer, "unit": res.unit, "unit_description": what,
             "activation": res.activation,
             "snapshot_steps": res.snapshot_steps, **res.extra}, indent=2) + "\n")
        print(f"activation {res.activation[0]:.4g} -> {res.activation[-1]:.4g} in {args.steps} steps; figure {out}, "
              f"curve {json_path}")
        return 0
    except XgenError as e:
        print(f"xgen explain activation-max: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
