"""One template for every model: build from its Hydra config, train one step, save, load, compare.

Each of xgen's eleven models (k-GAN included) goes through the same checks (issue 9, "One test template for every
model"): built by ``xgen.runtime.train.build`` from ``train.yaml`` with ``model=<name> data=digits``, one
training step through Lightning, a checkpoint, :func:`xgen.models.load_model` giving back identical
weights and identical outputs, the shapes and value range of ``generate``/``embed``, and exactly the
protocols that the table in :mod:`xgen.protocols` declares. Then what load_model refuses: foreign
classes (before importing anything), pickled code, truncated or corrupt files, and a model of the wrong
kind for a tool.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from xgen.errors import ConfigError
from xgen.protocols import (Adversarial, CapabilityError, Classifies, Decodes, Embeds, Encodes, Generative,
                            HasLikelihood, HasQ, PredictsCodes, capabilities)

VAE_CAPS = {"Generative", "Decodes", "Embeds", "Encodes", "HasLikelihood"}
GAN_CAPS = {"Generative", "Decodes", "Adversarial"}
# the table of xgen/protocols.py's docstring, model config name -> (class, protocols)
EXPECTED = {
    "vae": ("VAE", VAE_CAPS),
    "beta_vae": ("BetaVAE", VAE_CAPS),
    "info_vae": ("InfoVAE", VAE_CAPS),
    "gan": ("GAN", GAN_CAPS),
    "dcgan": ("DCGAN", GAN_CAPS),
    "infogan": ("InfoGAN", GAN_CAPS | {"Embeds", "PredictsCodes", "HasQ"}),
    "ss_infogan": ("SSInfoGAN", GAN_CAPS | {"Embeds", "PredictsCodes", "HasQ", "Conditional"}),
    "acgan": ("ACGAN", GAN_CAPS | {"Embeds", "PredictsCodes", "HasQ", "Conditional"}),
    "cgan": ("CGAN", GAN_CAPS | {"Conditional"}),
    "classifier": ("Classifier", {"Classifies"}),
    "kgan": ("KGAN", {"Generative", "Decodes"}),  # k generator/discriminator pairs: not one Adversarial pair
}
# smaller nets where the shipped ones would make the template slow (the checks are the same)
SMALL = {"ss_infogan": ["data.labels_per_class=3", "data.labelled_batch_size=8"],
         "kgan": ["model.k=2", "model.generator.channels=[16,8,4]", "model.discriminator.channels=[8,16]",
                  "model.partition.kmeans_iters=2", "model.partition.sinkhorn_iters=20"]}
FAST = ["data=digits", "data.batch_size=32", "callbacks=none", "logger=csv", "trainer.accelerator=cpu",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=0",
        "trainer.enable_model_summary=false", "+trainer.enable_progress_bar=false", "test=false"]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="xgen.conf", version_base="1.3"):
            return compose("train", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> (model after one training step, its data module, its checkpoint), built on first use."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            from xgen.runtime.train import build

            run = tmp_path_factory.mktemp(name)
            torch.manual_seed(0)
            dm, model, trainer, _ = build(_compose([f"model={name}", *FAST, *SMALL.get(name, [])]), run)
            before = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}  # k-GAN: + extra state
            trainer.fit(model, datamodule=dm)
            assert trainer.global_step >= 1
            changed = [k for k, v in model.state_dict().items()
                       if torch.is_tensor(v) and v.is_floating_point() and not torch.equal(v, before[k])]
            assert changed, f"{name}: one training step changed no parameter"
            ckpt = run / "model.ckpt"
            trainer.save_checkpoint(ckpt)
            cache[name] = (model.eval(), dm, ckpt)
        return cache[name]

    return get


def _fixed_images(dm, n=6):
    x, _ = dm.split("val")
    return dm.scale(x[:n])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_template_build_step_save_load_identical(name, trained):
    from xgen.models import load_model

    model, dm, ckpt = trained(name)
    cls_name, caps = EXPECTED[name]
    assert type(model).__name__ == cls_name
    assert dm.value_range == tuple(model.value_range)  # the builder passed the model's range to the data
    assert set(capabilities(model)) == caps

    loaded = load_model(ckpt)
    assert type(loaded) is type(model) and not loaded.training
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) if torch.is_tensor(sd[k]) else sd[k] == sd2[k] for k in sd)
    assert set(capabilities(loaded)) == caps

    x = _fixed_images(dm)
    with torch.no_grad():
        if isinstance(model, Generative):
            z = model.sample_latent(5, generator=torch.Generator().manual_seed(1))
            assert z.shape == (5, model.latent.dim)
            assert torch.equal(model.generate(z), loaded.generate(z))
            assert torch.equal(model.decode(z), loaded.decode(z))
        if isinstance(model, Embeds):
            assert torch.equal(model.embed(x), loaded.embed(x))
        if isinstance(model, Classifies):
            assert torch.equal(model(x), loaded(x))
            assert torch.equal(model.features(x), loaded.features(x))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_template_shapes_and_value_range(name, trained):
    model, dm, _ = trained(name)
    x = _fixed_images(dm)
    n = x.shape[0]
    with torch.no_grad():
        if isinstance(model, Generative):
            lo, hi = model.value_range
            imgs = model.generate(n, generator=torch.Generator().manual_seed(2))
            assert imgs.shape == (n, *dm.image_shape) and imgs.dtype == torch.float32
            assert lo <= float(imgs.min()) and float(imgs.max()) <= hi
            assert float(imgs.max()) > float(imgs.min())  # not a constant image
            again = model.generate(n, generator=torch.Generator().manual_seed(2))
            assert torch.equal(imgs, again)  # seeded generation is reproducible
        if isinstance(model, Encodes):
            post = model.encode(x)
            d = model.latent.dim
            assert post.mean.shape == post.logvar.shape == (n, d)
            assert torch.equal(model.embed(x), post.mean)  # a VAE's representation: the posterior mean
        if isinstance(model, PredictsCodes):
            emb = model.embed(x)
            k = model.latent.categorical[0]
            assert emb.shape == (n, model.latent.code_dim)
            torch.testing.assert_close(emb[:, :k].sum(1), torch.ones(n))  # softmax of the first code
            pred = model.predict_code(x)
            assert pred.dtype == torch.int64 and pred.shape == (n,) and torch.equal(pred, emb[:, :k].argmax(1))
        if isinstance(model, Adversarial):
            logits, feats = model.discriminator(x)
            assert logits.shape == (n,) and feats.ndim == 2 and feats.shape[0] == n
            assert set(model.last_losses) >= {"loss_d", "loss_g"}
            assert all(torch.isfinite(v) and not v.requires_grad for v in model.last_losses.values())
        if isinstance(model, HasQ):
            logits, mean, logvar = model.q(model.discriminator(x)[1])
            assert [lg.shape for lg in logits] == [(n, c) for c in model.latent.categorical]
            assert mean.shape == logvar.shape == (n, model.latent.continuous)
        if isinstance(model, HasLikelihood):
            z = model.encode(x).mean
            nll = model.reconstruction_nll(model.decode_logits(z), x)
            assert nll.shape == (n,) and bool((nll > 0).all())
        if isinstance(model, Classifies):
            cls, conf = model.predict(x)
            assert cls.shape == conf.shape == (n,) and cls.dtype == torch.int64
            assert bool(((conf >= 1 / model.num_classes - 1e-6) & (conf <= 1)).all())
            assert torch.equal(cls, model(x).argmax(1))


# ------------------------------------------------------------------------------------------ refusals
def _resave(ckpt: dict, dst: Path) -> Path:
    """Save a modified checkpoint with its whole-file digest recomputed, as a crafter would (the digest
    catches corruption; what follows must refuse the content itself)."""
    from xgen.checkpoint.schema import add_full_digest

    torch.save(add_full_digest(ckpt), dst)
    return dst


def _checkpoint_naming(src: Path, dst: Path, target: str) -> Path:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["xgen_class"] = target
    return _resave(ckpt, dst)


SENTINEL = "xgen_template_sentinel"


@pytest.fixture
def sentinel_module(tmp_path, monkeypatch):
    """An importable module that leaves a file behind if it is ever imported."""
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{SENTINEL}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                             "class Model:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(SENTINEL, None)
    yield marker
    sys.modules.pop(SENTINEL, None)


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", f"{SENTINEL}.Model", "subprocess.Popen",
                                    "xgen.models.gan.GAN.__init__", "xgen.models.vae.VAE "])
def test_a_foreign_class_is_refused_before_anything_is_imported(target, trained, tmp_path, sentinel_module):
    from xgen.models import load_model

    _, _, ckpt = trained("gan")
    bad = _checkpoint_naming(ckpt, tmp_path / "foreign.ckpt", target)
    load_model(ckpt)  # warm up: whatever a successful load imports lazily is imported now
    before = set(sys.modules)
    with pytest.raises(ConfigError, match="not one of xgen's models .* nothing was imported"):
        load_model(bad)
    assert set(sys.modules) - before == set()
    assert SENTINEL not in sys.modules and not sentinel_module.exists()
    # the sentinel is a real, importable module: the test would see an import
    if target.startswith(SENTINEL):
        import importlib

        importlib.import_module(SENTINEL)
        assert sentinel_module.exists()


CALLS: list = []


def _record_call(*args):
    """Stands in for os.system: a pickle that calls it on load would show up in CALLS."""
    CALLS.append(args)
    return 0


class _Payload:
    """Pickles to a call of :func:`_record_call` (as an attack would to os.system): the loader must not run it."""

    def __reduce__(self):
        return (_record_call, ("echo pwned",))


def test_a_checkpoint_carrying_pickled_code_is_refused(tmp_path):
    import pickle

    from xgen.models import load_model

    p = tmp_path / "payload.ckpt"
    torch.save({"state_dict": {}, "xgen_class": "xgen.models.gan.GAN", "x": _Payload()}, p)
    CALLS.clear()
    pickle.loads(pickle.dumps(_Payload()))  # the payload is live: unpickling it without care calls it
    assert CALLS == [("echo pwned",)]
    CALLS.clear()
    with pytest.raises(ConfigError, match="payload.ckpt: not an xgen checkpoint .*nothing in it was run"):
        load_model(p)
    assert CALLS == []


def test_truncated_corrupt_or_empty_files_give_a_config_error(trained, tmp_path):
    from xgen.models import load_model

    _, _, ckpt = trained("gan")
    data = ckpt.read_bytes()
    cases = {"truncated.ckpt": data[: len(data) // 2], "empty.ckpt": b"",
             "noise.ckpt": bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()),
             "flipped.ckpt": data[:100] + bytes(b ^ 0xFF for b in data[100:400]) + data[400:]}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ConfigError, match=name):
            load_model(tmp_path / name)
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        load_model(tmp_path / "missing.ckpt")
    # readable, but no state_dict / hyperparameters that do not build the class
    torch.save({"xgen_class": "xgen.models.gan.GAN"}, tmp_path / "nostate.ckpt")
    with pytest.raises(ConfigError, match="no state_dict"):
        load_model(tmp_path / "nostate.ckpt")
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    ck["hyper_parameters"]["n_critic"] = 0
    _resave(ck, tmp_path / "badhp.ckpt")
    with pytest.raises(ConfigError, match="hyperparameters do not build a GAN"):
        load_model(tmp_path / "badhp.ckpt")


def test_a_tool_handed_the_wrong_kind_of_model_names_itself(trained):
    from xgen.models import load_model

    _, _, gan_ckpt = trained("gan")
    with pytest.raises(CapabilityError, match=r"decision maps needs a model that is Encodes \(.*encode.*\); "
                                              r"GAN lacks encode, embed"):
        load_model(gan_ckpt, expect=Encodes, tool="decision maps")
    _, _, vae_ckpt = trained("vae")
    assert isinstance(load_model(vae_ckpt, expect=Encodes, tool="decision maps"), Encodes)
    with pytest.raises(CapabilityError, match="code accuracy needs a model that is PredictsCodes"):
        load_model(vae_ckpt, expect=PredictsCodes, tool="code accuracy")
    assert isinstance(load_model(gan_ckpt, expect=Decodes, tool="traversals"), Decodes)
