"""Honest evaluation: accuracy, macro F1, per-class report, confusion matrix, k-fold CV.

`evaluate` is pure (arrays in, a `Metrics` out) and uses scikit-learn's
metrics; `cross_validate` trains one model per fold with the same code as a
training run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import AudioclfError

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


@dataclass(frozen=True)
class CVResult:
    """k-fold cross-validation: per-fold scores and their mean and spread.

    `groups[i]` names the groups fold i+1 held out (by-group folds), else is empty.
    """

    k: int
    macro_f1: tuple[float, ...]
    accuracy: tuple[float, ...]
    epochs: tuple[int, ...] = field(default=())
    groups: tuple[tuple[str, ...], ...] = field(default=())
    n_train: tuple[int, ...] = field(default=())  # clips each fold trained on, warped copies included
    features: tuple[str, ...] = field(default=())  # feature type each fold trained on (Auto may differ per fold)

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
                "epochs": list(self.epochs), "groups": [list(g) for g in self.groups],
                "n_train": list(self.n_train), "features": list(self.features),
                "macro_f1_mean": self.macro_f1_mean, "macro_f1_std": self.macro_f1_std,
                "accuracy_mean": self.accuracy_mean, "accuracy_std": self.accuracy_std}


def cross_validate(cfg, k: int = 5, progress: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> CVResult:
    """Train and score one model per fold of `cfg`'s data set (nothing is saved).

    Each fold trains exactly as `training.train` does: the same pre-flight checks
    (`prepare.prepare_run`), its training clips split into train and validation
    by `cfg.split` (by group for a group split), warped copies of the training
    clips as `cfg.train.warp_augment` asks, the same `fitting.fit`. Folds come
    from `prepare.cv_folds`: by group (honouring `cfg.split.group_pattern`) when
    the split method is "group", numbered in the groups' natural order.

    `progress(event)` gets {"phase": "extracting", "done", "total"}, then per fold
    {"phase": "training", "fold", "folds", "groups"} and {"phase": "fold", "fold",
    "folds", "groups", "macro_f1", "accuracy"}.
    """
    from .feature_choice import choose_features, feature_config
    from .fitting import fit
    from .models import predict_proba
    from .prepare import Cancelled, SplitData, fold_split, gather_features, prepare_run, warp_factors

    if not 2 <= int(k) <= 20:
        raise EvaluationError(f"k must be between 2 and 20, got {k}.")
    emit = progress or (lambda event: None)
    prepared = prepare_run(cfg, folds=int(k))
    labels = prepared.labels
    # Every clip (and its warped copies) once per feature type, cached on disk; each fold picks its own.
    items = [it for it in prepared.dataset.items]
    gathered_by_kind: dict[str, tuple] = {}

    def features_of(run_cfg):
        kind = run_cfg.features.kind
        if kind not in gathered_by_kind:
            g = gather_features({"all": items}, run_cfg.features, labels, warps=warp_factors(run_cfg),
                                warp_part="all", should_stop=should_stop,
                                progress=lambda d, t: emit({"phase": "extracting", "done": d, "total": t}))
            gathered_by_kind[kind] = (g.data["all"], g.warped)
        return gathered_by_kind[kind]

    if not cfg.is_auto:
        features_of(cfg)
    f1s, accs, eps, groups, sizes, kinds = [], [], [], [], [], []
    n = len(prepared.folds)
    for fold in prepared.folds:
        split = fold_split(fold, cfg.split, labels, seed_offset=fold.number - 1)
        fold_cfg = cfg
        if cfg.is_auto:  # chosen on this fold's training clips only, as train() does
            choice = choose_features([*split.train, *split.val], labels, cfg.features, seed=int(cfg.split.seed))
            fold_cfg = cfg.resolved(feature_config(choice.winner, cfg.features))
            emit({"phase": "chosen", "fold": fold.number, "folds": n, **choice.to_dict()})
        plain, warped = features_of(fold_cfg)
        train_paths = [str(it.path) for it in split.train]
        train = SplitData.concat([plain.select(train_paths), *(w.select(train_paths) for w in warped)])
        val = plain.select([str(it.path) for it in split.val]) if split.val else None
        test = plain.select([str(it.path) for it in split.test])
        if not train.x or not test.x:
            raise EvaluationError(f"Fold {fold.number}: no readable clips to train on or to score.")
        emit({"phase": "training", "fold": fold.number, "folds": n, "groups": list(fold.groups)})
        model, info = fit(fold_cfg.model, fold_cfg.train, train, val, len(labels), should_stop=should_stop)
        if info["cancelled"]:
            raise Cancelled()
        m = evaluate(test.y, predict_proba(model, test.x), labels, paths=test.paths)
        f1s.append(m.macro_f1)
        accs.append(m.accuracy)
        eps.append(info["epochs_trained"])
        groups.append(tuple(fold.groups))
        sizes.append(len(train))
        kinds.append(fold_cfg.features.kind)
        emit({"phase": "fold", "fold": fold.number, "folds": n, "groups": list(fold.groups),
              "macro_f1": m.macro_f1, "accuracy": m.accuracy})
    return CVResult(k=n, macro_f1=tuple(f1s), accuracy=tuple(accs), epochs=tuple(eps),
                    groups=tuple(groups) if any(groups) else (), n_train=tuple(sizes),
                    features=tuple(kinds))
