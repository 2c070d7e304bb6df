"""InfoGAN Explainability Grids (thesis §4.3 part two, §4.5.1, fig. 4.25).

A 2-D traversal grid (discrete code down, a continuous code across) in which a classifier labels every
generated image with its predicted class and softmax confidence. Where two neighbouring cells of a row
get different classes the continuous code crossed one of the classifier's *decision turning points*
(fig. 4.27: coat → dress; fig. 4.28: sneaker → sandal); those are marked with a red bar and counted.

For a :class:`~xgen.protocols.Conditional` model whose class code runs down the rows, each row is the
class asked for ("class 3: Dress"), and the counts add how many cells the classifier reads as that class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from xgen.explain.common import write_csv, ExplainedClassifier, as_classifier, to_unit
from xgen.explain.figures import grid_figure
from xgen.explain.traversals import Traversal, grid2d
from xgen.protocols import Conditional

__all__ = ["ExplainabilityGrid", "explainability_grid", "turning_points"]


def turning_points(classes: Tensor) -> list[tuple[int, int]]:
    """(row, col) of every cell whose right-hand neighbour in the same row has another class."""
    c = classes
    return [(int(i), int(j)) for i, j in (c[:, 1:] != c[:, :-1]).nonzero().tolist()]


@dataclass
class ExplainabilityGrid:
    """A labelled grid: the traversal, and per cell the predicted class and its softmax confidence."""

    traversal: Traversal
    classes: Tensor          # (R, C) int64
    confidence: Tensor       # (R, C)
    probs: Tensor            # (R, C, K)
    class_names: list[str]
    asked: list[int] | None = None  # a Conditional model's rows: the class each row asks for (its class code)

    @property
    def turning_points(self) -> list[tuple[int, int]]:
        """Cells (r, c) whose class differs from cell (r, c+1): a decision turning point between them."""
        return turning_points(self.classes)

    @property
    def vertical_changes(self) -> int:
        """Neighbouring cells down a column with different classes (expected: rows are different
        categorical values, which InfoGAN ties to different classes)."""
        return int((self.classes[1:] != self.classes[:-1]).sum())

    def counts(self) -> dict:
        """The numbers a reader needs: rows that keep one class across the continuous code, turning
        points, distinct classes, the mean confidence."""
        steady = [int(r) for r in range(self.classes.shape[0]) if bool((self.classes[r] == self.classes[r, 0]).all())]
        dominant = [self.class_names[int(torch.mode(self.classes[r]).values)] for r in range(self.classes.shape[0])]
        return {"rows": int(self.classes.shape[0]), "cols": int(self.classes.shape[1]),
                "rows_one_class": len(steady), "rows_one_class_index": steady,
                "turning_points": len(self.turning_points), "vertical_class_changes": self.vertical_changes,
                "distinct_classes": int(self.classes.unique().numel()),
                "row_majority_class": dominant,
                "mean_confidence": float(self.confidence.mean()),
                "row_axis": self.traversal.row_axis, "col_axis": self.traversal.col_axis,
                **self.asked_counts()}

    def asked_counts(self) -> dict:
        """For class rows (a conditional model): the rows whose every cell the classifier reads as the
        class asked for, and the share of such cells (the grid's class consistency)."""
        if self.asked is None:
            return {}
        want = torch.tensor(self.asked)[:, None]
        hit = self.classes == want
        return {"rows_asked_class": int(hit.all(1).sum()), "cells_asked_class": round(float(hit.float().mean()), 4),
                "rows_missing_asked_class": [self.row_names[r] for r in range(len(self.asked))
                                             if not bool(hit[r].any())]}

    @property
    def row_names(self) -> list[str]:
        """Row labels: "class k: name" for class rows, else the row code's values."""
        if self.asked is None:
            return [str(v) for v in self.traversal.row_values]
        return [f"class {k}: {self.class_names[k]}" if self.class_names[k] != str(k) else f"class {k}"
                for k in self.asked]

    def records(self) -> list[dict]:
        """One dict per cell: position, code values, class, confidence, and whether a turning point
        lies to its right."""
        tp = set(self.turning_points)
        out = []
        t = self.traversal
        for r in range(self.classes.shape[0]):
            for c in range(self.classes.shape[1]):
                k = int(self.classes[r, c])
                out.append({"row": r, "col": c, "row_code": t.row_axis, "row_value": float(t.row_values[r]),
                            "col_code": t.col_axis, "col_value": float(t.col_values[c]), "class": k,
                            "class_name": self.class_names[k], "confidence": round(float(self.confidence[r, c]), 6),
                            "turning_point_right": (r, c) in tp,
                            **({"asked_class": self.asked[r], "is_asked_class": k == self.asked[r]}
                               if self.asked is not None else {})})
        return out

    def save_csv(self, path: str | Path) -> Path:
        return write_csv(path, self.records())

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"counts": self.counts(), "cells": self.records()}, indent=1))
        return path

    def figure(self, path: str | Path | None = None, title: str | None = None):
        """The grid with "class / confidence" under each image and red bars at turning points."""
        t = self.traversal
        text = [[f"{self.class_names[int(self.classes[r, c])][:11]}\n{float(self.confidence[r, c]):.2f}"
                 for c in range(self.classes.shape[1])] for r in range(self.classes.shape[0])]
        n = self.counts()
        asked = (f"; {n['cells_asked_class']:.0%} of cells read as the class asked for "
                 f"(rows: the class asked for, {t.row_axis.split(' ')[0]})" if self.asked is not None else "")
        title = title if title is not None else (
            f"Explainability Grid: {n['rows_one_class']}/{n['rows']} rows keep one class, "
            f"{n['turning_points']} turning points (red){asked}")
        rows = self.row_names if self.asked is not None else t.row_values
        ylabel = "" if self.asked is not None else t.row_axis  # the row labels name the classes; the title says so
        return grid_figure(to_unit(t.images, t.value_range), rows, t.col_values, ylabel,
                           t.col_axis, title, path, cell_text=text, marks=self.turning_points, cell_inches=0.8)


def explainability_grid(model, classifier: ExplainedClassifier | nn.Module, row_axis: str | None = None,
                        col_axis: str | None = None, row_values: Sequence[float] | None = None,
                        col_values: Sequence[float] | None = None, steps: int = 10,
                        span: Sequence[float] = (-1.0, 1.0), base: Tensor | None = None,
                        seed: int = 0) -> ExplainabilityGrid:
    """Draw a 2-D code grid from ``model`` (default: first categorical code down, first continuous code
    across, 10 values over [-1, 1]) and label it with ``classifier`` (any ``nn.Module`` returning logits;
    its input shape must match the generator's output)."""
    clf = as_classifier(classifier, model)
    t = grid2d(model, row_axis, col_axis, row_values, col_values, steps, span, base, seed)
    r, c = t.images.shape[:2]
    cls, conf, p = clf.predict(t.images.flatten(0, 1), t.value_range)
    asked = None
    if isinstance(model, Conditional) and t.row_axis.split(" ")[0] == f"cat{int(model.class_code)}":
        asked = [int(v) for v in t.row_values]  # rows of the class code: each asks for its class
    return ExplainabilityGrid(t, cls.view(r, c), conf.view(r, c), p.view(r, c, -1), list(clf.class_names), asked)
