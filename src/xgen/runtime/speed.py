"""Speed options of a training run (config group ``speed``; docs/speed.md).

* ``speed.channels_last``: the model's 4-d weights (and so its convolutions) in NHWC memory layout;
* ``speed.compile``: every network of the model compiled with ``torch.compile`` (``nn.Module.compile``:
  the state dict, checkpoints and the step function are unchanged);
* ``speed.cuda_graph``: on a CUDA device, the whole adversarial step (both players, both optimiser steps)
  captured once as a CUDA graph and replayed for every batch (:class:`xgen.models.capture.CapturedStep`); where capture is
  impossible (no CUDA, several processes, a callback that needs eager tensors, a model without a
  capturable step) training stays eager and one line says why.

Precision is Lightning's ``trainer.precision`` (``32-true`` default, ``bf16-mixed``).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import nn

from xgen.errors import ConfigError

log = logging.getLogger("xgen")

OPTIONS = {"channels_last": False, "compile": False, "cuda_graph": False}

def options(cfg: Mapping[str, Any] | None) -> dict[str, bool]:
    """The ``speed`` config as a dict of booleans; unknown keys and non-booleans are refused."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"speed: unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
    out = dict(OPTIONS)
    for k, v in cfg.items():
        if not isinstance(v, bool):
            raise ConfigError(f"speed.{k}: expected true or false, got {v!r}")
        out[k] = v
    return out


def networks(model: nn.Module) -> list[nn.Module]:
    """The model's direct child networks (generator, discriminator, q_head, encoder, decoder, ...)."""
    return [m for m in model.children() if isinstance(m, nn.Module)]


def apply(model: nn.Module, opts: Mapping[str, bool]) -> nn.Module:
    """Apply ``channels_last`` and ``compile`` to ``model`` in place; ``cuda_graph`` is applied when training
    starts (:func:`xgen.models.capture.capture_problem` decides). Returns the model."""
    if opts.get("channels_last"):
        model.to(memory_format=torch.channels_last)
    if opts.get("compile"):
        for net in networks(model):
            net.compile()
    model._xgen_cuda_graph = bool(opts.get("cuda_graph"))
    return model





# ----------------------------------------------------------------------------- callback dispatch
_NOOP_CACHE: dict[tuple[type, str], bool] = {}


def _is_noop(callback: Any, hook_name: str) -> bool:
    """Whether ``callback``'s ``hook_name`` is Lightning's empty ``Callback`` method (not overridden by its
    class nor set on the instance)."""
    if hook_name in getattr(callback, "__dict__", {}):
        return False
    key = (type(callback), hook_name)
    hit = _NOOP_CACHE.get(key)
    if hit is None:
        from lightning.pytorch import Callback

        base = getattr(Callback, hook_name, None)
        hit = _NOOP_CACHE[key] = base is not None and getattr(type(callback), hook_name, None) is base
    return hit


def install_fast_callback_dispatch() -> bool:
    """Make Lightning skip callbacks whose hook is the empty base method.

    Lightning calls every hook of every callback, overridden or not: with xgen's 8 default callbacks
    that is about 50 calls a training step, each with a profiler context and a ``state_key`` string
    (about 1,450 Python calls a step, 0.5-1 ms on a CPU; docs/speed.md). The replacement calls exactly
    the hooks a callback implements, in the same order, with the same ``_current_fx_name`` bookkeeping;
    with a real profiler (``trainer.profiler`` set) Lightning's own dispatch is used, so every hook
    still shows in its report. Returns whether the replacement is installed (idempotent)."""
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.trainer import call

    original = getattr(call._call_callback_hooks, "_xgen_original", None)
    if original is not None:
        return True
    original = call._call_callback_hooks
    import inspect

    if list(inspect.signature(original).parameters)[:3] != ["trainer", "hook_name", "args"]:
        return False  # a Lightning whose dispatch we do not know: keep it

    def _call_callback_hooks(trainer: Any, hook_name: str, *args: Any, monitoring_callbacks: bool | None = None,
                             **kwargs: Any) -> None:
        if monitoring_callbacks is not None or type(trainer.profiler) is not PassThroughProfiler:
            return original(trainer, hook_name, *args, monitoring_callbacks=monitoring_callbacks, **kwargs)
        # per trainer and hook: the callbacks that implement it, recomputed when trainer.callbacks changes
        cache = trainer.__dict__.setdefault("_xgen_dispatch", {})
        current = tuple(trainer.callbacks)
        hit = cache.get(hook_name)
        if hit is None or hit[0] != current:
            hit = cache[hook_name] = (current, [cb for cb in current if not _is_noop(cb, hook_name)])
        callbacks = hit[1]
        if not callbacks:
            return None
        pl_module = trainer.lightning_module
        if pl_module:
            prev_fx_name = pl_module._current_fx_name
            pl_module._current_fx_name = hook_name
        for callback in callbacks:
            fn = getattr(callback, hook_name)
            if callable(fn):
                fn(trainer, trainer.lightning_module, *args, **kwargs)
        if pl_module:
            pl_module._current_fx_name = prev_fx_name
        return None

    _call_callback_hooks._xgen_original = original
    call._call_callback_hooks = _call_callback_hooks
    return True


