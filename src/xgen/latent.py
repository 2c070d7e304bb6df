"""LatentSpec: the generator input of the GAN family, noise z ⊕ categorical codes ⊕ continuous codes.

Layout of a latent vector (InfoGAN, Chen et al. 2016; thesis §4.1, fig. 4.10):
``[ z (noise) | one-hot of code 1 (K1) | ... | one-hot of code m (Km) | c_1 ... c_n (continuous) ]``
with z ~ N(0, I) (or Unif(-1, 1)), categorical codes uniform over their K values and continuous
codes Unif(-1, 1). H(c) = Σ log K_i + n·log 2 nats (the entropy of Unif(-1, 1) is log 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from xgen.errors import ConfigError, check

NOISE_PRIORS = ("normal", "uniform")


@dataclass
class Codes:
    """One draw of the generator input, kept apart: noise (B, noise), categorical indices (B, m) int64,
    continuous values (B, n)."""

    noise: torch.Tensor
    categorical: torch.Tensor
    continuous: torch.Tensor


@dataclass
class LatentSpec:
    """Sizes of the generator input. ``noise`` may be 0 (thesis run 118); ``categorical`` lists the
    number of values of each categorical code; ``continuous`` is the number of Unif(-1, 1) codes."""

    noise: int = 62
    categorical: list[int] = field(default_factory=lambda: [10])
    continuous: int = 2
    noise_prior: str = "normal"

    def __post_init__(self) -> None:
        self.noise = int(self.noise)
        self.categorical = [int(k) for k in (self.categorical or [])]
        self.continuous = int(self.continuous)
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, value: "LatentSpec | Mapping[str, Any] | None", key: str = "model.latent",
                    default: "LatentSpec | None" = None) -> "LatentSpec":
        """A LatentSpec from itself, a mapping of its fields (Hydra config) or None (``default``)."""
        if value is None:  # a copy: a class-level default must not be shared between models
            return cls(**default.to_dict()) if default is not None else cls()
        if isinstance(value, LatentSpec):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping with noise, categorical, continuous; got {value!r}")
        unknown = set(value) - {"noise", "categorical", "continuous", "noise_prior"}
        if unknown:
            raise ConfigError(f"{key}: unknown field(s) {sorted(unknown)}; use noise, categorical, "
                              "continuous, noise_prior")
        cat = value.get("categorical", [])
        if isinstance(cat, int):  # model.latent.categorical=10 means one code of 10 values
            cat = [cat]
        spec = cls.__new__(cls)
        spec.noise, spec.categorical = int(value.get("noise", 0)), [int(k) for k in cat]
        spec.continuous, spec.noise_prior = int(value.get("continuous", 0)), value.get("noise_prior", "normal")
        spec.validate(key)
        return spec

    def validate(self, key: str = "model.latent") -> None:
        check(self.noise >= 0, f"{key}.noise", f"must be >= 0, got {self.noise}")
        check(self.continuous >= 0, f"{key}.continuous", f"must be >= 0, got {self.continuous}")
        for i, k in enumerate(self.categorical):
            check(k >= 2, f"{key}.categorical", f"code {i} has {k} value(s); a categorical code needs >= 2 "
                  f"values (e.g. model.latent.categorical=[10])")
        check(self.noise_prior in NOISE_PRIORS, f"{key}.noise_prior",
              f"unknown prior {self.noise_prior!r}; choose one of {NOISE_PRIORS}")
        check(self.dim >= 1, key, "the generator needs at least one input: set model.latent.noise > 0 or add codes")

    def require_codes(self, key: str = "model.latent") -> None:
        """InfoGAN needs something to maximise information about."""
        check(self.num_codes >= 1, key, "InfoGAN needs at least one code: e.g. model.latent.categorical=[10] "
              "and/or model.latent.continuous=2 (a model without codes is a plain GAN: model=gan)")

    def to_dict(self) -> dict[str, Any]:
        return {"noise": self.noise, "categorical": list(self.categorical), "continuous": self.continuous,
                "noise_prior": self.noise_prior}

    # ------------------------------------------------------------------ sizes
    @property
    def num_categorical(self) -> int:
        return len(self.categorical)

    @property
    def num_codes(self) -> int:
        return self.num_categorical + self.continuous

    @property
    def code_dim(self) -> int:
        return sum(self.categorical) + self.continuous

    @property
    def dim(self) -> int:
        """Width of the generator input."""
        return self.noise + self.code_dim

    # ------------------------------------------------------------------ entropy
    def entropy_categorical(self) -> float:
        """H of the categorical codes in nats: Σ log K_i."""
        return float(sum(math.log(k) for k in self.categorical))

    def entropy_continuous(self) -> float:
        """Differential entropy of the Unif(-1, 1) codes in nats: n·log 2."""
        return self.continuous * math.log(2.0)

    def entropy(self) -> float:
        """H(c) in nats (categorical plus continuous)."""
        return self.entropy_categorical() + self.entropy_continuous()

    # ------------------------------------------------------------------ sampling
    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> Codes:
        """Draw n inputs from the prior. With a ``generator`` the draws are made on the CPU (reproducible
        whatever the device) and moved; without one they are made on ``device`` (no host sync)."""
        dev = torch.device("cpu") if generator is not None else device
        if self.noise_prior == "normal":
            z = torch.randn(n, self.noise, generator=generator, device=dev)
        else:
            z = torch.rand(n, self.noise, generator=generator, device=dev).mul_(2).sub_(1)
        if self.categorical:
            cols = [torch.randint(k, (n, 1), generator=generator, device=dev) for k in self.categorical]
            cat = torch.cat(cols, dim=1)
        else:
            cat = torch.zeros(n, 0, dtype=torch.long, device=dev)
        cont = torch.rand(n, self.continuous, generator=generator, device=dev).mul_(2).sub_(1)
        codes = Codes(z, cat, cont)
        if generator is not None and device is not None:
            codes = Codes(z.to(device), cat.to(device), cont.to(device))
        return codes

    def assemble(self, codes: Codes) -> torch.Tensor:
        """Codes -> the generator input (B, dim): noise, one-hot codes, continuous codes."""
        parts = [codes.noise]
        for i, k in enumerate(self.categorical):
            parts.append(F.one_hot(codes.categorical[:, i], k).to(codes.noise.dtype))
        parts.append(codes.continuous.to(codes.noise.dtype))
        return torch.cat(parts, dim=1)

    def split(self, latent: torch.Tensor) -> Codes:
        """The generator input (B, dim) -> Codes (inverse of :meth:`assemble` for one-hot codes)."""
        if latent.ndim != 2 or latent.shape[1] != self.dim:
            raise ValueError(f"latent must be (B, {self.dim}), got {tuple(latent.shape)}")
        z = latent[:, : self.noise]
        off, idx = self.noise, []
        for k in self.categorical:
            idx.append(latent[:, off:off + k].argmax(1))
            off += k
        cat = torch.stack(idx, 1) if idx else torch.zeros(latent.shape[0], 0, dtype=torch.long, device=latent.device)
        return Codes(z, cat, latent[:, off:])

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """n generator inputs (n, dim) drawn from the prior."""
        return self.assemble(self.sample_codes(n, generator, device))

    # ------------------------------------------------------------------ traversals
    def traversal(self, categorical: int | None = 0, continuous: int | None = 0, steps: int = 10,
                  span: Sequence[float] = (-1.0, 1.0), generator: torch.Generator | None = None,
                  rows: int = 10) -> torch.Tensor:
        """A fixed grid of inputs for a traversal, row-major ((rows, steps) flattened, CPU).

        Rows: the values of categorical code ``categorical`` (one row each); columns: continuous code
        ``continuous`` stepped evenly over ``span`` (beyond (-1, 1) to extrapolate, report §2.3).
        The noise and every other code are one draw shared by the whole grid. Without a categorical
        code the rows are ``rows`` noise draws; without a continuous code the columns are noise draws.
        """
        if categorical is not None and not 0 <= categorical < self.num_categorical:
            raise ValueError(f"categorical code {categorical} does not exist ({self.num_categorical} codes)")
        if continuous is not None and not 0 <= continuous < self.continuous:
            raise ValueError(f"continuous code {continuous} does not exist ({self.continuous} codes)")
        n_rows = self.categorical[categorical] if categorical is not None else rows
        base = self.sample_codes(1, generator=generator or torch.Generator().manual_seed(0))
        per_cell = self.sample_codes(n_rows * steps, generator=generator or torch.Generator().manual_seed(1))
        z = base.noise.expand(n_rows * steps, -1).clone()
        cat = base.categorical.expand(n_rows * steps, -1).clone()
        cont = base.continuous.expand(n_rows * steps, -1).clone()
        r = torch.arange(n_rows).repeat_interleave(steps)
        col = torch.arange(steps).repeat(n_rows)
        if categorical is not None:
            cat[:, categorical] = r
        else:  # rows differ by noise
            z = per_cell.noise.view(n_rows, steps, -1)[:, :1].expand(-1, steps, -1).reshape(n_rows * steps, -1)
        if continuous is not None:
            cont[:, continuous] = torch.linspace(float(span[0]), float(span[1]), steps)[col]
        else:  # columns differ by noise
            z = per_cell.noise.view(n_rows, steps, -1)[:1].expand(n_rows, -1, -1).reshape(n_rows * steps, -1)
        return self.assemble(Codes(z, cat, cont))
