"""Exact resume: every RNG state goes into the checkpoint and comes back at the step it was taken.

:class:`ResumeState` is a callback every training job has: configured (``callbacks.resume_state`` in
every preset), and added by the runtime to a config without it, after every other callback. Its state
(saved in each checkpoint) holds the Python, NumPy, torch CPU and CUDA generator states at the moment of
the save; on resume they are put back just before the next training batch runs (mid-epoch checkpoint)
or just before the next epoch starts (end-of-epoch checkpoint), which is where the uninterrupted run was
when it saved. The data order is a function of (seed, epoch) and the position inside the epoch is saved
by the data loader (:class:`xgen.data.base.TensorBatches`), so a run killed at any step and resumed on the
same machine with deterministic settings ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import random
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
    from xgen.checkpoint.schema import check_mapping
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
        self._fit_trainer: Any = None
        self._pending: dict[str, Any] | None = None
        self._loaded: dict[str, Any] | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._fit_trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        t = self._fit_trainer
        return {"rng": capture_rng(), "mid_epoch": bool(t is not None and _mid_epoch(t)),
                "global_step": int(t.global_step) if t is not None else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        from xgen.checkpoint.schema import check_mapping, source_of

        source = source_of(self._fit_trainer)
        state = check_mapping(state_dict, {"rng": dict, "mid_epoch": bool, "global_step": int}, source,
                              "callbacks/ResumeState", required=True)
        check_rng(state["rng"], source)
        self._pending = state

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint  # checked against the optimizers once they exist (on_fit_start)

    def on_fit_start(self, trainer, pl_module) -> None:
        loaded, self._loaded = getattr(self, "_loaded", None), None
        if loaded is not None:  # before Lightning restores loops, optimizers and schedulers from it
            from xgen.checkpoint.schema import check_training_state, source_of

            check_training_state(loaded, trainer, source_of(trainer))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._pending is not None and not self._pending.get("mid_epoch"):
            restore_rng(self._pending["rng"])
            self._pending = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            restore_rng(self._pending["rng"])
            self._pending = None
