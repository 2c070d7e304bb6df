"""What a checkpoint may contain, checked entry by entry before any of it is used.

A checkpoint someone hands you is data, all of it: not only the weights but the optimizer, loop,
callback, data-module and RNG entries that Lightning restores on resume. Every entry is checked here
against a schema before Lightning (or :func:`xgen.models.load_model`) touches it:

* :func:`check_structure` — plain containers only (dict, list, tuple, str, int, float, bool, None,
  dense strided tensors), bounded depth, node count and string length; top-level keys are those xgen
  and Lightning write; every tensor is contiguous with its bytes inside its storage, so a stride-0
  view of a 10^12-element "tensor" stored in a few bytes is refused in microseconds before anything
  is materialised;
* :func:`full_digest` — a SHA-256 over every entry (not just the weights) that xgen's checkpoint IO
  writes and verifies: a flipped byte anywhere is reported, not loaded;
* :func:`check_finite` — no NaN/inf in weights or optimizer moments;
* :func:`check_state_dict_matches` — names, shapes and dtypes against the model built from the config;
* :func:`check_training_state` — loops, optimizers and LR schedulers against the running trainer's own
  (same keys and types, counters consistent, optimizer moments shaped like their parameters).

A digest can be recomputed by whoever crafts a file, so it detects corruption; the schema is what
makes a crafted file harmless. Callback states are checked by each callback's ``load_state_dict``
(paths in :class:`xgen.callbacks.checkpoint.Checkpoint`'s state are never taken from the file).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from xgen.errors import ConfigError

DIGEST_KEY = "xgen_digest"
ALL_KEY = "sha256_all"

MAX_DEPTH = 32
MAX_NODES = 2_000_000
MAX_STR = 1 << 16
MAX_INT = 1 << 62
TOP_KEYS = {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
            "optimizer_states", "lr_schedulers", "hparams_name", "hyper_parameters", "datamodule_hparams_name",
            "datamodule_hyper_parameters", "xgen_digest", "xgen_class", "xgen_int8", "xgen_meta",
            "native_amp_scaling_state"}
"""Top-level entries xgen and Lightning write; besides these only ``<Name>DataModule`` and
``<Name>Precision`` (a data module's and a precision plugin's state, keyed by class name)."""
DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
          torch.int32, torch.int64, torch.bool}


def _where(source: Any, key: str) -> str:
    return f"{source}: entry {key!r}" if key else f"{source}"


def check_tensor(t: torch.Tensor, source: Any, key: str) -> None:
    """A dense CPU tensor of a plain dtype whose elements all lie, in order, inside its own storage
    (no stride tricks): checked from the metadata alone, nothing is read or allocated."""
    if t.layout != torch.strided or t.is_quantized or t.is_sparse or t.device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{_where(source, key)}: a {t.layout} tensor; checkpoints hold dense tensors only.")
    if t.dtype not in DTYPES:
        raise ConfigError(f"{_where(source, key)}: dtype {t.dtype} is not one xgen writes.")
    if t.numel() > 1 and not t.is_contiguous():
        raise ConfigError(f"{_where(source, key)}: a {tuple(t.shape)} tensor with strides {t.stride()} (not "
                          "contiguous: e.g. a stride-0 view that would expand to far more memory than the file "
                          "holds); refused before it was read.")
    need = (t.storage_offset() + t.numel()) * t.element_size()
    if need > t.untyped_storage().nbytes():
        raise ConfigError(f"{_where(source, key)}: its {t.numel()} elements do not fit in the "
                          f"{t.untyped_storage().nbytes()} bytes stored.")


def check_structure(ckpt: Any, source: Any, top_keys: bool = True) -> None:
    """Refuse (ConfigError naming the file and the entry) anything but the plain containers and dense
    tensors a checkpoint is made of; see the module docstring. ``top_keys=False`` for the other weight
    files xgen reads (shipped classifiers, inversion encoders), whose top level is their own."""
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{source}: not an xgen checkpoint (a {type(ckpt).__name__}, not a mapping).")
    for k in ckpt if top_keys else ():
        if not isinstance(k, str) or not (k in TOP_KEYS or k.endswith(("DataModule", "Precision"))
                                          and k.replace("_", "").isalnum()):
            raise ConfigError(f"{source}: top-level entry {str(k)[:80]!r} is not one xgen or Lightning writes; "
                              "the file was not loaded.")
    count = 0
    stack: list[tuple[Any, str, int]] = [(ckpt, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"{source}: more than {MAX_NODES} entries; refused.")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{_where(source, key)}: nested deeper than {MAX_DEPTH} levels; refused.")
        if isinstance(node, torch.Tensor):
            check_tensor(node, source, key)
        elif isinstance(node, bool) or node is None:
            pass
        elif isinstance(node, int):
            if abs(node) > MAX_INT:
                raise ConfigError(f"{_where(source, key)}: integer {str(node)[:40]}... out of range.")
        elif isinstance(node, float):
            pass
        elif isinstance(node, str):
            if len(node) > MAX_STR:
                raise ConfigError(f"{_where(source, key)}: a string of {len(node)} characters; refused.")
        elif isinstance(node, (torch.dtype, torch.device)):
            pass
        elif isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool) or (isinstance(k, str) and len(k) > 1024):
                    raise ConfigError(f"{_where(source, key)}: a key of type {type(k).__name__}; refused.")
                stack.append((v, f"{key}/{k}" if key else str(k), depth + 1))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                stack.append((v, f"{key}[{i}]", depth + 1))
        else:
            raise ConfigError(f"{_where(source, key)}: a {type(node).__name__}; checkpoints hold plain containers "
                              "and tensors only.")
    for k in ("epoch", "global_step"):
        if k in ckpt and not (isinstance(ckpt[k], int) and not isinstance(ckpt[k], bool) and ckpt[k] >= 0):
            raise ConfigError(f"{source}: entry {k!r} must be an integer >= 0, got {str(ckpt[k])[:40]!r}.")
    if top_keys and not isinstance(ckpt.get("state_dict"), Mapping):
        raise ConfigError(f"{source}: not an xgen checkpoint (no state_dict).")


# ----------------------------------------------------------------------------- the digest of everything
def _feed(h: Any, node: Any) -> None:
    if isinstance(node, torch.Tensor):
        t = node.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(t.reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    elif isinstance(node, dict):
        h.update(f"D{len(node)}:".encode())
        for k in sorted(node, key=lambda x: (type(x).__name__, str(x))):
            _feed(h, k)
            _feed(h, node[k])
    elif isinstance(node, (list, tuple)):
        h.update(f"{'L' if isinstance(node, list) else 'U'}{len(node)}:".encode())
        for v in node:
            _feed(h, v)
    elif isinstance(node, str):
        b = node.encode("utf-8", "surrogatepass")
        h.update(f"S{len(b)}:".encode() + b)
    elif isinstance(node, bool) or node is None:
        h.update(f"B{node}:".encode())
    elif isinstance(node, (int, float)):
        h.update(f"{type(node).__name__[0]}{node!r}:".encode())
    else:
        h.update(f"O{node}:".encode())


def full_digest(ckpt: Mapping) -> str:
    """SHA-256 over every entry of a checkpoint except the digest record itself."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in ckpt.items() if k != DIGEST_KEY})
    return h.hexdigest()


