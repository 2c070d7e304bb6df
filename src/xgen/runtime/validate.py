"""Every key checked before any data is read: the composed config is validated as a whole, and a run
refused at that point leaves nothing behind."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("xgen")


def remove_unstarted_run_dir(run_dir: str | Path) -> bool:
    """Delete a run directory holding only what Hydra writes at launch (``.hydra/``, the job's log):
    a run refused before it started leaves no directory. Returns True when it was removed."""
    d = Path(run_dir)
    if not d.is_dir():
        return False
    entries = list(d.iterdir())
    if any(not (p.name == ".hydra" and p.is_dir()) and not (p.is_file() and p.suffix == ".log") for p in entries):
        return False
    for h in list(logging.getLogger().handlers):  # Hydra's file handler keeps the log open
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == d:
            logging.getLogger().removeHandler(h)
            h.close()
    shutil.rmtree(d, ignore_errors=True)
    return not d.exists()


def launch_uid() -> str:
    """A short id unique to this launch (process id + random bits): the suffix of run directories,
    so launches in the same second, or the tasks of a SLURM array, never share a directory."""
    import os
    import secrets

    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return (f"{task}-" if task else "") + f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "checkpoints")


def check_fresh_run_dir(cfg, run_dir: str | Path, multirun: bool) -> None:
    """A fresh run (no ``ckpt_path``) never writes into another run's files: a single run into a
    directory that already holds one is refused; a multirun job re-run after a failure first moves the
    previous attempt's files to ``attempt-<k>/``."""
    from xgen.errors import ConfigError

    import os

    d = Path(run_dir)
    if cfg.get("ckpt_path") or not d.is_dir():
        return
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        return  # a DDP process Lightning started for rank > 0 re-runs the command into rank 0's directory
    present = [n for n in RUN_FILES if (d / n).exists()]
    if not present:
        return
    if not multirun:
        raise ConfigError(f"hydra.run.dir={d}: already holds a run ({', '.join(present)}); a new run would mix its "
                          "files with that one's. Continue it with ckpt_path=last, or choose another hydra.run.dir.")
    k = 1
    while (d / f"attempt-{k}").exists():
        k += 1
    dest = d / f"attempt-{k}"
    dest.mkdir()
    for n in (*RUN_FILES, "samples", "hparams.yaml", "eval.json"):
        if (d / n).exists():
            shutil.move(str(d / n), str(dest / n))
    log.info("moved the previous attempt's files of %s to %s", d, dest)


# ----------------------------------------------------------------------------- validate(cfg)
import math  # noqa: E402
import typing  # noqa: E402
from typing import Any, Mapping  # noqa: E402

from xgen.errors import ConfigError  # noqa: E402

_TRAINER_CHOICES = {
    "accelerator": ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "precision": ("64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
                  "transformer-engine", "transformer-engine-float16", 64, 32, 16, None),
    "gradient_clip_algorithm": ("norm", "value", None),
}
_POSITIVE_TRAINER = ("max_epochs", "log_every_n_steps", "accumulate_grad_batches", "check_val_every_n_epoch", "num_nodes",
                     "min_epochs")
# callback arguments that must be >= 1 (their constructors accept 0 silently)
_POSITIVE = {"SampleGrids": ("nrow", "every_n_epochs", "num_samples", "traversal_steps"),
             "FID": ("every_n_epochs", "num_samples", "num_samples_final", "batch_size", "max_real_features",
                     "kid_subsets", "kid_subset_size"),
             "MutualInformation": ("num_samples", "probe_every_n_steps"),
             "CollapseGuard": ("patience", "check_every_n_steps"),
             "RichProgressBar": ("refresh_rate",), "TQDMProgressBar": ("refresh_rate",)}
_TOP = {"seed": (int, type(None)), "test": (bool,), "skip_completed": (bool,), "jobs_per_gpu": (int,),
        "matmul_precision": (str, type(None)), "optimized_metric": (str, type(None)), "sweep_name": (str, type(None)),
        "task_name": (str,), "ckpt_path": (str, type(None)), "dataset_defaults": (dict,)}


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
          list: "a list", tuple: "a list", dict: "a mapping"}


