"""The shape of an EfficientAT network at a width multiplier, without TensorFlow.

Channel counts follow the official ``make_divisible`` rounding (multiples of 8,
never more than 10% below the exact product), so every official ``mnXX_as``
checkpoint's tensor shapes follow from its width alone. :func:`torch_shapes` lists
those shapes under the state dict's names; :func:`infer_width` reads a checkpoint's
width from them, so a file works whatever it is called.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from audioclf.features.efficientat import params


def make_divisible(value: float, divisor: int = params.CHANNEL_DIVISOR, min_value: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, at least ``min_value``, and not below 90%."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def adjust_channels(channels: int, width: float) -> int:
    return make_divisible(channels * width)


@dataclass(frozen=True)
class BlockSpec:
    """One inverted residual block: 1x1 expand (if wider), depthwise k x k, channel SE, 1x1 project."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    squeeze_excite: bool
    activation: str  # "relu" or "hard_swish"
    stride: int

    @property
    def expands(self) -> bool:
        return self.expanded != self.in_channels

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def squeeze_channels(self) -> int:
        return make_divisible(self.expanded // params.SE_REDUCTION)


def block_specs(width: float) -> list[BlockSpec]:
    """``features.1`` ... ``features.15`` at ``width``."""
    return [BlockSpec(adjust_channels(i, width), k, adjust_channels(e, width), adjust_channels(o, width), se, act, s)
            for i, k, e, o, se, act, s in params.BLOCKS]


def stem_channels(width: float) -> int:
    return adjust_channels(params.STEM_CHANNELS, width)


def embedding_dim(width: float) -> int:
    """Channels of ``features.16``, the embedding: 384 at width 0.4."""
    return params.LAST_CONV_EXPANSION * block_specs(width)[-1].out_channels


def hidden_dim(width: float) -> int:
    """Hidden units of the head: 512 at width 0.4."""
    return adjust_channels(params.HEAD_CHANNELS, width)


def block_layout(spec: BlockSpec) -> dict[str, int]:
    """Index of each part inside ``features.N.block`` (expand, depthwise, se, project); absent parts are left out."""
    parts = (["expand"] if spec.expands else []) + ["depthwise"] + (["se"] if spec.squeeze_excite else []) + ["project"]
    return {part: i for i, part in enumerate(parts)}


def torch_shapes(width: float, num_classes: int = params.NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    """Every tensor of the official model's state dict at ``width``, by name, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(prefix: str, c_out: int, c_in: int, k: int) -> None:
        shapes[f"{prefix}.0.weight"] = (c_out, c_in, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.1.{name}"] = (c_out,)
        shapes[f"{prefix}.1.num_batches_tracked"] = ()

    def linear(prefix: str, c_out: int, c_in: int) -> None:
        shapes[f"{prefix}.weight"] = (c_out, c_in)
        shapes[f"{prefix}.bias"] = (c_out,)

    conv_bn("features.0", stem_channels(width), 1, params.STEM_KERNEL)
    for n, spec in enumerate(block_specs(width), start=1):
        parts = {part: f"features.{n}.block.{i}" for part, i in block_layout(spec).items()}
        if spec.expands:
            conv_bn(parts["expand"], spec.expanded, spec.in_channels, 1)
        conv_bn(parts["depthwise"], spec.expanded, 1, spec.kernel)
        if spec.squeeze_excite:
            se = f"{parts['se']}.conc_se_layers.0"
            linear(f"{se}.fc1", spec.squeeze_channels, spec.expanded)
            linear(f"{se}.fc2", spec.expanded, spec.squeeze_channels)
        conv_bn(parts["project"], spec.out_channels, spec.expanded, 1)
    last = len(params.BLOCKS) + 1
    conv_bn(f"features.{last}", embedding_dim(width), block_specs(width)[-1].out_channels, 1)
    linear("classifier.2", hidden_dim(width), embedding_dim(width))
    linear("classifier.5", num_classes, hidden_dim(width))
    return shapes


def mismatch(state: Mapping[str, object], width: float, num_classes: int = params.NUM_CLASSES) -> str | None:
    """None if ``state``'s names and shapes are exactly the network's at ``width``, else the first difference."""
    want = torch_shapes(width, num_classes)
    for key, shape in want.items():
        if key not in state:
            return f"it has no {key}"
        got = tuple(getattr(state[key], "shape", ()))
        if got != shape:
            return f"{key} is {got}, not {shape}"
    extra = sorted(set(state) - set(want))
    return f"it has tensors the network lacks ({', '.join(extra[:3])}{'...' if len(extra) > 3 else ''})" \
        if extra else None


def infer_width(state: Mapping[str, object]) -> tuple[float, int] | None:
    """(width multiplier, number of classes) of a state dict among the official widths, or None."""
    bias = state.get("classifier.5.bias")
    num_classes = int(bias.shape[0]) if getattr(bias, "ndim", 0) == 1 else params.NUM_CLASSES
    for width in params.WIDTHS:
        if mismatch(state, width, num_classes) is None:
            return width, num_classes
    return None
