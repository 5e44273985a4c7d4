"""audioclf's custom Keras layers, registered as serialisable at import.

    import keras
    import audioclf.model.layers  # noqa: F401  (registers the layers)
    model = keras.models.load_model("runs/<run_id>/model.keras")

A run's `model.keras` then loads with plain Keras, outside audioclf, and gives
the same probabilities as `audioclf.training.runs.load_model`. The registered names
(`audioclf>ClipCenter`...) are those saved models carry, so models saved before
these layers moved here load too.

Importing this module imports Keras (and TensorFlow); `audioclf.model` imports
it only when it builds a model.
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # before keras is imported

import keras  # noqa: E402
from keras import ops  # noqa: E402

from .sequences import CLIP_EPS, MIN_CLIP_FRAMES  # noqa: E402

PACKAGE = "audioclf"  # registered names are "audioclf>ClassName"


def frame_weights(inputs, mask):
    """(b, t, 1) weights: 1 for real frames, 0 for padding (all 1 without a mask)."""
    if mask is None:
        return ops.ones_like(inputs[..., :1])
    return ops.expand_dims(ops.cast(mask, inputs.dtype), -1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedMeanStd(keras.layers.Layer):
    """Clip-level mean and std over unmasked frames: (b, t, d) -> (b, 2d)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        w = frame_weights(inputs, mask)
        n = ops.maximum(ops.sum(w, axis=1), 1.0)
        mean = ops.sum(inputs * w, axis=1) / n
        var = ops.sum(ops.square(inputs - ops.expand_dims(mean, 1)) * w, axis=1) / n
        # sqrt's gradient is infinite at 0 (a one-frame clip, a constant feature): harmless while only the
        # layers after this train, NaN in every weight before it once a backbone fine-tunes through it.
        # Same values, finite gradient: take the root of 1 where the variance is 0.
        some = var > 0.0
        std = ops.where(some, ops.sqrt(ops.where(some, var, 1.0)), 0.0)
        return ops.concatenate([mean, std], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClipCenter(keras.layers.Layer):
    """Subtract each clip's mean over unmasked frames (and divide by its std if
    `scale`); padded frames stay masked."""

    def __init__(self, scale: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.scale = bool(scale)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        w = frame_weights(inputs, mask)
        n = ops.maximum(ops.sum(w, axis=1, keepdims=True), 1.0)
        centered = (inputs - ops.sum(inputs * w, axis=1, keepdims=True) / n) * w
        if self.scale:
            centered = centered / ops.sqrt(ops.sum(ops.square(centered), axis=1, keepdims=True) / n + CLIP_EPS)
        # Clips shorter than MIN_CLIP_FRAMES pass through (see clip_centered).
        return ops.where(n >= MIN_CLIP_FRAMES, centered, inputs * w)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedPool(keras.layers.Layer):
    """Mean (and max) over unmasked frames: (b, t, d) -> (b, d) or (b, 2d)."""

    def __init__(self, with_max: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.with_max = bool(with_max)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        w = frame_weights(inputs, mask)
        mean = ops.sum(inputs * w, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)
        if not self.with_max:
            return mean
        peak = ops.max(inputs * w - (1.0 - w) * 1e9, axis=1)
        return ops.concatenate([mean, peak], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], (2 if self.with_max else 1) * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "with_max": self.with_max}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpecMask(keras.layers.Layer):
    """SpecAugment-style masking in training: per clip, one random run of up to
    `time` frames and one of up to `dims` feature dimensions is set to 0 (the mean
    after standardisation). Identity at inference."""

    def __init__(self, time: int = 0, dims: int = 0, seed: int = 1337, **kwargs):
        super().__init__(**kwargs)
        self.time, self.dims, self.seed_value = int(time), int(dims), int(seed)
        self.supports_masking = True
        self.seed = keras.random.SeedGenerator(self.seed_value)

    def _band(self, batch, length, width, valid=None):
        # A run [start, start + w) with w uniform in [0, width], start uniform over the axis.
        # With `valid` (frames per clip), clips shorter than MIN_CLIP_FRAMES (one
        # YAMNet frame) get no time mask, which would blank them out entirely.
        lf = ops.cast(length, "float32")
        if valid is not None:
            width = ops.where(valid < MIN_CLIP_FRAMES, 0.0, float(width))
        w = ops.floor(keras.random.uniform((batch, 1), 0.0, 1.0, seed=self.seed) * (width + 1.0))
        start = ops.floor(keras.random.uniform((batch, 1), 0.0, 1.0, seed=self.seed) * ops.maximum(lf - w, 1.0))
        pos = ops.cast(ops.arange(length), "float32")[None, :]
        return ops.cast((pos >= start) & (pos < start + w), "float32")

    def call(self, inputs, training=None, mask=None):
        if not training:
            return inputs
        shape = ops.shape(inputs)
        keep = ops.ones_like(inputs)
        if self.time:
            valid = (ops.sum(ops.cast(mask, "float32"), axis=1, keepdims=True) if mask is not None
                     else ops.cast(ops.full((shape[0], 1), shape[1]), "float32"))
            keep = keep * (1.0 - self._band(shape[0], shape[1], self.time, valid))[:, :, None]
        if self.dims:
            keep = keep * (1.0 - self._band(shape[0], shape[2], self.dims))[:, None, :]
        return inputs * keep

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "time": self.time, "dims": self.dims, "seed": self.seed_value}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FeatureSlice(keras.layers.Layer):
    """The feature dimensions in `ranges` ([start, stop) pairs, concatenated in order): the
    part of an input one network of the model reads (e.g. one pretrained network's
    embedding among two). Keeps the input's mask."""

    def __init__(self, ranges=(), **kwargs):
        super().__init__(**kwargs)
        self.ranges = [[int(a), int(b)] for a, b in ranges]
        self.supports_masking = True

    def call(self, inputs):
        parts = [inputs[..., a:b] for a, b in self.ranges]
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], sum(b - a for a, b in self.ranges))

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "ranges": self.ranges}


CUSTOM_OBJECTS = {f"{PACKAGE}>{cls.__name__}": cls
                  for cls in (MaskedMeanStd, ClipCenter, MaskedPool, SpecMask, FeatureSlice)}
