"""A supervised image classifier as a LightningModule (thesis §4.3, fig. 4.8).

It is the classifier the explainability tools explain, and, through its penultimate layer, the
offline feature extractor of xgen's FID/KID/precision-recall (:mod:`xgen.metrics.features`).
Train it like any model: ``xgen model=classifier data=fashion_mnist``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xgen.errors import check
from xgen.models.base import StepModule, build_net, check_optim, plain
from xgen.models.inference import inference
from xgen.nets.classifier import ThesisCNN

NetSpec = nn.Module | Mapping | None


class Classifier(StepModule):
    """Cross-entropy classifier over an injected network (default: the thesis's fig. 4.8 CNN).

    Args:
        image_shape: (C, H, W) of the data; the CLI fills it from the data module.
        num_classes: number of labels.
        net: network (``nn.Module``, a ``_target_`` config, or ``None`` for :class:`ThesisCNN`); built
            with ``image_shape`` and ``num_classes``. It must provide ``features(x)`` and ``head(f)``.
        lr, betas, weight_decay: Adam settings.
    """

    value_range = (0.0, 1.0)

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, net: NetSpec = None,
                 lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 0.0):
        super().__init__()
        net, betas = plain(net), plain(betas)
        check(int(num_classes) >= 2, "model.num_classes", f"must be >= 2, got {num_classes}")
        check(float(weight_decay) >= 0, "model.weight_decay", f"must be >= 0, got {weight_decay}")
        check_optim(lr, betas)
        self.save_hyperparameters(ignore=["net"] if isinstance(net, nn.Module) else None)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = int(num_classes)
        self.net = build_net(net, ThesisCNN, "model.net", image_shape=self.image_shape,
                             num_classes=self.num_classes)
        for name in ("features", "head"):
            check(callable(getattr(self.net, name, None)), "model.net",
                  f"{type(self.net).__name__} has no {name}(...) method; classifier nets must split into "
                  "features(x) (penultimate activations) and head(f) (logits)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images in [0, 1]."""
        return self.net(x)

    @inference
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (B, num_features): the FID feature space."""
        return self.net.features(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted class, softmax confidence) per image, in eval mode (the Explainability Grids' labels)."""
        was_training = self.training
        self.eval()
        try:
            p = torch.softmax(self(x.to(self.device)), dim=1)
        finally:
            self.train(was_training)
        conf, cls = p.max(dim=1)
        return cls, conf

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        train = stage == "train"
        self.log_dict({f"{stage}/loss": loss.detach(), f"{stage}/acc": acc}, on_step=train, on_epoch=True,
                      prog_bar=True, sync_dist=True, batch_size=x.shape[0])  # DDP: mean over processes
        return loss
