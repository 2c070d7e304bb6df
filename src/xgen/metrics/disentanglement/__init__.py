"""Disentanglement metrics: β-VAE metric, FactorVAE metric, MIG, DCI, SAP, modularity and the vae-thesis
covariance metric.

Two forms of every score:

* **plain functions of (codes, factors)** — ``codes`` (N, D) floats, ``factors`` (N, K) — for any
  representation already computed: :func:`mig`, :func:`beta_vae_score`, :func:`factor_vae_score`,
  :func:`dci`, :func:`sap`, :func:`modularity`, :func:`mutual_information_matrix`,
  :func:`covariance_metric`. The β-VAE and FactorVAE
  metrics need pairs/batches that share one factor; here they are drawn from the rows given (pick a
  row, then a random row with the same value of the factor), so they work when only a subset of the
  factor grid is present;
* **a sampler-based form** — :func:`beta_vae_score_of_model`, :func:`factor_vae_score_of_model`,
  :func:`codes_of_model`, :func:`disentanglement_scores` — that draws fresh fixed-factor batches from a
  data module's factor interface (``factor_sizes``, ``sample_factors(n, generator)``,
  ``images_from_factors(f)`` -> uint8) and maps them through any model's ``embed``
  (:class:`xgen.protocols.Embeds`): a VAE's posterior means and InfoGAN's Q are scored the same way.
  The model runs in eval mode under ``no_grad`` on images scaled to ``model.value_range``.

**What is scored**: ``embed(x)`` — the posterior mean for the VAE family (as disentanglement_lib's
``mean`` representation), never a sample. The covariance metric alone reads the full posterior
(``encode``: mean and log-variance).

**Estimator settings** (defaults = disentanglement_lib's protocol, Locatello et al. 2019):
batch 64 image pairs per β-VAE / FactorVAE point, 10,000 training and 5,000 evaluation points,
10,000 points for FactorVAE's global variances with dimensions of std < 0.05 pruned, MIG on 10,000
points with each code discretised into 20 equal-width histogram bins (``np.histogram`` edges, as
disentanglement_lib), mutual information and entropies in nats from the contingency table (equal to
``sklearn.metrics.mutual_info_score``). The β-VAE metric's linear classifier is scikit-learn's
``LogisticRegression`` (lbfgs, C = 1; ``max_iter`` 1000 so that it converges); the score is its
accuracy on the evaluation points. DCI uses one importance model per factor: ``"gbt"`` scikit-learn's
``GradientBoostingClassifier()`` (disentanglement_lib's choice; slow on CPU: with 40 orientation
classes it fits 4,000 trees) or ``"forest"`` a ``RandomForestClassifier`` (``forest_trees`` trees of
depth ≤ ``forest_depth``, all features per split; minutes faster, what the callback uses on CPU) —
importances are impurity-based ``feature_importances_``; informativeness is the test accuracy
averaged over factors. SAP (disentanglement_lib's ``sap_score``): R² of a line for a continuous factor,
for a discrete one the test accuracy of scikit-learn's ``LinearSVC(C=0.01, class_weight="balanced")``
on one unit (on the raw codes, not standardised, as there), trained on the training points and scored
on the evaluation points. Modularity (disentanglement_lib's ``modularity_explicitness``, the
modularity part): the MIG mutual-information matrix (20 bins). Smaller settings are allowed (e.g. ``num_train=2000`` for a CPU callback);
scores from different settings are not comparable — MIG in particular depends on the number of bins
and points (users of other libraries report values 1000× off for exactly this reason).

**Factors**: integer columns are class indices (discrete factors); float columns with at most
``num_bins`` distinct values are treated as discrete, others (continuous factors) are discretised
into ``num_bins`` histogram bins like the codes. A factor with a single value (entropy 0, e.g.
dSprites' color) carries no information: it is skipped with a warning and listed in ``skipped``.

**Where each metric lives**: one module per metric — :mod:`.mig`, :mod:`.dci`, :mod:`.beta_vae`,
:mod:`.factor_vae`, :mod:`.sap`, :mod:`.modularity`, :mod:`.covariance` — with what they share (estimator
defaults, input checks, factor names, discretisation, entropy and mutual information, representation
sampling from a model and a data module) in :mod:`.common`, and :mod:`.scores` running the requested
ones for logging. This package exports the public functions and results of all of them.
"""

from xgen.metrics.disentanglement.beta_vae import beta_vae_score, beta_vae_score_of_model
from xgen.metrics.disentanglement.common import (BATCH_SIZE, NUM_BINS, NUM_EVAL, NUM_TRAIN, NUM_VARIANCE, PRUNE_STD,
                                                 DisentanglementWarning, FactorData, ScoreResult, codes_of_model,
                                                 discrete_factors, discretize, entropy, mutual_information_matrix)
from xgen.metrics.disentanglement.covariance import covariance_metric, posterior_of_model
from xgen.metrics.disentanglement.dci import DCIResult, dci, dci_from_importance
from xgen.metrics.disentanglement.factor_vae import factor_vae_score, factor_vae_score_of_model
from xgen.metrics.disentanglement.mig import MIGResult, mig
from xgen.metrics.disentanglement.modularity import ModularityResult, modularity, modularity_from_mi
from xgen.metrics.disentanglement.sap import SAP_SVM_C, SAPResult, sap
from xgen.metrics.disentanglement.scores import METRICS, disentanglement_scores

__all__ = ["BATCH_SIZE", "NUM_TRAIN", "NUM_EVAL", "NUM_BINS", "NUM_VARIANCE", "PRUNE_STD", "METRICS", "SAP_SVM_C",
           "FactorData", "MIGResult", "ScoreResult", "DCIResult", "SAPResult", "ModularityResult",
           "discretize", "discrete_factors", "entropy", "mutual_information_matrix", "mig", "beta_vae_score",
           "factor_vae_score", "dci", "dci_from_importance", "sap", "modularity", "modularity_from_mi",
           "covariance_metric", "codes_of_model", "posterior_of_model",
           "beta_vae_score_of_model", "factor_vae_score_of_model", "disentanglement_scores",
           "DisentanglementWarning"]
