"""Metrics as plain functions of tensors, and the feature extractors of the sample-quality scores."""

from xgen.metrics.clustering import cluster_accuracy, contingency
from xgen.metrics.evaluation import categorical_accuracy, evaluate_model, noise_baseline, real_vs_real, vae_likelihood
from xgen.metrics.features import (EXTRACTORS, ClassifierExtractor, Extracted, FeatureExtractor, InceptionExtractor,
                                   WeightsError, build_extractor, to_unit, write_standin_inception_weights)
from xgen.metrics.disentanglement import (beta_vae_score, covariance_metric, dci, disentanglement_scores,
                                          factor_vae_score, mig, modularity, mutual_information_matrix, sap)
from xgen.metrics.fid import GaussianStats, SingularCovarianceWarning, fid, fid_from_stats, inception_score, kid, precision_recall
from xgen.metrics.likelihood import elbo, iw_log_likelihood
from xgen.metrics.mmd import kernel_matrix, mmd
from xgen.metrics.quality import (METRICS, RealReference, cached_real_reference, generate_images, real_reference,
                                  score)

__all__ = ["cluster_accuracy", "contingency", "kernel_matrix", "mmd",
           "categorical_accuracy", "evaluate_model", "noise_baseline", "real_vs_real", "vae_likelihood",
           "beta_vae_score", "covariance_metric", "dci", "disentanglement_scores",
           "factor_vae_score", "mig", "modularity", "mutual_information_matrix", "sap",
           "EXTRACTORS", "ClassifierExtractor", "Extracted", "FeatureExtractor", "InceptionExtractor", "WeightsError",
           "build_extractor", "to_unit", "write_standin_inception_weights",
           "GaussianStats", "SingularCovarianceWarning", "fid", "fid_from_stats", "inception_score", "kid",
           "precision_recall", "elbo", "iw_log_likelihood",
           "METRICS", "RealReference", "cached_real_reference", "generate_images", "real_reference", "score"]
