"""``xgen eval``: sample quality, likelihood and code accuracy of trained models, written to eval.json.

    xgen eval outputs/train/2026-01-01_12-00-00            # a run directory: writes <run>/eval.json
    xgen eval path/to/last.ckpt --data digits               # a checkpoint alone (name its data config)
    xgen eval outputs/train/multirun/2026-01-01_12-00-00    # every job of a multirun, one table
    xgen eval --real-vs-real --noise --data fashion_mnist   # the same-dataset floor (thesis fig. 4.6), the ceiling

Where results go: each run directory gets its own eval.json; a multirun directory gets one eval.json
with all its rows; rows that belong to no run (a bare checkpoint, --real-vs-real, --noise) go to
outputs/eval/<date>_<time>/eval.json (outputs = $XGEN_OUTPUT or ./outputs). --out PATH writes all
rows to PATH instead. Every file written is printed.

What is measured (xgen.metrics.evaluation): FID, KID, IS, precision/recall of generated samples
against the real split, with the offline classifier extractor unless --extractor inception; for a
model that predicts its codes (InfoGAN) the categorical-code accuracy under Hungarian matching; for
VAEs the test ELBO and an importance-weighted log-likelihood with k samples; for classifiers their
accuracy. Rows are labelled <job>: <model class> (<data>).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from xgen.runtime.compose import data_module
from xgen.runtime.config import output_root
from xgen.errors import ConfigError, XgenError
from xgen.checkpoint.runs import RunDir, find_checkpoints


def row_name(run: RunDir | None, ckpt: Path, model: str, data: str) -> str:
    """A row's label: the job (run directory name, or checkpoint file), the model class and the data."""
    return f"{run.name if run is not None else ckpt.name}: {model} ({data})"


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


def parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(prog="xgen eval", description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(doc.split("\n\n")[1:]))
    ap.add_argument("paths", nargs="*", help="checkpoints, run directories or multirun directories")
    ap.add_argument("--real-vs-real", action="store_true",
                    help="FID of disjoint real subsets (other split) against --split: the same-dataset floor")
    ap.add_argument("--noise", action="store_true", help="also score uniform pixel noise (the ceiling)")
    ap.add_argument("--data", default=None, help="data config name (default: the run's own data config)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"), help="real split (default test)")
    ap.add_argument("--num-samples", type=int, default=10000, help="generated (or real-subset) images (default 10000)")
    ap.add_argument("--repeats", type=int, default=5, help="--real-vs-real: disjoint subsets to average (default 5)")
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
    ap.add_argument("--disentanglement", default="auto", choices=("auto", "on", "off"),
                    help="MIG, β-VAE/FactorVAE metrics, DCI, SAP, modularity, covariance metric of a model that embeds (VAEs, "
                         "InfoGAN) on data with known factors (data=dsprites); auto: when both hold")
    ap.add_argument("--disent-train", type=int, default=10000,
                    help="disentanglement: training points (disentanglement_lib: 10000)")
    ap.add_argument("--disent-eval", type=int, default=5000,
                    help="disentanglement: evaluation points (disentanglement_lib: 5000)")
    ap.add_argument("--dci-model", default="gbt", choices=("gbt", "forest"),
                    help="DCI importance model: gbt (disentanglement_lib's; slow on CPU) or forest")
    ap.add_argument("--out", default=None, help="write all rows to this eval.json instead (see above for the default)")
    return ap


def write_rows(path: Path, rows: list[dict[str, Any]], root: Path | None = None) -> Path:
    """eval.json: one object for one row, a list for several. With ``root`` (a run directory) the file
    must land inside it: a link out of the run is refused, not followed."""
    from xgen.checkpoint.runs import atomic_write_text
    from xgen.runtime.rundir import check_write_target

    if root is not None:
        check_write_target(path, root, "xgen eval")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(rows[0] if len(rows) == 1 else rows, indent=2) + "\n")


def default_out_dir() -> Path:
    """Where rows that belong to no run directory go: ``<outputs>/eval/<date>_<time>``."""
    return output_root() / "eval" / time.strftime("%Y-%m-%d_%H-%M-%S")


