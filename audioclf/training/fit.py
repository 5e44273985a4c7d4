"""Fitting a model on in-memory feature sequences: class weights, callbacks, early stopping.

    model, info = fit(ModelConfig(), TrainConfig(), train_data, val_data, n_classes)

`train_data`/`val_data` are `model.sequences.SplitData` (sequences, integer labels).
Used by `training.train`, `training.cross_validate` and tuning trials alike. TensorFlow is
imported inside `fit`.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from ..model.building import input_stats
from ..model.configs import ModelConfig
from ..model.sequences import SplitData
from ..progress import OnEvent
from . import batching
from .config import TrainConfig
from .streaming import StoreSplit
from .warm import warm_model

MONITOR = "val_loss"  # smoother than val_accuracy on small validation sets
LR_FACTOR = 0.5  # reduce_lr: multiply the rate by this on a plateau
MIN_LR_RATIO = 1 / 32  # ... but never below this share of the initial rate
VAL_BATCH = 64



def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class weights n / (k * count): rare classes count as much as common ones."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)


def fit(model_cfg: ModelConfig, train_cfg: TrainConfig, train: SplitData | StoreSplit,
        val: SplitData | StoreSplit | None,
        n_classes: int, *, on_epoch: OnEvent | None = None,
        should_stop: Callable[[], bool] | None = None, callbacks: Sequence = (), initial=None,
        features=None):
    """Build and train a model on in-memory sequences, or streamed from a feature store
    (:class:`~audioclf.training.streaming.StoreSplit`); returns (model, info dict).

    Standardisation statistics come from `train` only. With validation data and a
    patience, training stops early and restores the weights of the best epoch.
    `info`: epochs_trained, train_seconds, best_epoch, cancelled. `callbacks` are
    extra Keras callbacks (e.g. a tuner's per-epoch scoring); they see the model
    being trained, which for an ensemble outputs every member's probabilities,
    (batch, members, classes). `initial`, a trained Keras model of the same
    architecture, is where training starts (a warm start: a retrain on a grown data
    set); `info["warm_start"]` then says whether its weights fitted and were used.
    With ``train_cfg.finetune_blocks`` the sequences are EfficientAT's log-mels and
    `features` the run's EfficientATConfig: the network's top blocks train with the
    model (:mod:`~audioclf.training.finetune`; `info["finetune"]` says what it cost); an
    `initial` fine-tuned run's model is where its fine-tuned network and head start.
    """
    from ..features.configs import feature_parts
    from ..model.building import build_model, configure_tensorflow, members_view

    configure_tensorflow()
    import keras

    keras.utils.set_random_seed(int(train_cfg.seed))
    if train_cfg.finetune_blocks:
        return _fit_finetune(model_cfg, train_cfg, features, train, val, n_classes, on_epoch, should_stop,
                             callbacks, initial)
    streamed = isinstance(train, StoreSplit)  # from a feature store, within a memory budget
    dims = train.dims if streamed else train.x[0].shape[1]
    mean, var = train.input_stats(model_cfg) if streamed else input_stats(model_cfg, train.x)
    parts = feature_parts(features, dims)  # e.g. EfficientAT's and YAMNet's embeddings: a network each
    model, warm = warm_model(lambda m, v: build_model(model_cfg, dims, n_classes, mean=m, variance=v, parts=parts),
                             mean, var, initial)
    soft = n_classes if train_cfg.mixup else 0  # mixup blends targets: one-hot rows, not indices
    trainee, loss, accuracy = members_view(model, soft=bool(soft))  # an ensemble trains each member on its own loss
    trainee.compile(optimizer=keras.optimizers.Adam(float(train_cfg.learning_rate)),
                    loss=loss, metrics=[accuracy])
    cw = class_weights(train.y, n_classes) if train_cfg.class_weights else None
    if streamed:
        train_ds = train.dataset(int(train_cfg.batch_size), int(train_cfg.seed), cw, soft, train_cfg.mixup)
    else:
        w = None if cw is None else cw[train.y].astype(np.float32)
        train_ds = batching.dataset(train.x, train.y, w, int(train_cfg.batch_size), int(train_cfg.seed), soft,
                                    train_cfg.mixup)
    has_val = val is not None and len(val) > 0
    if not has_val:
        val_ds = None
    elif isinstance(val, StoreSplit):
        val_ds = val.dataset(VAL_BATCH, None, None, soft)
    else:
        val_ds = batching.dataset(val.x, val.y, None, VAL_BATCH, None, soft)
    info = run_fit(trainee, train_cfg, train_ds, val_ds, on_epoch, should_stop, callbacks)
    if warm is not None:
        info["warm_start"] = warm
    return model, info


def run_fit(trainee, train_cfg: TrainConfig, train_ds, val_ds, on_epoch: OnEvent | None,
            should_stop: Callable[[], bool] | None, callbacks: Sequence = ()) -> dict:
    """``trainee.fit`` with the schedule of `train_cfg` (early stopping, reduce-LR), progress and
    cancel; returns the info of :func:`fit` (epochs_trained, train_seconds, best_epoch, cancelled)."""
    import keras

    epochs = int(train_cfg.epochs)
    monitor = MONITOR if val_ds is not None else "loss"
    progress = progress_callback(epochs, on_epoch, should_stop)
    extra = list(callbacks)
    callbacks = [*extra, progress]
    averaging = None
    if train_cfg.average_epochs > 1 and val_ds is not None and train_cfg.patience is not None:
        averaging = EpochWeights(train_cfg.average_epochs, int(train_cfg.min_epochs))
        callbacks.append(averaging.callback())
    if train_cfg.patience is not None:
        callbacks.insert(0, keras.callbacks.EarlyStopping(
            monitor=monitor, patience=int(train_cfg.patience),
            restore_best_weights=True, start_from_epoch=int(train_cfg.min_epochs)))
    if train_cfg.reduce_lr is not None:
        callbacks.insert(0, keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=LR_FACTOR, patience=int(train_cfg.reduce_lr),
            min_lr=float(train_cfg.learning_rate) * MIN_LR_RATIO))
    t0 = time.perf_counter()
    hist = trainee.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                       shuffle=False, verbose=0)  # batching shuffles
    losses = hist.history.get(monitor, [])
    start = int(train_cfg.min_epochs)
    watched = train_cfg.patience is not None and len(losses) > start
    best = start + int(np.argmin(losses[start:])) + 1 if watched else len(losses)
    info = {"epochs_trained": len(losses), "train_seconds": round(time.perf_counter() - t0, 2),
            "best_epoch": best, "cancelled": progress.cancelled}
    if averaging is not None and watched and not progress.cancelled:
        info["weight_average"] = averaging.install(trainee, best, val_ds, monitor)
    return info


class EpochWeights:
    """Weight averaging around the best epoch (``TrainConfig.average_epochs``).

    A callback keeps a copy of the trainable weights after every epoch that can fall in
    the window of `n` epochs centred on the best one so far; after training (early
    stopping has restored the best epoch) :meth:`install` sets their mean if it scores
    no worse on the validation data. Only trainable weights are averaged: the rest (the
    Normalization layer's statistics, random-noise seed state) are not learned and stay
    as restored. Averaging after training rather than Keras's ``use_ema`` because that
    is undone by ``restore_best_weights`` and never seen by early stopping.
    """

    def __init__(self, n: int, min_epochs: int):
        self.before, self.after = (n - 1) // 2, n // 2  # epochs either side of the best
        self.min_epochs, self.monitor = min_epochs, MONITOR
        self.kept: dict[int, list[np.ndarray]] = {}  # 1-based epoch -> trainable weights
        self.best_loss, self.best_epoch = np.inf, 0

    def callback(self):
        import keras

        outer = self

        class Keep(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                outer.keep(epoch + 1, (logs or {}).get(outer.monitor), self.model)

        return Keep()

    def keep(self, epoch: int, loss, model) -> None:
        if loss is not None and epoch > self.min_epochs and float(loss) < self.best_loss:
            self.best_loss, self.best_epoch = float(loss), epoch
        self.kept[epoch] = [np.array(w.numpy(), copy=True) for w in model.trainable_weights]
        # Only epochs that can still be in a window: a later best's starts later still.
        floor = (self.best_epoch or self.min_epochs + 1) - self.before
        for e in [e for e in self.kept if e < floor]:
            del self.kept[e]

    def install(self, model, best: int, val_ds, monitor: str) -> dict | None:
        """Set the window's mean weights on `model` if its validation `monitor` is no worse
        than the current (best epoch's) weights. Returns what was tried: {"epochs": averaged,
        "used": kept or not, "best": the best epoch's validation value, "averaged": the
        mean's}; None when fewer than two epochs were in the window."""
        window = [self.kept[e] for e in range(best - self.before, best + self.after + 1) if e in self.kept]
        if len(window) < 2:
            return None
        variables = model.trainable_weights
        restored = [np.array(v.numpy(), copy=True) for v in variables]
        metric = monitor.removeprefix("val_")
        base = float(model.evaluate(val_ds, verbose=0, return_dict=True)[metric])
        for v, *ws in zip(variables, *window):
            v.assign(np.mean(ws, axis=0).astype(ws[0].dtype))
        averaged = float(model.evaluate(val_ds, verbose=0, return_dict=True)[metric])
        used = averaged <= base
        if not used:
            for v, w in zip(variables, restored):
                v.assign(w)
        return {"epochs": len(window), "used": used, "best": round(base, 5), "averaged": round(averaged, 5)}


def _fit_finetune(model_cfg, train_cfg, features, train, val, n_classes, on_epoch, should_stop, callbacks,
                  initial):
    from .finetune import build_finetune

    ft = build_finetune(model_cfg, train_cfg, features, train, val, n_classes, initial=initial)
    cw = class_weights(train.y, n_classes) if train_cfg.class_weights else None
    w = None if cw is None else cw[train.y].astype(np.float32)
    soft = n_classes if train_cfg.mixup else 0
    train_ds = batching.dataset(ft.train_x, train.y, w, int(train_cfg.batch_size), int(train_cfg.seed), soft,
                                train_cfg.mixup)
    val_ds = batching.dataset(ft.val_x, val.y, None, VAL_BATCH, None, soft) if ft.val_x else None
    info = run_fit(ft.trainee, train_cfg, train_ds, val_ds, on_epoch, should_stop, callbacks)
    info["finetune"] = ft.record(train_cfg, info)
    if ft.warm is not None:
        info["warm_start"] = ft.warm
    return ft.model, info


def progress_callback(epochs: int, on_epoch: OnEvent | None, should_stop: Callable[[], bool] | None):
    """A Keras callback that reports each epoch and stops when asked (polled every batch).

    Its `cancelled` attribute tells afterwards whether `should_stop` ended training.
    """
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        cancelled = False

        def __init__(self):
            super().__init__()
            self.t0 = time.perf_counter()

        def _check_stop(self):
            if should_stop is not None and should_stop():
                self.cancelled = True
                self.model.stop_training = True

        def on_train_batch_end(self, batch, logs=None):
            self._check_stop()

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.perf_counter() - self.t0
            row = {"epoch": epoch + 1, "epochs": epochs,
                   **{k: float(v) for k, v in (logs or {}).items()},
                   "elapsed": round(elapsed, 3),
                   "eta": round(elapsed / (epoch + 1) * (epochs - epoch - 1), 3)}
            if on_epoch is not None:
                on_epoch(row)
            self._check_stop()

    return ProgressCallback()
