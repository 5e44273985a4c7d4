"""Keras builders for sequence classifiers, their input statistics and batched prediction.

Every model takes the same input: a batch of raw feature sequences
(batch, frames, dims), padded AFTER the last frame with `PAD_VALUE`. The model
masks padded frames itself and standardises features with statistics learned
on the training split, so a saved model takes raw features and a clip's
length does not leak into its prediction.

Keras is imported lazily: importing this module does not load TensorFlow.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from .configs import ModelConfig, ModelError, validate_model_config
from .sequences import PAD_VALUE, clip_centered, pad_sequences, padded_length

MODEL_PREFIX = "audioclf"  # model.name marks a model as ours (see runs.load_model)
TF_THREADS = int(os.environ.get("AUDIOCLF_TF_THREADS", "2"))


def predict_proba(model, seqs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Class probabilities of a model from `build_model` for raw feature sequences, in input order."""
    probs = np.zeros((len(seqs), model.output_shape[-1]), np.float32)
    if not seqs:
        return probs
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        # Round lengths up like training does: predict_on_batch's compiled function is
        # reused across batches (eager calls of a recurrent layer are far slower).
        xb = pad_sequences([seqs[j] for j in idx], padded_length([len(seqs[j]) for j in idx]))
        probs[idx] = np.asarray(model.predict_on_batch(xb))
    return probs


