"""docs/extending.md's listings run as written (read from the page, not copied): a toy model registered,
trained two steps, saved and reloaded through load_model; a metric and an explain tool on it through the
protocols; a callback attached to a Trainer."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "extending.md"
SHAPE = (1, 8, 8)


def listing(name: str) -> str:
    """The fenced block right after ``<!-- listing: name -->`` in docs/extending.md."""
    m = re.search(rf"<!-- listing: {re.escape(name)} -->\n```\w+\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert m is not None, f"docs/extending.md: no listing {name!r}"
    return m.group(1)


def run(name: str, module: str, ns: dict | None = None) -> dict:
    ns = {"__name__": module, **(ns or {})}
    exec(compile(listing(name), f"{PAGE}:{name}", "exec"), ns)  # noqa: S102 - our own docs, the point of the test
    return ns


@pytest.fixture
def tiny_module(monkeypatch):
    """The model listing as the module xgen.models.tiny (the file the page says to create), registered."""
    from xgen.registry import MODEL_REGISTRY

    mod = types.ModuleType("xgen.models.tiny")
    mod.__dict__.update(run("model", "xgen.models.tiny"))
    monkeypatch.setitem(sys.modules, "xgen.models.tiny", mod)
    before = dict(MODEL_REGISTRY)
    run("register", "__docs__", {"TinyAE": mod.TinyAE})
    yield mod
    MODEL_REGISTRY.clear()
    MODEL_REGISTRY.update(before)


def loader(n: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.rand(n, *SHAPE, generator=g)), batch_size=8)


def trainer(tmp_path: Path, **kw) -> L.Trainer:
    return L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kw)


def test_model_from_its_config_trains_saves_and_reloads(tiny_module, tmp_path):
    from xgen.checkpoint.safety import instantiate
    from xgen.models import load_model
    from xgen.protocols import capabilities
    from xgen.registry import MODEL_REGISTRY

    assert MODEL_REGISTRY["xgen.models.tiny.TinyAE"] is tiny_module.TinyAE
    cfg = yaml.safe_load(listing("model-config"))
    torch.manual_seed(0)
    model = instantiate(cfg, kind="model", key="model", image_shape=SHAPE)
    assert isinstance(model, tiny_module.TinyAE) and set(capabilities(model)) == {"Generative", "Decodes", "Embeds"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = trainer(tmp_path)
    t.fit(model, train_dataloaders=loader())
    assert t.global_step == 2
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    t.save_checkpoint(tmp_path / "tiny.ckpt")

    again = load_model(tmp_path / "tiny.ckpt")
    assert type(again) is tiny_module.TinyAE
    z = model.sample_latent(4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.generate(z), model.eval().generate(z))
    assert again.generate(3).shape == (3, *SHAPE) and not again.generate(3).requires_grad

    # the template test's row, as the page gives it
    row = re.search(r'"tiny_ae": \("TinyAE", (\{.*?\})\)', PAGE.read_text(encoding="utf-8")).group(1)
    assert eval(row) == set(capabilities(again))  # noqa: S307 - a set literal from our own docs


def test_a_checkpoint_of_an_unregistered_model_is_refused(tiny_module, tmp_path):
    from xgen.errors import ConfigError
    from xgen.models import load_model
    from xgen.registry import MODEL_REGISTRY

    model = tiny_module.TinyAE(image_shape=SHAPE)
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, train_dataloaders=loader(8))
    t.save_checkpoint(tmp_path / "tiny.ckpt")
    del MODEL_REGISTRY["xgen.models.tiny.TinyAE"]
    with pytest.raises(ConfigError, match="register_model"):
        load_model(tmp_path / "tiny.ckpt")


def test_metric_and_explain_tool_read_models_through_the_protocols(tiny_module):
    from xgen.models import Classifier
    from xgen.protocols import CapabilityError

    metric = run("metric", "xgen.metrics.spread")
    explain = run("explain", "xgen.explain.step")
    model = tiny_module.TinyAE(image_shape=SHAPE, latent_dim=3).eval()
    images = torch.rand(10, *SHAPE, generator=torch.Generator().manual_seed(0))
    spread = metric["model_code_spread"](model, images)
    assert spread > 0 and metric["code_spread"](torch.ones(5, 3)) == 0.0
    diff = explain["latent_step"](model, torch.tensor([1.0, 0.0, 0.0]), n=4)
    assert diff.shape == (4, *SHAPE) and float(diff.abs().max()) > 0

    other = Classifier(image_shape=(1, 28, 28))
    with pytest.raises(CapabilityError, match="code spread needs a model that is Embeds"):
        metric["model_code_spread"](other, torch.rand(2, 1, 28, 28))
    with pytest.raises(CapabilityError, match=r"latent step needs a model that is Generative .*; Classifier lacks latent, sample_latent, generate"):
        explain["latent_step"](other, torch.ones(3))


def test_callback_logs_the_sample_mean_every_epoch(tiny_module, tmp_path):
    cb = run("callback", "xgen.callbacks.sample_mean")["SampleMean"](n=8)
    model = tiny_module.TinyAE(image_shape=SHAPE)
    t = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[cb],
                  enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    t.fit(model, train_dataloaders=loader())
    assert len(cb.history) == 2 and all(0 < v < 1 for v in cb.history)
    assert float(t.callback_metrics["train/sample_mean"]) == pytest.approx(cb.history[-1])
