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
    model, warm = warm_model(lambda m, v: build_model(model_cfg, dims, n_classes, mean=m, variance=v),
                             mean, var, initial)
    trainee, loss, accuracy = members_view(model)  # an ensemble trains each member on its own loss
    trainee.compile(optimizer=keras.optimizers.Adam(float(train_cfg.learning_rate)),
                    loss=loss, metrics=[accuracy])
    cw = class_weights(train.y, n_classes) if train_cfg.class_weights else None
    if streamed:
        train_ds = train.dataset(int(train_cfg.batch_size), int(train_cfg.seed), cw)
    else:
        w = None if cw is None else cw[train.y].astype(np.float32)
        train_ds = batching.dataset(train.x, train.y, w, int(train_cfg.batch_size), int(train_cfg.seed))
    has_val = val is not None and len(val) > 0
    if not has_val:
        val_ds = None
    elif isinstance(val, StoreSplit):
        val_ds = val.dataset(VAL_BATCH, None)
    else:
        val_ds = batching.dataset(val.x, val.y, None, VAL_BATCH, None)
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
    return {"epochs_trained": len(losses), "train_seconds": round(time.perf_counter() - t0, 2),
            "best_epoch": start + int(np.argmin(losses[start:])) + 1 if watched else len(losses),
            "cancelled": progress.cancelled}


def _fit_finetune(model_cfg, train_cfg, features, train, val, n_classes, on_epoch, should_stop, callbacks,
                  initial):
    from .finetune import build_finetune

    ft = build_finetune(model_cfg, train_cfg, features, train, val, n_classes, initial=initial)
    cw = class_weights(train.y, n_classes) if train_cfg.class_weights else None
    w = None if cw is None else cw[train.y].astype(np.float32)
    train_ds = batching.dataset(ft.train_x, train.y, w, int(train_cfg.batch_size), int(train_cfg.seed))
    val_ds = batching.dataset(ft.val_x, val.y, None, VAL_BATCH, None) if ft.val_x else None
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
