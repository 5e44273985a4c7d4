"""Honest evaluation: accuracy, macro F1, per-class report, confusion matrix, k-fold CV.

`evaluate` is pure (arrays in, a `Metrics` out) and uses scikit-learn's
metrics; `cross_validate` trains one model per fold with the same code as a
training run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

MISCLASSIFIED_LIMIT = 500  # keep metrics.json small on big data sets


class EvaluationError(ValueError):
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


@dataclass(frozen=True)
class CVResult:
    """k-fold cross-validation: per-fold scores and their mean and spread."""

    k: int
    macro_f1: tuple[float, ...]
    accuracy: tuple[float, ...]
    epochs: tuple[int, ...] = field(default=())

    @property
    def macro_f1_mean(self) -> float:
        return float(np.mean(self.macro_f1))

    @property
    def macro_f1_std(self) -> float:
        return float(np.std(self.macro_f1))

    @property
    def accuracy_mean(self) -> float:
        return float(np.mean(self.accuracy))

    @property
    def accuracy_std(self) -> float:
        return float(np.std(self.accuracy))

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "macro_f1": list(self.macro_f1), "accuracy": list(self.accuracy),
                "epochs": list(self.epochs), "macro_f1_mean": self.macro_f1_mean,
                "macro_f1_std": self.macro_f1_std, "accuracy_mean": self.accuracy_mean,
                "accuracy_std": self.accuracy_std}


def cross_validate(cfg, k: int = 5, progress: Callable[[dict], None] | None = None) -> CVResult:
    """Train and score one model per fold of `cfg`'s data set (nothing is saved).

    Folds come from `datasets.kfold_splits` (by group when the split config
    groups clips, e.g. by speaker). Within each fold's training part a share
    `cfg.split.val` is held out for early stopping; the fold's held-out part is
    scored.
    """
    from . import training
    from .datasets import kfold_splits

    if not 2 <= int(k) <= 20:
        raise EvaluationError(f"k must be between 2 and 20, got {k}.")
    emit = progress or (lambda event: None)
    ds = training._resolve_dataset(cfg.dataset)
    labels = list(ds.labels)
    by_group = getattr(cfg.split, "method", "") == "group"
    folds = list(kfold_splits(ds, int(k), seed=cfg.split.seed, by_group=by_group))
    # Extract every clip once (cached on disk), then index per fold.
    items = list(ds.items)
    problems: list[str] = []
    emit({"phase": "extracting", "done": 0, "total": len(items)})
    data, = training._extract(items, cfg.features, labels,
                              lambda d, t: emit({"phase": "extracting", "done": d, "total": t}), problems)
    by_path = {p: (x, y) for p, x, y in zip(data.paths, data.x, data.y)}
    f1s, accs, eps = [], [], []
    for i, fold in enumerate(folds):
        train_items, test_items = _fold_parts(fold)
        tr = _subset(by_path, train_items)
        te = _subset(by_path, test_items)
        training._check_split(type("S", (), {"train": train_items})(), labels)
        tr, va = _hold_out(tr, float(getattr(cfg.split, "val", 0.15)), cfg.train.seed + i)
        emit({"phase": "training", "fold": i + 1, "folds": len(folds)})
        model, info = training.fit(cfg.model, cfg.train, tr, va, len(labels))
        m = evaluate(te.y, training.predict_proba(model, te.x), labels, paths=te.paths)
        f1s.append(m.macro_f1)
        accs.append(m.accuracy)
        eps.append(info["epochs_trained"])
        emit({"phase": "fold", "fold": i + 1, "folds": len(folds), "macro_f1": m.macro_f1,
              "accuracy": m.accuracy})
    return CVResult(k=len(folds), macro_f1=tuple(f1s), accuracy=tuple(accs), epochs=tuple(eps))


def _fold_parts(fold):
    if hasattr(fold, "train"):
        return list(fold.train), list(getattr(fold, "test", None) or getattr(fold, "val"))
    return list(fold[0]), list(fold[1])


def _subset(by_path, items):
    from .training import _Data

    keep = [(str(it.path), *by_path[str(it.path)]) for it in items if str(it.path) in by_path]
    return _Data([x for _, x, _ in keep], np.array([y for *_, y in keep], np.int64),
                 [p for p, _, _ in keep])


def _hold_out(d, share: float, seed: int):
    """Split a stratified validation part off `d` for early stopping."""
    from sklearn.model_selection import train_test_split

    from .training import _Data

    n_val = int(round(len(d.y) * share))
    n_classes = len(set(d.y.tolist()))
    if share <= 0 or n_val < n_classes or len(d.y) - n_val < n_classes:
        return d, None
    tr, va = train_test_split(np.arange(len(d.y)), test_size=n_val, random_state=seed, stratify=d.y)
    pick = lambda idx: _Data([d.x[i] for i in idx], d.y[idx], [d.paths[i] for i in idx])  # noqa: E731
    return pick(tr), pick(va)
