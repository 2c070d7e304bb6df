"""Exact resume: every RNG state goes into the checkpoint and comes back at the step it was taken.

:class:`ResumeState` is a callback every training job gets. Its state (saved in each checkpoint) holds
the Python, NumPy, torch CPU and CUDA generator states at the moment of the save; on resume they are
put back just before the next training batch runs (mid-epoch checkpoint) or just before the next
epoch starts (end-of-epoch checkpoint), which is where the uninterrupted run was when it saved. The
data order is a function of (seed, epoch) and the position inside the epoch is saved by the data
loader (:class:`xgen.data.base.TensorBatches`), so a run killed at any step and resumed on the same
machine with deterministic settings ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def capture_rng() -> dict[str, Any]:
    """Every global generator's state, as plain containers and tensors (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` recorded."""
    py = state["python"]
    random.setstate((int(py[0]), tuple(int(v) for v in py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                         float(n["cached"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def check_rng(state: Any, source: Any = "checkpoint", key: str = "callbacks/ResumeState/rng") -> dict[str, Any]:
    """What :func:`capture_rng` wrote, checked value by value before any of it is put back (a crafted RNG
    state would otherwise end in a traceback deep inside ``random.setstate``)."""
    from xgen.checkpoint_schema import check_mapping
    from xgen.errors import ConfigError

    st = check_mapping(state, {"python": (tuple, list), "numpy": dict, "torch": torch.Tensor, "cuda": (list, tuple)},
                       source, key)
    for k in ("python", "numpy", "torch"):
        if k not in st:
            raise ConfigError(f"{source}: entry '{key}' lacks {k!r}.")
    py = st["python"]
    words = py[1] if len(py) == 3 else None
    if not (len(py) == 3 and py[0] == 3 and isinstance(words, (tuple, list)) and len(words) == 625
            and all(isinstance(w, int) and not isinstance(w, bool) and 0 <= w < 2**32 for w in words)
            and (py[2] is None or isinstance(py[2], float))):
        raise ConfigError(f"{source}: entry '{key}/python': not a Python random state (version 3, 625 words).")
    n = check_mapping(st["numpy"], {"kind": str, "keys": torch.Tensor, "pos": int, "has_gauss": int, "cached": float},
                      source, f"{key}/numpy", required=True)
    keys = n["keys"]
    if not (n["kind"] == "MT19937" and keys.dtype == torch.int64 and tuple(keys.shape) == (624,)
            and bool(((keys >= 0) & (keys < 2**32)).all()) and 0 <= n["pos"] <= 624 and n["has_gauss"] in (0, 1)):
        raise ConfigError(f"{source}: entry '{key}/numpy': not a NumPy MT19937 state.")
    want = torch.get_rng_state()
    for k, t in [("torch", st["torch"]), *[(f"cuda[{i}]", c) for i, c in enumerate(st.get("cuda") or [])]]:
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 1 or (
                k == "torch" and t.shape != want.shape):
            raise ConfigError(f"{source}: entry '{key}/{k}': not a torch generator state ({tuple(want.shape)} bytes).")
    return st


def _mid_epoch(trainer: Any) -> bool:
    loop = trainer.fit_loop.epoch_loop
    n = trainer.num_training_batches
    done = loop.batch_progress.current.processed
    return bool(0 < done < n) if isinstance(n, int) else done > 0


class ResumeState(Callback):
    """Saves the RNG states with every checkpoint and restores them where the saving run was."""

    def __init__(self) -> None:
        self._trainer: Any = None
        self._pending: dict[str, Any] | None = None
        self._loaded: dict[str, Any] | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        t = self._trainer
        return {"rng": capture_rng(), "mid_epoch": bool(t is not None and _mid_epoch(t)),
                "global_step": int(t.global_step) if t is not None else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        from xgen.checkpoint_schema import check_mapping, source_of

        source = source_of(self._trainer)
        state = check_mapping(state_dict, {"rng": dict, "mid_epoch": bool, "global_step": int}, source,
                              "callbacks/ResumeState", required=True)
        check_rng(state["rng"], source)
        self._pending = state

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint  # checked against the optimizers once they exist (on_fit_start)

    def on_fit_start(self, trainer, pl_module) -> None:
        loaded, self._loaded = getattr(self, "_loaded", None), None
        if loaded is not None:  # before Lightning restores loops, optimizers and schedulers from it
            from xgen.checkpoint_schema import check_training_state, source_of

            check_training_state(loaded, trainer, source_of(trainer))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._pending is not None and not self._pending.get("mid_epoch"):
            restore_rng(self._pending["rng"])
            self._pending = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            restore_rng(self._pending["rng"])
            self._pending = None


def attach(trainer: Any) -> None:
    """Give ``trainer`` a :class:`ResumeState` (after every other callback, so it sees their effects)."""
    if not any(isinstance(c, ResumeState) for c in trainer.callbacks):
        trainer.callbacks.append(ResumeState())


# ----------------------------------------------------------------------------- resuming a run directory
RESUME_OVERRIDABLE = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time", "ckpt_path", "test",
                      "callbacks.progress_bar", "callbacks.progress_bar.refresh_rate", "callbacks.progress_bar.refresh_per_second", "trainer.enable_progress_bar",
                      "skip_completed", "matmul_precision", "trainer.devices", "trainer.accelerator",
                      "callbacks.model_checkpoint.every_n_minutes", "speed.channels_last", "speed.compile", "speed.cuda_graph")
"""Keys an override may change when a run is resumed (everything else comes from the run's config.yaml)."""


def _override_key(override: str) -> str:
    key = override.split("=", 1)[0].strip()
    return key.lstrip("+~")


def _rebase(node: Any, old: str, new: str) -> Any:
    """Replace the old run directory prefix in every string (a moved or copied run directory)."""
    if isinstance(node, dict):
        return {k: _rebase(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v, old, new) for v in node]
    if isinstance(node, str) and old and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new + node[len(old.rstrip("/")):] if node != old else new
    return node


def resume_config(cfg: Any, overrides: list[str], run_dir: str | Path) -> Any:
    """The config to run: ``cfg`` itself for a fresh run; for ``ckpt_path`` pointing into ``run_dir``
    (e.g. ``hydra.run.dir=<run> ckpt_path=last``) the run's own saved ``config.yaml`` (checked like any
    file, see :mod:`xgen.safety`) with only :data:`RESUME_OVERRIDABLE` overrides applied; any other
    override is refused (ConfigError naming it) before anything is written."""
    from omegaconf import OmegaConf, open_dict

    from xgen.errors import ConfigError
    from xgen.safety import check_run_config, load_yaml

    ckpt_path = cfg.get("ckpt_path")
    run_dir = Path(run_dir)
    saved_file = run_dir / "config.yaml"
    if not ckpt_path or not saved_file.is_file():
        return cfg
    p = run_dir if str(ckpt_path) == "last" else Path(str(ckpt_path)).expanduser()
    own = p.resolve() == run_dir.resolve() or run_dir.resolve() in p.resolve().parents
    if not own:
        return cfg
    from xgen.rundir import check_config_writes, check_run_tree

    check_run_tree(run_dir)  # a link out of the run would make the resumed job write elsewhere
    saved = load_yaml(saved_file)
    check_run_config(saved, saved_file)
    bad = [o for o in overrides if not _override_key(o).startswith("hydra.")
           and _override_key(o) not in RESUME_OVERRIDABLE]
    if bad:
        raise ConfigError(f"{bad[0].split('=', 1)[0]}: cannot change when resuming {run_dir}: the run continues with "
                          f"its own config ({saved_file}). Allowed on resume: {', '.join(RESUME_OVERRIDABLE)}. "
                          "To train a different configuration, start a new run (ckpt_path=<this run's last.ckpt> "
                          "with another hydra.run.dir fine-tunes from it).")
    plain_saved = OmegaConf.to_container(saved, resolve=False)
    old_dir = str(plain_saved.get("paths", {}).get("output_dir", "")) if isinstance(plain_saved, dict) else ""
    rebased = _rebase(plain_saved, old_dir, str(run_dir))
    check_config_writes(rebased, run_dir, saved_file)
    merged = OmegaConf.create(rebased)
    with open_dict(merged):
        for o in overrides:
            key = _override_key(o)
            if key.startswith("hydra."):
                continue
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
        merged.ckpt_path = ckpt_path
        if "paths" in merged:
            merged.paths.output_dir = str(run_dir)
    return merged


def check_checkpoint_matches(cfg: Any, ckpt_file: str | Path) -> dict:
    """Refuse (ConfigError) a checkpoint that does not hold the configured model and data: its model
    class, the saved hyperparameters the config sets, and its data module must agree with ``cfg``.
    Returns the checkpoint (read and checked by :func:`xgen.safety.read_checkpoint`)."""
    from omegaconf import OmegaConf

    from xgen.errors import ConfigError
    from xgen.models.base import CLASS_KEY, MODEL_REGISTRY
    from xgen.safety import _locate, read_checkpoint, target_allowed

    ckpt = read_checkpoint(ckpt_file)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    target = str(model_cfg.get("_target_"))
    cls = MODEL_REGISTRY.get(target)
    if cls is None and target_allowed(target, "model") is None:
        cls = _locate(target)
    saved_cls = ckpt.get(CLASS_KEY)
    if cls is not None and saved_cls is not None and MODEL_REGISTRY.get(str(saved_cls)) is not cls:
        raise ConfigError(f"ckpt_path={ckpt_file}: holds a {str(saved_cls).rsplit('.', 1)[-1]}, but model={target} is "
                          "configured; nothing was written. Resume with the run's own config, or choose the "
                          "matching model.")
    hp = ckpt.get("hyper_parameters") or {}
    scalar = (int, float, str, bool)
    diff = [k for k, v in model_cfg.items() if k != "_target_" and k in hp and isinstance(v, scalar)
            and isinstance(hp[k], scalar) and hp[k] != v]
    if diff:
        k = diff[0]
        raise ConfigError(f"ckpt_path={ckpt_file}: model.{k} is {model_cfg[k]!r} in the config but {hp[k]!r} in the "
                          f"checkpoint (also differing: {', '.join('model.' + d for d in diff[1:]) or 'none'}); "
                          "nothing was written.")
    data_target = str(cfg.data.get("_target_", "")) if cfg.get("data") is not None else ""
    data_name = data_target.rsplit(".", 1)[-1]
    dm_keys = [k for k in ckpt if isinstance(k, str) and k.endswith("DataModule")]
    if data_name and dm_keys and data_name not in dm_keys:
        raise ConfigError(f"ckpt_path={ckpt_file}: was trained on {dm_keys[0]}, but data={data_target} is configured; "
                          "nothing was written.")
    return ckpt
