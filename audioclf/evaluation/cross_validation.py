"""k-fold cross-validation: the one loop over folds, and one model trained and scored per fold
with the same code as a training run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

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


@dataclass
class FoldParts:
    """What one fold trains on, stops on and is scored on.

    `val` is held out of the fold's own training clips (by group for a group
    split); `test` is the fold's held-out part. Nothing fits or early-stops on
    `test`: it is only scored.
    """

    fold: Any  # training.prepare.Fold
    cfg: Any  # the RunConfig this fold trains (Auto: resolved on the fold's training clips)
    train: Any  # SplitData: the fold's training clips, then their warped copies
    val: Any  # SplitData or None (a validation share of 0)
    test: Any  # SplitData


def k_fold(folds: Sequence, cfg, labels: Sequence[str],
           features: Callable[[Any], tuple[Any, Sequence[Any]]],
           resolve: Callable[[Any, Any], Any] | None = None) -> Iterator[FoldParts]:
    """The one k-fold loop: per fold, hold a validation part out of its training clips, then its features.

    `features(run_cfg)` gives (plain features of every clip, [warped copies of
    every clip]) as `SplitData`; each fold selects its clips from them.
    `resolve(fold, split)` may return the config the fold trains (Auto chooses
    the feature type on the fold's training clips only). Used by
    :func:`cross_validate`, the tuning "cv" objective and the pages through it.
    """
    from ..training.prepare import SplitData, fold_split

    for fold in folds:
        split = fold_split(fold, cfg.split, labels, seed_offset=fold.number - 1)
        fold_cfg = resolve(fold, split) if resolve is not None else cfg
        plain, warped = features(fold_cfg)
        train_paths = [str(it.path) for it in split.train]
        train = SplitData.concat([plain.select(train_paths), *(w.select(train_paths) for w in warped)])
        val = plain.select([str(it.path) for it in split.val]) if split.val else None
        test = plain.select([str(it.path) for it in split.test])
        if not train.x or not test.x:
            raise EvaluationError(f"Fold {fold.number}: no readable clips to train on or to score.")
        yield FoldParts(fold, fold_cfg, train, val, test)


def score_fold(job: tuple) -> dict:
    """Train one fold and score it on its test part: `(run_cfg, train, val, test, labels)` in, scores out.

    Module-level so an engine can run it anywhere (a Ray task gets the fold's features as arguments).
    """
    from ..model.building import predict_proba
    from ..training.fit import fit

    run_cfg, train, val, test, labels = job
    model, info = fit(run_cfg.model, run_cfg.train, train, val, len(labels), features=run_cfg.features)
    m = evaluate(test.y, predict_proba(model, test.x), labels, paths=test.paths)
    return {"macro_f1": m.macro_f1, "accuracy": m.accuracy, "epochs": info["epochs_trained"]}


def cross_validate(cfg, k: int = 5, progress: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, engine=None) -> CVResult:
    """Train and score one model per fold of `cfg`'s data set (nothing is saved).

    Each fold trains exactly as `training.train` does: the same pre-flight checks
    (`prepare.prepare_run`), its training clips split into train and validation
    by `cfg.split` (by group for a group split), warped copies of the training
    clips as `cfg.train.warp_augment` asks, the same `fit.fit`. Folds come
    from `prepare.cv_folds`: by group (honouring `cfg.split.group_pattern`) when
    the split method is "group", numbered in the groups' natural order.

    `progress(event)` gets {"phase": "extracting", "done", "total"}, then per fold
    {"phase": "training", "fold", "folds", "groups"} and {"phase": "fold", "fold",
    "folds", "groups", "macro_f1", "accuracy"}. `engine` (from `audioclf.engines.get_engine`; None or
    local: one fold after another here) trains the folds at once, one task each (`score_fold`);
    a Ray cluster's folds report when all are done and are not cancelled one by one.
    """
    from ..model.building import predict_proba
    from ..training.feature_choice import choose_features, feature_config
    from ..training.fit import fit
    from ..jobs import Cancelled
    from ..training.prepare import MAX_FOLDS, MIN_FOLDS, gather_features, prepare_run, warp_factors

    if not MIN_FOLDS <= int(k) <= MAX_FOLDS:
        raise EvaluationError(f"k must be between {MIN_FOLDS} and {MAX_FOLDS}, got {k}.")
    emit = progress or (lambda event: None)
    prepared = prepare_run(cfg, folds=int(k))
    labels = prepared.labels
    # Every clip (and its warped copies) once per feature type, cached on disk; each fold picks its own.
    items = list(prepared.dataset.items)
    gathered_by_kind: dict[str, tuple] = {}
    n = len(prepared.folds)

    def features_of(run_cfg):
        kind = run_cfg.features.kind
        if kind not in gathered_by_kind:
            g = gather_features({"all": items}, run_cfg.features, labels, warps=warp_factors(run_cfg),
                                warp_part="all", should_stop=should_stop,
                                progress=lambda d, t: emit({"phase": "extracting", "done": d, "total": t}))
            gathered_by_kind[kind] = (g.data["all"], g.warped)
        return gathered_by_kind[kind]

    def resolve(fold, split):
        if not cfg.is_auto:
            return cfg
        # Chosen on this fold's training clips only, as train() does.
        choice = choose_features([*split.train, *split.val], labels, cfg.features, seed=int(cfg.split.seed))
        emit({"phase": "chosen", "fold": fold.number, "folds": n, **choice.to_dict()})
        return cfg.resolved(feature_config(choice.winner, cfg.features))

    if not cfg.is_auto:
        features_of(cfg)
    f1s, accs, eps, groups, sizes, kinds = [], [], [], [], [], []
    if engine is not None and engine.name != "local":
        from ..engines import task_env

        parts = list(k_fold(prepared.folds, cfg, labels, features_of, resolve))
        emit({"phase": "training", "fold": 0, "folds": n, "groups": [], "engine": engine.name})
        scores = engine.map(score_fold, [(p.cfg, p.train, p.val, p.test, labels) for p in parts],
                            env=task_env())
        for part, sc in zip(parts, scores):
            f1s.append(sc["macro_f1"])
            accs.append(sc["accuracy"])
            eps.append(sc["epochs"])
            groups.append(tuple(part.fold.groups))
            sizes.append(len(part.train))
            kinds.append(part.cfg.features.kind)
            emit({"phase": "fold", "fold": part.fold.number, "folds": n, "groups": list(part.fold.groups),
                  "macro_f1": sc["macro_f1"], "accuracy": sc["accuracy"]})
        return CVResult(k=n, macro_f1=tuple(f1s), accuracy=tuple(accs), epochs=tuple(eps),
                        groups=tuple(groups) if any(groups) else (), n_train=tuple(sizes),
                        features=tuple(kinds))
    for part in k_fold(prepared.folds, cfg, labels, features_of, resolve):
        fold = part.fold
        emit({"phase": "training", "fold": fold.number, "folds": n, "groups": list(fold.groups)})
        model, info = fit(part.cfg.model, part.cfg.train, part.train, part.val, len(labels),
                          should_stop=should_stop, features=part.cfg.features)
        if info["cancelled"]:
            raise Cancelled()
        m = evaluate(part.test.y, predict_proba(model, part.test.x), labels, paths=part.test.paths)
        f1s.append(m.macro_f1)
        accs.append(m.accuracy)
        eps.append(info["epochs_trained"])
        groups.append(tuple(fold.groups))
        sizes.append(len(part.train))
        kinds.append(part.cfg.features.kind)
        emit({"phase": "fold", "fold": fold.number, "folds": n, "groups": list(fold.groups),
              "macro_f1": m.macro_f1, "accuracy": m.accuracy})
    return CVResult(k=n, macro_f1=tuple(f1s), accuracy=tuple(accs), epochs=tuple(eps),
                    groups=tuple(groups) if any(groups) else (), n_train=tuple(sizes),
                    features=tuple(kinds))