def frame_stats(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and variance over all frames of `seqs` (training split)."""
    frames = np.concatenate([np.asarray(s, np.float64) for s in seqs], axis=0)
    return frames.mean(0), np.maximum(frames.var(0), 1e-8)


def summary_stats(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of clip-level [mean, std] vectors (the baseline's input)."""
    summ = np.stack([np.concatenate([s.mean(0), s.std(0)]) for s in seqs]).astype(np.float64)
    return summ.mean(0), np.maximum(summ.var(0), 1e-8)


def input_stats(cfg: ModelConfig, seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The standardisation statistics `build_model` needs for this kind of model."""
    if cfg.kind == "baseline":
        return summary_stats(seqs)
    return frame_stats(clip_centered(seqs, cfg.clip_scale) if cfg.clip_norm else seqs)


def configure_tensorflow(threads: int = TF_THREADS) -> None:
    """Quiet TF logging and pin its thread pools (call before importing keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    _configure_threads(threads)


@lru_cache(maxsize=1)
def _configure_threads(threads: int) -> None:
    import tensorflow as tf

    from audioclf.features.threads import pin_tensorflow_threads

    pin_tensorflow_threads(threads)
    tf.get_logger().setLevel("ERROR")


def custom_objects() -> dict[str, Any]:
    """Our custom layers by registered name (for keras.saving.load_model's custom_objects).

    Imports `audioclf.model.layers`, which registers them with Keras (and imports TensorFlow).
    """
    configure_tensorflow()
    from . import backbone, layers

    return {**layers.CUSTOM_OBJECTS, **backbone.CUSTOM_OBJECTS}


def build_model(cfg: ModelConfig, n_features: int, n_classes: int, *,
                mean: np.ndarray, variance: np.ndarray, parts: Sequence[int] = ()):
    """An uncompiled Keras model: padded raw sequences -> class probabilities.

    `mean`/`variance` standardise the inputs (from `input_stats` on the training
    split) and are stored in the model's Normalization layer. With
    `cfg.members > 1` the model averages its members' probabilities; train it
    through `members_view` so each member learns on its own. `parts`, widths
    summing to `n_features` (e.g. two networks' embeddings side by side), gives
    each part networks of its own (`cfg.members` each) and averages them all:
    one network on both would learn mostly from the wider part and overfit it.
    """
    validate_model_config(cfg)
    if n_classes < 2:
        raise ModelError("A classifier needs at least two classes.")
    parts = tuple(int(p) for p in parts)
    if parts and (sum(parts) != n_features or min(parts) < 1):
        raise ModelError(f"Input parts {list(parts)} do not add up to the {n_features} feature dimensions.")
    configure_tensorflow()
    import keras
    from keras import layers

    from . import layers as custom

    inputs = keras.Input(shape=(None, n_features), name="features")
    x = layers.Masking(mask_value=PAD_VALUE, name="mask")(inputs)
    if cfg.kind == "baseline":
        x = custom.MaskedMeanStd(name="mean_std")(x)
    elif cfg.clip_norm:
        x = custom.ClipCenter(scale=cfg.clip_scale, name="clip_center")(x)
    x = layers.Normalization(mean=mean, variance=variance, name="standardize")(x)
    if len(parts) > 1:
        bounds = np.cumsum((0, *parts))
        # The baseline's input is [means, stds] of every dimension: each part's means and its stds.
        copies = (0, n_features) if cfg.kind == "baseline" else (0,)
        inputs_of = [custom.FeatureSlice([[c + a, c + b] for c in copies], name=f"part{i + 1}")(x)
                     for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        outputs = layers.Average(name="probs")(
            [_member(cfg, xi, n_classes, f"p{i + 1}m{k + 1}_", seed=k)
             for i, xi in enumerate(inputs_of) for k in range(cfg.members)])
    elif cfg.members == 1:
        outputs = _member(cfg, x, n_classes, "")
    else:
        outputs = layers.Average(name="probs")(
            [_member(cfg, x, n_classes, f"m{k + 1}_", seed=k) for k in range(cfg.members)])
    return keras.Model(inputs, outputs, name=f"{MODEL_PREFIX}_{cfg.kind}")


def _member(cfg: ModelConfig, x, n_classes: int, prefix: str, seed: int = 0):
    """One network from standardised inputs to probabilities; layer names start with `prefix`."""
    import keras
    from keras import layers

    from . import layers as custom

    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    if cfg.kind != "baseline":
        if cfg.time_mask or cfg.feature_mask:
            x = custom.SpecMask(cfg.time_mask, cfg.feature_mask, seed=1337 + seed,
                                             name=f"{prefix}spec_mask")(x)
        if cfg.input_noise:
            x = layers.GaussianNoise(cfg.input_noise, seed=seed or None, name=f"{prefix}input_noise")(x)
        pooled = cfg.pooling != "last"
        for i, units in enumerate(cfg.rnn_units):
            last = i == len(cfg.rnn_units) - 1
            x = _recurrent(cfg.kind, units, pooled or not last, reg, f"{prefix}rnn{i + 1}")(x)
            if cfg.dropout:
                x = layers.Dropout(cfg.dropout, name=f"{prefix}rnn{i + 1}_dropout")(x)
        if pooled:
            x = custom.MaskedPool(with_max=cfg.pooling == "meanmax", name=f"{prefix}pool")(x)
    for i, units in enumerate(cfg.dense_units):
        x = layers.Dense(units, activation=cfg.activation, kernel_regularizer=reg,
                         name=f"{prefix}dense{i + 1}")(x)
        if cfg.dropout:
            x = layers.Dropout(cfg.dropout, name=f"{prefix}dense{i + 1}_dropout")(x)
    return layers.Dense(n_classes, activation="softmax", name=f"{prefix}probs")(x)


def members_view(model, soft: bool = False):
    """(model for training, loss, accuracy) for a model from `build_model`.

    A single network trains as it is. An ensemble trains through a view that shares
    its layers and outputs every member's probabilities, (batch, members, classes):
    the loss is the mean of the members' own cross-entropies, so each member learns
    as if alone (training the average instead would let members lean on each other).
    Accuracy is that of the averaged probabilities, what the model predicts.
    With `soft` the targets are rows of class probabilities (one-hot, or blended by
    mixup) instead of class indices.
    """
    import keras
    from keras import ops

    def truth(y_true):
        return ops.argmax(y_true, axis=-1) if soft else ops.cast(ops.reshape(y_true, (-1,)), "int64")

    def crossentropy(y_true, y_pred):
        if soft:
            return keras.losses.categorical_crossentropy(y_true, y_pred)
        return keras.losses.sparse_categorical_crossentropy(ops.cast(y_true, "int32"), y_pred)

    probs = model.get_layer("probs")
    if not isinstance(probs, keras.layers.Average):
        if not soft:
            return model, "sparse_categorical_crossentropy", "accuracy"

        def single_accuracy(y_true, y_pred):
            return ops.cast(ops.equal(truth(y_true), ops.argmax(y_pred, axis=-1)), "float32")

        return model, "categorical_crossentropy", single_accuracy
    stacked = ops.stack([t for t in probs.input], axis=1)
    view = keras.Model(model.input, stacked, name=f"{model.name}_members")
    n = len(probs.input)

    def loss(y_true, y_pred):
        y = ops.expand_dims(y_true if soft else ops.reshape(y_true, (-1,)), 1)
        return ops.mean(crossentropy(ops.repeat(y, n, axis=1), y_pred), axis=-1)

    def accuracy(y_true, y_pred):
        guess = ops.argmax(ops.mean(y_pred, axis=1), axis=-1)
        return ops.cast(ops.equal(ops.cast(truth(y_true), guess.dtype), guess), "float32")

    return view, loss, accuracy


def _recurrent(kind: str, units: int, return_sequences: bool, reg, name: str):
    from keras import layers

    kw = dict(return_sequences=return_sequences, kernel_regularizer=reg)
    if kind == "bilstm":
        return layers.Bidirectional(layers.LSTM(units, **kw), name=name)
    cls = {"lstm": layers.LSTM, "gru": layers.GRU, "simplernn": layers.SimpleRNN}[kind]
    return cls(units, name=name, **kw)
