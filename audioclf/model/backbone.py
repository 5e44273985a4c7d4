"""EfficientAT cut in two for fine-tuning: a frozen lower part and trainable top stages, on padded batches.

    lower, top = split_network(load_model("mn04_as"), blocks=2)   # stages 0-13 frozen, 14-16 trainable
    maps = run_part(lower, mels)        # once per clip: the lower part never changes
    seq = top(padded_maps)              # (batch, steps, 384): the network's frame sequence

The network's 17 stages are ``features_0`` (the stem), the 15 inverted residual
blocks and ``features_16`` (the last 1x1 convolution, whose output averaged over
frequency is the ``frames`` sequence). Fine-tuning ``blocks=N`` trains the last N
blocks and ``features_16``; ``N = ALL_BLOCKS`` trains the stem too.

:class:`NetworkPart` runs a range of stages on audioclf's model input: a batch of
(frames, dims) sequences padded after their end with ``PAD_VALUE``, each frame the
flattened (frequency x channels) column of a feature map (the log-mel's 128 bands
for the stem). A convolution over a padded batch would see the padding, and the
channel squeeze-excitation would average it in, so every stage zeroes the columns
past each clip's end (what the unpadded clip's own zero padding gives) and
averages over the real columns only: a clip's result does not depend on what it
is batched with. Its stages are the folded form (BatchNorm folded into the
convolutions): on a small data set the pretrained BatchNorm statistics stay as
they are, the usual choice when fine-tuning, and the part runs as fast as
inference. Training the lower part's output once and reusing it every epoch is
therefore exact.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import layers, ops

from audioclf.errors import AudioclfError
from audioclf.features.efficientat import architecture, params
from audioclf.features.efficientat.network import ConvNormActivation, InvertedResidual, SqueezeExcitation
from audioclf.model.sequences import PAD_VALUE

N_STAGES = len(params.BLOCKS) + 2  # stem, blocks 1-15, the last convolution
LAST_STAGE = N_STAGES - 1
ALL_BLOCKS = len(params.BLOCKS) + 1  # fine-tune everything, the stem too
PART_BATCH_FRAMES = 8000  # mel frames per call of the lower part (its feature maps' memory)


class FineTuneError(AudioclfError):
    """A fine-tuning setting that cannot be used; the message is for people."""


def first_trainable(blocks: int) -> int:
    """The first stage fine-tuning ``blocks`` trains (``features_16`` always; the stem only with ALL_BLOCKS)."""
    if not 1 <= int(blocks) <= ALL_BLOCKS:
        raise FineTuneError(f"Fine-tune 1 to {len(params.BLOCKS)} of EfficientAT's blocks, or {ALL_BLOCKS} for "
                            f"all of it; got {blocks}.")
    return LAST_STAGE - int(blocks)


def stage_input(width: float, stage: int) -> tuple[int, int]:
    """(frequency bins, channels) of the feature map entering ``stage`` (0 = the stem: the 128 mel bands)."""
    freq, channels = params.N_MELS, 1
    specs = architecture.block_specs(width)
    for n in range(stage):
        if n == 0:
            freq, channels = -(-freq // params.STEM_STRIDE), architecture.stem_channels(width)
        elif n <= len(specs):
            freq, channels = -(-freq // specs[n - 1].stride), specs[n - 1].out_channels
    return freq, channels


def _keep(x, lengths):
    """``x`` (batch, freq, time, C) with the columns at or past each clip's length set to 0."""
    steps = ops.arange(ops.shape(x)[2])
    keep = ops.cast(ops.expand_dims(steps, 0) < ops.expand_dims(lengths, 1), x.dtype)
    return x * keep[:, None, :, None]


def _strided(lengths, stride: int):
    return lengths if stride == 1 else (lengths - 1) // stride + 1