def _tname(ann: Any) -> str:
    """A type annotation in words: ``Optional[int]`` -> "an integer or null", ``Sequence[float]`` -> "a list of
    numbers", ``Literal['a', 'b']`` -> "one of a, b"."""
    import collections.abc as cabc

    if ann in _WORDS:
        return _WORDS[ann]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Union or type(ann).__name__ == "UnionType":
        parts = [_tname(a) for a in args if a is not type(None)] + (["null"] if type(None) in args else [])
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple, cabc.Sequence, cabc.Iterable):
        inner = [a for a in args if a is not Ellipsis]
        if inner and inner[0] in _WORDS:
            word = _WORDS[inner[0]].replace("an integer", "integers").replace("a number", "numbers").replace(
                "a string", "strings").replace("true or false", "booleans")
            return f"a list of {word}"
        return "a list"
    if origin in (dict, cabc.Mapping):
        return "a mapping"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def closest(name: str, options: Any, n: int = 3) -> list[str]:
    """The options nearest to a mistyped ``name`` (for "did you mean ...?")."""
    import difflib

    opts = [str(o) for o in options]
    found = difflib.get_close_matches(name, opts, n=n, cutoff=0.6)
    return found or [o for o in opts if o.startswith(name) or name.startswith(o)][:n]


def did_you_mean(name: str, options: Any) -> str:
    near = closest(name, options)
    return f"; did you mean {' or '.join(near)}?" if near else ""


def fits(value: Any, ann: Any) -> bool:
    """Whether a config value can be passed where ``ann`` is declared (plain containers only)."""
    if ann is Any or ann is inspect_empty or isinstance(ann, (str, typing.TypeVar)):
        return True
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return any(fits(value, a) for a in args)
    import types as _types

    if isinstance(ann, _types.UnionType):
        return any(fits(value, a) for a in typing.get_args(ann))
    if origin is typing.Literal:
        return value in args or str(value) in [str(a) for a in args]
    if ann is type(None):
        return value is None
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    import collections.abc as cabc

    seq = (list, tuple, cabc.Sequence, cabc.Iterable, typing.Sequence)
    if ann in (list, tuple) or origin in (list, tuple, cabc.Sequence, cabc.Iterable):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        return not inner or all(any(fits(v, a) for a in inner) for v in value)
    if ann in (dict,) or origin in (dict, cabc.Mapping):
        return isinstance(value, dict)
    if ann in seq:
        return isinstance(value, (list, tuple))
    return True  # classes, callables, paths...: a config cannot be checked further here


import inspect as _inspect  # noqa: E402

inspect_empty = _inspect.Parameter.empty


def check_against_signature(section: Mapping, cls: type, key: str, injected: tuple[str, ...] = ()) -> None:
    """Every key of ``section`` must be a parameter of ``cls`` (unless it takes ``**kwargs``) and its
    value must fit the parameter's annotation; ConfigError names ``key.<param>`` otherwise."""
    params: dict[str, Any] = {}
    hints: dict[str, Any] = {}
    var_kw = True
    for klass in (cls.__mro__ if isinstance(cls, type) else (cls,)):  # **kwargs forwarded to a base class
        init = klass.__dict__.get("__init__") if isinstance(cls, type) else klass
        if init is None:
            continue
        try:
            sig = _inspect.signature(init)
        except (TypeError, ValueError):
            return
        try:
            h = typing.get_type_hints(init)
        except Exception:
            h = {}
        for n, p in sig.parameters.items():
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in params:
                params[n] = p
                hints.setdefault(n, h.get(n, p.annotation))
        var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        if not var_kw:
            break
    for k, v in section.items():
        if not isinstance(k, str) or (k.startswith("_") and k.endswith("_")):
            continue
        if k in injected:
            continue
        if k not in params:
            if var_kw:
                continue
            names = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
            near = did_you_mean(k, names)
            raise ConfigError(f"{key}.{k}: not an argument of {cls.__name__}" + (near or f"; valid keys: {', '.join(names)}"))
        ann = hints.get(k, params[k].annotation)
        if isinstance(v, dict) and "_target_" in v:  # a nested config (a network): its own signature
            from xgen.checkpoint.safety import _locate, target_allowed

            if target_allowed(v["_target_"], "net") is not None:
                raise ConfigError(f"{key}.{k}._target_: {target_allowed(v['_target_'], 'net')}")
            check_against_signature(v, _locate(str(v["_target_"])), f"{key}.{k}")
            continue
        if isinstance(v, dict):  # a dataclass spec given as a mapping (model.latent)
            import dataclasses

            for a in (typing.get_args(ann) or (ann,)):
                if dataclasses.is_dataclass(a):
                    check_against_signature(v, a, f"{key}.{k}")
        if not fits(v, ann):
            raise ConfigError(f"{key}.{k}: expected {_tname(ann)}, got {v!r} ({type(v).__name__})")


