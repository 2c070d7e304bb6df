"""What xgen may build from a file: register your own classes here before loading their checkpoints.

    import xgen.registry
    xgen.registry.allow_target("mypkg.nets.MyEncoder")   # a net named in a config/checkpoint
    xgen.registry.register_model(MyModel)                 # a LightningModule load_model may rebuild
"""

from __future__ import annotations

from xgen.models.base import MODEL_REGISTRY, register_model
from xgen.safety import USER_TARGETS, allow_target

__all__ = ["MODEL_REGISTRY", "USER_TARGETS", "allow_target", "register_model"]
