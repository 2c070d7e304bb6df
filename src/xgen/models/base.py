"""Pieces every xgen LightningModule shares: injected networks, plain-container hyperparameters."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import lightning as L
import torch
from torch import nn

from xgen.errors import ConfigError, XgenError, check
from xgen.registry import MODEL_REGISTRY, class_path
from xgen.models.optim import adam, check_optim  # noqa: F401  (re-exported: the models' optimisers)
from xgen.models.step import player_update


def plain(value: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists (checkpoints stay loadable with weights_only)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return value


def build_net(spec: nn.Module | Mapping | Callable[..., nn.Module] | None, default: Callable[..., nn.Module],
              key: str, **kwargs: Any) -> nn.Module:
    """Make a network from what the user injected.

    ``spec`` is an ``nn.Module`` (used as is), a Hydra-style mapping with ``_target_`` (instantiated
    with ``kwargs`` such as ``image_shape`` and ``latent_dim`` added), a callable returning a module
    (e.g. a class or ``functools.partial``), or ``None`` (``default(**kwargs)``).
    """
    if spec is None:
        return default(**kwargs)
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, Mapping):
        if "_target_" not in spec:
            raise ConfigError(f"{key}: a network config needs a _target_ (e.g. xgen.nets.vae.ConvEncoder)")
        from xgen.checkpoint.safety import instantiate  # [harden] only allow-listed nets are instantiated

        return instantiate(dict(spec), "net", key, **kwargs)
    if callable(spec):
        return spec(**kwargs)
    raise ConfigError(f"{key}: expected a module, a config with _target_, or a callable; got {type(spec)}")


CLASS_KEY = "xgen_class"


def record_class(module: Any, checkpoint: dict) -> None:
    """Store the LightningModule's import path and the SHA-256 digest of its tensors in the checkpoint
    (every xgen model calls this from ``on_save_checkpoint``)."""
    from xgen.checkpoint.safety import add_digest

    checkpoint[CLASS_KEY] = class_path(module)
    add_digest(checkpoint)


def attached_trainer(module: Any) -> Any:
    """The trainer ``module`` is attached to, or None (Lightning's public ``module.trainer`` raises when
    the module is detached)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def verify_checkpoint(module: Any, checkpoint: dict) -> None:
    """Check a checkpoint Lightning is about to restore into ``module`` (call from ``on_load_checkpoint``,
    the first hook of a resume): every entry's schema, the digests, finite weights, and the state dict's
    names and shapes against the module (:mod:`xgen.checkpoint.schema`). Refused with one ConfigError."""
    from xgen.checkpoint.schema import (check_finite, check_state_dict_matches, check_structure, source_of,
                                        verify_full_digest)
    from xgen.checkpoint.safety import verify_digest

    source = source_of(attached_trainer(module))
    check_structure(checkpoint, source)
    verify_digest(checkpoint, source)
    verify_full_digest(checkpoint, source)
    check_finite(checkpoint, source)
    check_state_dict_matches(checkpoint["state_dict"], module, source,
                             resizable=tuple(getattr(module, "resizable_buffers", ())))


def _class_from_config(path: Path) -> str | None:
    from omegaconf import OmegaConf

    p = path.resolve()
    for cfg_file in (p.parent / "config.yaml", p.parent.parent / "config.yaml"):
        if cfg_file.is_file():
            try:
                target = OmegaConf.load(cfg_file).model["_target_"]
            except Exception as e:  # unreadable or without model._target_
                raise ConfigError(f"{cfg_file}: cannot read model._target_ ({type(e).__name__}: {e})") from None
            return str(target)
    return None


def load_model(path: str | Path, map_location: str | torch.device = "cpu", expect: type | None = None,
               tool: str = "load_model", *, strict: bool = True, cls_expected: type | None = None,
               overrides: Mapping[str, Any] | None = None) -> L.LightningModule:
    """Load any xgen model from a checkpoint file alone, in eval mode.

    The file is read once (``weights_only=True``: plain containers and tensors only). The class comes
    from the checkpoint's ``xgen_class`` entry (else the run directory's ``config.yaml``) and must be in
    :data:`MODEL_REGISTRY`; the model is rebuilt from the saved hyperparameters and its weights loaded
    strictly. ``expect`` (a protocol of :mod:`xgen.protocols`) makes a tool's requirement explicit:
    a model that lacks it is refused with a message naming ``tool`` and what is missing.
    The tensors must match the checkpoint's SHA-256 digest, and every ``_target_`` in the saved
    hyperparameters must be allow-listed (:mod:`xgen.checkpoint.safety`): loading never runs code.
    ``cls_expected`` (used by ``Model.load_from_checkpoint``) refuses a checkpoint of another class;
    ``overrides`` replace saved hyperparameters.
    """
    from xgen.checkpoint.safety import check_config_targets, read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    target = ckpt.get(CLASS_KEY) or _class_from_config(path)
    if target is None:
        raise ConfigError(f"{path}: cannot tell which model this checkpoint holds (no '{CLASS_KEY}' "
                          "entry and no config.yaml beside it).")
    cls = MODEL_REGISTRY.get(str(target))
    if cls is None:
        known = ", ".join(sorted(c.__name__ for c in set(MODEL_REGISTRY.values())))
        raise ConfigError(f"{path}: the checkpoint names model class {str(target)[:200]!r}, which is not one of "
                          f"xgen's models ({known}); nothing was imported. A model of your own must be "
                          "registered first: xgen.models.register_model(MyModel).")
    if cls_expected is not None and not issubclass(cls, cls_expected):
        raise ConfigError(f"{path}: holds a {cls.__name__}, not a {cls_expected.__name__}; load it with "
                          f"{cls.__name__}.load_from_checkpoint or xgen.models.load_model.")
    hparams = ckpt.get("hyper_parameters") or {}
    if not isinstance(hparams, dict) or not all(isinstance(k, str) for k in hparams):
        raise ConfigError(f"{path}: hyper_parameters is not a mapping of names.")
    check_config_targets(hparams, path, "net", "hyper_parameters")
    hparams = {**hparams, **dict(overrides or {})}
    try:
        model = cls(**hparams)
        model.load_state_dict(ckpt["state_dict"], strict=strict)
    except XgenError as e:
        raise ConfigError(f"{path}: its hyperparameters do not build a {cls.__name__}: {e}") from None
    except (TypeError, RuntimeError, ValueError, KeyError) as e:
        raise ConfigError(f"{path}: does not hold a valid {cls.__name__} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:300]}).") from None
    model.to(map_location).eval()
    if expect is not None:
        from xgen.protocols import require

        require(model, expect, tool)
    return model


