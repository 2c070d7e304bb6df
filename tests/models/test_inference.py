"""Inference methods (encode, embed, decode, generate, ...) record no autograd graph unless asked:
results do not require grad and ``.numpy()`` works; ``grad=True`` or an input that requires grad keeps
gradients (what activation maximisation, latent refinement and decision maps need); training steps
are unchanged."""

from __future__ import annotations

import warnings

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def _models():
    from xgen.models import GAN, KGAN, VAE, Classifier, InfoGAN
    from xgen.nets.vae import MLPDecoder, MLPEncoder

    torch.manual_seed(0)
    shape = (1, 28, 28)
    vae = VAE(image_shape=shape, latent_dim=3, encoder=MLPEncoder(shape, 3, hidden=(16,)),
              decoder=MLPDecoder(shape, 3, hidden=(16,)))
    gan = GAN(image_shape=shape, latent={"noise": 4, "categorical": [], "continuous": 0})
    info = InfoGAN(image_shape=shape, latent={"noise": 4, "categorical": [3], "continuous": 2})
    kgan = KGAN(image_shape=shape, k=2, latent={"noise": 4})
    clf = Classifier(image_shape=shape, num_classes=3)
    return {"vae": vae, "gan": gan, "infogan": info, "kgan": kgan, "classifier": clf}


def _calls(name: str, m, x: torch.Tensor):
    """(label, thunk(**kw)) of every inference method of model ``name`` on images x."""
    z = m.sample_latent(2, generator=torch.Generator().manual_seed(0)) if name != "classifier" else None
    if name == "vae":
        return {"encode": lambda **kw: m.encode(x, **kw).mean, "embed": lambda **kw: m.embed(x, **kw),
                "decode": lambda **kw: m.decode(z, **kw), "decode_logits": lambda **kw: m.decode_logits(z, **kw),
                "reconstruct": lambda **kw: m.reconstruct(x, **kw), "generate": lambda **kw: m.generate(2, **kw)}
    if name == "classifier":
        return {"features": lambda **kw: m.features(x, **kw)}
    out = {"decode": lambda **kw: m.decode(z, **kw), "generate": lambda **kw: m.generate(2, **kw),
           "generate(latent)": lambda **kw: m.generate(z, **kw)}
    if name == "infogan":
        out["embed"] = lambda **kw: m.embed(x, **kw)
    if name == "kgan":
        out["generate_member"] = lambda **kw: m.generate_member(1, 2, **kw)
    return out


def test_inference_methods_carry_no_gradients_unless_asked():
    x = torch.rand(2, 1, 28, 28)
    for name, m in _models().items():
        m.eval()
        for label, call in _calls(name, m, x).items():
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # .numpy() of a tensor that requires grad raises
                out = call()
                assert not out.requires_grad, (name, label)
                out.numpy()
            assert call(grad=True).requires_grad, (name, label)  # e.g. a hand-written training loop
            assert not call(grad=False).requires_grad
            with torch.no_grad():  # an explicit grad=True wins over an enclosing no_grad
                assert call(grad=True).requires_grad, (name, label)


def test_gradients_reach_inputs_that_require_them():
    """Gradient-based explain tools hand in a tensor that requires grad: d output / d input flows."""
    models = _models()
    vae, gan, kgan = models["vae"].eval(), models["gan"].eval(), models["kgan"].eval()
    for m in (vae, gan, kgan):
        z = m.sample_latent(2, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        m.decode(z).sum().backward()
        assert z.grad is not None and float(z.grad.abs().sum()) > 0
        with torch.no_grad():  # ...but an enclosing no_grad is respected
            assert not m.decode(z).requires_grad
        assert not m.decode(z, grad=False).requires_grad
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    vae.reconstruct(x).sum().backward()  # nested: encoder output requires grad, so decode keeps it
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    xi = torch.rand(2, 1, 28, 28, requires_grad=True)
    models["infogan"].eval().embed(xi).sum().backward()
    assert xi.grad is not None


def test_training_steps_keep_their_gradients():
    from xgen.models.inference import inference

    m = _models()["vae"].train()
    x = torch.rand(4, 1, 28, 28)
    loss = m.terms(x)["loss"]
    assert loss.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert "grad=True" in type(m).decode.__doc__ and inference.__module__ == "xgen.models.inference"


def test_gradient_explain_tools_still_get_gradients():
    """Latent refinement and activation maximisation through a real model's decode still climb."""
    from torch import nn

    from xgen.explain.activation_max import maximize_latent
    from xgen.explain.inversion import refine

    gan = _models()["gan"].eval()
    target = gan.decode(gan.sample_latent(1, generator=torch.Generator().manual_seed(5)))
    z0 = gan.sample_latent(1, generator=torch.Generator().manual_seed(6))
    before = float((gan.decode(z0) - target).pow(2).mean())
    after = float((gan.decode(refine(gan, target, z0, steps=30, lr=0.05)) - target).pow(2).mean())
    assert after < 0.8 * before, (before, after)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3))
    res = maximize_latent(net, "1", gan, unit=0, steps=20, lr=0.05, latent_l2=0.0)
    assert res.activation[-1] > res.activation[0]
