"""An inversion encoder for a trained GAN: image -> noise and codes (the thesis's first future work).

A GAN maps latents to images but has no way back, so the Decision Maps (which start by encoding an
image) and interpolation between real images cannot use it. :func:`train_inversion` fits an encoder
*after* the GAN, on generated samples whose latents are known — noise regressed, categorical codes
classified, continuous codes regressed — plus an image term ‖G(E(x)) − x‖² through the frozen
generator (on generated and, optionally, real images). :class:`InvertedGAN` pairs the encoder with the
GAN so the pair :class:`~xgen.protocols.Encodes` and :class:`~xgen.protocols.Decodes`; ``refine_steps``
optionally polishes each latent by gradient descent on the reconstruction error.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xgen.errors import ConfigError, XgenError
from xgen.explain.common import module_device, to_unit
from xgen.latent import LatentSpec
from xgen.protocols import Conditional, Decodes, Generative, Posterior, require

__all__ = ["InversionEncoder", "InvertedGAN", "train_inversion", "reconstruction_error", "save_encoder",
           "load_encoder", "FORMAT"]

FORMAT = "xgen-inversion/1"
LOGVAR_DETERMINISTIC = -20.0  # the encoder is a point estimate: std e^-10


class InversionEncoder(nn.Module):
    """Conv encoder from images to a GAN's latent layout: noise, categorical logits, continuous codes.

    Stride-2 4×4 convolutions (``channels``) while the image is larger than 7 pixels, a 4×4 adaptive
    average pool, an FC layer of ``hidden`` units and one linear head per part of the latent.
    """

    def __init__(self, image_shape: Sequence[int], latent: LatentSpec | dict, channels: Sequence[int] = (32, 64, 128),
                 hidden: int = 256):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent = latent if isinstance(latent, LatentSpec) else LatentSpec.from_config(latent)
        self.config = {"channels": [int(c) for c in channels], "hidden": int(hidden)}
        c, h, _ = self.image_shape
        layers: list[nn.Module] = []
        for i, ch in enumerate(channels):
            if h <= 7 and i > 0:
                break
            layers += [nn.Conv2d(c, int(ch), 4, 2, 1)] + ([nn.BatchNorm2d(int(ch))] if i else []) + [nn.LeakyReLU(0.2)]
            c, h = int(ch), h // 2
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                      nn.Linear(c * 16, int(hidden)), nn.LeakyReLU(0.2))
        self.noise_head = nn.Linear(int(hidden), self.latent.noise) if self.latent.noise else None
        self.cat_heads = nn.ModuleList(nn.Linear(int(hidden), k) for k in self.latent.categorical)
        self.cont_head = nn.Linear(int(hidden), self.latent.continuous) if self.latent.continuous else None

    def parts(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """(noise (B, n), [categorical logits (B, K_i)], continuous (B, m))."""
        h = self.features(x)
        b = x.shape[0]
        noise = self.noise_head(h) if self.noise_head is not None else h.new_zeros(b, 0)
        cont = self.cont_head(h) if self.cont_head is not None else h.new_zeros(b, 0)
        return noise, [head(h) for head in self.cat_heads], cont

    @staticmethod
    def assemble(noise: Tensor, cat_logits: Sequence[Tensor], cont: Tensor) -> Tensor:
        """The generator input: noise, softmax of each categorical code (a soft one-hot), continuous."""
        return torch.cat([noise, *[torch.softmax(lg, 1) for lg in cat_logits], cont], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.assemble(*self.parts(x))


class InvertedGAN(nn.Module):
    """A GAN and its inversion encoder, seen as an encoder/decoder pair (Encodes + Decodes + Generative).

    ``encode(x)`` returns a :class:`~xgen.protocols.Posterior` whose mean is the encoder's latent (refined
    by ``refine_steps`` Adam steps on ‖G(z) − x‖² + ``prior_weight``·‖noise‖² when > 0) and whose
    log-variance is −20 (a point estimate).
    """

    def __init__(self, gan: nn.Module, encoder: InversionEncoder, refine_steps: int = 0, refine_lr: float = 0.05,
                 prior_weight: float = 1e-3):
        super().__init__()
        require(gan, Generative, "the inversion encoder")
        require(gan, Decodes, "the inversion encoder")
        if encoder.latent.to_dict() != gan.latent.to_dict() or tuple(encoder.image_shape) != tuple(gan.image_shape):
            raise ConfigError(f"encoder: it inverts a latent {encoder.latent.to_dict()} for {encoder.image_shape} images, "
                              f"but the GAN has {gan.latent.to_dict()} and {tuple(gan.image_shape)}. Fix: train an "
                              "encoder for this GAN (xgen explain invert --model CKPT).")
        self.gan, self.encoder = gan, encoder
        self.latent = gan.latent
        self.value_range = tuple(float(v) for v in gan.value_range)
        self.image_shape = tuple(gan.image_shape)
        self.refine_steps, self.refine_lr, self.prior_weight = int(refine_steps), float(refine_lr), float(prior_weight)
        if isinstance(gan, Conditional):  # the pair keeps the contract: class_code of the latent is the label
            self.class_code, self.num_classes = int(gan.class_code), int(gan.num_classes)

    def latent_for_class(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The GAN's :meth:`~xgen.protocols.Conditional.latent_for_class` (a conditional GAN only)."""
        return require(self.gan, Conditional, "latent_for_class").latent_for_class(labels, generator)

    def decode(self, z: Tensor) -> Tensor:
        return self.gan.decode(z)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.gan.sample_latent(n, generator)

    def generate(self, latent_or_n: int | Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.gan.generate(latent_or_n, generator)

    def encode(self, x: Tensor) -> Posterior:
        with torch.no_grad():
            z = self.encoder(x)
        if self.refine_steps > 0:
            z = refine(self.gan, x, z, self.refine_steps, self.refine_lr, self.prior_weight)
        return Posterior(z, torch.full_like(z, LOGVAR_DETERMINISTIC))

    def embed(self, x: Tensor) -> Tensor:
        return self.encode(x).mean


def refine(gan: nn.Module, x: Tensor, z0: Tensor, steps: int = 100, lr: float = 0.05,
           prior_weight: float = 1e-3) -> Tensor:
    """Per-image latent refinement: Adam on mean‖G(z) − x‖² + prior_weight·‖noise‖² from ``z0``."""
    n = gan.latent.noise
    with torch.enable_grad():
        z = z0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(int(steps)):
            opt.zero_grad()
            err = (gan.decode(z) - x).pow(2).flatten(1).mean(1)
            loss = (err + prior_weight * z[:, :n].pow(2).sum(1)).sum()
            loss.backward()
            opt.step()
    return z.detach()


def train_inversion(gan: nn.Module, steps: int = 2000, batch_size: int = 64, lr: float = 1e-3,
                    image_weight: float = 1.0, real_images: Tensor | None = None, seed: int = 0,
                    channels: Sequence[int] = (32, 64, 128), hidden: int = 256,
                    log_every: int = 0) -> InversionEncoder:
    """Fit an :class:`InversionEncoder` to a trained, frozen GAN.

    Each step draws ``batch_size`` latents from the prior, generates their images and minimises
    MSE(noise) + CE(categorical codes) + MSE(continuous codes) + ``image_weight``·MSE(G(E(x)), x);
    with ``real_images`` (in the GAN's value range) the image term also covers a batch of real images.
    """
    require(gan, Generative, "the inversion encoder")
    require(gan, Decodes, "the inversion encoder")
    if steps < 1 or batch_size < 2:
        raise ConfigError(f"steps/batch_size: need steps >= 1 and batch_size >= 2, got {steps}, {batch_size}")
    dev = module_device(gan)
    gan.eval()
    for p in gan.parameters():
        p.requires_grad_(False)
    torch.manual_seed(int(seed))
    enc = InversionEncoder(gan.image_shape, gan.latent, channels, hidden).to(dev)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    spec = gan.latent
    for t in range(int(steps)):
        codes = spec.sample_codes(batch_size, generator=gen, device=dev)
        with torch.no_grad():
            x = gan.decode(spec.assemble(codes))
        noise, cat, cont = enc.parts(x)
        loss = F.mse_loss(noise, codes.noise) if spec.noise else x.new_zeros(())
        for i, lg in enumerate(cat):
            loss = loss + F.cross_entropy(lg, codes.categorical[:, i])
        if spec.continuous:
            loss = loss + F.mse_loss(cont, codes.continuous)
        if image_weight > 0:
            xs = x
            if real_images is not None and len(real_images):
                j = torch.randint(len(real_images), (batch_size,), generator=gen)
                xs = torch.cat([x, real_images[j].to(dev).float()])
            rec = gan.decode(enc(xs))
            # per-image sum of squares / 100: the same scale as the code terms for 28x28 images
            loss = loss + image_weight * F.mse_loss(rec, xs) * math.prod(gan.image_shape) / 100.0
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log_every and (t + 1) % log_every == 0:
            print(f"inversion step {t + 1}/{steps}: loss {float(loss.detach()):.4f}", flush=True)
    enc.eval()
    return enc


@torch.no_grad()
def reconstruction_error(model, images: Tensor, batch_size: int = 256) -> dict:
    """Mean squared error per pixel, in [0, 1] pixel units, between images and decode(encode(images))
    (``model``: an :class:`InvertedGAN` or any Encodes+Decodes model); also the error of always
    answering the batch's mean image, for scale."""
    vr = tuple(model.value_range)
    errs = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(module_device(model)).float()
        with torch.enable_grad():
            z = model.encode(x).mean
        rec = model.decode(z)
        errs.append((to_unit(rec, vr) - to_unit(x, vr)).pow(2).flatten(1).mean(1).cpu())
    e = torch.cat(errs)
    u = to_unit(images.float(), vr)
    base = (u - u.mean(0, keepdim=True)).pow(2).flatten(1).mean(1)
    return {"mse": float(e.mean()), "mse_std": float(e.std()) if len(e) > 1 else 0.0,
            "mean_image_mse": float(base.mean()), "images": len(e)}


# ============================================================================ files
def save_encoder(path: str | Path, encoder: InversionEncoder, **meta: object) -> Path:
    """Write the encoder as plain containers and tensors (read back with ``weights_only=True``)."""
    rec = {"format": FORMAT, "image_shape": list(encoder.image_shape), "latent": encoder.latent.to_dict(),
           "config": dict(encoder.config), "meta": dict(meta),
           "state_dict": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rec, path)
    return path


def load_encoder(path: str | Path) -> InversionEncoder:
    """Read an encoder written by :func:`save_encoder`; a missing, corrupt or foreign file is a
    :class:`~xgen.errors.ConfigError` that says so."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"encoder: {path}: no such file. Fix: train one with `xgen explain invert --model CKPT "
                          "--out FILE`.")
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated zip, random bytes, pickles with code
        raise ConfigError(f"encoder: {path}: not a readable inversion encoder ({type(e).__name__}).") from None
    from xgen.checkpoint.schema import check_finite, check_structure  # [harden] data, and finite

    check_structure(rec, path, top_keys=False)
    check_finite(rec, path, ("state_dict",))
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or "state_dict" not in rec:
        raise ConfigError(f"encoder: {path}: not an xgen inversion encoder (format {FORMAT!r} expected).")
    try:
        cfg = rec.get("config") or {}
        enc = InversionEncoder(rec["image_shape"], LatentSpec.from_config(rec["latent"]),
                               channels=cfg.get("channels", (32, 64, 128)), hidden=cfg.get("hidden", 256))
        enc.load_state_dict(rec["state_dict"])
    except (XgenError, KeyError, TypeError, RuntimeError, ValueError) as e:
        raise ConfigError(f"encoder: {path}: does not hold a valid inversion encoder ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}).") from None
    enc.meta = rec.get("meta", {})
    return enc.eval()


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