def agree_value_range(module: L.LightningModule) -> None:
    """Called from a model's ``setup``: the data module hands out images in the model's ``value_range``.

    A data module built without a range takes the model's (the model tells the data — the data never
    asks the model); one built with a different range is refused, since training a tanh generator on
    [0, 1] images (or a sigmoid decoder on [-1, 1]) silently learns the wrong thing."""
    trainer = attached_trainer(module)
    dm = trainer.datamodule if trainer is not None else None
    if dm is None or not hasattr(dm, "set_value_range"):  # a plain LightningDataModule: the user's business
        return
    want = tuple(float(v) for v in module.value_range)
    if not dm.value_range_given:
        dm.set_value_range(want)
    elif tuple(float(v) for v in dm.value_range) != want:
        raise ConfigError(f"data.value_range: the data module hands out images in {tuple(dm.value_range)} but "
                          f"{type(module).__name__} reads and writes {want}. Fix: build the data module with "
                          f"value_range={list(want)} (or leave it unset: the model's range is then used).")


def log_due(trainer: Any, batch_idx: int) -> bool:
    """Whether Lightning writes the loggers after training batch ``batch_idx``: every ``log_every_n_steps``
    logger steps (and when training stops), at the last batch of an epoch (then the epoch value is
    complete) and when ``max_steps`` is reached. Read from the trainer's public state only.

    Lightning's logger step counts the training batches of every epoch so far (one per optimiser step
    under automatic optimisation with gradient accumulation); it is resumed with the checkpoint, as are
    ``current_epoch`` and ``batch_idx``, so the count below is the same after a resume."""
    n = trainer.num_training_batches
    done = batch_idx + 1 >= n or (trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps)
    every = int(trainer.log_every_n_steps)
    if every <= 0:
        return done
    if trainer.should_stop or done:
        return True
    module = trainer.lightning_module
    accumulate = int(trainer.accumulate_grad_batches)
    if module is not None and module.automatic_optimization and accumulate > 1:
        stepped = (batch_idx + 1) % accumulate == 0  # else gradients accumulate: Lightning writes nothing
        step = trainer.global_step + (0 if stepped else 1)
    else:
        before = trainer.current_epoch * n if trainer.current_epoch and math.isfinite(n) else 0
        step = int(before) + batch_idx + 1
    return step % every == 0


class TrainLog:
    """Training-step metrics without per-step framework work: :meth:`log_train` adds each value times
    the batch size to a running sum on the device (no host sync, no ``self.log``); on the batches where
    Lightning writes the loggers (:func:`log_due`) the sums since the last write go to ``self.log`` as
    their batch-weighted mean, with ``batch_size`` = images summed. So ``metrics.csv``, W&B, TensorBoard
    and the progress bar get the same keys as per-step logging (``train/<k>_step``, ``train/<k>_epoch``),
    the epoch value is the exact epoch mean, and a ``_step`` row is the mean over the steps since the
    previous row (docs/speed.md). ``train_prog_bar`` names the keys shown in the bar; ``train_sync_dist``
    averages them over processes under DDP."""

    train_prog_bar: tuple[str, ...] = ()
    train_sync_dist: bool = True

    def log_train(self, logs: Mapping[str, torch.Tensor], batch_size: int) -> None:
        sums = self.__dict__.setdefault("_train_sums", {})
        for k, v in logs.items():
            v = v.detach()
            acc = sums.get(k)
            if acc is None:
                sums[k] = [v.float() * batch_size, batch_size]
            else:
                acc[0].add_(v, alpha=batch_size)
                acc[1] += batch_size

    def flush_train_log(self) -> None:
        """Hand the sums to Lightning (``self.log``) and start new ones."""
        sums = self.__dict__.get("_train_sums")
        if not sums:
            return
        for k, (total, n) in sums.items():
            self.log(f"train/{k}", total / n, on_step=True, on_epoch=True, prog_bar=k in self.train_prog_bar,
                     sync_dist=self.train_sync_dist, batch_size=n)
        sums.clear()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.__dict__.get("_train_sums") and log_due(self.trainer, batch_idx):
            self.flush_train_log()

    def on_train_epoch_start(self) -> None:
        self.__dict__.setdefault("_train_sums", {}).clear()


