"""EfficientAT's MobileNetV3 in Keras 3, at any width, with the official weights loaded into it.

``build_network(width)`` makes a functional model from module-level, registered
layers, laid out NHWC as ``(batch, 128 mel bands, frames, 1)``: the official
model's (freq, time) axes become (height, width), so its kernels map over without
flipping. Its outputs (a dict):

    logits     (batch, 527)          AudioSet logits (sigmoid -> tag probabilities)
    embedding  (batch, C)            features.16 averaged over frequency and time (C = 384 at width 0.4)
    hidden     (batch, H)            the head's first Linear + Hardswish (H = 512 at width 0.4)
    sequence   (batch, steps, C)     features.16 averaged over frequency only: one step per 32 frames (0.32 s)

Convolutions pad (k - 1) / 2 on both sides as PyTorch does (Keras's "same" pads
strided convolutions asymmetrically, which shifts every later feature map).
``load_torch_state`` copies a state dict (see ``checkpoint.read_state_dict``) in,
transposing PyTorch's layouts: conv (out, in, kh, kw) -> (kh, kw, in, out),
depthwise (C, 1, kh, kw) -> (kh, kw, C, 1), Linear (out, in) -> (in, out).
"""
from __future__ import annotations

from typing import Mapping

import keras
import numpy as np
from keras import layers, ops

from audioclf.errors import AudioclfError
from audioclf.features.efficientat import architecture, params

OUTPUTS = ("logits", "embedding", "hidden", "sequence")


class WeightsMismatch(AudioclfError):
    """A state dict whose tensors do not fit the network they are loaded into."""


@keras.saving.register_keras_serializable(package="audioclf")
class ConvNormActivation(layers.Layer):
    """Conv2D (or depthwise) without bias, BatchNorm (eps 1e-3), optional activation; torch-style padding.

    ``batchnorm=False`` is the inference form: the normalisation folded into the
    convolution's kernel and a bias (see :func:`fold_batchnorm`).
    """

    def __init__(self, filters: int, kernel_size: int = 1, strides: int = 1, depthwise: bool = False,
                 activation: str | None = None, batchnorm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
        self.depthwise, self.activation_name, self.batchnorm = bool(depthwise), activation, bool(batchnorm)
        # Odd kernels at stride 1: "same" is the symmetric (k-1)/2. Strided: "same" would pad only the end.
        self.pad = 0 if self.strides == 1 else (self.kernel_size - 1) // 2
        padding = "same" if self.strides == 1 else "valid"
        if self.depthwise:
            self.conv = layers.DepthwiseConv2D(self.kernel_size, self.strides, padding=padding,
                                               use_bias=not self.batchnorm, name="conv")
        else:
            self.conv = layers.Conv2D(self.filters, self.kernel_size, self.strides, padding=padding,
                                      use_bias=not self.batchnorm, name="conv")
        # PyTorch's momentum 0.01 is Keras's 0.99 (weight of the old running average).
        self.norm = layers.BatchNormalization(epsilon=params.BN_EPSILON, momentum=0.99, name="norm") \
            if self.batchnorm else None
        self.activation = keras.activations.get(activation) if activation else None

    def build(self, input_shape):
        p = 2 * self.pad
        padded = (input_shape[0], None if input_shape[1] is None else input_shape[1] + p,
                  None if input_shape[2] is None else input_shape[2] + p, input_shape[3])
        self.conv.build(padded)
        if self.norm is not None:
            self.norm.build(self.conv.compute_output_shape(padded))

    def call(self, x, training=None):
        if self.pad:
            x = ops.pad(x, ((0, 0), (self.pad, self.pad), (self.pad, self.pad), (0, 0)))
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, training=training)
        return self.activation(x) if self.activation else x

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else (n - 1) // self.strides + 1
        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "depthwise": self.depthwise, "activation": self.activation_name,
                "batchnorm": self.batchnorm}


@keras.saving.register_keras_serializable(package="audioclf")
class SqueezeExcitation(layers.Layer):
    """Channel squeeze-excitation: mean over (freq, time) -> Dense + ReLU -> Dense + sigmoid -> scale."""

    def __init__(self, channels: int, squeeze_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.squeeze_channels = int(channels), int(squeeze_channels)
        self.fc1 = layers.Dense(self.squeeze_channels, activation="relu", name="fc1")
        self.fc2 = layers.Dense(self.channels, activation="sigmoid", name="fc2")

    def build(self, input_shape):
        self.fc1.build((input_shape[0], self.channels))
        self.fc2.build((input_shape[0], self.squeeze_channels))

    def call(self, x):
        scale = self.fc2(self.fc1(ops.mean(x, axis=(1, 2), keepdims=True)))
        return x * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "squeeze_channels": self.squeeze_channels}


