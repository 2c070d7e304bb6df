"""Inference methods without autograd unless it is asked for.

A model's ``encode``, ``embed``, ``decode``, ``generate``, ``reconstruct`` ... are what research code
calls on a trained model. Built as plain ``nn.Module`` calls they would record an autograd graph
(every result ``requires_grad``, ``.numpy()`` fails, memory grows), so each of them is wrapped by
:func:`inference`: it runs under ``torch.no_grad()`` unless

* the caller passes ``grad=True`` (e.g. a training loop of one's own through ``model.generate``), or
* an input tensor already ``requires_grad`` (gradients *with respect to the input*: activation
  maximisation through ``decode(z)``, latent refinement, decision maps, an encoder trained through a
  frozen generator) — then autograd is left as it is (on, unless the caller turned it off).

``grad=False`` turns it off even then. Nested calls follow the outermost explicit choice
(``generate(64, grad=True)`` keeps the graph through its internal ``decode``). Training steps call the
networks directly and are unaffected.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable, TypeVar

import torch

__all__ = ["inference"]

F = TypeVar("F", bound=Callable[..., Any])

_CHOICE: contextvars.ContextVar[bool | None] = contextvars.ContextVar("xgen_inference_grad", default=None)


def _wants_input_grad(values: Any) -> bool:
    for v in values:
        if isinstance(v, torch.Tensor) and v.requires_grad:
            return True
        if isinstance(v, (tuple, list)) and _wants_input_grad(v):
            return True
    return False


def inference(fn: F) -> F:
    """Wrap a model method as described in this module: adds the keyword ``grad: bool | None = None``."""

    @functools.wraps(fn)
    def wrapper(self, *args: Any, grad: bool | None = None, **kwargs: Any) -> Any:
        choice = _CHOICE.get() if grad is None else bool(grad)
        if choice is None:
            track = torch.is_grad_enabled() and _wants_input_grad((*args, *kwargs.values()))
        else:
            track = choice
        token = _CHOICE.set(choice)
        try:
            with torch.set_grad_enabled(track):
                return fn(self, *args, **kwargs)
        finally:
            _CHOICE.reset(token)

    doc = (fn.__doc__ or "").rstrip()
    wrapper.__doc__ = (doc + "\n\n" if doc else "") + (
        "Runs without autograd (results do not require grad) unless ``grad=True`` or an input requires "
        "grad; see :mod:`xgen.models.inference`.")
    return wrapper  # type: ignore[return-value]