def _walk_finite(node: Any, key: str) -> None:
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{key}: must be a finite number, got {node}")
    if isinstance(node, dict):
        for k, v in node.items():
            _walk_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_finite(v, f"{key}[{i}]")


def _cls(target: Any, kind: str, key: str) -> type:
    from xgen.registry import MODEL_REGISTRY
    from xgen.checkpoint.safety import _locate, target_allowed

    if kind == "model" and str(target) in MODEL_REGISTRY:
        return MODEL_REGISTRY[str(target)]
    why = target_allowed(target, kind)
    if why is not None:
        raise ConfigError(f"{key}._target_: {why}")
    return _locate(str(target))


def validate(cfg: Any, run_dir: str | Path | None = None) -> None:
    """Check every key of a composed training config without reading any data or writing anything:
    types against the constructors' signatures, allow-listed targets, finite numbers, the trainer's
    and callbacks' ranges, then build the data module, model and callbacks (their constructors own the
    value checks: a range, a network against the image shape) and :func:`check_built` them. Nothing built
    is kept or returned: the job's own objects are built by :func:`xgen.runtime.train.build` after
    seeding (weights drawn from the run's seed), which runs :func:`check_built` on them again; this
    build costs about 0.05 s (a VAE on digits) and lets a multirun refuse every job before any starts.
    Raises ConfigError naming the key and the fix."""
    from omegaconf import DictConfig, OmegaConf, open_dict

    from xgen.runtime.compose import instantiate

    if isinstance(cfg, DictConfig):
        cfg = cfg.copy()
        with open_dict(cfg):
            if "paths" in cfg and run_dir is not None:
                cfg.paths.output_dir = str(run_dir)
        try:
            c = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # an interpolation that cannot be resolved
            raise ConfigError(f"{getattr(e, 'full_key', None) or 'config'}: {str(e).splitlines()[0]}") from None
    else:
        c = dict(cfg)
    c.pop("hydra", None)
    _walk_finite(c, "")
    for k, types in _TOP.items():
        if k in c and not isinstance(c[k], types) or (k in c and isinstance(c[k], bool) and bool not in types):
            raise ConfigError(f"{k}: expected {' or '.join(_tname(t) for t in types)}, got {c[k]!r}")
    if c.get("seed") is not None and not 0 <= c["seed"] < 2**32:
        raise ConfigError(f"seed: must be in [0, 2**32), got {c['seed']}")
    if c.get("matmul_precision") not in (None, "highest", "high", "medium"):
        raise ConfigError(f"matmul_precision: choose highest, high or medium (or null), got {c['matmul_precision']!r}")
    if isinstance(c.get("jobs_per_gpu"), int) and c["jobs_per_gpu"] < 1:
        raise ConfigError(f"jobs_per_gpu: must be >= 1, got {c['jobs_per_gpu']}")
    if c.get("ckpt_path") not in (None, "last"):
        from xgen.checkpoint.safety import read_checkpoint
        from xgen.runtime.compose import resolve_ckpt

        ck, _ = resolve_ckpt(c["ckpt_path"], Path(run_dir or "."))
        try:
            read_checkpoint(ck)
        except ConfigError as e:
            raise ConfigError(f"ckpt_path: {e}") from None
    # sections
    for section, kind in (("data", "data"), ("model", "model"), ("trainer", "trainer")):
        node = c.get(section)
        if not isinstance(node, dict) or "_target_" not in node:
            raise ConfigError(f"{section}: missing or without _target_ (choose one with {section}=<name>)")
        cls = _cls(node["_target_"], kind, section)
        injected = ("image_shape",) if section == "model" else ("callbacks", "logger", "default_root_dir")
        check_against_signature(node, cls, section, injected)
    t = c["trainer"]
    for k, choices in _TRAINER_CHOICES.items():
        if k in t and t[k] not in choices:
            raise ConfigError(f"trainer.{k}: choose one of {', '.join(str(x) for x in choices if x is not None)}; "
                              f"got {t[k]!r}")
    bounded = (isinstance(t.get("max_steps"), int) and t["max_steps"] >= 1) or t.get("max_time") is not None
    for k in _POSITIVE_TRAINER:
        if k == "max_epochs" and t.get(k) == -1 and bounded:
            continue  # Lightning: max_epochs=-1 means "no epoch limit", fine when max_steps/max_time bounds the run
        if isinstance(t.get(k), int) and t[k] < 1:
            extra = " (-1 would train forever; bound it with trainer.max_steps or trainer.max_time)" if k == "max_epochs" else ""
            raise ConfigError(f"trainer.{k}: must be >= 1, got {t[k]}{extra}")
    if t.get("max_epochs") is None and t.get("max_steps", -1) in (-1, None) and t.get("max_time") is None:
        raise ConfigError("trainer.max_epochs: null with no trainer.max_steps or trainer.max_time would train forever")
    for k in ("max_steps",):
        if isinstance(t.get(k), int) and t[k] < -1 or t.get(k) == 0:
            raise ConfigError(f"trainer.{k}: must be >= 1 (or -1: no step limit), got {t[k]}")
    if isinstance(t.get("num_sanity_val_steps"), int) and t["num_sanity_val_steps"] < -1:
        raise ConfigError(f"trainer.num_sanity_val_steps: must be >= -1, got {t['num_sanity_val_steps']}")
    if isinstance(t.get("gradient_clip_val"), (int, float)) and t["gradient_clip_val"] < 0:
        raise ConfigError(f"trainer.gradient_clip_val: must be >= 0, got {t['gradient_clip_val']}")
    dev = t.get("devices")
    if dev is not None and not (dev == "auto" or (isinstance(dev, int) and (dev >= 1 or dev == -1))
                                or (isinstance(dev, list) and all(isinstance(d, int) and d >= 0 for d in dev) and dev)
                                or (isinstance(dev, str) and dev.replace(",", "").strip().lstrip("-").isdigit())):
        raise ConfigError(f"trainer.devices: a count >= 1, -1 (all), a list of device ids or 'auto'; got {dev!r}")
    for lim in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        v = t.get(lim)
        if v is not None and not ((isinstance(v, int) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1)):
            raise ConfigError(f"trainer.{lim}: a number of batches >= 0 or a fraction in [0, 1]; got {v!r}")
    for group, kind in (("callbacks", "callback"), ("logger", "logger")):
        node = c.get(group) or {}
        if not isinstance(node, dict):
            raise ConfigError(f"{group}: expected a mapping of name -> config, got {node!r}")
        for name, spec in node.items():
            if spec is None:
                continue
            key = f"{group}.{name}"
            if not isinstance(spec, dict) or "_target_" not in spec:
                raise ConfigError(f"{key}: expected a config with _target_ (or null to disable), got {spec!r}")
            cls = _cls(spec["_target_"], kind, key)
            check_against_signature(spec, cls, key)
            for k in _POSITIVE.get(cls.__name__, ()):
                v = spec.get(k)
                if isinstance(v, int) and not isinstance(v, bool) and v < 1:
                    raise ConfigError(f"{key}.{k}: must be >= 1, got {v}")
    # constructors: value checks of data module, model (networks against the image shape) and callbacks
    vs = c["data"].get("val_size")
    if isinstance(vs, float) and not (0 <= vs < 1):
        raise ConfigError(f"data.val_size: a number of images (integer) or a fraction in [0, 1); got {vs}")
    _check_runtime_values(c)
    fid_arch = [(n, s_.get("arch")) for n, s_ in (c.get("callbacks") or {}).items()
                if isinstance(s_, dict) and str(s_.get("_target_", "")).endswith(".FID") and "arch" in s_]
    for n, a in fid_arch:
        if a not in ("strong", "thesis"):
            raise ConfigError(f"callbacks.{n}.arch: choose strong or thesis, got {a!r}")
    if isinstance(dev, list) and str(t.get("accelerator")) in ("auto", "gpu", "cuda"):
        import torch

        if max(dev) >= torch.cuda.device_count():
            raise ConfigError(f"trainer.devices: GPU ids {dev}, but this machine has {torch.cuda.device_count()} "
                              "GPU(s); use a count (trainer.devices=1) or ids that exist")
    elif isinstance(dev, list):
        raise ConfigError(f"trainer.devices: device ids {dev} need trainer.accelerator=gpu; on the CPU give a count")
    import json

    built_key = json.dumps([c["data"], c["model"], c.get("callbacks")], sort_keys=True, default=str)
    if built_key in _BUILT_OK:  # these exact sections were built before in this process
        return
    try:
        dm = instantiate(OmegaConf.create(c["data"]), "data")
    except XgenError:
        raise
    except Exception as e:
        raise ConfigError(f"data: {_root_cause(e)}") from None
    shape = list(getattr(dm, "image_shape", ()))
    try:
        model = instantiate(OmegaConf.create(c["model"]), "model", image_shape=shape, _recursive_=False,
                            _convert_="all")
    except XgenError:
        raise
    except Exception as e:
        raise ConfigError(f"model: {_root_cause(e)}") from None
    check_built(dm, model)
    for name, spec in (c.get("callbacks") or {}).items():
        if spec is not None:
            try:
                instantiate(OmegaConf.create(spec), f"callbacks.{name}")
            except XgenError:
                raise
            except Exception as e:
                raise ConfigError(f"callbacks.{name}: {_root_cause(e)}") from None
    if len(_BUILT_OK) > 256:
        _BUILT_OK.clear()
    _BUILT_OK.add(built_key)


