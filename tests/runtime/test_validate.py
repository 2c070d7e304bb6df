"""Every bad input refused before work starts: a fuzz of generated invalid overrides across the config groups."""

from __future__ import annotations

import time
from typing import Any

import pytest

from xgen.errors import ConfigError

BASES = [
    ["data=digits"],
    ["data=digits", "model=beta_vae", "logger=tensorboard"],
    ["data=digits", "model=info_vae", "callbacks=fid"],
    ["data=digits", "model=infogan", "callbacks=gan"],
    ["data=digits", "model=dcgan", "callbacks=gan_dropout"],
    ["data=digits", "model=gan", "callbacks=gan", "logger=wandb"],
    ["data=digits", "model=classifier", "model.num_classes=10"],
    ["data=mnist", "model/net=mlp"],
]
SKIP_KEYS = ("_target_", "root", "name", "project", "entity", "group", "job_type", "version", "dirpath", "filename",
             "cache_dir", "weights", "save_dir", "tags", "task_name", "sweep_name", "optimized_metric", "split",
             "real_split", "monitor", "mode", "log_model", "prefix", "metrics", "final_metrics", "comment")
CHOICES = {"likelihood", "loss", "q_variance", "kernel", "extractor", "action", "accelerator", "precision", "arch",
           "strategy", "matmul_precision"}
SECTIONS = ("data", "model", "trainer", "callbacks", "logger")


def _leaves(node: Any, prefix: str):
    if isinstance(node, dict):
        if "_target_" in node and prefix.count(".") >= 2 and prefix.startswith("model."):
            return  # a network config inside the model: its own keys are covered below
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix, node


def bad_values(key: str, value: Any) -> list[str]:
    """Values that are invalid for sure for a key whose default is ``value``."""
    last = key.rsplit(".", 1)[-1]
    if last in SKIP_KEYS or last.startswith("_"):
        return []
    if isinstance(value, bool):
        return ["maybe", "[1]"]
    if isinstance(value, int):
        return ["1.5", "abc", "inf", "[1]"]
    if isinstance(value, float):
        return ["abc", "inf", "nan", "-inf", "'1e-3'"]
    if isinstance(value, str):
        return ["no_such_option", "[1,2]"] if last in CHOICES else ["[1,2]"]
    if isinstance(value, list):
        return ["abc", "[abc]"] if value and all(isinstance(v, (int, float)) for v in value) else ["abc"]
    return []