def add_full_digest(ckpt: dict) -> dict:
    """A copy of ``ckpt`` whose digest record also covers every entry (written by xgen's checkpoint IO)."""
    rec = dict(ckpt.get(DIGEST_KEY) or {})
    rec[ALL_KEY] = full_digest(ckpt)
    return {**ckpt, DIGEST_KEY: rec}


def verify_full_digest(ckpt: Mapping, source: Any) -> bool:
    """ConfigError when a recorded whole-checkpoint digest does not match; False when none is recorded."""
    rec = ckpt.get(DIGEST_KEY)
    want = rec.get(ALL_KEY) if isinstance(rec, Mapping) else None
    if want is None:
        return False
    if not isinstance(want, str) or full_digest(ckpt) != want:
        raise ConfigError(f"{source}: the checkpoint's entries do not match its recorded SHA-256 digest: the file is "
                          "corrupt or was modified; it was not loaded. Use an earlier checkpoint.")
    return True


# ----------------------------------------------------------------------------- values
def walk(node: Any, where: str = "", sep: str = "/") -> Iterator[tuple[str, Any]]:
    """(key path, node) of every mapping/list node and leaf below ``node``, keys joined by ``sep``."""
    yield where, node
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from walk(v, f"{where}{sep}{k}" if where else str(k), sep)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}[{i}]", sep)