# ----------------------------------------------------------------------------- module hooks, step kwargs
def is_empty_function(fn: Any) -> bool:
    """Whether ``fn`` is a plain Python function whose body does nothing (``pass`` and/or a docstring):
    calling it only returns None."""
    import dis
    import inspect

    code = getattr(fn, "__code__", None)
    if code is None or code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR):
        return False  # calling it makes a generator or coroutine object
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in ("RESUME", "NOP", "CACHE")]
    return ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


_EMPTY_MODULE_HOOK: dict[tuple[type, str], bool] = {}


def _module_hook_is_empty(pl_module: Any, hook_name: str) -> bool:
    """``hook_name`` of ``pl_module`` is LightningModule's empty method (not overridden, not set on the
    instance)."""
    if hook_name in pl_module.__dict__:
        return False
    key = (type(pl_module), hook_name)
    hit = _EMPTY_MODULE_HOOK.get(key)
    if hit is None:
        import lightning as L

        base = getattr(L.LightningModule, hook_name, None)
        hit = _EMPTY_MODULE_HOOK[key] = (base is not None and getattr(type(pl_module), hook_name, None) is base
                                         and is_empty_function(base))
    return hit


def install_fast_hook_dispatch() -> bool:
    """Everything :func:`install_fast_callback_dispatch` does, plus two more per-step savings inside
    Lightning's training loop (about 0.1 ms a step on a CPU together, docs/speed.md):

    * a LightningModule hook that is Lightning's own empty method (``on_train_batch_start``,
      ``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step``, ... when the model
      does not override them) is not called: calling it returns None, which is what the dispatch
      returns; an overridden hook is called exactly as Lightning calls it;
    * Lightning asks every step whether ``training_step`` takes a ``batch_idx`` argument by parsing its
      signature (``inspect.getfullargspec``); the answer is cached per function.

    With a real profiler Lightning's own dispatch runs, so its report lists every hook. Returns whether
    everything is installed (idempotent); where this Lightning's internals differ from the ones these
    replacements were written for, they are left alone."""
    ok = install_fast_callback_dispatch()
    from lightning.pytorch.loops import training_epoch_loop
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.trainer import call

    import inspect

    if getattr(call._call_lightning_module_hook, "_xgen_original", None) is None:
        original = call._call_lightning_module_hook
        if list(inspect.signature(original).parameters) != ["trainer", "hook_name", "args", "pl_module", "kwargs"]:
            ok = False
        else:
            def _call_lightning_module_hook(trainer: Any, hook_name: str, *args: Any, pl_module: Any = None,
                                            **kwargs: Any) -> Any:
                module = pl_module or trainer.lightning_module
                if (module is not None and type(trainer.profiler) is PassThroughProfiler
                        and _module_hook_is_empty(module, hook_name)):
                    return None
                return original(trainer, hook_name, *args, pl_module=pl_module, **kwargs)

            _call_lightning_module_hook._xgen_original = original
            call._call_lightning_module_hook = _call_lightning_module_hook
    check = getattr(training_epoch_loop, "is_param_in_hook_signature", None)
    if check is None:
        ok = False
    elif getattr(check, "_xgen_original", None) is None:
        cache: dict[tuple, bool] = {}

        def is_param_in_hook_signature(hook_fx: Any, param: str, explicit: bool = False,
                                       min_args: int | None = None) -> bool:
            fn = getattr(hook_fx, "__func__", None)
            if fn is None or hasattr(hook_fx, "__wrapped__") or hasattr(fn, "__wrapped__"):
                return check(hook_fx, param, explicit=explicit, min_args=min_args)
            key = (fn, param, explicit, min_args)
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = check(hook_fx, param, explicit=explicit, min_args=min_args)
            return hit

        is_param_in_hook_signature._xgen_original = check
        training_epoch_loop.is_param_in_hook_signature = is_param_in_hook_signature
    return ok
