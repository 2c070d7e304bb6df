"""LightningModules: ``from xgen.models import VAE, BetaVAE, InfoVAE, GAN, DCGAN, InfoGAN, Classifier``."""

from xgen.models.base import load_model
from xgen.models.classifier import Classifier
from xgen.models.gan import DCGAN, GAN, discriminator_loss, generator_loss, gradient_penalty
from xgen.models.infogan import InfoGAN, info_terms
from xgen.models.vae import VAE, BetaVAE, InfoVAE

__all__ = ["VAE", "BetaVAE", "InfoVAE", "GAN", "DCGAN", "InfoGAN", "Classifier", "discriminator_loss",
           "generator_loss", "gradient_penalty", "info_terms", "load_model"]