def _float_tensors(node: Any, key: str) -> Iterator[tuple[str, torch.Tensor]]:
    return ((k, t) for k, t in walk(node, key) if isinstance(t, torch.Tensor) and t.is_floating_point())


def check_finite(ckpt: Mapping, source: Any, keys: tuple[str, ...] = ("state_dict", "optimizer_states")) -> None:
    """Refuse NaN/inf in the weights (and optimizer states): a model with them produces NaN everywhere."""
    for top in keys:
        for key, t in _float_tensors(ckpt.get(top), top):
            if t.numel() and not bool(torch.isfinite(t).all()):
                raise ConfigError(f"{_where(source, key)}: holds NaN or inf values; a checkpoint with non-finite "
                                  "weights is refused on every load path (use an earlier checkpoint).")


def check_state_dict_matches(state: Mapping, model: torch.nn.Module, source: Any,
                             resizable: tuple[str, ...] = ()) -> None:
    """Names, shapes and dtypes of a checkpoint's ``state_dict`` against ``model``'s own, before loading;
    ``resizable`` names buffers whose length is set by the data at fit time (k-GAN's assignment)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        raise ConfigError(f"{source}: its state_dict does not fit {type(model).__name__}: "
                          f"{len(missing)} missing ({', '.join(missing[:3])}), {len(extra)} unexpected "
                          f"({', '.join(str(e)[:60] for e in extra[:3])}).")
    for k, v in own.items():
        w = state[k]
        if k in resizable and isinstance(w, torch.Tensor) and w.dim() == v.dim() == 1 and w.dtype == v.dtype:
            continue
        if isinstance(v, torch.Tensor):
            if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(v.shape) or (
                    w.is_floating_point() != v.is_floating_point() and k.rsplit(".", 1)[-1] != "_extra_state"):
                got = f"{tuple(w.shape)} {w.dtype}" if isinstance(w, torch.Tensor) else type(w).__name__
                raise ConfigError(f"{_where(source, 'state_dict/' + k)}: is {got}, the model needs "
                                  f"{tuple(v.shape)} {v.dtype}.")


def _same_shape(saved: Any, live: Any, source: Any, key: str, counters: bool = False) -> None:
    """``saved`` has exactly the keys, lengths and leaf types of ``live`` (a state the running object
    produced); with ``counters`` its integers must be >= 0."""
    if isinstance(live, Mapping):
        # a loop's own "state_dict" also holds its data loaders' states (checked by their load_state_dict)
        extra_ok = counters and key.rsplit("/", 1)[-1] == "state_dict" and isinstance(saved, Mapping)
        if not isinstance(saved, Mapping) or (set(saved) != set(live) and not (extra_ok and set(live) <= set(saved))):
            extra = sorted(map(str, set(saved) - set(live))) if isinstance(saved, Mapping) else []
            lack = sorted(map(str, set(live) - set(saved))) if isinstance(saved, Mapping) else []
            raise ConfigError(f"{_where(source, key)}: not the state this trainer keeps (unexpected: "
                              f"{', '.join(extra[:4]) or 'none'}; missing: {', '.join(lack[:4]) or 'none'}).")
        for k in live:
            _same_shape(saved[k], live[k], source, f"{key}/{k}", counters)
        return
    if isinstance(live, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(live):
            raise ConfigError(f"{_where(source, key)}: expected {len(live)} values, got {str(saved)[:60]!r}.")
        for i, (s, v) in enumerate(zip(saved, live)):
            _same_shape(s, v, source, f"{key}[{i}]", counters)
        return
    number = isinstance(saved, (int, float)) and not isinstance(saved, bool)
    if isinstance(live, bool):
        ok, want = isinstance(saved, bool), "a boolean"
    elif isinstance(live, int):
        ok, want = number and isinstance(saved, int) and (saved >= 0 or not counters), "an integer" + (
            " >= 0" if counters else "")
    elif isinstance(live, float):
        ok, want = number and math.isfinite(saved), "a finite number"
    elif isinstance(live, str):
        ok, want = isinstance(saved, str), "a string"
    elif live is None:
        ok, want = saved is None or isinstance(saved, (bool, int, float, str)), "a plain value"
    elif isinstance(live, torch.Tensor):
        ok = isinstance(saved, torch.Tensor) and tuple(saved.shape) == tuple(live.shape)
        want = f"a {tuple(live.shape)} tensor"
    else:
        ok, want = type(saved) is type(live), f"a {type(live).__name__}"
    if not ok:
        raise ConfigError(f"{_where(source, key)}: expected {want}, got {str(saved)[:40]!r}.")


def _progress_consistent(node: Any, source: Any, key: str) -> None:
    """Lightning's progress counters only ever grow ready >= started >= processed >= completed."""
    if not isinstance(node, Mapping):
        return
    if {"ready", "started", "processed", "completed"} <= set(node):
        v = [node[k] for k in ("ready", "started", "processed", "completed")]
        if all(isinstance(x, int) for x in v) and not (v[0] >= v[1] >= v[2] >= v[3] >= 0):
            raise ConfigError(f"{_where(source, key)}: inconsistent progress counters {v} (ready >= started >= "
                              "processed >= completed); not a checkpoint Lightning wrote.")
    for k, sub in node.items():
        _progress_consistent(sub, source, f"{key}/{k}")


