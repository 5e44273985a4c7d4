"""What a trial does: the clips a search may read, their features, and the score Optuna maximises.

The search splits the data set once with the base run's SplitConfig and never
reads the test split: a trial trains on the training split and is scored on
the validation split (objective "val"), or on k folds of training plus
validation clips (objective "cv"). Features are extracted once per feature
config through the feature cache. Hopeless trials are pruned from their
per-epoch validation macro F1.
"""
from __future__ import annotations

import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..jobs import Cancelled
from ..model.sequences import SplitData, pad_sequences, padded_length
from ..training.config import RunConfig, TrainConfig
from ..training.fit import VAL_BATCH, fit
from .config import TuneConfig
from .space import TuningError, apply_params, feature_fields, suggest, values_of

MIN_CV_PER_CLASS = 2  # clips per class in each fold's held-out part, at least


class OutOfTime(Exception):
    pass


def search_items(cfg: TuneConfig):
    """(labels, train items, val items) of the base split; the test split is dropped here."""
    from ..training.prepare import check_features, prepare_run

    for kind in values_of(cfg.space, "features.kind", cfg.base.features.kind):
        check_features(cfg.base.features if kind == cfg.base.features.kind else apply_params(
            cfg.base, {"features.kind": kind}).features)  # YAMNet without a model: say so now
    for features in feature_configs(cfg) or ():  # e.g. EfficientAT trials that also hear through YAMNet
        check_features(features)
    prepared = prepare_run(cfg.base)
    labels, train, val = prepared.labels, list(prepared.split.train), list(prepared.split.val)
    del prepared  # nothing below may see the test clips
    _check_objective(cfg, labels, train, val)
    return labels, train, val


def _check_objective(cfg: TuneConfig, labels, train, val) -> None:
    from collections import Counter

    if cfg.objective == "val":
        if not val:
            raise TuningError("The validation objective needs validation clips, but the split has none: "
                              "set a validation share above 0, or use the cv objective.")
        missing = sorted(set(labels) - {it.label for it in val})
        if missing:
            raise TuningError(f"The validation split has no clip of class {missing[0]!r}, so its macro F1 "
                              "cannot judge a trial; raise the validation share or use the cv objective.")
        return
    counts = Counter(it.label for it in train + val)
    need = int(cfg.folds) * MIN_CV_PER_CLASS
    few = [f"{lab} ({counts.get(lab, 0)})" for lab in labels if counts.get(lab, 0) < need]
    if few:
        raise TuningError(f"The data set is too small for {cfg.folds}-fold cross-validation: each class needs "
                          f"at least {need} clips outside the test split ({MIN_CV_PER_CLASS} per fold); "
                          f"{', '.join(few[:5])} have fewer. Use fewer folds or the val objective.")
    from ..datasets import fold_split
    from ..training.prepare import check_training_part

    for fold in search_folds(cfg, train + val):  # each fold holds a validation part out of its training clips
        check_training_part(fold_split(fold, cfg.base.split, seed_offset=fold.number - 1).train, labels)


def feature_configs(cfg: TuneConfig) -> list:
    """Every feature config the search can ask for (None if a feature setting is a continuous range)."""
    import itertools

    kinds = values_of(cfg.space, "features.kind", cfg.base.features.kind)
    fparams = [p for p in cfg.space.params if p.name.startswith("features.") and p.name != "features.kind"]
    if any(p.is_range and not p.step and not p.fixed for p in fparams):
        return None
    out = []
    for kind in kinds:
        own = [p for p in fparams if p.name.split(".", 1)[1] in feature_fields(kind)]
        for combo in itertools.product(*[p.grid() for p in own]):
            values = {"features.kind": kind, **{p.name: v for p, v in zip(own, combo)}}
            try:
                out.append(apply_params(cfg.base, values).features)
            except ValueError:
                continue
    return list(dict.fromkeys(out))


def _warped(features, train_cfg: TrainConfig) -> list:
    """Feature configs of the extra warped training copies (MFCC vocal tract warping), as training makes."""
    from ..training.prepare import warp_factors

    factors = warp_factors(RunConfig(dataset="", split=None, features=features, train=train_cfg))
    return [replace(features, warp=w) for w in factors]


