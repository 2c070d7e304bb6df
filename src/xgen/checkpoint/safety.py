"""Files are data: what a checkpoint or a run directory's ``config.yaml`` may make xgen instantiate.

A config read from a file (a checkpoint's saved network configs, a run's ``data:``/``callbacks:`` ...)
is handed to Hydra's ``instantiate`` only after :func:`check_config_targets` has walked all of it:
every ``_target_`` anywhere in the mapping (nested ones and those inside ``_args_`` included) must be
on the allow-list of its kind, no ``_partial_``/``_args_`` tricks, no ``${...}`` interpolations (a
resolver such as ``oc.decode`` could build a new ``_target_`` after the check). Allowed are xgen's
own classes (nets under ``xgen.nets``, data modules under ``xgen.data``, ...) and whatever a user
registers by name with :func:`allow_target`. Nothing outside the allow-list is imported.

Checkpoints also carry a SHA-256 digest of their tensors (:func:`tensor_digest`), written by every
xgen model when it saves and verified when a checkpoint is loaded or resumed: a flipped byte inside a
weight tensor is reported, not loaded.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from xgen.errors import ConfigError
from xgen.registry import IMPORT_PATH, KINDS, MODEL_REGISTRY, USER_TARGETS

# keys of Hydra's instantiate protocol a file may use; _partial_ and _args_ are refused
_HYDRA_KEYS_OK = {"_target_", "_recursive_", "_convert_"}


def _locate(path: str) -> Any:
    """Import ``a.b.C`` (only ever called for allow-listed names)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _walk(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(key path, node) of every mapping/list node and leaf below ``node`` (dotted keys)."""
    from xgen.checkpoint.schema import walk

    return walk(node, where, ".")


def _hint(kind: str, target: str) -> str:
    prefixes = " or ".join(p.rstrip(".") for p in KINDS[kind][0])
    return (f"only {prefixes} classes (and ones you register) may be instantiated from a config; if you trust "
            f"{target[:120]!r}, register it before loading: xgen.registry.allow_target({target[:120]!r}"
            f"{'' if kind == 'net' else f', kind={kind!r}'})")


def target_allowed(target: Any, kind: str) -> str | None:
    """None when ``target`` (a ``_target_`` value) may be instantiated as a ``kind``, else why not."""
    if not isinstance(target, str) or not IMPORT_PATH.match(target) or "__" in target:
        return f"{str(target)[:120]!r} is not a plain dotted import path"
    if target in USER_TARGETS[kind]:
        return None
    prefixes, base = KINDS[kind]
    if not any(target == p or target.startswith(p) for p in prefixes):
        return f"{target[:120]!r} is not allowed: " + _hint(kind, target)
    # an allowed prefix can still reach elsewhere (xgen.nets.vae.os.system): the located object must be a
    # class of the right kind defined inside the allowed package
    try:
        obj = _locate(target)
        base_cls = _locate(base)
    except (ImportError, AttributeError):
        return f"{target[:120]!r} does not exist in this xgen"
    prefix = next(p for p in prefixes if target == p or target.startswith(p))
    pkg = ".".join(prefix.split(".")[:2])  # xgen.nets, xgen.data, lightning.pytorch ...
    if not (isinstance(obj, type) and issubclass(obj, base_cls) and f"{obj.__module__}.".startswith(pkg + ".")):
        return f"{target[:120]!r} is not a {kind} class of {pkg}: " + _hint(kind, target)
    return None


def check_config_targets(cfg: Any, file: str | Path | None, kind: str = "net", key: str = "") -> None:
    """Refuse (ConfigError naming ``file``/``key`` and the target) a config that would make Hydra's
    instantiate run anything but allow-listed ``kind`` classes. Walks the whole mapping."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            cfg = OmegaConf.to_container(cfg, resolve=False)
    except ImportError:  # pragma: no cover
        pass
    where = f"{file}: " if file is not None else ""
    for path, node in _walk(cfg, key):
        if isinstance(node, str) and "${" in node:
            raise ConfigError(f"{where}{path}: interpolations ('${{...}}') are not allowed in a config read "
                              f"from a file; found {node[:80]!r}")
        if not isinstance(node, Mapping):
            continue
        for k in node:
            if isinstance(k, str) and k.startswith("_") and k.endswith("_") and k not in _HYDRA_KEYS_OK:
                if k == "_partial_" and node[k] in (False, None):
                    continue
                raise ConfigError(f"{where}{path or 'config'}: key {k!r} is not allowed here (only _target_ "
                                  "with keyword arguments can be instantiated)")
        if "_target_" in node:
            why = target_allowed(node["_target_"], kind)
            if why is not None:
                raise ConfigError(f"{where}{path + '._target_' if path else '_target_'}: {why}")


def instantiate(spec: Any, kind: str = "net", key: str = "", file: str | Path | None = None, **kwargs: Any) -> Any:
    """Build what a config names, without Hydra: ``spec`` is checked by :func:`check_config_targets` (only
    allow-listed ``kind`` classes, no interpolations, no ``_partial_``/``_args_``), made a plain container,
    then every mapping with a ``_target_`` is built bottom-up (``_recursive_: false`` keeps a node's
    arguments as they are; ``_convert_`` is accepted and ignored: arguments are always plain
    dicts and lists). ``kwargs`` are passed to the outermost target and win over the config's keys."""
    check_config_targets(spec, file, kind, key)
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(spec, (DictConfig, ListConfig)):
            spec = OmegaConf.to_container(spec, resolve=True)
    except ImportError:  # pragma: no cover
        pass

    def build(node: Any, extra: Mapping[str, Any] | None = None) -> Any:
        if isinstance(node, (list, tuple)):
            return [build(v) for v in node]
        if not isinstance(node, Mapping):
            return node
        recursive = node.get("_recursive_", True) is not False
        args = {k: (build(v) if recursive else v) for k, v in node.items()
                if k not in ("_target_", "_recursive_", "_convert_", "_partial_")}
        if "_target_" not in node:
            return args
        return _locate(str(node["_target_"]))(**{**args, **dict(extra or {})})

    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ConfigError(f"{key or 'config'}: a config to build needs a _target_")
    return build(spec, kwargs)


# ----------------------------------------------------------------------------- tensor digest
DIGEST_KEY = "xgen_digest"
INT8_KEY = "xgen_int8"  # {state key: per-row float scales} of weights stored as int8 (shipped checkpoints)


def tensor_digest(state_dict: Mapping[str, Any]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor of a state dict (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _digested(checkpoint: Mapping) -> dict:
    """The tensors a digest covers: the state_dict, plus the int8 scales of a quantised checkpoint."""
    tensors = dict(checkpoint["state_dict"])
    scales = checkpoint.get(INT8_KEY)
    if isinstance(scales, Mapping):
        tensors.update({f"{INT8_KEY}/{k}": v for k, v in scales.items()})
    return tensors


def add_digest(checkpoint: dict) -> None:
    """Record the digest of ``checkpoint['state_dict']`` (and of its int8 scales, if any; models call this
    from ``on_save_checkpoint``)."""
    if isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint[DIGEST_KEY] = {"sha256": tensor_digest(_digested(checkpoint))}


def verify_digest(checkpoint: Mapping, source: str | Path) -> bool:
    """Raise ConfigError when the tensors do not match the recorded digest. Returns False for a checkpoint
    without one (written before xgen recorded digests), True when verified."""
    rec = checkpoint.get(DIGEST_KEY)
    if rec is None:
        return False
    want = rec.get("sha256") if isinstance(rec, Mapping) else None
    sd = checkpoint.get("state_dict")
    if not isinstance(want, str) or not isinstance(sd, Mapping) or tensor_digest(_digested(checkpoint)) != want:
        raise ConfigError(f"{source}: the checkpoint's tensors do not match its recorded SHA-256 digest: the "
                          "file is corrupt or was modified; it was not loaded. Use an earlier checkpoint.")
    return True


# ----------------------------------------------------------------------------- reading files
def load_checked(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read a checkpoint file as data and check all of it before anything uses it: ``torch.load`` with
    ``weights_only=True`` and ``mmap=True`` (tensor bytes stay on disk until touched), then the schema of
    every entry (:func:`xgen.checkpoint.schema.check_structure`: plain containers, dense tensors inside
    their storage), the tensor and whole-file digests, and finite weights. Every failure is one
    ConfigError naming the file (and the entry)."""
    import pickle
    import zipfile

    from xgen.checkpoint.schema import check_finite, check_structure, verify_full_digest

    path = Path(path)
    if path.is_dir():
        from xgen.checkpoint.runs import RunDir

        if RunDir(path).has_checkpoint():
            path = RunDir(path).last_checkpoint
        else:
            raise ConfigError(f"{path}: a directory without checkpoints/last.ckpt; pass a run directory written by "
                              "xgen or a .ckpt file.")
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint file.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise ConfigError(f"{path}: not an xgen checkpoint (it holds objects other than plain containers and "
                          "tensors; nothing in it was run).") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError,
            IndexError, UnicodeDecodeError, MemoryError):
        raise ConfigError(f"{path}: not an xgen checkpoint (not a PyTorch checkpoint file, or truncated or "
                          "corrupt).") from None
    check_structure(ckpt, path)
    verify_digest(ckpt, path)
    verify_full_digest(ckpt, path)
    check_finite(ckpt, path)
    return ckpt


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """An xgen checkpoint file (or a run directory's ``checkpoints/last.ckpt``) read and checked by
    :func:`load_checked`, int8-stored weights dequantised (and checked finite)."""
    ckpt = load_checked(path, map_location)
    if INT8_KEY in ckpt:
        from xgen.checkpoint.schema import check_finite

        ckpt["state_dict"] = dequantize_int8(ckpt["state_dict"], ckpt[INT8_KEY], path)
        check_finite(ckpt, path, ("state_dict",))
    return ckpt


def quantize_int8(state: Mapping[str, torch.Tensor], min_numel: int = 65_536) -> tuple[dict, dict]:
    """Symmetric per-row int8 storage of the large floating weights of ``state`` (``numel >= min_numel``,
    2-D or more): ``w ≈ q * scale[row]`` with ``q = round(w / scale)`` in [-127, 127] and ``scale = max|w_row| /
    127``, so the error of every weight is at most half a step (``scale / 2``). Returns (state with int8
    tensors, {key: scale}); :func:`read_checkpoint` reverses it."""
    out, scales = dict(state), {}
    for k, v in state.items():
        if v.is_floating_point() and v.dim() >= 2 and v.numel() >= min_numel:
            w = v.detach().float().reshape(v.shape[0], -1)
            scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
            out[k] = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(v.shape).contiguous()
            scales[k] = scale.contiguous()
    return out, scales


def dequantize_int8(state: Mapping, scales: Any, path: str | Path) -> dict:
    """The float32 weights of a checkpoint stored with :func:`quantize_int8`; a malformed entry (a key
    the state lacks, a tensor that is not int8, scales of the wrong shape or not finite and positive)
    is one ConfigError naming the file and the key."""
    if not isinstance(scales, Mapping):
        raise ConfigError(f"{path}: '{INT8_KEY}' is not a mapping of weight names to scales.")
    out = dict(state)
    for k, scale in scales.items():
        q = state.get(k)
        if not isinstance(q, torch.Tensor) or q.dtype != torch.int8 or q.dim() < 1:
            raise ConfigError(f"{path}: '{INT8_KEY}' names {str(k)[:100]!r}, which is not an int8 weight of the state_dict.")
        if not (isinstance(scale, torch.Tensor) and scale.is_floating_point() and tuple(scale.shape) == (q.shape[0],)
                and bool(torch.isfinite(scale).all()) and bool((scale > 0).all())):
            raise ConfigError(f"{path}: the int8 scales of {str(k)[:100]!r} are not {q.shape[0]} finite positive numbers.")
        out[k] = (q.float().reshape(q.shape[0], -1) * scale.float()[:, None]).reshape(q.shape)
    return out


def load_yaml(path: str | Path) -> Any:
    """OmegaConf.load of a run's config file, any failure one ConfigError naming the file."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError, UnicodeDecodeError, OSError, omegaconf errors...
        raise ConfigError(f"{path}: not a readable config file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else 'unreadable'}).") from None


RUN_SECTIONS = {"data": "data", "trainer": "trainer"}


def check_run_config(cfg: Any, file: str | Path) -> None:
    """Check every instantiable section of a run directory's ``config.yaml`` before any of it is used:
    ``model`` (its class in xgen's model registry, its nets allow-listed), ``data``, ``callbacks``,
    ``logger``, ``trainer``."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{file}: not a run configuration (expected a mapping).")
    model = cfg.get("model")
    if isinstance(model, Mapping):
        target = model.get("_target_")
        if target is not None and str(target) not in MODEL_REGISTRY and target_allowed(target, "model") is not None:
            raise ConfigError(f"{file}: model._target_: {str(target)[:120]!r} is not one of xgen's models; a model "
                              "of your own must be registered first: xgen.models.register_model(MyModel).")
        check_config_targets({k: v for k, v in model.items() if k != "_target_"}, file, "net", "model")
    for section, kind in RUN_SECTIONS.items():
        if cfg.get(section) is not None:
            check_config_targets(cfg[section], file, kind, section)
    for name, c in (cfg.get("callbacks") or {}).items():
        if c is not None:
            check_config_targets(c, file, "callback", f"callbacks.{name}")
    for name, c in (cfg.get("logger") or {}).items():
        if c is not None:
            check_config_targets(c, file, "logger", f"logger.{name}")


def run_data_config(file: str | Path) -> Any:
    """The ``data:`` section of a run directory's ``config.yaml``, checked (allow-listed data module,
    nothing else instantiable), or None when it has none. What ``xgen eval <run dir>`` instantiates."""
    cfg = load_yaml(file)
    data = cfg.get("data") if hasattr(cfg, "get") else None
    if data is None:
        return None
    check_config_targets(data, file, "data", "data")
    return data


def load_plugins(env: str = "XGEN_PLUGINS") -> list[str]:
    """Import the modules named in ``$XGEN_PLUGINS`` (comma-separated): the place where a user's code
    calls :func:`allow_target` / ``register_model`` before xgen reads any file."""
    import os

    names = [n.strip() for n in os.environ.get(env, "").split(",") if n.strip()]
    for n in names:
        try:
            importlib.import_module(n)
        except ImportError as e:
            raise ConfigError(f"${env}: cannot import plugin module {n!r} ({e})") from None
    return names