def check_loops(saved: Any, trainer: Any, source: Any) -> None:
    """The ``loops`` entry against the trainer's own loops' state (same keys and types, sane counters)."""
    if saved is None:
        return
    live = {"fit_loop": trainer.fit_loop.state_dict(), "validate_loop": trainer.validate_loop.state_dict(),
            "test_loop": trainer.test_loop.state_dict(), "predict_loop": trainer.predict_loop.state_dict()}
    _same_shape(saved, live, source, "loops", counters=True)
    _progress_consistent(saved, source, "loops")


def check_optimizers(saved: Any, optimizers: list, source: Any) -> None:
    """Each saved optimizer state against the live optimizer: as many param groups and parameters, the
    same hyperparameter keys, and every per-parameter tensor (Adam's moments) shaped like its parameter."""
    if saved is None:
        return
    if not isinstance(saved, list) or len(saved) != len(optimizers):
        n = len(saved) if isinstance(saved, list) else type(saved).__name__
        raise ConfigError(f"{_where(source, 'optimizer_states')}: {n} optimizer states for {len(optimizers)} "
                          "optimizers.")
    for i, (state, opt) in enumerate(zip(saved, optimizers)):
        key = f"optimizer_states[{i}]"
        live = opt.state_dict()
        if not isinstance(state, Mapping) or set(state) != {"state", "param_groups"}:
            raise ConfigError(f"{_where(source, key)}: not an optimizer state (keys state, param_groups).")
        groups = state["param_groups"]
        if not isinstance(groups, list) or len(groups) != len(live["param_groups"]):
            raise ConfigError(f"{_where(source, key + '/param_groups')}: not {len(live['param_groups'])} groups.")
        params: dict[Any, torch.Tensor] = {}
        for g, (sg, lg, pg) in enumerate(zip(groups, live["param_groups"], opt.param_groups)):
            gk = f"{key}/param_groups[{g}]"
            if not isinstance(sg, Mapping) or set(sg) != set(lg):
                raise ConfigError(f"{_where(source, gk)}: not the keys of this optimizer's groups.")
            ids = sg["params"]
            if not isinstance(ids, list) or len(ids) != len(pg["params"]) or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in ids):
                raise ConfigError(f"{_where(source, gk + '/params')}: not {len(pg['params'])} parameter ids.")
            params.update(zip(ids, pg["params"]))
            for hk, hv in lg.items():
                if hk != "params":
                    _same_shape(sg[hk], hv, source, f"{gk}/{hk}")
        st = state["state"]
        if not isinstance(st, Mapping):
            raise ConfigError(f"{_where(source, key + '/state')}: not a mapping.")
        for pid, entry in st.items():
            p = params.get(pid)
            if p is None or not isinstance(entry, Mapping):
                raise ConfigError(f"{_where(source, f'{key}/state/{pid}')}: names no parameter of this optimizer.")
            for name, v in entry.items():
                if isinstance(v, torch.Tensor) and v.dim() > 0 and tuple(v.shape) != tuple(p.shape):
                    raise ConfigError(f"{_where(source, f'{key}/state/{pid}/{name}')}: shape {tuple(v.shape)}, its "
                                      f"parameter is {tuple(p.shape)}.")
                if not isinstance(v, (torch.Tensor, int, float)) or isinstance(v, bool):
                    raise ConfigError(f"{_where(source, f'{key}/state/{pid}/{name}')}: not a tensor or number.")