_BUILT_OK: set[str] = set()


def check_built(datamodule: Any, model: Any) -> None:
    """The checks that need the built objects, not only their config: the model's number of classes
    against the data module's. One definition for both places that build them: :func:`validate` (which
    builds the data module, model and callbacks only to run their constructors' value checks before any
    job starts) and :func:`xgen.runtime.train.build` (the objects the job trains; also reached from Python,
    ``train(cfg)``, without :func:`validate`)."""
    from xgen.protocols import Classifies

    n_model = model.num_classes if isinstance(model, Classifies) else None
    n_data = getattr(datamodule, "num_classes", None)  # a data module attribute (None: unlabelled)
    if isinstance(n_model, int) and isinstance(n_data, int) and n_model != n_data:
        raise ConfigError(f"model.num_classes: {n_model}, but data={type(datamodule).__name__} has {n_data} classes; "
                          f"set model.num_classes={n_data}")


def _creatable(path: str) -> str | None:
    """None when ``path`` is (or can be made) a writable folder, else why not; creates nothing."""
    import os

    p = Path(path).expanduser()
    while not p.exists():
        if p.parent == p:
            return "no such location"
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a folder"
    if not os.access(p, os.W_OK | os.X_OK) or str(p.resolve()).startswith(("/proc", "/sys")):
        return f"{p} is not writable"
    return None


