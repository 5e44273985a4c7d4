"""Model configs: the architecture of a classifier, validated when it is made (no TensorFlow).

    >>> from audioclf.model.configs import ModelConfig
    >>> ModelConfig(kind="bilstm", rnn_units=(128, 64)).to_dict()["rnn_units"]
    [128, 64]
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from audioclf.errors import AudioclfError

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
    # their probabilities. Averaging cancels much of one network's luck with its seed
    # (docs/RESULTS.md, "Spoken digits").
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
