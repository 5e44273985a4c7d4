"""Honest evaluation: accuracy, macro F1, per-class report, confusion matrix.

`evaluate` is pure (arrays in, a `Metrics` out) and uses scikit-learn's metrics.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import AudioclfError

MISCLASSIFIED_LIMIT = 500  # keep metrics.json small on big data sets


class EvaluationError(AudioclfError):
    """Inputs that cannot be evaluated; message is for people."""


@dataclass(frozen=True)
class Metrics:
    """Scores of one split. `confusion[i][j]`: clips of class i predicted as j."""

    labels: tuple[str, ...]
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    confusion: tuple[tuple[int, ...], ...]
    confusion_normalized: tuple[tuple[float, ...], ...]  # rows sum to 1 (recall per class)
    misclassified: tuple[dict, ...] = ()  # path, true, predicted, confidence
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("labels", "confusion", "confusion_normalized", "misclassified"):
            d[k] = [list(r) if isinstance(r, tuple) else r for r in d[k]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Metrics":
        return cls(labels=tuple(d["labels"]), accuracy=d["accuracy"], macro_f1=d["macro_f1"],
                   per_class=d["per_class"], confusion=tuple(map(tuple, d["confusion"])),
                   confusion_normalized=tuple(map(tuple, d["confusion_normalized"])),
                   misclassified=tuple(d.get("misclassified", ())), n=d.get("n", 0))


def evaluate(y_true: Sequence, y_prob: np.ndarray, labels: Sequence[str],
             paths: Sequence[str] | None = None) -> Metrics:
    """Metrics for true classes `y_true` (indices into `labels`, or label names)
    and predicted probabilities `y_prob` (n, len(labels))."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = [str(lab) for lab in labels]
    y_prob = np.asarray(y_prob, dtype=np.float64)
    y = _as_indices(y_true, labels)
    if y_prob.ndim != 2 or y_prob.shape != (len(y), len(labels)):
        raise EvaluationError(f"Expected probabilities of shape ({len(y)}, {len(labels)}), "
                              f"got {y_prob.shape}.")
    if len(y) == 0:
        raise EvaluationError("Nothing to evaluate: no clips.")
    if paths is not None and len(paths) != len(y):
        raise EvaluationError(f"Got {len(paths)} paths for {len(y)} clips.")
    pred = y_prob.argmax(1)
    ks = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=ks, zero_division=0)
    cm = confusion_matrix(y, pred, labels=ks)
    rows = cm.sum(1, keepdims=True)
    cmn = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-y_prob[wrong, pred[wrong]], kind="stable")][:MISCLASSIFIED_LIMIT]
    mis = tuple({"path": str(paths[i]) if paths is not None else str(i), "true": labels[y[i]],
                 "predicted": labels[pred[i]], "confidence": round(float(y_prob[i, pred[i]]), 4)}
                for i in wrong)  # most confident mistakes first: the ones worth a listen
    return Metrics(
        labels=tuple(labels), accuracy=float(accuracy_score(y, pred)),
        macro_f1=float(f1_score(y, pred, labels=ks, average="macro", zero_division=0)),
        per_class={lab: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                         "support": int(s[k])} for k, lab in enumerate(labels)},
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        confusion_normalized=tuple(tuple(round(float(v), 6) for v in row) for row in cmn),
        misclassified=mis, n=len(y))


def _as_indices(y_true: Sequence, labels: list[str]) -> np.ndarray:
    arr = np.asarray(y_true)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= len(labels)):
            raise EvaluationError(f"Class indices must be in 0..{len(labels) - 1}.")
        return arr.astype(np.int64)
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({str(v) for v in arr if str(v) not in index})
    if unknown:
        raise EvaluationError(f"Unknown class(es) {', '.join(unknown[:5])}; known: {', '.join(labels)}.")
    return np.array([index[str(v)] for v in arr], dtype=np.int64)