def extract_sequences(items, features, labels, progress: Callable[[int, int], None] | None = None) -> SplitData:
    """Features of `items` from the cache (computed once on a miss); unreadable clips are skipped."""
    from ..training.prepare import extract_parts

    return extract_parts(list(items), features, labels, progress)[0]


class TrialData:
    """Per worker process: sequences of the search's clips for each feature config, built once."""

    def __init__(self, labels, train, val):
        self.labels, self.train, self.val = labels, train, val
        self._memo: dict = {}

    def get(self, items_key: str, items, features) -> SplitData:
        key = (items_key, features)
        if key not in self._memo:
            self._memo[key] = extract_sequences(items, features, self.labels)
        return self._memo[key]

    def train_val(self, run_cfg: RunConfig) -> tuple[SplitData, SplitData]:
        tr = self.get("train", self.train, run_cfg.features)
        extra = [self.get("train", self.train, w) for w in _warped(run_cfg.features, run_cfg.train)]
        return SplitData.concat([tr, *extra]), self.get("val", self.val, run_cfg.features)


def prepare(cfg: TuneConfig, progress: Callable[[int, int], None] | None = None):
    """Split once, check the objective and extract every feature config's features (cached).

    Returns (labels, train items, val items). Only training and validation clips are read.
    """
    labels, train, val = search_items(cfg)
    configs = feature_configs(cfg)
    if configs:
        jobs = []
        for fc in configs:
            jobs.append((train + val, fc))
            for w in _warped(fc, cfg.base.train):  # cv folds train on validation clips too
                jobs.append((train if cfg.objective == "val" else train + val, w))
        total = sum(len(items) for items, _ in jobs)
        done = 0
        for items, fc in jobs:
            base_done = done
            extract_sequences(items, fc, labels,
                              progress=(lambda d, t, b=base_done: progress(b + d, total)) if progress else None)
            done += len(items)
    return labels, train, val


@lru_cache(maxsize=1)
def _callback_types():
    """The Keras callbacks of a trial, defined once Keras is imported."""
    import keras

    class StopCallback(keras.callbacks.Callback):
        """Ends training when the search is cancelled or its time is up (nothing else)."""

        def __init__(self, stop: Callable[[], bool], deadline: float | None):
            super().__init__()
            self.stop, self.deadline = stop, deadline
            self.cancelled = self.out_of_time = False

        def on_train_batch_end(self, batch, logs=None):
            if self.stop():
                self.cancelled = True
                self.model.stop_training = True
            elif self.deadline is not None and time.time() > self.deadline:
                self.out_of_time = True
                self.model.stop_training = True

    class F1Callback(StopCallback):
        """Also: validation macro F1 after each epoch, reported to Optuna; stops pruned trials."""

        def __init__(self, stop, deadline, trial, val: SplitData, n_classes: int):
            super().__init__(stop, deadline)
            self.trial, self.val, self.n_classes = trial, val, n_classes
            self.pruned = False
            order = np.argsort([len(s) for s in val.x], kind="stable")
            self.batches = []
            for i in range(0, len(order), VAL_BATCH):
                idx = order[i:i + VAL_BATCH]
                self.batches.append((idx, pad_sequences([val.x[j] for j in idx],
                                                        padded_length([len(val.x[j]) for j in idx]))))

        def on_epoch_end(self, epoch, logs=None):
            probs = np.zeros((len(self.val.x), self.n_classes), np.float32)
            for idx, xb in self.batches:
                out = np.asarray(self.model.predict_on_batch(xb))
                probs[idx] = out.mean(axis=1) if out.ndim == 3 else out  # ensemble: members' mean
            self.trial.report(macro_f1(self.val.y, probs, self.n_classes), epoch + 1)
            if self.trial.should_prune():
                self.pruned = True
                self.model.stop_training = True

    return StopCallback, F1Callback


