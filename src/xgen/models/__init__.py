"""LightningModules: ``from xgen.models import VAE, BetaVAE, InfoVAE, GAN, DCGAN, InfoGAN, SSInfoGAN, ACGAN,
CGAN, KGAN, Classifier``.

What each model can do is declared by :mod:`xgen.protocols`; :func:`load_model` rebuilds any of them
from a checkpoint through :data:`MODEL_REGISTRY`.
"""

from xgen.losses import discriminator_loss, generator_loss, gradient_penalty, info_terms
from xgen.models.base import load_model
from xgen.registry import MODEL_REGISTRY, register_model
from xgen.models.classifier import Classifier
from xgen.models.conditional import ACGAN, CGAN, SSInfoGAN
from xgen.models.gan import DCGAN, GAN
from xgen.models.infogan import InfoGAN
from xgen.models.kgan import KGAN
from xgen.models.vae import VAE, BetaVAE, InfoVAE

for _cls in (VAE, BetaVAE, InfoVAE, GAN, DCGAN, InfoGAN, SSInfoGAN, ACGAN, CGAN, KGAN, Classifier):
    register_model(_cls)

__all__ = ["VAE", "BetaVAE", "InfoVAE", "GAN", "DCGAN", "InfoGAN", "SSInfoGAN", "ACGAN", "CGAN", "KGAN", "Classifier", "load_model", "register_model",
           "MODEL_REGISTRY", "discriminator_loss", "generator_loss", "gradient_penalty", "info_terms"]
