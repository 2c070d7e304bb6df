"""The adversarial training step as one function of losses, optimisers and parameters.

:func:`adversarial_step` is the whole step of the GAN family (Algorithm 1 of Goodfellow et al. 2014):
one discriminator (critic) update, then, when ``update_g``, one generator update with the
discriminator's parameters frozen. GAN, DCGAN, InfoGAN and k-GAN call it from ``training_step``
(through Lightning's ``manual_backward`` and optimiser wrappers), and ``bench/bench_speed.py``'s hand
loop calls the same function with plain ``Tensor.backward`` and ``torch.optim`` optimisers, so the
benchmark compares the framework around one step, not two copies of it.

The function is written to be capturable as a CUDA graph (:mod:`xgen.runtime.speed`): it returns detached
loss tensors and never reads a tensor's value on the host (no ``.item()``, no branch on a tensor),
every shape is fixed by the batch size, and the schedule (``update_g``) is a Python argument, so a
captured graph exists for each value.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

Terms = tuple[Tensor, dict[str, Tensor]]


@contextmanager
def frozen(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Parameters with ``requires_grad`` off inside the block (restored after), so that a backward pass
    computes no gradients for them: the other player's parameters during a player's update."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def player_update(loss: Tensor | None, optimizer, params: Sequence[nn.Parameter],
                  backward: Callable[[Tensor], None] | None = None,
                  average: Callable[[Sequence[nn.Parameter]], None] | None = None) -> None:
    """One player's update: clear its gradients, backpropagate ``loss`` (skipped when None), average the
    gradients over processes (``average``, DDP), and step its optimiser."""
    optimizer.zero_grad(set_to_none=True)
    if loss is not None:
        (backward or Tensor.backward)(loss)
    if average is not None:
        average(params)
    optimizer.step()


def clip_weights(params: Sequence[nn.Parameter], bound: float) -> None:
    """Clamp every parameter to [-bound, bound] in place (WGAN weight clipping, Arjovsky et al. 2017)."""
    with torch.no_grad():
        for p in params:
            p.clamp_(-bound, bound)


def adversarial_step(d_terms: Callable[[], Terms], g_terms: Callable[[], Terms], opt_d, opt_g,
                     d_params: Sequence[nn.Parameter], g_params: Sequence[nn.Parameter], *,
                     update_g: bool = True, clip_params: Sequence[nn.Parameter] = (),
                     clip_value: float | None = None, backward: Callable[[Tensor], None] | None = None,
                     average: Callable[[Sequence[nn.Parameter]], None] | None = None) -> dict[str, Tensor]:
    """One training step of a two-player game; returns its losses, detached (no host sync).

    Args:
        d_terms: () -> (discriminator loss, named terms): draws the generated batch and scores it
            together with the step's real batch (the closure holds the nets and the batch).
        g_terms: () -> (generator loss, named terms), called with ``d_params`` frozen.
        opt_d, opt_g: each player's optimiser (``torch.optim`` or Lightning's wrapper).
        d_params, g_params: the parameters each optimiser updates.
        update_g: whether this step also updates the generator (every ``n_critic``-th step).
        clip_params, clip_value: WGAN weight clipping of ``clip_params`` after the discriminator's step.
        backward: ``Tensor.backward`` by default; a LightningModule passes ``manual_backward``.
        average: averages gradients over processes before each optimiser step (DDP), or None.
    """
    loss_d, logs = d_terms()
    player_update(loss_d, opt_d, d_params, backward, average)
    if clip_value is not None:
        clip_weights(clip_params, clip_value)
    logs = dict(logs)
    if update_g:
        with frozen(d_params):
            loss_g, glogs = g_terms()
            player_update(loss_g, opt_g, g_params, backward, average)
        logs.update(glogs)
    return {k: v.detach() for k, v in logs.items()}