def macro_f1(y: np.ndarray, probs: np.ndarray, n_classes: int) -> float:
    """Macro F1 of the top class over every class (one with no clip counts as 0)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y, probs.argmax(1), labels=list(range(n_classes)), average="macro", zero_division=0))


def _score(model, data: SplitData, n_classes: int) -> float:
    from ..model.building import predict_proba

    return macro_f1(data.y, predict_proba(model, data.x), n_classes)


def make_objective(cfg: TuneConfig, data: TrialData, stop: Callable[[], bool],
                   deadline: float | None = None) -> Callable:
    """The function Optuna maximises: validation macro F1 (or the k-fold mean) of one config."""
    import optuna

    def objective(trial) -> float:
        values = suggest(trial, cfg.space, cfg.base)
        try:
            run_cfg = apply_params(cfg.base, values)
        except ValueError as e:
            trial.set_user_attr("error", str(e))
            raise
        trial.set_user_attr("config", run_cfg.to_dict())
        t0 = time.time()
        try:
            if cfg.objective == "cv":
                value, epochs, status = _cv_value(cfg, run_cfg, data, trial, stop, deadline)
            else:
                value, epochs, status = _val_value(run_cfg, data, trial, stop, deadline)
        finally:
            trial.set_user_attr("seconds", round(time.time() - t0, 2))
        trial.set_user_attr("epochs", epochs)
        if status == "cancelled":
            from .studies import CANCELLED_ATTR

            trial.set_user_attr(CANCELLED_ATTR, True)  # Optuna stores it as failed; the leaderboard says cancelled
            raise Cancelled()
        if status == "out_of_time":
            trial.set_user_attr("error", "stopped: the time budget ran out")
            raise OutOfTime("the time budget ran out during this trial")
        if status == "pruned":
            raise optuna.TrialPruned()
        return value

    return objective


def _val_value(run_cfg, data: TrialData, trial, stop, deadline):
    tr, va = data.train_val(run_cfg)
    if not tr.x or not va.x:
        raise TuningError("No training or validation clip could be read.")
    n = len(data.labels)
    # A fine-tuning trial trains on the network's inner feature maps, not on `va`'s log-mels: it is
    # scored once at the end, through the whole network, and never pruned on the way.
    stop_only, scored = _callback_types()
    cb = stop_only(stop, deadline) if run_cfg.finetunes else scored(stop, deadline, trial, va, n)
    model, info = fit(run_cfg.model, run_cfg.train, tr, va, n, callbacks=[cb], features=run_cfg.features)
    pruned = getattr(cb, "pruned", False)
    status = "cancelled" if cb.cancelled else "out_of_time" if cb.out_of_time else "pruned" if pruned else ""
    if status:
        return 0.0, info["epochs_trained"], status
    return _score(model, va, n), info["epochs_trained"], ""


def _cv_value(cfg: TuneConfig, run_cfg, data: TrialData, trial, stop, deadline):
    """Mean macro F1 over k folds of training + validation clips; reported after each fold.

    Each fold early-stops on a validation part held out of its own training clips
    (the one k-fold loop, :func:`audioclf.evaluation.cross_validation.k_fold`) and
    is scored once on its held-out clips, which it never trains or stops on.
    """
    from ..evaluation.cross_validation import k_fold

    items = data.train + data.val
    folds = search_folds(cfg, items)
    n = len(data.labels)

    def features_of(c):
        return data.get("all", items, c.features), [data.get("all", items, w) for w in _warped(c.features, c.train)]

    scores, epochs = [], 0
    for part in k_fold(folds, run_cfg, data.labels, features_of):
        cb = _callback_types()[0](stop, deadline)
        model, info = fit(run_cfg.model, run_cfg.train, part.train, part.val, n, callbacks=[cb],
                          features=run_cfg.features)
        epochs += info["epochs_trained"]
        if cb.cancelled:
            return 0.0, epochs, "cancelled"
        if cb.out_of_time:
            return 0.0, epochs, "out_of_time"
        scores.append(_score(model, part.test, n))
        trial.report(float(np.mean(scores)), part.fold.number)
        if part.fold.number < len(folds) and trial.should_prune():
            return 0.0, epochs, "pruned"
    trial.set_user_attr("fold_scores", scores)
    return float(np.mean(scores)), epochs, ""


def search_folds(cfg: TuneConfig, items) -> list:
    """The cv objective's folds of the search's clips (training plus validation, never test)."""
    from ..datasets import Dataset, cv_folds

    # Items carry their groups already (the split applied the pattern): no pattern needed again.
    return cv_folds(Dataset("search", Path("."), list(items)), replace(cfg.base.split, group_pattern=None),
                    int(cfg.folds))
