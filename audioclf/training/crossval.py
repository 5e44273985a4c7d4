"""Cross-validating a run config: one model trained and scored per fold, exactly as a run trains.

    from audioclf.training import cross_validate
    result = cross_validate(cfg, k=5)          # nothing is saved
    result.macro_f1_mean, result.macro_f1_std

The loop over folds is :func:`audioclf.evaluation.cross_validation.k_fold`.
"""
from __future__ import annotations

from typing import Callable

from .. import workspace
from ..datasets.splitting import MAX_FOLDS, MIN_FOLDS
from ..evaluation.cross_validation import CVResult, k_fold
from ..evaluation.metrics import EvaluationError, evaluate
from ..jobs import Cancelled
from ..model.building import predict_proba
from ..progress import OnEvent
from .feature_choice import choose_features, config_for_kind
from .fit import fit
from .prepare import check_training_part, gather_features, prepare_run, warp_factors


def score_fold(job: tuple) -> dict:
    """Train one fold and score it on its test part: `(run_cfg, train, val, test, labels)` in, scores out.

    Module-level so an engine can run it anywhere (a Ray task gets the fold's features as arguments).
    """
    run_cfg, train, val, test, labels = job
    model, info = fit(run_cfg.model, run_cfg.train, train, val, len(labels), features=run_cfg.features)
    m = evaluate(test.y, predict_proba(model, test.x), labels, paths=test.paths)
    return {"macro_f1": m.macro_f1, "accuracy": m.accuracy, "epochs": info["epochs_trained"]}


def cross_validate(cfg, k: int = 5, progress: OnEvent | None = None,
                   should_stop: Callable[[], bool] | None = None, engine=None) -> CVResult:
    """Train and score one model per fold of `cfg`'s data set (nothing is saved).

    Each fold trains exactly as `training.train` does: the same pre-flight checks
    (`prepare.prepare_run`), its training clips split into train and validation
    by `cfg.split` (by group for a group split), warped copies of the training
    clips as `cfg.train.warp_augment` asks, the same `fit.fit`. Folds come
    from `datasets.cv_folds`: by group (honouring `cfg.split.group_pattern`) when
    the split method is "group", numbered in the groups' natural order.

    `progress(event)` gets {"phase": "extracting", "done", "total"}, then per fold
    {"phase": "training", "fold", "folds", "groups"} and {"phase": "fold", "fold",
    "folds", "groups", "macro_f1", "accuracy"}. `engine` (from `audioclf.engines.get_engine`; None or
    local: one fold after another here) trains the folds at once, one task each (`score_fold`);
    a Ray cluster's folds report when all are done and are not cancelled one by one.
    """
    workspace.require_writable("train models to cross-validate")  # a shared demo trains nothing
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
        return cfg.resolved(config_for_kind(choice.winner, cfg.features))

    if not cfg.is_auto:
        features_of(cfg)
    f1s, accs, eps, groups, sizes, kinds = [], [], [], [], [], []
    check = lambda split: check_training_part(split.train, labels)  # noqa: E731
    if engine is not None and engine.name != "local":
        from ..engines import task_env

        parts = list(k_fold(prepared.folds, cfg, labels, features_of, resolve, check=check))
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
    for part in k_fold(prepared.folds, cfg, labels, features_of, resolve, check=check):
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
