"""k-fold cross-validation: the one loop over folds, and what it reports.

:func:`k_fold` is used by :func:`audioclf.training.crossval.cross_validate` (the
CLI's ``evaluate --cv`` and the Train page) and by the tuning "cv" objective,
so every fold everywhere holds a validation part out of its own training clips
and is scored on clips it never trained or stopped on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..datasets.splitting import fold_split
from ..model.sequences import SplitData
from .metrics import EvaluationError


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


@dataclass
class FoldParts:
    """What one fold trains on, stops on and is scored on.

    `val` is held out of the fold's own training clips (by group for a group
    split); `test` is the fold's held-out part. Nothing fits or early-stops on
    `test`: it is only scored.
    """

    fold: Any  # datasets.Fold
    cfg: Any  # the RunConfig this fold trains (Auto: resolved on the fold's training clips)
    train: SplitData  # the fold's training clips, then their warped copies
    val: SplitData | None  # None with a validation share of 0
    test: SplitData


def k_fold(folds: Sequence, cfg, labels: Sequence[str],
           features: Callable[[Any], tuple[SplitData, Sequence[SplitData]]],
           resolve: Callable[[Any, Any], Any] | None = None,
           check: Callable[[Any], None] | None = None) -> Iterator[FoldParts]:
    """The one k-fold loop: per fold, hold a validation part out of its training clips, then its features.

    `features(run_cfg)` gives (plain features of every clip, [warped copies of
    every clip]) as `SplitData`; each fold selects its clips from them.
    `resolve(fold, split)` may return the config the fold trains (Auto chooses
    the feature type on the fold's training clips only); `check(split)` may
    refuse a fold before its features are read (too few training clips).
    """
    for fold in folds:
        split = fold_split(fold, cfg.split, seed_offset=fold.number - 1)
        if check is not None:
            check(split)
        fold_cfg = resolve(fold, split) if resolve is not None else cfg
        plain, warped = features(fold_cfg)
        train_paths = [str(it.path) for it in split.train]
        train = SplitData.concat([plain.select(train_paths), *(w.select(train_paths) for w in warped)])
        val = plain.select([str(it.path) for it in split.val]) if split.val else None
        test = plain.select([str(it.path) for it in split.test])
        if not train.x or not test.x:
            raise EvaluationError(f"Fold {fold.number}: no readable clips to train on or to score.")
        yield FoldParts(fold, fold_cfg, train, val, test)