def _check_runtime_values(c: Mapping) -> None:
    """Values the constructors accept but training would trip over later: Lightning's check intervals,
    output folders that cannot be made, W&B's mode, traversal spans."""
    t = c.get("trainer") or {}
    v = t.get("val_check_interval")
    if v is not None and not ((isinstance(v, int) and not isinstance(v, bool) and v >= 1)
                              or (isinstance(v, float) and 0 < v <= 1)):
        raise ConfigError(f"trainer.val_check_interval: a number of training batches >= 1 or a fraction of the epoch "
                          f"in (0, 1]; got {v!r}")
    for group in ("callbacks", "logger"):
        for name, spec in (c.get(group) or {}).items():
            if not isinstance(spec, dict):
                continue
            for k in ("dirpath", "save_dir", "dir"):
                d = spec.get(k)
                if isinstance(d, str) and d and "${" not in d:
                    why = _creatable(d)
                    if why is not None:
                        raise ConfigError(f"{group}.{name}.{k}: cannot write to {d} ({why}); choose a writable folder")
            target = str(spec.get("_target_", ""))
            if target.endswith("WandbLogger") and spec.get("mode") is not None and str(spec["mode"]).lower() not in (
                    "auto", "online", "offline"):
                raise ConfigError(f"{group}.{name}.mode: choose auto, online or offline; got {spec['mode']!r}")
            span = spec.get("traversal_span")
            if target.endswith("SampleGrids") and span is not None and not (
                    isinstance(span, list) and len(span) == 2 and all(
                        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in span)
                    and span[0] < span[1]):
                raise ConfigError(f"{group}.{name}.traversal_span: two numbers [low, high] with low < high; got {span!r}")
            mon = spec.get("monitor")
            if mon is not None and not (isinstance(mon, str) and mon.split("/", 1)[0] in ("train", "val", "test")
                                        and len(mon.split("/", 1)) == 2):
                raise ConfigError(f"{group}.{name}.monitor: a logged metric key '<stage>/<name>' (e.g. val/loss); "
                                  f"got {mon!r}")