def check_schedulers(saved: Any, configs: list, source: Any) -> None:
    if saved is None:
        return
    if not isinstance(saved, list) or len(saved) != len(configs):
        raise ConfigError(f"{_where(source, 'lr_schedulers')}: does not match the {len(configs)} configured "
                          "LR schedulers.")
    for i, (s, c) in enumerate(zip(saved, configs)):
        _same_shape(s, c.scheduler.state_dict(), source, f"lr_schedulers[{i}]")


def check_training_state(ckpt: Mapping, trainer: Any, source: Any) -> None:
    """Loops, optimizers and LR schedulers of a checkpoint against the trainer about to restore them."""
    check_loops(ckpt.get("loops"), trainer, source)
    check_optimizers(ckpt.get("optimizer_states"), list(trainer.optimizers), source)
    check_schedulers(ckpt.get("lr_schedulers"), list(trainer.lr_scheduler_configs), source)


# ----------------------------------------------------------------------------- small validators for states
def check_mapping(state: Any, types: Mapping[str, Any], source: Any, key: str, required: bool = False) -> dict:
    """A callback's or data module's saved state: a mapping whose known keys have the given types
    (unknown keys refused). Returns it as a dict."""
    if not isinstance(state, Mapping):
        raise ConfigError(f"{_where(source, key)}: not a mapping.")
    extra = [k for k in state if k not in types]
    if extra:
        raise ConfigError(f"{_where(source, key)}: unexpected entries {', '.join(map(str, extra[:4]))}.")
    for k, t in types.items():
        if k not in state:
            if required:
                raise ConfigError(f"{_where(source, key)}: lacks {k!r}.")
            continue
        v = state[k]
        if not isinstance(v, t) or (isinstance(v, bool) and bool not in (t if isinstance(t, tuple) else (t,))):
            raise ConfigError(f"{_where(source, f'{key}/{k}')}: expected {getattr(t, '__name__', t)}, got "
                              f"{str(v)[:40]!r}.")
    return dict(state)


def check_history(rows: Any, source: Any, key: str, limit: int = 100_000) -> list[dict]:
    """A list of metric rows ({name: number}) a callback keeps; anything else refused."""
    if not isinstance(rows, list) or len(rows) > limit:
        raise ConfigError(f"{_where(source, key)}: not a list of at most {limit} rows.")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in r.items()):
            raise ConfigError(f"{_where(source, f'{key}[{i}]')}: not a row of named numbers.")
    return [dict(r) for r in rows]


def source_of(trainer: Any) -> str:
    """The checkpoint file a trainer is restoring (for messages)."""
    p = getattr(trainer, "ckpt_path", None) if trainer is not None else None
    return str(Path(p)) if p else "checkpoint"
