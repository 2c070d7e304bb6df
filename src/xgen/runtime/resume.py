"""Resuming a run directory: the run's own config comes back (with the few overrides a resume may
change), its checkpoint is checked against that config before anything is built, and every training job
has a :class:`~xgen.callbacks.resume.ResumeState` callback (exact RNG resume): configured
(``callbacks.resume_state``), else added by :func:`attach`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xgen.callbacks.resume import ResumeState


def attach(trainer: Any) -> None:
    """Make sure ``trainer`` resumes exactly: :class:`ResumeState` is a configured callback
    (``callbacks.resume_state`` in every preset), but exact resume is part of a job's correctness, so a
    trainer whose config has none (``callbacks=none``, a user's own callbacks, a run's older config.yaml)
    gets one here; and it is moved after every other callback, so it sees their effects (Lightning's
    Trainer puts the checkpoint callbacks last of the list it is given). Call it after every other
    callback is in place."""
    found = [c for c in trainer.callbacks if isinstance(c, ResumeState)]
    others = [c for c in trainer.callbacks if not isinstance(c, ResumeState)]
    trainer.callbacks = others + (found or [ResumeState()])


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
    file, see :mod:`xgen.checkpoint.safety`) with only :data:`RESUME_OVERRIDABLE` overrides applied; any other
    override is refused (ConfigError naming it) before anything is written."""
    from omegaconf import OmegaConf, open_dict

    from xgen.errors import ConfigError
    from xgen.checkpoint.safety import check_run_config, load_yaml

    ckpt_path = cfg.get("ckpt_path")
    run_dir = Path(run_dir)
    saved_file = run_dir / "config.yaml"
    if not ckpt_path or not saved_file.is_file():
        return cfg
    p = run_dir if str(ckpt_path) == "last" else Path(str(ckpt_path)).expanduser()
    own = p.resolve() == run_dir.resolve() or run_dir.resolve() in p.resolve().parents
    if not own:
        return cfg
    from xgen.runtime.rundir import check_config_writes, check_run_tree

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
    Returns the checkpoint (read and checked by :func:`xgen.checkpoint.safety.read_checkpoint`)."""
    from omegaconf import OmegaConf

    from xgen.errors import ConfigError
    from xgen.models.base import CLASS_KEY
    from xgen.registry import MODEL_REGISTRY
    from xgen.checkpoint.safety import _locate, read_checkpoint, target_allowed

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