from xgen.errors import XgenError  # noqa: E402


def _root_cause(e: BaseException) -> str:
    """The innermost error of a Hydra instantiation chain, on one line."""
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def _override_key(o: str) -> str:
    return o.split("=", 1)[0].strip().lstrip("+~")


def _near_keys(key: str, cfg: Any) -> list[str]:
    """Existing keys of ``cfg`` close to a mistyped dotted ``key`` (same parent first, then anywhere)."""
    from omegaconf import OmegaConf

    try:
        plain = OmegaConf.to_container(cfg, resolve=False)
    except Exception:
        return []
    parent, _, last = key.rpartition(".")
    node = plain
    for part in parent.split(".") if parent else []:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        near = closest(last, [k for k in node if isinstance(k, str)])
        if near:
            return [f"{parent}.{n}" if parent else n for n in near]
    flat: list[str] = []

    def walk(n: Any, prefix: str) -> None:
        if isinstance(n, dict) and len(flat) < 5000:
            for k, v in n.items():
                flat.append(f"{prefix}{k}")
                walk(v, f"{prefix}{k}.")

    walk(plain, "")
    return closest(key, flat)


def hydra_error(e: BaseException, overrides: list[str], cfg: Any = None) -> ConfigError:
    """One ConfigError naming the override key for a Hydra composition error (unknown key, unknown
    group option, bad override syntax)."""
    import re

    msg = str(e).strip()
    keys = [_override_key(o) for o in overrides]
    named = [k for k in keys if k and (f"'{k}'" in msg or f"'{k.split('.')[-1]}'" in msg or f"{k}/" in msg
                                       or f"'{k}/" in msg)]
    first = " ".join(msg.splitlines()[:1])
    m = re.search(r"Could not find '([^']+)/([^']+)'", msg)
    if m:
        group, name = m.group(1), m.group(2)
        avail = re.findall(r"^\s*(\S+)\s*$", msg.split("Available options", 1)[-1], re.M) if "Available" in msg else []
        avail = [a for a in avail if not a.endswith(":") and "'" not in a]
        return ConfigError(f"{group}: unknown option {name!r}{did_you_mean(name, avail)}"
                           + (f" (choose one of {', '.join(avail)})" if avail else ""))
    if "Multiple values for callbacks/" in msg:  # two presets combined: callbacks=[gan,fid]
        return ConfigError("callbacks: presets cannot be combined (each sets the checkpoint and grid callbacks its own "
                           "way); take one preset and add callbacks to it, e.g. callbacks=gan +callbacks/fid=default "
                           "(docs/configs.md)")
    if "No match in the defaults list" in msg:  # an unknown config group (modle=vae)
        k = named[0] if named else ", ".join(keys)
        near = did_you_mean(k, GROUPS + ("model/net", "model/latent", "hydra/launcher", "hydra/sweeper"))
        return ConfigError(f"{k}: not a config group{near}" + ("" if near else f" (groups: {', '.join(GROUPS)})"))
    if "not in struct" in msg or "Could not override" in msg or "Could not append" in msg:
        k = named[0] if named else ", ".join(keys)
        near = _near_keys(k, cfg) if cfg is not None else []
        if near:
            return ConfigError(f"{k}: not a key of this config; did you mean {' or '.join(near)}?")
        return ConfigError(f"{k}: not a key of this config ({first}). To add a new key write +{k}=...")
    k = named[0] if named else ", ".join(keys)
    return ConfigError(f"{k}: {first}")