NAMED = [  # the examples + Hydra's own errors + ranges
    (["data=digits", "data.batch_size=1.5"], "data.batch_size"),
    (["data=digits", "trainer.max_epochs=1.5"], "trainer.max_epochs"),
    (["data=digits", "seed=abc"], "seed"),
    (["data=digits", "seed=-1"], "seed"),
    (["data=digits", "ckpt_path=/etc/passwd"], "ckpt_path"),
    (["data=digits", "ckpt_path=/no/such.ckpt"], "ckpt_path"),
    (["data=digits", "model.lr='1e-3'"], "model.lr"),
    (["data=digits", "model.lr=inf"], "model.lr"),
    (["data=digits", "model.beta=inf"], "model.beta"),
    (["data=digits", "model=infogan", "model.lambda_cat=inf"], "model.lambda_cat"),
    (["data=digits", "callbacks.sample_grids.nrow=0"], "callbacks.sample_grids.nrow"),
    (["data=digits", "model=classifier", "model.num_classes=5"], "model.num_classes"),
    (["data=digits", "trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["data=digits", "trainer.max_epochs=-1", "+trainer.max_steps=-1"], "trainer.max_epochs"),
    (["data=digits", "trainer.max_epochs=0"], "trainer.max_epochs"),
    (["data=digits", "trainer.devices=0"], "trainer.devices"),
    (["data=digits", "trainer.accelerator=abacus"], "trainer.accelerator"),
    (["data=digits", "trainer.precision=8"], "trainer.precision"),
    (["data=digits", "trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
    (["data=digits", "data.batch_size=0"], "data.batch_size"),
    (["data=digits", "model.lr=0"], "model.lr"),
    (["data=digits", "model.beta=-1"], "model.beta"),
    (["data=digits", "model.latent_dim=0"], "model.latent_dim"),
    (["data=digits", "data.size=30"], "data.size"),
    (["data=digits", "matmul_precision=ultra"], "matmul_precision"),
    (["data=digits", "model.no_such_key=1"], "model.no_such_key"),
    (["data=digits", "+model.no_such_key=1"], "model.no_such_key"),
    (["data=digits", "+trainer.no_such_key=1"], "trainer.no_such_key"),
    (["data=digits", "+data.no_such_key=1"], "data.no_such_key"),
    (["data=digits", "+callbacks.sample_grids.no_such=1"], "callbacks.sample_grids.no_such"),
    (["data=no_such_data"], "data"),
    (["data=digits", "model=no_such_model"], "model"),
    (["data=digits", "callbacks=no_such"], "callbacks"),
    (["data=digits", "logger=no_such"], "logger"),
    (["data=digits", "trainer=no_such"], "trainer"),
    (["data=digits", "model/net=no_such"], "model/net"),
    (["data=digits", "trainer.max_epochs=[1"], "trainer.max_epochs"),
    (["data=digits", "+callbacks.evil._target_=os.system"], "callbacks.evil"),
    (["data=digits", "model.encoder._target_=os.system"], "model.encoder._target_"),
    (["data=digits", "data._target_=builtins.exec"], "data._target_"),
]


def generated_cases() -> list[tuple[list[str], str]]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from xgen.runtime.cli import CONFIG_DIR

    cases: list[tuple[list[str], str]] = []
    seen = set()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for base in BASES:
            cfg = OmegaConf.to_container(compose("train", overrides=base), resolve=False)
            for section in SECTIONS:
                for key, value in _leaves(cfg.get(section) or {}, section):
                    if isinstance(value, str) and "${" in value:
                        continue
                    for bad in bad_values(key, value):
                        if (key, bad) in seen:
                            continue
                        seen.add((key, bad))
                        cases.append(([*base, f"{key}={bad}"], key))
    GlobalHydra.instance().clear()
    return cases


_BASE_CFGS: dict[tuple[str, ...], Any] = {}


def run_case(overrides: list[str], tmp_path) -> tuple[str, str]:
    """('refused', message) | ('accepted', '') | ('traceback', repr) for one list of overrides. A case
    that changes one value of a base config reuses that base's composition (Hydra's parser and struct
    rules still apply the value); anything else is composed in full."""
    from xgen.runtime.validate import apply_value_overrides, precheck, validate

    base, last = tuple(overrides[:-1]), overrides[-1:]
    try:
        if base in _BASE_CFGS:
            try:
                cfg = apply_value_overrides(_BASE_CFGS[base], last)
            except NotImplementedError:
                precheck(overrides, run_dir=tmp_path)
            else:
                validate(cfg, tmp_path)
        else:
            precheck(overrides, run_dir=tmp_path)
    except ConfigError as e:
        msg = str(e)
        return ("refused", msg) if "\n" not in msg.strip() else ("multi-line", msg)
    except Exception as e:  # noqa: BLE001 - a traceback is what this test counts
        return "traceback", f"{type(e).__name__}: {e}"
    return "accepted", ""


def test_named_bad_inputs_are_refused_naming_their_key(tmp_path):
    bad = []
    for overrides, key in NAMED:
        outcome, msg = run_case(overrides, tmp_path)
        if outcome != "refused" or key not in msg:
            bad.append((overrides, outcome, msg[:200]))
    assert not bad, bad


def test_valid_configs_pass(tmp_path):
    for base in BASES:
        assert run_case(base, tmp_path) == ("accepted", ""), base


@pytest.mark.slow
def test_fuzz_invalid_overrides(tmp_path):
    """>= 300 generated invalid overrides: 0 tracebacks, 0 accepted, each message names its key."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from xgen.runtime.cli import CONFIG_DIR

    start = time.perf_counter()
    cases = generated_cases() + NAMED
    assert len(cases) >= 300, len(cases)
    tally: dict[str, list] = {"refused": [], "accepted": [], "traceback": [], "multi-line": [], "unnamed": []}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        from hydra import compose

        for base in BASES:
            _BASE_CFGS[tuple(base)] = compose("train", overrides=base)
        for overrides, key in cases:
            outcome, msg = run_case(overrides, tmp_path)
            if outcome == "refused" and key not in msg:
                outcome = "unnamed"
            tally[outcome].append((overrides[-1], msg[:160]))
    GlobalHydra.instance().clear()
    elapsed = time.perf_counter() - start
    summary = {k: len(v) for k, v in tally.items()}
    print(f"fuzz: {len(cases)} cases in {elapsed:.0f} s: {summary}")
    assert not tally["traceback"], tally["traceback"][:10]
    assert not tally["accepted"], tally["accepted"][:20]
    assert not tally["unnamed"] and not tally["multi-line"], (tally["unnamed"][:10], tally["multi-line"][:5])
    assert elapsed < 180


def test_force_add_override_is_accepted_like_hydra_does():
    """``++trainer.max_steps=4`` sets a key the trainer config lacks (Hydra's force-add); the checks before
    work accepted ``+`` but refused ``++`` as "not a key of this config"."""
    from xgen.runtime.validate import precheck_command

    assert precheck_command(["model=gan", "data=digits", "++trainer.max_steps=4", "++trainer.max_epochs=1"]) == 1
    assert precheck_command(["-m", "model=gan", "data=digits", "++trainer.max_steps=4", "seed=1,2"]) == 2
    with pytest.raises(ConfigError, match="trainer.max_step: not a key of this config; did you mean trainer.max_"):
        precheck_command(["model=gan", "data=digits", "trainer.max_step=4"])
