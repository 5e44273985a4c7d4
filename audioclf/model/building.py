"""Model configs and Keras builders for sequence classifiers.

Every model takes the same input: a batch of raw feature sequences
(batch, frames, dims), padded AFTER the last frame with `PAD_VALUE`. The model
masks padded frames itself and standardises features with statistics learned
on the training split, so a saved model takes raw features and a clip's
length does not leak into its prediction.

Keras is imported lazily: importing this module does not load TensorFlow.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from .errors import AudioclfError
from .sequences import (CLIP_EPS, MIN_CLIP_FRAMES, PAD_MULTIPLE, PAD_VALUE,  # noqa: F401  (part of this API)
                        clip_centered, padded_length)

KINDS = ("bilstm", "lstm", "gru", "simplernn", "baseline")
RECURRENT_KINDS = ("bilstm", "lstm", "gru", "simplernn")
ACTIVATIONS = ("relu", "tanh", "elu", "gelu")
# How a recurrent stack becomes one vector: its last hidden state, or the mean
# (and max) of its outputs over the clip's unmasked frames.
POOLINGS = ("last", "mean", "meanmax")
MAX_RNN_LAYERS = 3
MAX_DENSE_LAYERS = 3
MAX_UNITS = 1024
MAX_MEMBERS = 8
MODEL_PREFIX = "audioclf"  # model.name marks a model as ours (see runs.load_model)
TF_THREADS = int(os.environ.get("AUDIOCLF_TF_THREADS", "2"))


class ModelError(AudioclfError):
    """A model config or a model file that cannot be used; message is for people."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a classifier: recurrent layers, dense head, regularisation."""

    kind: str = "gru"
    rnn_units: tuple[int, ...] = (64,)
    dense_units: tuple[int, ...] = (64,)
    activation: str = "relu"
    dropout: float = 0.2
    l2: float = 1e-4
    # Subtract each clip's own mean frame first (cepstral mean normalisation): removes
    # speaker/microphone colouring that a per-data-set standardisation keeps.
    # Recurrent kinds only; the baseline needs the clip means it would remove.
    clip_norm: bool = True
    # Gaussian noise (in standard deviations) added to standardised inputs while
    # training only: a cheap regulariser against memorising speakers or devices.
    input_noise: float = 0.2
    # Also divide by each clip's own std per dimension (with clip_norm: per-clip CMVN),
    # so loud and quiet recordings, or narrow and wide band ones, look alike.
    clip_scale: bool = True
    pooling: str = "meanmax"
    # SpecAugment-style masking while training only: up to this many consecutive
    # frames (time_mask) and feature dimensions (feature_mask) are zeroed per clip.
    time_mask: int = 10
    feature_mask: int = 3
    # Copies of the network (from different random starts, with their own masks and
    # noise) trained side by side on the same batches; the model outputs the mean of
    # their probabilities. Averaging cancels much of one network's luck: on held-out
    # FSDD speakers macro F1 varies by +-5 points between seeds of a single network.
    members: int = 1

    def __post_init__(self) -> None:
        # Accept lists (JSON, forms) or one number but store tuples so configs stay hashable.
        for name in ("rnn_units", "dense_units"):
            value = getattr(self, name)
            try:
                units = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
                object.__setattr__(self, name, tuple(int(u) for u in units))
            except (TypeError, ValueError):
                raise ModelError(f"{name} must be a list of layer sizes, e.g. [64] or [128, 64]; "
                                 f"got {value!r}.") from None
        object.__setattr__(self, "clip_norm", bool(self.clip_norm))
        object.__setattr__(self, "clip_scale", bool(self.clip_scale))
        object.__setattr__(self, "time_mask", int(self.time_mask))
        object.__setattr__(self, "feature_mask", int(self.feature_mask))
        object.__setattr__(self, "members", int(self.members))
        validate_model_config(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rnn_units"], d["dense_units"] = list(self.rnn_units), list(self.dense_units)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"Unknown model setting(s): {', '.join(sorted(unknown))}.")
        return cls(**d)


def validate_model_config(cfg: ModelConfig) -> None:
    """Raise ModelError with a readable message if `cfg` cannot be built."""
    if cfg.kind not in KINDS:
        raise ModelError(f"Unknown model kind {cfg.kind!r}; choose one of {', '.join(KINDS)}.")
    if cfg.kind in RECURRENT_KINDS and not 1 <= len(cfg.rnn_units) <= MAX_RNN_LAYERS:
        raise ModelError(f"A {cfg.kind} model needs 1 to {MAX_RNN_LAYERS} recurrent layers, "
                         f"got {len(cfg.rnn_units)}.")
    if len(cfg.dense_units) > MAX_DENSE_LAYERS:
        raise ModelError(f"At most {MAX_DENSE_LAYERS} dense layers, got {len(cfg.dense_units)}.")
    if cfg.kind == "baseline" and not cfg.dense_units:
        raise ModelError("The baseline model needs at least one dense layer.")
    for u in (*cfg.rnn_units, *cfg.dense_units):
        if not 1 <= u <= MAX_UNITS:
            raise ModelError(f"Layer sizes must be between 1 and {MAX_UNITS} units, got {u}.")
    if cfg.activation not in ACTIVATIONS:
        raise ModelError(f"Unknown activation {cfg.activation!r}; "
                         f"choose one of {', '.join(ACTIVATIONS)}.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ModelError(f"Dropout must be in [0, 1), got {cfg.dropout}.")
    if not 0.0 <= cfg.input_noise <= 2.0:
        raise ModelError(f"Input noise must be in [0, 2] standard deviations, got {cfg.input_noise}.")
    if cfg.pooling not in POOLINGS:
        raise ModelError(f"Unknown pooling {cfg.pooling!r}; choose one of {', '.join(POOLINGS)}.")
    for name in ("time_mask", "feature_mask"):
        if not 0 <= getattr(cfg, name) <= 1000:
            raise ModelError(f"{name.replace('_', ' ').capitalize()} must be 0 to 1000, got {getattr(cfg, name)}.")
    if not 0.0 <= cfg.l2 <= 1.0:
        raise ModelError(f"L2 regularisation must be in [0, 1], got {cfg.l2}.")
    if not 1 <= cfg.members <= MAX_MEMBERS:
        raise ModelError(f"An ensemble has 1 to {MAX_MEMBERS} members, got {cfg.members}.")


def pad_sequences(seqs: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack (frames, dims) arrays into (batch, length, dims), padding after with PAD_VALUE."""
    if not seqs:
        raise ModelError("No sequences to pad.")
    length = length or max(len(s) for s in seqs)
    dims = seqs[0].shape[1]
    out = np.full((len(seqs), length, dims), PAD_VALUE, dtype=np.float32)
    for i, s in enumerate(seqs):
        n = min(len(s), length)
        out[i, :n] = s[:n]
    return out


def predict_proba(model, seqs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Class probabilities of a model from `build_model` for raw feature sequences, in input order."""
    probs = np.zeros((len(seqs), model.output_shape[-1]), np.float32)
    if not seqs:
        return probs
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        # Round lengths up like training does: predict_on_batch's compiled function is
        # reused across batches (eager calls of a recurrent layer are 10-100x slower).
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

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already initialised its pools: keep them
        pass
    tf.get_logger().setLevel("ERROR")


def custom_objects() -> dict[str, Any]:
    """Our custom layers by registered name (for keras.saving.load_model's custom_objects).

    Imports `audioclf.layers`, which registers them with Keras (and imports TensorFlow).
    """
    configure_tensorflow()
    from . import layers

    return dict(layers.CUSTOM_OBJECTS)


def build_model(cfg: ModelConfig, n_features: int, n_classes: int, *,
                mean: np.ndarray, variance: np.ndarray):
    """An uncompiled Keras model: padded raw sequences -> class probabilities.

    `mean`/`variance` standardise the inputs (from `input_stats` on the training
    split) and are stored in the model's Normalization layer. With
    `cfg.members > 1` the model averages its members' probabilities; train it
    through `members_view` so each member learns on its own.
    """
    validate_model_config(cfg)
    if n_classes < 2:
        raise ModelError("A classifier needs at least two classes.")
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
    if cfg.members == 1:
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


def members_view(model):
    """(model for training, loss, accuracy) for a model from `build_model`.

    A single network trains as it is. An ensemble trains through a view that shares
    its layers and outputs every member's probabilities, (batch, members, classes):
    the loss is the mean of the members' own cross-entropies, so each member learns
    as if alone (training the average instead would let members lean on each other).
    Accuracy is that of the averaged probabilities, what the model predicts.
    """
    import keras
    from keras import ops

    probs = model.get_layer("probs")
    if not isinstance(probs, keras.layers.Average):
        return model, "sparse_categorical_crossentropy", "accuracy"
    stacked = ops.stack([t for t in probs.input], axis=1)
    view = keras.Model(model.input, stacked, name=f"{model.name}_members")
    n = len(probs.input)

    def loss(y_true, y_pred):
        y = ops.repeat(ops.expand_dims(ops.cast(ops.reshape(y_true, (-1,)), "int32"), 1), n, axis=1)
        return ops.mean(keras.losses.sparse_categorical_crossentropy(y, y_pred), axis=-1)

    def accuracy(y_true, y_pred):
        guess = ops.argmax(ops.mean(y_pred, axis=1), axis=-1)
        return ops.cast(ops.equal(ops.cast(ops.reshape(y_true, (-1,)), guess.dtype), guess), "float32")

    return view, loss, accuracy


def _recurrent(kind: str, units: int, return_sequences: bool, reg, name: str):
    from keras import layers

    kw = dict(return_sequences=return_sequences, kernel_regularizer=reg)
    if kind == "bilstm":
        return layers.Bidirectional(layers.LSTM(units, **kw), name=name)
    cls = {"lstm": layers.LSTM, "gru": layers.GRU, "simplernn": layers.SimpleRNN}[kind]
    return cls(units, name=name, **kw)