def precheck(overrides: list[str], config_dir: str | None = None, run_dir: str | Path | None = None) -> Any:
    """Compose the training config for ``overrides`` (as the command does) and :func:`validate` it,
    without starting Hydra's job: any problem is one ConfigError naming the key. Returns the config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if config_dir is None:
        from xgen.runtime.config import CONFIG_DIR as config_dir  # noqa: N811
    ours = [o for o in overrides if not _override_key(o).startswith("hydra")]
    if run_dir is None:
        rd = [o.split("=", 1)[1] for o in overrides if _override_key(o) == "hydra.run.dir"]
        run_dir = rd[0] if rd else "."
    was = GlobalHydra.instance().is_initialized()
    try:
        if not was:
            initialize_config_dir(config_dir=str(config_dir), version_base="1.3")
        try:
            cfg = compose("train", overrides=ours)
        except Exception as e:  # hydra.errors.*, omegaconf.errors.*: composition failed
            raise hydra_error(e, ours) from None
    finally:
        if not was:
            GlobalHydra.instance().clear()
    validate(cfg, run_dir)
    return cfg


GROUPS = ("data", "model", "callbacks", "logger", "trainer", "paths", "experiment", "hparams_search", "debug", "sweep",
          "model_data")


def apply_value_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``key=value`` / ``+key=value`` overrides to a composed config exactly as Hydra would (its
    parser types the values; struct mode refuses unknown keys), without composing again: the fast path
    for checking many overrides against one base config. Group overrides (``data=mnist``) are refused
    with NotImplementedError: they need a full compose."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    cfg = cfg.copy()
    parser = OverridesParser.create()
    for o in overrides:
        try:
            ov = parser.parse_overrides(overrides=[o])[0]
        except Exception as e:
            raise hydra_error(e, [o]) from None
        key = ov.key_or_group
        if "/" in key or key in GROUPS or ov.is_delete() or ov.is_sweep_override():
            raise NotImplementedError(o)
        value = ov.value()
        try:
            if ov.is_force_add():  # ++key=value: set it whether or not the config has it
                with open_dict(cfg):
                    OmegaConf.update(cfg, key, value, merge=True, force_add=True)
            elif ov.is_add():
                if OmegaConf.select(cfg, key, throw_on_missing=False) is not None:
                    raise ConfigError(f"{key}: already in the config; override it without '+'")
                with open_dict(cfg):
                    OmegaConf.update(cfg, key, value, merge=True, force_add=True)
            else:
                OmegaConf.update(cfg, key, value, merge=True)
        except XgenError:
            raise
        except Exception as e:
            near = _near_keys(key, cfg)
            if near:
                raise ConfigError(f"{key}: not a key of this config; did you mean {' or '.join(near)}?") from None
            raise ConfigError(f"{key}: not a key of this config ({' '.join(str(e).split())[:200]}). To add a new "
                              f"key write +{key}=...") from None
    return cfg


# ----------------------------------------------------------------------------- a whole command line, run or multirun
NO_JOB_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--version", "--shell-completion",
                "-sc", "--resolve", "--package", "-p")
MULTIRUN_FLAGS = ("-m", "--multirun")
MAX_PRECHECKED_JOBS = 2000
_COMPOSED: dict[tuple[str, ...], Any] = {}


def _parse(o: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides=[o])[0]
    except Exception as e:
        raise hydra_error(e, [o]) from None


def _is_group(ov) -> bool:
    key = ov.key_or_group
    return "/" in key or key in GROUPS or ov.is_delete()


def compose_cached(group_overrides: tuple[str, ...], config_dir: str | None = None) -> Any:
    """The training config composed for these group overrides, with Hydra's own section (mode and
    sweeper), cached for the process: a sweep's jobs differ mostly in values, applied on top."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if config_dir is None:
        from xgen.runtime.config import CONFIG_DIR as config_dir  # noqa: N811
    key = (str(config_dir), *group_overrides)
    if key not in _COMPOSED:
        was = GlobalHydra.instance().is_initialized()
        try:
            if not was:
                initialize_config_dir(config_dir=str(config_dir), version_base="1.3")
            try:
                _COMPOSED[key] = compose("train", overrides=list(group_overrides), return_hydra_config=True)
            except Exception as e:
                raise hydra_error(e, list(group_overrides)) from None
        finally:
            if not was:
                GlobalHydra.instance().clear()
        if len(_COMPOSED) > 64:
            _COMPOSED.pop(next(iter(_COMPOSED)))
    return _COMPOSED[key]


