"""Explainability tools: traversals, interpolation and arithmetic, InfoGAN Explainability Grids, InfoVAE
Decision Maps (also for GANs through an inversion encoder) and a nearest-neighbour memorisation check.

Every tool reads a model through :mod:`xgen.protocols` (``Generative``/``Decodes`` for traversals,
``Encodes`` for Decision Maps), so any xgen model — or a user's — that provides the members works.
Command line: ``xgen explain <tool> ...`` (:mod:`xgen.runtime.cli.explain`); docs: ``docs/explain.md``.
"""

from xgen.explain.common import (Axis, ExplainedClassifier, as_classifier, convert_range, parse_axis,
                                 shipped_classifier, to_unit)
from xgen.explain.decision_maps import DecisionMapResult, DecisionMaps, decision_maps, latent_direction
from xgen.explain.grids import ExplainabilityGrid, explainability_grid, turning_points
from xgen.explain.inversion import (InversionEncoder, InvertedGAN, load_encoder, reconstruction_error, refine,
                                    save_encoder, train_inversion)
from xgen.explain.neighbours import Neighbours, knn, nearest_neighbours
from xgen.explain.shipped import shipped_checkpoint, shipped_checkpoints
from xgen.explain.traversals import (Arithmetic, Traversal, grid2d, interpolate, interpolate_images,
                                     latent_arithmetic, lerp, slerp, traverse)

__all__ = ["Axis", "ExplainedClassifier", "as_classifier", "convert_range", "parse_axis", "shipped_classifier",
           "to_unit", "DecisionMapResult", "DecisionMaps", "decision_maps", "latent_direction",
           "ExplainabilityGrid", "explainability_grid", "turning_points", "InversionEncoder", "InvertedGAN",
           "load_encoder", "reconstruction_error", "refine", "save_encoder", "train_inversion", "Neighbours", "knn",
           "nearest_neighbours", "shipped_checkpoint", "shipped_checkpoints", "Arithmetic", "Traversal", "grid2d",
           "interpolate", "interpolate_images", "latent_arithmetic", "lerp", "slerp", "traverse"]