class XgenModule(TrainLog, L.LightningModule):
    """The base class of every xgen model (VAEs, GANs, k-GAN, the classifier).

    * **safe loading**: ``Model.load_from_checkpoint(path)`` goes through :func:`load_model` (the file
      read with ``weights_only=True``, its digest verified, its network configs allow-listed);
    * **checkpoints**: ``on_save_checkpoint`` records the class and the tensors' digest
      (:func:`record_class`), ``on_load_checkpoint`` verifies a checkpoint before Lightning restores it
      (:func:`verify_checkpoint`);
    * **data range**: ``setup`` agrees the data module's ``value_range`` with the model's
      (:func:`agree_value_range`);
    * **training metrics**: :class:`TrainLog` (``log_train``; ``train_prog_bar``, ``train_sync_dist``).

    Capabilities (:mod:`xgen.protocols`) are declared by the members a model defines; every model
    declares ``value_range`` (the images it reads and writes) and ``image_shape``, and
    ``resizable_buffers`` names buffers whose length is known only at fit time (checked by name, not
    shape, when a checkpoint is restored). A subclass that overrides ``setup``, ``on_save_checkpoint``
    or ``on_load_checkpoint`` calls ``super()``.
    """

    value_range: tuple[float, float]
    image_shape: tuple[int, ...]
    resizable_buffers: tuple[str, ...] = ()
    cuda_graph: bool = False
    """Capture the whole training step as a CUDA graph when training starts, where the model has a
    capturable step (``speed.cuda_graph=true`` sets it; :mod:`xgen.models.capture`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Lightning asks every training step whether training_step takes batch_idx (inspect.getfullargspec,
        # about 0.1 ms on a CPU); a function's __signature__ (Python's inspect protocol) answers it at once
        super().__init_subclass__(**kwargs)
        import inspect

        for name in ("training_step", "validation_step", "test_step"):
            fn = cls.__dict__.get(name)
            if inspect.isfunction(fn) and "__signature__" not in fn.__dict__:
                fn.__signature__ = inspect.signature(fn)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, **kwargs: Any):
        """``Model.load_from_checkpoint(path)`` through :func:`load_model`, in train mode (Lightning's
        convention); keywords replace saved hyperparameters."""
        if hparams_file is not None:
            raise ConfigError("load_from_checkpoint: hparams_file is not supported by xgen models; the "
                              "hyperparameters saved in the checkpoint are used (pass overrides as keywords).")
        kwargs.pop("weights_only", None)
        model = load_model(checkpoint_path, map_location=map_location or "cpu", strict=strict is not False,
                           cls_expected=cls, overrides=kwargs)
        return model.train()

    def setup(self, stage: str) -> None:
        agree_value_range(self)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the class so that a loader can rebuild the model from the checkpoint file alone."""
        record_class(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        verify_checkpoint(self, checkpoint)


class StepModule(XgenModule):
    """A model with one Adam over all its parameters (``lr``, ``betas``, ``weight_decay``
    hyperparameters) whose train/val/test steps all go through ``_step(batch, stage)``."""

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    # One plain update a step (xgen.models.step.player_update) instead of Lightning's automatic
    # optimisation, whose closure and hooks cost about 1 ms a step around a 15 ms MLP-VAE step on a CPU
    # (docs/speed.md). Lightning implements gradient clipping and accumulation only for automatic
    # optimisation, so a trainer that asks for either gets it. ``manual_step = False``: always Lightning's.
    manual_step: bool = True

    def configure_callbacks(self):
        """Choose the optimisation for this trainer (Lightning's public ``automatic_optimization`` setter).
        This is the first hook of a run with the trainer attached, and it comes before Lightning checks
        the configuration (which refuses clipping or accumulation under manual optimisation) and before
        ``configure_optimizers``. A subclass that overrides it calls ``super()``."""
        if self.manual_step:
            t = self.trainer
            self.automatic_optimization = bool(t.gradient_clip_val) or int(t.accumulate_grad_batches) > 1
        return []

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        if self.automatic_optimization:
            return loss
        player_update(loss, self.optimizers(), (), backward=self.manual_backward)
        return loss.detach()

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        h = self.hparams
        return adam(self.parameters(), h.lr, h.betas, h.weight_decay)

    def on_train_start(self) -> None:
        if self.cuda_graph:  # speed.cuda_graph=true: not for automatic optimisation
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"speed.cuda_graph: training eagerly: {type(self).__name__} is optimised by Lightning's "
                           "automatic optimisation; whole-step capture covers the GAN family (docs/speed.md).")
