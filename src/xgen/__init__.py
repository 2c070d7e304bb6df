"""xgen: deep generative models for representation learning and explainability.

Lightning modules (``xgen.models``), data modules (``xgen.data``), networks (``xgen.nets``),
callbacks (``xgen.callbacks``) and metrics (``xgen.metrics``); the ``xgen`` command composes them
with Hydra (configs in ``xgen.conf``).
"""

__version__ = "0.2.0"
