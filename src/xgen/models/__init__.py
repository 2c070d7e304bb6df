"""LightningModules: ``from xgen.models import VAE, BetaVAE, InfoVAE``."""

from xgen.models.base import load_model
from xgen.models.vae import VAE, BetaVAE, InfoVAE

__all__ = ["VAE", "BetaVAE", "InfoVAE", "load_model"]
