"""k-GANs (kgans §1.4, §2.1.1, §3.2): an ensemble of k generator/discriminator pairs, each trained on its
own non-overlapping part of the training set; k = 1 is a plain GAN.

The thesis names optimal transport for the partition but gives no algorithm. Ours (docs/kgan.md):

* **start**: a balanced k-means in pixel space (``partition.init=kmeans``; or ``random``): every member
  gets ⌊N/k⌋ or ⌈N/k⌉ images;
* **update** every ``partition.every_n_epochs`` epochs from ``partition.start_epoch`` on, by one of
  two transport costs between images and members, then the same balanced solver: entropic optimal
  transport with equal masses 1/k (Sinkhorn, ``partition.sinkhorn_eps``) rounded to a hard assignment
  that meets the capacities exactly (:func:`xgen.models.partition.balanced_assignment`):

  - ``generator`` (default): the cost of image x for member j is its mean squared distance (pixels,
    ``pool``-averaged) to its ``neighbours`` nearest among ``samples_per_member`` images of G_j — a
    Lloyd step of k-means in which each centre is a generator (the semi-discrete transport of the data
    onto the members' current models);
  - ``critic``: each discriminator scores every image, scores standardised per member (a Wasserstein
    critic is defined up to an additive constant, BCE discriminators of different members are not
    calibrated against each other), and the image goes where its standardised score is highest. In our
    CPU runs this moved most images every epoch (docs/kgan.md), a discriminator being no judge of images
    outside its part; it is kept as an option.

Training steps use the data module's batches unchanged: each image of a batch trains the member that
owns it (found by content, :class:`ImageIndex`), so an epoch shows every member its own images once and
the budget in images is the same for every k. Every member does one discriminator step per training
step and one generator step every ``n_critic`` steps (the losses of :mod:`xgen.losses`: ``wgan_gp``,
``wgan``, ``bce``, ``minimax``, ``hinge``), each on as many generated images as it got real ones.

Generation (:class:`~xgen.protocols.Generative`): the latent is the members' noise ⊕ a one-hot member
code (``latent.categorical = [k]``, none for k = 1); sampling draws the member uniformly
(``member_sampling=uniform``) or in proportion to the partition sizes (``partition``).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from xgen.errors import ConfigError, DataError, check
from xgen.latent import Codes, LatentSpec
from xgen.losses import discriminator_loss, generator_loss, gradient_penalty, real_nll
from xgen.models.base import XgenModule, plain
from xgen.models.gan import GAN, NetSpec, build, check_game
from xgen.models.inference import inference
from xgen.models.step import adversarial_step
from xgen.nets.kgan import KGANDiscriminator, KGANGenerator
from xgen.models.optim import adam
from xgen.models.partition import balanced_assignment, check_k, kmeans_partition

log = logging.getLogger(__name__)

PARTITION_DEFAULTS = {"init": "kmeans", "update": "generator", "every_n_epochs": 1, "start_epoch": 1,
                      "sinkhorn_eps": 0.05, "sinkhorn_iters": 300, "kmeans_iters": 10, "seed": 0,
                      "score_batch_size": 1000, "samples_per_member": 1000, "neighbours": 5, "pool": 2}
INITS = ("kmeans", "random")
UPDATES = ("generator", "critic", "none")
MEMBER_SAMPLING = ("uniform", "partition")


class ImageIndex:
    """Finds the training-set index of each image of a batch by content (uint8 pixels): a linear hash
    with random weights, binary search, and an exact pixel comparison (so a hash collision costs a scan,
    never a wrong index). Exact duplicate images resolve to one of their copies."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8:
            raise TypeError(f"ImageIndex wants uint8 images, got {images.dtype}")
        self.images = images.reshape(images.shape[0], -1)
        g = torch.Generator().manual_seed(12345)
        self.w = torch.randint(1, 2 ** 31 - 1, (self.images.shape[1],), generator=g, dtype=torch.long)
        h = self._hash(self.images)
        self.sorted_hash, self.order = torch.sort(h, stable=True)

    def _hash(self, flat: torch.Tensor) -> torch.Tensor:  # < 255·2^31·D: no int64 overflow for D < 2^24
        return (flat.long() * self.w.to(flat.device)).sum(1)

    def lookup(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """Indices (B,) into the images; :class:`DataError` for an image that is not among them."""
        flat = batch_uint8.reshape(batch_uint8.shape[0], -1).cpu()
        if flat.shape[1] != self.images.shape[1]:
            raise DataError(f"k-GAN: batch images have {flat.shape[1]} values, the training images {self.images.shape[1]}")
        h = self._hash(flat)
        pos = torch.searchsorted(self.sorted_hash, h).clamp_max(len(self.order) - 1)
        idx = self.order[pos]
        ok = (self.images[idx] == flat).all(1)
        for b in (~ok).nonzero().flatten().tolist():  # hash collision (or a foreign image): exact scan
            hit = (self.images == flat[b]).all(1).nonzero().flatten()
            if len(hit) == 0:
                raise DataError("k-GAN: a training batch holds an image that is not in the data module's training "
                                "split; KGAN routes each image to its partition by content, so the training batches "
                                "must be the split's images unchanged (no augmentation or resampling).")
            idx[b] = hit[0]
        return idx


def to_uint8(x: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`xgen.data.to_value_range` (exact for images it produced)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return ((x.detach().float() - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- the model
class KGAN(XgenModule):
    """An ensemble of k GANs on a balanced partition of the data (module docstring; docs/kgan.md).

    Args:
        image_shape: (C, H, W) of the data; the CLI fills it from the data module.
        k: number of generator/discriminator pairs (>= 1; 1 is a plain GAN).
        latent: the members' noise (``noise``, ``noise_prior``; no codes). The model's
            :attr:`latent` adds the one-hot member code.
        generator, discriminator: one member's nets (module configs with ``_target_``, or ``None`` for the
            thesis's nets, :mod:`xgen.nets.kgan`); built k times, each with its own initialisation.
        loss: ``wgan_gp`` (default) | ``wgan`` | ``bce`` | ``minimax`` | ``hinge`` (:mod:`xgen.losses`).
        lr_g, lr_d, betas_g, betas_d, n_critic, gp_weight, clip_value: as :class:`xgen.models.GAN`.
        partition: ``init`` (kmeans | random), ``update`` (critic | none), ``every_n_epochs``,
            ``start_epoch``, ``sinkhorn_eps``, ``sinkhorn_iters``, ``kmeans_iters``, ``seed``, ``score_batch_size``.
        member_sampling: ``uniform`` or ``partition`` (members drawn in proportion to their data).
    """

    train_sync_dist = False  # per-process values, as logged before TrainLog

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), k: int = 3, latent: Mapping | None = None,
                 generator: NetSpec = None, discriminator: NetSpec = None, loss: str = "wgan_gp",
                 lr_g: float = 1e-4, lr_d: float = 1e-4, betas_g: Sequence[float] = (0.5, 0.9),
                 betas_d: Sequence[float] = (0.5, 0.9), n_critic: int = 1, gp_weight: float = 10.0,
                 clip_value: float = 0.01, partition: Mapping | None = None, member_sampling: str = "uniform"):
        super().__init__()
        latent, generator, discriminator = plain(latent), plain(generator), plain(discriminator)
        betas_g, betas_d, image_shape, partition = plain(betas_g), plain(betas_d), plain(image_shape), plain(partition)
        check_k(k)
        check_game(loss, lr_g, betas_g, lr_d, betas_d, n_critic, gp_weight, clip_value)
        check(member_sampling in MEMBER_SAMPLING, "model.member_sampling",
              f"choose one of {MEMBER_SAMPLING}, got {member_sampling!r}")
        part = dict(PARTITION_DEFAULTS)
        unknown = set(partition or {}) - set(part)
        check(not unknown, "model.partition", f"unknown keys {sorted(unknown)}; known: {sorted(part)}")
        part.update(partition or {})
        for name, default in PARTITION_DEFAULTS.items():  # each field of the type of its default
            v = part[name]
            ok = isinstance(v, type(default)) and not isinstance(v, bool) if not isinstance(default, float) else (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            check(ok, f"model.partition.{name}", f"expected {'a number' if isinstance(default, float) else type(default).__name__}"
                  f" (like the default {default!r}), got {v!r}")
            if isinstance(default, int) and name not in ("seed",):
                check(v >= (0 if name == "start_epoch" else 1), f"model.partition.{name}",
                      f"must be >= {0 if name == 'start_epoch' else 1}, got {v}")
        check(part["init"] in INITS, "model.partition.init", f"choose one of {INITS}, got {part['init']!r}")
        check(part["update"] in UPDATES, "model.partition.update", f"choose one of {UPDATES}, got {part['update']!r}")
        check(int(part["every_n_epochs"]) >= 1, "model.partition.every_n_epochs", "must be >= 1")
        check(float(part["sinkhorn_eps"]) > 0, "model.partition.sinkhorn_eps", "must be > 0")
        lat = dict(latent or {"noise": 100})
        check(not lat.get("categorical") and not lat.get("continuous"), "model.latent",
              "k-GAN members take noise only (the member code is added by the model); drop categorical/continuous")
        self.k = int(k)
        self.member_latent = LatentSpec(noise=int(lat.get("noise", 100)), categorical=[], continuous=0,
                                        noise_prior=lat.get("noise_prior", "normal"))
        self.latent = LatentSpec(noise=self.member_latent.noise, categorical=[self.k] if self.k > 1 else [],
                                 continuous=0, noise_prior=self.member_latent.noise_prior)
        latent = self.member_latent.to_dict()
        partition = part
        self.save_hyperparameters()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.loss_kind, self.n_critic = loss, int(n_critic)
        self.gp_weight, self.clip_value = float(gp_weight), float(clip_value)
        self.part = part
        self.member_sampling = member_sampling
        self.automatic_optimization = False
        gens, discs = [], []
        for j in range(self.k):  # G then D per member: for k = 1 the same draws as xgen.models.GAN
            gens.append(build(generator, KGANGenerator, "model.generator", image_shape=self.image_shape,
                              latent_dim=self.member_latent.dim))
            discs.append(build(discriminator, KGANDiscriminator, "model.discriminator", image_shape=self.image_shape))
        self.generators, self.discriminators = nn.ModuleList(gens), nn.ModuleList(discs)
        self.value_range = tuple(float(v) for v in getattr(gens[0], "value_range", (-1.0, 1.0)))  # a net attribute; tanh if undeclared
        self.register_buffer("assignment", torch.zeros(0, dtype=torch.long))
        self._index: ImageIndex | None = None
        self._sync_grads = False
        self._last_losses: dict[str, torch.Tensor] = {}
        self.partition_log: list[dict[str, Any]] = []
        self._check_shapes()

    def _check_shapes(self) -> None:
        g, d = self.generators[0], self.discriminators[0]
        modes = (g.training, d.training)
        g.eval(), d.eval()
        try:
            with torch.no_grad():
                fake = g(self.member_latent.sample(2, generator=torch.Generator().manual_seed(0)))
                if tuple(fake.shape[1:]) != self.image_shape:
                    raise ConfigError(f"model.generator: {type(g).__name__} makes {tuple(fake.shape[1:])} images but "
                                      f"the data is {self.image_shape}.")
                out = d(torch.zeros(2, *self.image_shape))
                if not (isinstance(out, tuple) and len(out) == 2 and tuple(out[0].shape) == (2,)):
                    raise ConfigError(f"model.discriminator: {type(d).__name__} must return (logits (B,), features "
                                      "(B, F)); subclass xgen.nets.gan.Discriminator.")
        finally:
            g.train(modes[0]), d.train(modes[1])

    # ------------------------------------------------------------------ checkpoint
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, **kw):
        """The partition's length is the training set's, unknown until a fit: take the stored one's shape."""
        a = state_dict.get("assignment")
        if isinstance(a, torch.Tensor):
            self.assignment = torch.zeros_like(a, device=self.assignment.device)
        return super().load_state_dict(state_dict, strict=strict, **kw)

    resizable_buffers = ("assignment",)  # its length is the training set's, known at fit time

    def get_extra_state(self) -> dict[str, Any]:
        """The partition's history travels in the state dict (plain containers: loadable with weights_only)."""
        return {"partition_log": [dict(e) for e in self.partition_log]}

    def set_extra_state(self, state: Any) -> None:
        """The saved partition history, checked entry by entry (a checkpoint is data: any other key or
        type is refused, not carried along)."""
        from xgen.checkpoint.schema import check_mapping

        where = "state_dict/_extra_state"
        state = check_mapping(state, {"partition_log": list}, "checkpoint", where, required=True)
        log_ = []
        for i, e in enumerate(state["partition_log"][:100_000]):
            e = check_mapping(e, {"epoch": int, "how": str, "sizes": list, "moved": (float, int, type(None))},
                              "checkpoint", f"{where}/partition_log[{i}]", required=True)
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in e["sizes"]) or len(e["sizes"]) > 10_000:
                raise ConfigError(f"checkpoint: entry '{where}/partition_log[{i}]/sizes': not a list of image counts.")
            log_.append(e)
        self.partition_log = log_

    # ------------------------------------------------------------------ generation (Generative)
    def partition_sizes(self) -> torch.Tensor:
        """Images per member in the current partition (zeros before training)."""
        if self.assignment.numel() == 0:
            return torch.zeros(self.k, dtype=torch.long)
        return torch.bincount(self.assignment.cpu(), minlength=self.k)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n inputs: members' noise ⊕ one-hot member (uniform, or by partition size)."""
        codes = self.latent.sample_codes(n, generator=generator, device=self.device)
        if self.k > 1 and self.member_sampling == "partition" and self.assignment.numel():
            w = self.partition_sizes().double()
            dev = torch.device("cpu") if generator is not None else None
            members = torch.multinomial(w.to(dev or "cpu"), n, replacement=True, generator=generator)
            codes = Codes(codes.noise, members.view(-1, 1).to(codes.noise.device), codes.continuous)
        return self.latent.assemble(codes)

    def members_of(self, latent: torch.Tensor) -> torch.Tensor:
        """The member each latent row asks for (argmax of its one-hot member code)."""
        if self.k == 1:
            return torch.zeros(latent.shape[0], dtype=torch.long, device=latent.device)
        return self.latent.split(latent).categorical[:, 0]

    @inference
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in ``value_range`` from latents (B, noise + k): each row by the member its code names."""
        z = z.to(self.device)
        if z.ndim != 2 or z.shape[1] != self.latent.dim:
            raise ValueError(f"latent must be (B, {self.latent.dim}), got {tuple(z.shape)}")
        noise, members = z[:, : self.member_latent.noise], self.members_of(z)
        if self.k == 1:
            return self.generators[0](noise)
        out = None
        for j in range(self.k):
            m = members == j
            if bool(m.any()):
                y = self.generators[j](noise[m])
                if out is None:
                    out = y.new_empty((z.shape[0], *y.shape[1:]))
                out[m] = y
        return out

    @inference
    def generate(self, n_or_latent: int | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in ``value_range``: ``generate(64)`` or ``generate(latent)``."""
        latent = self.sample_latent(n_or_latent, generator) if isinstance(n_or_latent, int) else n_or_latent
        return self.decode(latent)

    @inference
    def generate_member(self, j: int, n_or_noise: int | torch.Tensor,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Images of member ``j`` alone (for per-generator figures)."""
        check(0 <= int(j) < self.k, "member", f"must be in 0..{self.k - 1}, got {j}")
        noise = (self.member_latent.sample(n_or_noise, generator=generator, device=self.device)
                 if isinstance(n_or_noise, int) else n_or_noise.to(self.device))
        return self.generators[int(j)](noise)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decode(latent)

    @property
    def last_losses(self) -> dict[str, torch.Tensor]:
        return self._last_losses

    # ------------------------------------------------------------------ partition during training
    @torch.no_grad()
    def critic_scores(self, images_uint8: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """(N, k): every discriminator's logit on every image."""
        from xgen.data import to_value_range

        bs = int(batch_size or self.part["score_batch_size"])
        modes = [d.training for d in self.discriminators]
        for d in self.discriminators:
            d.eval()
        try:
            out = []
            for i in range(0, images_uint8.shape[0], bs):
                x = to_value_range(images_uint8[i:i + bs].to(self.device), self.value_range)
                out.append(torch.stack([d(x)[0] for d in self.discriminators], 1).float().cpu())
            return torch.cat(out)
        finally:
            for d, m in zip(self.discriminators, modes):
                d.train(m)

    def initial_partition(self, images_uint8: torch.Tensor) -> torch.Tensor:
        n = images_uint8.shape[0]
        check_k(self.k, n)
        if self.k == 1:
            return torch.zeros(n, dtype=torch.long)
        if self.part["init"] == "random":
            g = torch.Generator().manual_seed(int(self.part["seed"]))
            perm = torch.randperm(n, generator=g)
            out = torch.empty(n, dtype=torch.long)
            out[perm] = torch.arange(n) % self.k
            return out
        return kmeans_partition(images_uint8.reshape(n, -1).float() / 255.0, self.k, int(self.part["kmeans_iters"]),
                                int(self.part["seed"]), float(self.part["sinkhorn_eps"]))

    def critic_partition(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return balanced_assignment(self.critic_scores(images_uint8), float(self.part["sinkhorn_eps"]),
                                   int(self.part["sinkhorn_iters"]))

    def _pooled(self, x_unit: torch.Tensor) -> torch.Tensor:
        p = int(self.part["pool"])
        x = torch.nn.functional.avg_pool2d(x_unit, p) if p > 1 else x_unit
        return x.flatten(1)

    @torch.no_grad()
    def generator_costs(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """(N, k): for each image, the mean squared distance (pixels in [0, 1], ``pool``×``pool`` averaged)
        to its ``neighbours`` nearest of ``samples_per_member`` images of each member's generator: the
        transport cost of the image to that member's current model of its part."""
        s, nn_k = int(self.part["samples_per_member"]), int(self.part["neighbours"])
        g = torch.Generator().manual_seed(int(self.part["seed"]) + 7919 * (self.current_epoch + 1))
        modes = [m.training for m in self.generators]
        for m in self.generators:
            m.eval()
        try:
            lo, hi = self.value_range
            feats = []
            for j in range(self.k):
                z = self.member_latent.sample(s, generator=g, device=self.device)
                gen = torch.cat([self.generators[j](z[i:i + 500]) for i in range(0, s, 500)])
                feats.append(self._pooled(((gen - lo) / (hi - lo)).clamp(0, 1)).float())
        finally:
            for m, mode in zip(self.generators, modes):
                m.train(mode)
        bs = int(self.part["score_batch_size"])
        out = []
        for i in range(0, images_uint8.shape[0], bs):
            x = self._pooled(images_uint8[i:i + bs].to(self.device).float() / 255.0)
            cols = []
            for f in feats:
                d2 = torch.cdist(x, f).pow(2) / x.shape[1]
                cols.append(d2.topk(min(nn_k, f.shape[0]), dim=1, largest=False).values.mean(1))
            out.append(torch.stack(cols, 1).cpu())
        return torch.cat(out)

    def generator_partition(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return balanced_assignment(-self.generator_costs(images_uint8), float(self.part["sinkhorn_eps"]),
                                   int(self.part["sinkhorn_iters"]), standardise=False)

    def _train_images(self) -> torch.Tensor:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not callable(getattr(dm, "split", None)):
            raise ConfigError("model=kgan partitions the training set and needs an xgen data module (with split()); "
                              "pass datamodule=... to Trainer.fit.")
        return dm.split("train")[0]

    def _set_partition(self, assign: torch.Tensor, epoch: int, how: str) -> None:
        old = self.assignment.cpu()
        self.assignment = assign.to(self.assignment.device)
        sizes = self.partition_sizes().tolist()
        moved = float((old != assign).float().mean()) if old.numel() == assign.numel() else None
        entry = {"epoch": int(epoch), "how": how, "sizes": sizes, "moved": moved}
        self.partition_log.append(entry)
        log.info("k-GAN partition (%s, epoch %d): sizes %s%s", how, epoch, sizes,
                 "" if moved is None else f", {moved:.1%} of images moved")

    def _broadcast(self, t: torch.Tensor) -> torch.Tensor:
        if self.trainer is not None and self.trainer.world_size > 1:
            return self.trainer.strategy.broadcast(t, src=0)
        return t

    def on_fit_start(self) -> None:
        images = self._train_images()
        check_k(self.k, images.shape[0])
        self._index = ImageIndex(images) if self.k > 1 else None
        if self.assignment.numel() != images.shape[0]:
            if self.assignment.numel():
                log.warning("k-GAN: the stored partition covers %d images, the training split has %d: starting a new one",
                            self.assignment.numel(), images.shape[0])
            self._set_partition(self._broadcast(self.initial_partition(images)), self.current_epoch,
                                self.part["init"] if self.k > 1 else "all")

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()  # TrainLog: a new epoch's sums
        e = self.current_epoch
        p = self.part
        if (self.k > 1 and p["update"] != "none" and e >= int(p["start_epoch"])
                and (e - int(p["start_epoch"])) % int(p["every_n_epochs"]) == 0
                and not (self.partition_log and self.partition_log[-1]["epoch"] == e)):
            images = self._train_images()
            new = self.critic_partition(images) if p["update"] == "critic" else self.generator_partition(images)
            self._set_partition(self._broadcast(new), e, p["update"])
        sizes = self.partition_sizes()
        logs = {f"partition/size_{j}": float(s) for j, s in enumerate(sizes.tolist())}
        if self.partition_log and self.partition_log[-1]["moved"] is not None:
            logs["partition/moved"] = float(self.partition_log[-1]["moved"])
        if self._logger_ready():
            for lg in self.trainer.loggers:
                lg.log_metrics(logs, step=self.global_step)

    def _logger_ready(self) -> bool:
        return self.trainer is not None and bool(self.trainer.loggers) and self.trainer.is_global_zero

    # ------------------------------------------------------------------ steps
    def _members_of_batch(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        """For each member, the positions of the batch's images it owns (None = the whole batch, k = 1)."""
        if self.k == 1:
            return [None]
        if self._index is None:
            raise ConfigError("KGAN.training_step: no partition yet (on_fit_start builds it); train with Trainer.fit")
        idx = self._index.lookup(to_uint8(x, self.value_range))
        owner = self.assignment.cpu()[idx]
        return [(owner == j).nonzero().flatten().to(x.device) for j in range(self.k)]

    def _d_loss(self, j: int, xj: torch.Tensor, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        g, d = self.generators[j], self.discriminators[j]
        codes = self.member_latent.sample_codes(xj.shape[0], device=xj.device)
        with torch.no_grad():
            fake = g(self.member_latent.assemble(codes))
        real_logits, _ = d(xj)
        fake_logits, _ = d(fake)
        loss = discriminator_loss(self.loss_kind, real_logits, fake_logits)
        logs[f"loss_d_{j}"] = loss
        if self.loss_kind == "wgan_gp":
            gp = gradient_penalty(lambda t: d(t)[0], xj, fake)
            logs[f"gp_{j}"] = gp
            loss = loss + self.gp_weight * gp
        return loss

    def _g_loss(self, j: int, n: int, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        codes = self.member_latent.sample_codes(n, device=self.device)
        fake = self.generators[j](self.member_latent.assemble(codes))
        loss = generator_loss(self.loss_kind, self.discriminators[j](fake)[0])
        logs[f"loss_g_{j}"] = loss
        return loss

    def configure_optimizers(self):
        """One Adam per player over all members: members share no parameters and Adam's state is per
        parameter, so this is k independent optimisers (a member without images in a step has no gradient
        and is skipped)."""
        h = self.hparams
        self._g_params, self._d_params = list(self.generators.parameters()), list(self.discriminators.parameters())
        return [adam(self._g_params, h.lr_g, h.betas_g), adam(self._d_params, h.lr_d, h.betas_d)]

    on_train_start = GAN.on_train_start  # DDP: gradients averaged by hand before each optimiser step
    _average_grads = GAN._average_grads

    def _members_total(self, loss: Any, sizes: Sequence[int], logs: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, dict]:
        """Sum of ``loss(j, n_j, logs)`` over the members that own images of this batch (None if none)."""
        total = None
        for j, n in enumerate(sizes):
            if n:
                lj = loss(j, n, logs)
                total = lj if total is None else total + lj
        return total, logs

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = batch[0]
        opt_g, opt_d = self.optimizers()
        if self._sync_grads:
            self.trainer.strategy.model.require_backward_grad_sync = False
        parts = self._members_of_batch(x)
        sizes = [x.shape[0] if p is None else int(p.numel()) for p in parts]
        # every member: its discriminator each step, its generator every n_critic-th step (xgen.models.step)
        d_loss = lambda j, n, lg: self._d_loss(j, x if parts[j] is None else x[parts[j]], lg)  # noqa: E731
        logs = adversarial_step(
            lambda: self._members_total(d_loss, sizes, {}), lambda: self._members_total(self._g_loss, sizes, {}),
            opt_d, opt_g, self._d_params, self._g_params, update_g=(batch_idx + 1) % self.n_critic == 0,
            clip_params=self._d_params if self.loss_kind == "wgan" else (),
            clip_value=self.clip_value if self.loss_kind == "wgan" else None,
            backward=self.manual_backward, average=self._average_grads if self._sync_grads else None)
        for kind in ("loss_d", "loss_g", "gp"):
            vals = [v for key, v in logs.items() if key.startswith(kind + "_")]
            if vals:
                logs[kind] = torch.stack(vals).mean()
        self._last_losses = logs
        self.log_train(logs, x.shape[0])  # summed on the device, logged every log_every_n_steps (TrainLog)

    def _eval_step(self, batch: Any, stage: str) -> None:
        x = batch[0]
        # how surely the member discriminators call held-out real images real (−log D(x), nats; mean over members)
        nll = torch.stack([real_nll(d(x)[0]) for d in self.discriminators]).mean()
        self.log(f"{stage}/loss_d_real", nll, on_epoch=True, sync_dist=True, batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")
