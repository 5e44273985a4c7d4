"""k-fold cross-validation: one model trained and scored per fold, with the same code as a training run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .metrics import EvaluationError, evaluate


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
    from ..model.building import predict_proba
    from ..training.feature_choice import choose_features, feature_config
    from ..training.fit import fit
    from ..training.prepare import Cancelled, SplitData, fold_split, gather_features, prepare_run, warp_factors

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
