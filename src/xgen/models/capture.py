"""Whole-step CUDA-graph capture of the GAN family's adversarial step (``speed.cuda_graph=true``,
docs/speed.md): :func:`capture_problem` says why a run cannot be captured, :class:`CapturedStep` records
the step once and replays it, :func:`make_capturable` prepares an optimiser for capture."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

# callback hooks that run between the backward pass and the optimiser step: a captured step skips them
EAGER_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")


def capture_problem(trainer: Any, model: nn.Module) -> str | None:
    """Why the whole step cannot be captured as a CUDA graph in this run (None: it can)."""
    if getattr(trainer, "world_size", 1) > 1:
        return "several processes (DDP averages gradients between the two players' updates)"
    precision = str(getattr(getattr(trainer, "precision_plugin", None), "precision", "32-true"))
    if precision.startswith("16"):
        return f"precision {precision} (its gradient scaler steps on the host)"
    if getattr(model, "uses_labels", False):
        return f"{type(model).__name__} reads the batch's labels in its step (conditional models train eagerly)"
    if not hasattr(model, "graph_step"):
        return f"{type(model).__name__} has no capturable step (the GAN family has one)"
    from lightning.pytorch import Callback

    for cb in getattr(trainer, "callbacks", []):
        for hook in EAGER_HOOKS:
            if getattr(type(cb), hook, None) is not getattr(Callback, hook):
                return f"callback {type(cb).__name__} needs eager tensors in {hook}"
    if not torch.cuda.is_available() or model.device.type != "cuda":
        return "no CUDA device"
    return None


class CapturedStep:
    """A training step ``step(x) -> dict of tensors`` run as CUDA graphs (Nvidia's whole-network capture
    recipe): the first ``warmup`` calls run eagerly on a side stream (cuBLAS/cuDNN workspaces and the
    optimiser state are created there), the next call copies its batch into a static input buffer,
    captures the step and replays it; every later call copies the batch in and replays. The outputs are
    the graph's static tensors (read or copy them before the next call). ``key`` names the variant of the
    step (e.g. whether the generator is updated): each key gets its own graph, sharing one memory pool."""

    def __init__(self, step: Callable[..., dict[str, Tensor]], warmup: int = 3):
        if not torch.cuda.is_available():
            raise RuntimeError("CapturedStep needs CUDA")
        self.step, self.warmup = step, int(warmup)
        self.calls = 0
        self.static_x: Tensor | None = None
        self.graphs: dict[Any, tuple[torch.cuda.CUDAGraph, dict[str, Tensor]]] = {}
        self.pool = None

    def __call__(self, x: Tensor, key: Any = None, **kwargs: Any) -> dict[str, Tensor]:
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step(x, **kwargs)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.static_x is None:
            self.static_x = x.detach().clone()
        elif self.static_x.shape != x.shape:
            raise ValueError(f"a captured step takes batches of one shape {tuple(self.static_x.shape)}, got "
                             f"{tuple(x.shape)} (train with drop_last, the default of xgen's data modules)")
        self.static_x.copy_(x)
        if key not in self.graphs:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                out = self.step(self.static_x, **kwargs)
            self.pool = self.pool or graph.pool()
            self.graphs[key] = (graph, out)
        graph, out = self.graphs[key]
        graph.replay()
        return out


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Switch an Adam-like optimiser to ``capturable`` (its step count lives on the device)."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True