def _wants_disentanglement(mode: str, model: Any, dm: Any) -> bool:
    """``on``: always (a model without ``embed`` or data without factors is then a clear error);
    ``auto``: when the model :class:`~xgen.protocols.Embeds` and the data has two or more known factors."""
    from xgen.protocols import Embeds

    if mode == "off":
        return False
    if mode == "on":
        return True
    return isinstance(model, Embeds) and len(dm.factor_names) >= 2


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[Path]]:
    """Evaluate what ``args`` names; write eval.json file(s); return the rows and the files written."""
    import torch

    from xgen.metrics.disentanglement import disentanglement_scores
    from xgen.metrics.evaluation import evaluate_model, noise_baseline, real_vs_real
    from xgen.metrics.features import build_extractor
    from xgen.metrics.quality import check_metrics
    from xgen.models import load_model
    from xgen.protocols import Conditional

    metrics = check_metrics([m for m in args.metrics.split(",") if m], "--metrics")
    if args.num_samples < 2:
        raise ConfigError(f"--num-samples: must be >= 2, got {args.num_samples}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats: must be >= 1, got {args.repeats}")
    if not args.paths and not (args.real_vs_real or args.noise):
        raise ConfigError("nothing to evaluate: give checkpoints/run directories, or --real-vs-real / --noise with --data")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    targets = [(p, find_checkpoints(p)) for p in args.paths]  # every path checked before any work
    rows: list[dict[str, Any]] = []
    owner: list[Path | None] = []  # the run or multirun directory each row's eval.json goes to
    extractors: dict[str, Any] = {}

    def extractor_for(dm):
        if dm.name not in extractors:
            extractors[dm.name] = build_extractor(args.extractor, args.weights, dm.name, args.arch, device)
        return extractors[dm.name]

    def classifier_for(dm):
        """xgen's shipped classifier for the data (--arch), which names the class of generated images."""
        from xgen.explain.common import shipped_classifier

        key = f"classifier-{dm.name}"
        if key not in extractors:
            extractors[key] = shipped_classifier(dm.name, arch=args.arch).module.to(device).eval()
        return extractors[key]

    common = dict(metrics=metrics, batch_size=args.batch_size, seed=args.seed, cache_dir=args.cache_dir)
    if args.real_vs_real or args.noise:
        dm = data_module(None, args.data or "fashion_mnist")
        if args.real_vs_real:
            rows.append({"name": f"real vs real ({dm.name})",
                         **real_vs_real(dm, extractor_for(dm), args.split, args.num_samples, args.repeats, **common)})
            owner.append(None)
        if args.noise:
            rows.append({"name": f"uniform noise ({dm.name})",
                         **noise_baseline(dm, extractor_for(dm), args.split, args.num_samples, **common)})
            owner.append(None)
    for path, found in targets:
        p = Path(path).expanduser()
        multirun = p if p.is_dir() and not RunDir(p).is_run() else None
        for ckpt, rd in found:
            model = load_model(str(ckpt), map_location=device)
            dm = data_module(rd, args.data)
            res = evaluate_model(model, dm, extractor_for(dm) if metrics else None, args.split, args.num_samples,
                                 iw_samples=args.iw_samples, iw_images=args.iw_images,
                                 classifier=classifier_for(dm) if isinstance(model, Conditional) else None, **common)
            if _wants_disentanglement(args.disentanglement, model, dm):
                scores = disentanglement_scores(model, dm, num_train=args.disent_train, num_eval=args.disent_eval,
                                                importance_model=args.dci_model, covariance_split=args.split,
                                                seed=args.seed)
                res.update({f"{args.split}/{k}": v for k, v in scores.items()})
            rows.append({"name": row_name(rd, ckpt, res["model"], res["data"]), "checkpoint": str(ckpt), **res})
            owner.append(multirun or (rd.path if rd is not None else None))
    written: list[Path] = []
    if args.out:
        written.append(write_rows(Path(args.out), rows))
        return rows, written
    groups: dict[Path | None, list[dict[str, Any]]] = {}
    for r, o in zip(rows, owner):
        groups.setdefault(o, []).append(r)
    for o, rs in groups.items():
        if o is not None and o.is_dir() and not RunDir(o).is_run():  # a multirun: each job gets its own too
            for r in rs:
                job = RunDir.of_checkpoint(r["checkpoint"])
                written.append(write_rows(job.eval_file, [r], root=o))
        written.append(write_rows((o / RunDir.EVAL) if o is not None else default_out_dir() / RunDir.EVAL, rs,
                                  root=o))
    return rows, written


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``xgen eval``; returns the exit status."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rows, written = run(args)
    except XgenError as e:
        print(f"xgen eval: error: {e}", file=sys.stderr)
        return 2
    print(format_table(rows))
    for p in written:
        print(f"xgen eval: wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
