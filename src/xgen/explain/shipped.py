"""Where the explainability checkpoints shipped with xgen live (``xgen/weights/explain_*.pt``).

They are small xgen checkpoints (half-precision weights, read by :func:`xgen.models.load_model` with
``weights_only=True``), retrained bit for bit by ``scripts/train_explain_models.py``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from xgen.errors import ConfigError

SHIPPED = {"infogan": "explain_infogan_fashion_mnist.pt", "infovae": "explain_infovae_fashion_mnist.pt",
           "infogan-encoder": "explain_infogan_encoder_fashion_mnist.pt"}


def shipped_checkpoints() -> dict[str, Path]:
    """name -> path of every shipped explainability checkpoint present in this installation."""
    d = Path(str(files("xgen"))) / "weights"
    return {k: d / v for k, v in SHIPPED.items() if (d / v).is_file()}


def shipped_checkpoint(name: str) -> Path:
    """The path of shipped checkpoint ``name`` (infogan, infovae, infogan-encoder)."""
    have = shipped_checkpoints()
    if name not in have:
        raise ConfigError(f"model: no shipped checkpoint {name!r} in this installation (shipped: "
                          f"{', '.join(have) or 'none'}). Fix: pass a checkpoint path, or retrain them with "
                          "`python scripts/train_explain_models.py`.")
    return have[name]