def expand_jobs(overrides: list[str], multirun: bool, config_dir: str | None = None) -> tuple[list[list[str]], bool]:
    """The overrides of every job a command line launches, as Hydra's basic sweeper makes them: the
    sweeps of ``hydra.sweeper.params`` (a ``+sweep=...`` file) then the command line's, later keys
    replacing earlier ones, crossed. Returns (jobs, multirun). For another sweeper (Optuna), whose jobs
    exist only once it runs, the one job of the fixed overrides (each trial is checked when it starts)."""
    import itertools

    parsed = [(o, _parse(o)) for o in overrides]
    fixed = [o for o, ov in parsed if not ov.is_sweep_override()]
    groups = tuple(o for o, ov in parsed if not ov.is_sweep_override() and _is_group(ov)
                   and not ov.key_or_group.startswith("hydra"))
    base = compose_cached(groups, config_dir)
    hydra = base.get("hydra") or {}
    multirun = multirun or str(hydra.get("mode")) == "RunMode.MULTIRUN" or str(hydra.get("mode")) == "MULTIRUN"
    sweeper = hydra.get("sweeper") or {}
    if not multirun:
        return [list(overrides)], False
    if "BasicSweeper" not in str(sweeper.get("_target_", "")):
        return [fixed], True
    params = sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    axes: dict[str, list[str]] = {}
    for line in lines:
        ov = _parse(line)
        key = ov.get_key_element()
        if ov.is_sweep_override():
            if not (ov.is_choice_sweep() or ov.is_range_sweep()):
                return [fixed], True  # a glob/interval: checked per job when it starts
            axes[key] = [f"{key}={v}" for v in ov.sweep_string_iterator()]
        else:
            axes[key] = [line]
    jobs = [list(j) for j in itertools.islice(itertools.product(*axes.values()), MAX_PRECHECKED_JOBS)]
    return jobs, True


def check_job(overrides: list[str], run_dir: str | Path | None = None, config_dir: str | None = None) -> Any:
    """:func:`precheck` of one job's overrides, composing only its group overrides (cached) and applying
    its values on top as Hydra would. Returns the config."""
    from omegaconf import open_dict

    ours = [o for o in overrides if not _override_key(o).startswith("hydra")]
    groups = tuple(o for o in ours if _is_group(_parse(o)))
    values = [o for o in ours if o not in groups]
    cfg = compose_cached(groups, config_dir).copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    try:
        cfg = apply_value_overrides(cfg, values)
    except NotImplementedError:
        return precheck(overrides, config_dir, run_dir)
    if run_dir is None:
        rd = [o.split("=", 1)[1] for o in overrides if _override_key(o) == "hydra.run.dir"]
        run_dir = rd[0] if rd else "."
    validate(cfg, run_dir)
    return cfg


def check_output_dir(overrides: list[str]) -> None:
    """``hydra.run.dir`` / ``hydra.sweep.dir`` on the command line must be a folder xgen can create and
    write (Hydra would fail with a traceback), and a handed one must hold no link out of it."""
    import os

    from xgen.runtime.rundir import check_run_tree

    for o in overrides:
        key = _override_key(o)
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or "=" not in o:
            continue
        d = Path(o.split("=", 1)[1]).expanduser()
        if "${" in str(d):
            continue
        made = []
        try:
            p = d
            while not p.exists():
                made.append(p)
                p = p.parent
            for q in reversed(made):
                q.mkdir()
            probe = d / f".xgen-write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"{key}: cannot create or write {d} ({e.strerror or type(e).__name__}); choose a "
                              "writable folder") from None
        finally:
            for q in made:
                try:
                    q.rmdir()
                except OSError:
                    pass
        check_run_tree(d, "run directory" if key == "hydra.run.dir" else "sweep directory")


def precheck_command(argv: list[str], config_dir: str | None = None) -> int:
    """Check a whole ``xgen`` command line before Hydra starts any job: every job of a multirun (``-m``,
    a ``+sweep=...`` file's ``hydra.sweeper.params``) is composed and validated like a single run; a
    refusal is one ConfigError naming the job and the key. Returns the number of jobs checked (0 for
    flags that run nothing, like ``--help`` or ``--cfg``)."""
    flags = [a for a in argv if a.startswith("-")]
    if any(f.split("=", 1)[0] in NO_JOB_FLAGS for f in flags):
        return 0
    unknown = [f for f in flags if f not in MULTIRUN_FLAGS]
    if unknown:  # --config-dir / --config-name ...: each job is validated when it starts (run_job)
        return 0
    overrides = [a for a in argv if not a.startswith("-")]
    check_output_dir(overrides)
    try:
        jobs, multirun = expand_jobs(overrides, bool(flags), config_dir)
    except ConfigError as e:
        if not flags:
            raise
        raise ConfigError(f"every job: {e}") from None
    for i, job in enumerate(jobs):
        try:
            check_job(job, config_dir=config_dir)
        except ConfigError as e:
            if not multirun:
                raise
            swept = [o for o in job if o not in overrides]
            raise ConfigError(f"job {i}{' (' + ' '.join(swept) + ')' if swept else ''}: {e}") from None
    return len(jobs)
