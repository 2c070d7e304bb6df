"""MutualInformation: the InfoGAN lower bound L_I = E[log Q(c|x)] + H(c) per epoch, for any GAN.

For InfoGAN the model's own Q is used. For a plain GAN/DCGAN (whose generator is fed the same codes
but never asked to keep them recoverable) a *probe* — a Q head of the same design on the
discriminator's detached features, trained only on generated samples — plays Q's part, as in the
InfoGAN paper's GAN baseline (Q on D's shared body), so that the two curves of the report's fig. 2.4
are measured the same way. A probe that cannot beat chance gives L_I ≈ 0: G ignores its codes.

Keys: ``train/mi_cat`` and ``train/mi_cont`` (epoch means over training batches; for InfoGAN the model
logs them itself), ``val/mi_cat`` and ``val/mi_cont`` (Q on ``num_samples`` fresh samples at
the end of each training epoch), ``val/q_acc`` (how often Q's argmax recovers categorical code 0).
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from xgen.errors import ConfigError
from xgen.losses import info_terms
from xgen.nets.gan import batch_stats
from xgen.models.optim import adam
from xgen.protocols import Adversarial, HasQ, require
from xgen.nets.infogan import QHead

log = logging.getLogger("xgen")


class MutualInformation(L.Callback):
    """Logs L_I in nats per epoch, separately for categorical and continuous codes.

    Args:
        num_samples: generated samples scored at the end of each epoch (eval mode).
        probe_lr: Adam learning rate of the probe (plain GANs only).
        probe_every_n_steps: train the probe on every n-th training batch (plain GANs only).
        seed: seed of the fixed evaluation draws.
    """

    def __init__(self, num_samples: int = 1000, probe_lr: float = 1e-3, probe_every_n_steps: int = 1,
                 batch_size: int = 250, seed: int = 0):
        if num_samples < 1 or batch_size < 2 or probe_every_n_steps < 1 or probe_lr <= 0:
            raise ConfigError("callbacks.mutual_information: num_samples >= 1, batch_size >= 2, "
                              "probe_every_n_steps >= 1 and probe_lr > 0 are required")
        self.num_samples, self.probe_lr, self.every = int(num_samples), float(probe_lr), int(probe_every_n_steps)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.probe: QHead | None = None
        self.history: list[dict[str, float]] = []
        self._opt = None
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self.enabled = True
        self._pending_probe: dict | None = None

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _has_q(pl_module) -> bool:
        return isinstance(pl_module, HasQ)

    def on_fit_start(self, trainer, pl_module) -> None:
        require(pl_module, Adversarial, "callbacks.mutual_information",
                "It measures what the discriminator's features reveal of the generator's codes (GAN family).")
        latent = pl_module.latent
        self.enabled = latent.num_codes > 0
        if not self.enabled:
            log.info("callbacks.mutual_information: the model's latent has no codes, nothing to measure; add some "
                     "to compare with InfoGAN (e.g. model.latent.categorical=[10] model.latent.continuous=2)")
            return
        if not self._has_q(pl_module) and self.probe is None:
            feat = getattr(pl_module.discriminator, "feature_dim", None)  # a net attribute (xgen.nets.gan.Discriminator)
            if feat is None:
                raise ConfigError("callbacks.mutual_information: the discriminator has no feature_dim for the probe")
            self.probe = QHead(int(feat), latent.categorical, latent.continuous).to(pl_module.device)
            if self._pending_probe is not None:
                from xgen.checkpoint.schema import check_state_dict_matches

                check_state_dict_matches(self._pending_probe, self.probe, "checkpoint (MutualInformation probe)")
                self.probe.load_state_dict(self._pending_probe)
                self._pending_probe = None
            self._opt = adam(self.probe.parameters(), self.probe_lr, (0.5, 0.999))

    # ------------------------------------------------------------------ the probe (plain GANs)
    def _q(self, pl_module, x: torch.Tensor):
        _, features = pl_module.discriminator(x)
        if self._has_q(pl_module):
            return pl_module.q(features)
        return self.probe(features.detach())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled or self._has_q(pl_module) or batch_idx % self.every:
            return
        b = batch[0].shape[0]
        latent = pl_module.latent
        codes = latent.sample_codes(b, device=pl_module.device)
        with torch.no_grad():
            # D in eval mode: reading features must not move its BatchNorm statistics
            was = pl_module.discriminator.training
            pl_module.discriminator.eval()
            _, features = pl_module.discriminator(pl_module.generator(latent.assemble(codes)))
            pl_module.discriminator.train(was)
        self.probe.train()
        with torch.enable_grad():
            t = info_terms(latent, *self.probe(features.detach()), codes)
            loss = t["nll_cat"] + t["nll_cont"]
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            self._opt.step()
        for k in ("mi_cat", "mi_cont"):
            self._sums[k] = self._sums.get(k, 0) + t[k].detach()
        self._count += 1

    # ------------------------------------------------------------------ per epoch
    @torch.no_grad()
    def evaluate(self, pl_module) -> dict[str, float]:
        """L_I (nats) and Q's accuracy on code 0 on ``num_samples`` fixed draws, in batches of
        ``batch_size`` normalised as in training (:func:`xgen.nets.gan.batch_stats`), without updates."""
        latent = pl_module.latent
        g = torch.Generator().manual_seed(self.seed)
        sums = {"mi_cat": 0.0, "mi_cont": 0.0, "q_acc": 0.0}
        mods = [m for m in (pl_module, self.probe) if m is not None]
        with batch_stats(*mods):
            done = 0
            while done < self.num_samples:
                n = min(self.batch_size, self.num_samples - done)
                c = latent.sample_codes(n, generator=g, device=pl_module.device)
                x = pl_module.generator(latent.assemble(c))
                logits, mean, logvar = self._q(pl_module, x)
                t = info_terms(latent, logits, mean, logvar, c)
                sums["mi_cat"] += float(t["mi_cat"]) * n
                sums["mi_cont"] += float(t["mi_cont"]) * n
                if logits:
                    sums["q_acc"] += float((logits[0].argmax(1) == c.categorical[:, 0]).float().sum())
                done += n
        out = {k: v / self.num_samples for k, v in sums.items()}
        if not latent.categorical:
            out.pop("q_acc")
        return out

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.enabled:
            return
        logs: dict[str, float] = {}
        if self._count:
            logs.update({f"train/{k}": float(v) / self._count for k, v in self._sums.items()})
            self._sums, self._count = {}, 0
        logs.update({f"val/{k}": v for k, v in self.evaluate(pl_module).items()})
        for k, v in logs.items():
            # each process estimated on its own batches and samples: under DDP log their mean
            pl_module.log(k, v, on_step=False, on_epoch=True, sync_dist=True)
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **logs})

    def state_dict(self) -> dict:
        return {"history": self.history,
                "probe": self.probe.state_dict() if self.probe is not None else None}

    def load_state_dict(self, state_dict: dict) -> None:
        from xgen.checkpoint.schema import check_history, check_mapping

        key = f"callbacks/{type(self).__name__}"
        state = check_mapping(state_dict, {"history": list, "probe": (dict, type(None))}, "checkpoint", key)
        self.history = check_history(state.get("history", []), "checkpoint", f"{key}/history")
        probe = state.get("probe")
        if probe is not None:
            check_mapping(probe, {k: torch.Tensor for k in probe}, "checkpoint", f"{key}/probe")
        self._pending_probe = probe