@keras.saving.register_keras_serializable(package="audioclf")
class InvertedResidual(layers.Layer):
    """MobileNetV3's block: 1x1 expand (if wider), depthwise k x k, channel SE, 1x1 project, + input if same shape."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, squeeze_excite: bool,
                 activation: str, stride: int, batchnorm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.spec = architecture.BlockSpec(int(in_channels), int(kernel), int(expanded), int(out_channels),
                                           bool(squeeze_excite), str(activation), int(stride))
        self.batchnorm = bool(batchnorm)
        s, bn = self.spec, self.batchnorm
        self.expand = ConvNormActivation(s.expanded, 1, activation=s.activation, batchnorm=bn, name="expand") \
            if s.expands else None
        self.depthwise = ConvNormActivation(s.expanded, s.kernel, s.stride, depthwise=True,
                                            activation=s.activation, batchnorm=bn, name="depthwise")
        self.se = SqueezeExcitation(s.expanded, s.squeeze_channels, name="se") if s.squeeze_excite else None
        self.project = ConvNormActivation(s.out_channels, 1, batchnorm=bn, name="project")

    def build(self, input_shape):
        shape = input_shape
        for part in (self.expand, self.depthwise, self.se, self.project):
            if part is not None:
                part.build(shape)
                shape = part.compute_output_shape(shape)

    def call(self, x, training=None):
        y = self.expand(x, training=training) if self.expand is not None else x
        y = self.depthwise(y, training=training)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, training=training)
        return x + y if self.spec.residual else y

    def compute_output_shape(self, input_shape):
        shape = self.depthwise.compute_output_shape(input_shape)
        return shape[:3] + (self.spec.out_channels,)

    def get_config(self):
        s = self.spec
        return {**super().get_config(), "in_channels": s.in_channels, "kernel": s.kernel, "expanded": s.expanded,
                "out_channels": s.out_channels, "squeeze_excite": s.squeeze_excite, "activation": s.activation,
                "stride": s.stride, "batchnorm": self.batchnorm}


@keras.saving.register_keras_serializable(package="audioclf")
class MeanOver(layers.Layer):
    """The mean over the given axes (frequency for the sequence output)."""

    def __init__(self, axis: int | tuple[int, ...], **kwargs):
        super().__init__(**kwargs)
        self.axis = tuple(axis) if isinstance(axis, (tuple, list)) else (int(axis),)

    def call(self, x):
        return ops.mean(x, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return tuple(n for i, n in enumerate(input_shape) if i not in self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis)}


def build_network(width: float = 0.4, num_classes: int = params.NUM_CLASSES, *,
                  dropout: float = params.DROPOUT, batchnorm: bool = True, name: str | None = None) -> keras.Model:
    """EfficientAT at width multiplier ``width`` (0.4 = mn04): mel (batch, 128, frames, 1) -> :data:`OUTPUTS`.

    Layers are named after the state dict: ``features_N`` is ``features.N``,
    ``classifier_2``/``classifier_5`` the head's Linear layers. Frames may be any
    number from 1 up; the weights are random until :func:`load_torch_state`.
    ``batchnorm=False`` builds the inference form that :func:`fold_batchnorm` fills.
    """
    bn = batchnorm
    mel = keras.Input((params.N_MELS, None, 1), name="mel")
    x = ConvNormActivation(architecture.stem_channels(width), params.STEM_KERNEL, params.STEM_STRIDE,
                           activation="hard_swish", batchnorm=bn, name="features_0")(mel)
    for n, spec in enumerate(architecture.block_specs(width), start=1):
        x = InvertedResidual(spec.in_channels, spec.kernel, spec.expanded, spec.out_channels, spec.squeeze_excite,
                             spec.activation, spec.stride, batchnorm=bn, name=f"features_{n}")(x)
    x = ConvNormActivation(architecture.embedding_dim(width), 1, activation="hard_swish", batchnorm=bn,
                           name=f"features_{len(params.BLOCKS) + 1}")(x)
    sequence = MeanOver(1, name="sequence")(x)
    embedding = MeanOver((1, 2), name="embedding")(x)
    hidden = layers.Dense(architecture.hidden_dim(width), activation="hard_swish", name="classifier_2")(embedding)
    logits = layers.Dense(num_classes, name="classifier_5")(layers.Dropout(dropout, name="classifier_4")(hidden))
    outputs = {"logits": logits, "embedding": embedding, "hidden": hidden, "sequence": sequence}
    return keras.Model(mel, outputs, name=name or f"efficientat_w{width:g}{'' if bn else '_folded'}")


def _conv_layers(model: keras.Model) -> list[ConvNormActivation]:
    """Every ConvNormActivation of a :func:`build_network` model, in network order."""
    out = []
    for n in range(len(params.BLOCKS) + 2):
        layer = model.get_layer(f"features_{n}")
        parts = [layer] if isinstance(layer, ConvNormActivation) else [layer.expand, layer.depthwise, layer.project]
        out += [p for p in parts if p is not None]
    return out


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """An inference copy of ``model`` with each BatchNorm folded into its convolution (same outputs, faster).

    In inference BatchNorm is ``(x - mean) / sqrt(var + eps) * gamma + beta``, an
    affine map per channel, so it can scale the kernel's output channels and become
    a bias: one op instead of two per convolution. Not for training (no BatchNorm
    left to update).
    """
    width = _width_of(model)
    if not model.get_layer("features_0").batchnorm:
        raise WeightsMismatch(f"{model.name} has no BatchNorm left to fold.")
    folded = build_network(width, model.get_layer("classifier_5").units, batchnorm=False,
                           name=f"{model.name}_folded")
    for src, dst in zip(_conv_layers(model), _conv_layers(folded)):
        kernel = src.conv.get_weights()[0]
        gamma, beta, mean, var = src.norm.get_weights()
        scale = gamma / np.sqrt(var + src.norm.epsilon)
        kernel = kernel * (scale[None, None, :, None] if src.depthwise else scale)
        dst.conv.set_weights([kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)])
    for n in range(1, len(params.BLOCKS) + 1):
        block = model.get_layer(f"features_{n}")
        if block.se is not None:
            folded.get_layer(f"features_{n}").se.set_weights(block.se.get_weights())
    for name in ("classifier_2", "classifier_5"):
        folded.get_layer(name).set_weights(model.get_layer(name).get_weights())
    return folded


# ---------------------------------------------------------------- weights from a PyTorch state dict


def _conv_bn(layer: ConvNormActivation, state: Mapping[str, np.ndarray], prefix: str) -> None:
    kernel = state[f"{prefix}.0.weight"]
    # (out, in, kh, kw) -> (kh, kw, in, out); for depthwise "in" is 1 and "out" the channels, hence (kh, kw, C, 1).
    kernel = kernel.transpose(2, 3, 0, 1) if layer.depthwise else kernel.transpose(2, 3, 1, 0)
    layer.conv.set_weights([kernel])
    layer.norm.set_weights([state[f"{prefix}.1.{n}"] for n in ("weight", "bias", "running_mean", "running_var")])


def _dense(layer: layers.Dense, state: Mapping[str, np.ndarray], prefix: str) -> None:
    layer.set_weights([state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]])


def load_torch_state(model: keras.Model, state: Mapping[str, np.ndarray]) -> keras.Model:
    """Copy an official EfficientAT state dict into ``model`` (from :func:`build_network`); returns ``model``.

    Raises :class:`WeightsMismatch` unless the state dict has exactly the tensors
    of a network of this width (names and shapes), before any weight is changed.
    """
    width = _width_of(model)
    num_classes = model.get_layer("classifier_5").units
    if not model.get_layer("features_0").batchnorm:
        raise WeightsMismatch("Load the weights into a network with BatchNorm, then fold it (fold_batchnorm).")
    problem = architecture.mismatch(state, width, num_classes)
    if problem:
        raise WeightsMismatch(f"These weights do not fit EfficientAT at width {width:g}: {problem}.")
    state = {k: np.asarray(v, dtype=np.float32) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    last = len(params.BLOCKS) + 1
    _conv_bn(model.get_layer("features_0"), state, "features.0")
    for n, spec in enumerate(architecture.block_specs(width), start=1):
        block: InvertedResidual = model.get_layer(f"features_{n}")
        where = {part: f"features.{n}.block.{i}" for part, i in architecture.block_layout(spec).items()}
        if block.expand is not None:
            _conv_bn(block.expand, state, where["expand"])
        _conv_bn(block.depthwise, state, where["depthwise"])
        if block.se is not None:
            _dense(block.se.fc1, state, f"{where['se']}.conc_se_layers.0.fc1")
            _dense(block.se.fc2, state, f"{where['se']}.conc_se_layers.0.fc2")
        _conv_bn(block.project, state, where["project"])
    _conv_bn(model.get_layer(f"features_{last}"), state, f"features.{last}")
    _dense(model.get_layer("classifier_2"), state, "classifier.2")
    _dense(model.get_layer("classifier_5"), state, "classifier.5")
    return model


def _width_of(model: keras.Model) -> float:
    """The width multiplier a :func:`build_network` model was built with (from its embedding size)."""
    channels = model.get_layer(f"features_{len(params.BLOCKS) + 1}").filters
    for width in params.WIDTHS:
        if architecture.embedding_dim(width) == channels:
            return width
    raise WeightsMismatch(f"A network with {channels} embedding channels is not one of the official widths.")


def feature_maps(model: keras.Model) -> keras.Model:
    """A model giving every block's output (``features_0`` ... ``features_16``) and ``hidden``, for checks."""
    names = [f"features_{n}" for n in range(len(params.BLOCKS) + 2)]
    outputs = {n: model.get_layer(n).output for n in names}
    outputs["hidden"] = model.get_layer("classifier_2").output
    return keras.Model(model.input, outputs)
