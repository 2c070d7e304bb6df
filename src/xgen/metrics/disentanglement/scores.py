"""Every requested disentanglement score of a model on a data module's factors, as flat floats for
logging (``xgen eval`` and the :class:`~xgen.callbacks.Disentanglement` callback)."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from xgen.errors import ConfigError
from xgen.metrics.disentanglement.beta_vae import beta_vae_score_of_model
from xgen.metrics.disentanglement.common import (BATCH_SIZE, NUM_BINS, NUM_EVAL, NUM_TRAIN, NUM_VARIANCE,
                                                 DisentanglementWarning, _factor_data, _names_of, codes_of_model)
from xgen.metrics.disentanglement.covariance import covariance_metric, posterior_of_model
from xgen.metrics.disentanglement.dci import dci
from xgen.metrics.disentanglement.factor_vae import factor_vae_score_of_model
from xgen.metrics.disentanglement.mig import mig
from xgen.metrics.disentanglement.modularity import modularity
from xgen.metrics.disentanglement.sap import sap
from xgen.protocols import Embeds, Encodes, require

__all__ = ["METRICS", "disentanglement_scores"]


METRICS = ("mig", "beta_vae", "factor_vae", "dci", "sap", "modularity", "covariance")


def disentanglement_scores(model: Any, datamodule: Any, metrics: Sequence[str] = METRICS, num_train: int = NUM_TRAIN,
                           num_eval: int = NUM_EVAL, batch_size: int = BATCH_SIZE, num_bins: int = NUM_BINS,
                           num_variance: int = NUM_VARIANCE, importance_model: str = "gbt", forest_trees: int = 50,
                           forest_depth: int = 10, pool_size: int | None = None,
                           covariance_split: str = "test", covariance_images: int = 10_000,
                           seed: int = 0) -> dict[str, float]:
    """Every requested score of ``model`` on ``datamodule``'s factors, as flat floats for logging:
    ``mig``, ``beta_vae_score``, ``factor_vae_score``, ``dci_disentanglement``, ``dci_completeness``,
    ``dci_informativeness``, ``sap_score`` (+ ``sap_<factor>``), ``modularity_score``,
    ``covariance_metric`` (this one needs :class:`~xgen.protocols.Encodes`
    and is skipped with a warning for a model without a posterior, e.g. InfoGAN). MIG, modularity, DCI
    and SAP use ``num_train`` fresh random points (DCI and SAP test on ``num_eval`` more). Per-factor
    keys carry the data module's ``factor_names``. For ``xgen eval`` and the callback."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"metrics: unknown {unknown}; choose from {list(METRICS)}")
    out: dict[str, float] = {}
    needs_factors = [m for m in metrics if m != "covariance"]
    if needs_factors:
        require(model, Embeds, "the disentanglement metrics")
        data = _factor_data(datamodule, "the disentanglement metrics")
        names = _names_of(data)
        if {"mig", "dci", "sap", "modularity"} & set(metrics):
            g = torch.Generator().manual_seed(seed + 3)
            n = int(num_train) + (int(num_eval) if {"dci", "sap"} & set(metrics) else 0)
            f = np.asarray(data.sample_factors(n, g), dtype=np.int64)
            c = codes_of_model(model, data.images_from_factors(torch.from_numpy(f)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DisentanglementWarning)  # the constant factor: warned once below
                if "mig" in metrics:
                    r = mig(c[:num_train], f[:num_train], num_bins, names)
                    out["mig"] = r.score
                    out.update({f"mig_{k}": v for k, v in r.gaps.items()})
                if "dci" in metrics:
                    d = dci(c[:num_train], f[:num_train], c[num_train:], f[num_train:], importance_model=importance_model,
                            forest_trees=forest_trees, forest_depth=forest_depth, seed=seed, factor_names=names,
                            num_bins=num_bins)
                    out.update(dci_disentanglement=d.disentanglement, dci_completeness=d.completeness,
                               dci_informativeness=d.informativeness)
                if "sap" in metrics:
                    s = sap(c[:num_train], f[:num_train], c[num_train:], f[num_train:], seed=seed, factor_names=names,
                            num_bins=num_bins)
                    out["sap_score"] = s.score
                    out.update({f"sap_{k}": v for k, v in s.gaps.items()})
                if "modularity" in metrics:
                    out["modularity_score"] = modularity(c[:num_train], f[:num_train], num_bins, names).score
        if "beta_vae" in metrics:
            out["beta_vae_score"] = beta_vae_score_of_model(model, data, num_train, num_eval, batch_size, seed,
                                                            pool_size).score
        if "factor_vae" in metrics:
            out["factor_vae_score"] = factor_vae_score_of_model(model, data, num_train, num_eval, batch_size,
                                                                num_variance, seed=seed, pool_size=pool_size).score
    if "covariance" in metrics:
        if isinstance(model, Encodes):
            x, _ = datamodule.split(covariance_split)
            mu, lv = posterior_of_model(model, x[: int(covariance_images)])
            out["covariance_metric"] = covariance_metric(mu, lv, generator=torch.Generator().manual_seed(seed))
        else:
            warnings.warn(f"the covariance metric needs a posterior (encode); {type(model).__name__} has none, "
                          "skipped.", DisentanglementWarning, stacklevel=2)
    return out
