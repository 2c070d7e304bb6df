"""LightningModules: ``from xgen.models import VAE, BetaVAE, InfoVAE, Classifier``."""

from xgen.models.base import load_model
from xgen.models.classifier import Classifier
from xgen.models.vae import VAE, BetaVAE, InfoVAE

__all__ = ["VAE", "BetaVAE", "InfoVAE", "Classifier", "load_model"]