@keras.saving.register_keras_serializable(package="audioclf")
class NetworkPart(layers.Layer):
    """EfficientAT's stages ``first`` ... ``last`` (folded) on padded sequences of flattened feature-map columns.

    Input (batch, frames, freq * channels) padded with ``PAD_VALUE``; output the same
    layout for the map leaving ``last``, or for ``last == 16`` the frame sequence
    (batch, steps, C): that map averaged over frequency, padded steps ``PAD_VALUE``.
    """

    def __init__(self, width: float, first: int, last: int = LAST_STAGE, **kwargs):
        super().__init__(**kwargs)
        self.width, self.first, self.last = float(width), int(first), int(last)
        if not 0 <= self.first <= self.last <= LAST_STAGE:
            raise FineTuneError(f"No EfficientAT stages {self.first}-{self.last}.")
        specs = architecture.block_specs(self.width)
        self.stages = []
        for n in range(self.first, self.last + 1):
            if n == 0:
                stage = ConvNormActivation(architecture.stem_channels(self.width), params.STEM_KERNEL,
                                           params.STEM_STRIDE, activation="hard_swish", batchnorm=False,
                                           name="features_0")
            elif n == LAST_STAGE:
                stage = ConvNormActivation(architecture.embedding_dim(self.width), 1, activation="hard_swish",
                                           batchnorm=False, name=f"features_{n}")
            else:
                s = specs[n - 1]
                stage = InvertedResidual(s.in_channels, s.kernel, s.expanded, s.out_channels, s.squeeze_excite,
                                         s.activation, s.stride, batchnorm=False, name=f"features_{n}")
            self.stages.append(stage)
        self.in_freq, self.in_channels = stage_input(self.width, self.first)
        self.out_freq, self.out_channels = stage_input(self.width, self.last + 1) if self.last < LAST_STAGE \
            else (stage_input(self.width, LAST_STAGE)[0], architecture.embedding_dim(self.width))

    def build(self, input_shape):
        shape = (None, self.in_freq, None, self.in_channels)
        for stage in self.stages:
            stage.build(shape)
            shape = stage.compute_output_shape(shape)

    def call(self, x):
        real = ops.any(ops.not_equal(x, PAD_VALUE), axis=-1)  # (batch, frames)
        lengths = ops.sum(ops.cast(real, "int32"), axis=1)
        batch, frames = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.where(ops.expand_dims(real, -1), x, ops.zeros_like(x))
        x = ops.transpose(ops.reshape(x, (batch, frames, self.in_freq, self.in_channels)), (0, 2, 1, 3))
        for stage in self.stages:
            x, lengths = self._stage(stage, x, lengths)
        steps = ops.shape(x)[2]
        real = ops.expand_dims(ops.arange(steps), 0) < ops.expand_dims(lengths, 1)
        if self.last == LAST_STAGE:
            out = ops.mean(x, axis=1)
        else:
            out = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch, steps, self.out_freq * self.out_channels))
        return ops.where(ops.expand_dims(real, -1), out, ops.full_like(out, PAD_VALUE))

    @staticmethod
    def _stage(stage, x, lengths):
        if isinstance(stage, ConvNormActivation):
            lengths = _strided(lengths, stage.strides)
            return _keep(stage(x), lengths), lengths
        y = x
        if stage.expand is not None:
            y = _keep(stage.expand(y), lengths)
        lengths = _strided(lengths, stage.spec.stride)
        y = _keep(stage.depthwise(y), lengths)
        if stage.se is not None:  # the channel squeeze over real columns only
            n = ops.cast(lengths * ops.shape(y)[1], y.dtype)[:, None, None, None]
            mean = ops.sum(y, axis=(1, 2), keepdims=True) / ops.maximum(n, 1.0)
            y = y * stage.se.fc2(stage.se.fc1(mean))
        y = _keep(stage.project(y), lengths)
        return (x + y if stage.spec.residual else y), lengths

    def compute_output_shape(self, input_shape):
        dims = self.out_channels if self.last == LAST_STAGE else self.out_freq * self.out_channels
        return (input_shape[0], None, dims)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "first": self.first, "last": self.last}


# A fine-tuned run's model.keras holds these (safe-mode loading finds them by name).
CUSTOM_OBJECTS = {f"audioclf>{cls.__name__}": cls for cls in (NetworkPart, ConvNormActivation, InvertedResidual, SqueezeExcitation)}


def split_network(model, blocks: int) -> tuple[NetworkPart | None, NetworkPart]:
    """(frozen lower part or None, trainable top part) of an ``EfficientATModel``, with its official weights.

    ``blocks`` as :func:`first_trainable`. The weights come from the model's folded
    inference copy, so both parts compute exactly what it does.
    """
    first = first_trainable(blocks)
    folded = model.inference_model
    lower = NetworkPart(model.width, 0, first - 1, name="efficientat_frozen", trainable=False) if first else None
    top = NetworkPart(model.width, first, LAST_STAGE, name="efficientat_tuned")
    for part in (lower, top):
        if part is None:
            continue
        part.build((None, None, part.in_freq * part.in_channels))
        for stage in part.stages:
            stage.set_weights(folded.get_layer(stage.name).get_weights())
    return lower, top


def mel_frames(mel: np.ndarray) -> np.ndarray:
    """A (128, frames) log-mel as the (frames, 128) sequence a :class:`NetworkPart` from the stem takes."""
    return np.ascontiguousarray(np.asarray(mel, np.float32).T)


def run_part(part: NetworkPart, seqs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``part`` on each (frames, dims) sequence, batching sequences of equal length; one array per input.

    Eager: a run calls it a few dozen times, once per batch of clips, where tracing
    the stages into a graph took longer than running them.
    """
    out: list[np.ndarray | None] = [None] * len(seqs)
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_length.setdefault(len(s), []).append(i)
    for frames, members in by_length.items():
        step = max(1, PART_BATCH_FRAMES // max(frames, 1))
        for start in range(0, len(members), step):
            chunk = members[start:start + step]
            got = np.asarray(part(np.stack([np.asarray(seqs[i], np.float32) for i in chunk])))
            for j, i in enumerate(chunk):
                out[i] = got[j]
    return out  # type: ignore[return-value]


def changed_share(part: NetworkPart, model) -> float:
    """The share of ``part``'s weights (by count) that differ from ``model``'s official ones."""
    folded = model.inference_model
    moved = total = 0
    for stage in part.stages:
        for now, then in zip(stage.get_weights(), folded.get_layer(stage.name).get_weights()):
            moved += int(np.sum(~np.isclose(now, then, rtol=0, atol=1e-7)))
            total += now.size
    return moved / max(total, 1)
