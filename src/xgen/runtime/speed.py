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
from contextlib import nullcontext
from typing import Any, Mapping

import torch
from lightning.pytorch.profilers import PassThroughProfiler
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
    if opts.get("cuda_graph"):
        model.cuda_graph = True  # the model's public switch (xgen.models.base.XgenModule.cuda_graph)
    return model


NULL_CONTEXT = nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler (it records nothing) with a cheaper ``profile``: one shared empty
    context instead of a new generator-based context manager per call. Lightning enters ``profile`` for
    every hook of every callback and of the model, about 100 times a training step (docs/speed.md).
    :func:`xgen.runtime.train.build` gives it to the trainer unless ``trainer.profiler`` is set; a real
    profiler (``trainer.profiler=simple``) records every hook as before."""

    def profile(self, action_name: str) -> nullcontext:
        return NULL_CONTEXT

