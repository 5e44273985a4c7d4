"""The model's input contract, in numpy: how feature sequences are padded, what the
per-clip normalisation needs, and `SplitData` (sequences, labels and paths of some clips). No TensorFlow.

Shared by `audioclf.model.building` (statistics, inference), `audioclf.model.layers`
(the Keras layers that mask and normalise inside a saved model) and
`audioclf.training.batching` (training batches).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .configs import ModelError

# Real features never have a frame whose every value is exactly -1e6 (MFCC c0 of
# digital silence is around -1100), so this cannot collide with a real frame.
PAD_VALUE = -1.0e6
PAD_MULTIPLE = 8  # round batch lengths up so few distinct shapes get traced
CLIP_EPS = 1e-3  # keeps constant dimensions of a clip from blowing up under clip_scale
# Per-clip normalisation needs a few frames to estimate a clip's own mean: on a clip of
# one frame (most YAMNet clips: one embedding per 0.96 s) it would leave only zeros.
MIN_CLIP_FRAMES = 4


def padded_length(lengths: Sequence[int]) -> int:
    """The batch length for sequences of these lengths: the longest, rounded up to PAD_MULTIPLE."""
    return int(math.ceil(max(lengths) / PAD_MULTIPLE) * PAD_MULTIPLE)


def clip_centered(seqs: Sequence[np.ndarray], scale: bool = False) -> list[np.ndarray]:
    """Each sequence minus its own mean frame (the model's clip_norm layer), and / its std if `scale`."""
    out = []
    for s in seqs:
        s = np.asarray(s, np.float64)
        if len(s) < MIN_CLIP_FRAMES:
            out.append(s)  # too short to estimate its own mean: left as is, like the layer does
            continue
        c = s - s.mean(0)
        out.append(c / np.sqrt(np.square(c).mean(0) + CLIP_EPS) if scale else c)
    return out


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


@dataclass
class SplitData:
    """Feature sequences, integer labels and source paths of one part of a data set."""

    x: list[np.ndarray]
    y: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: Sequence[int]) -> "SplitData":
        """The clips at positions `idx`, in that order."""
        return SplitData([self.x[i] for i in idx], np.asarray(self.y)[list(idx)].astype(np.int64),
                         [self.paths[i] for i in idx])

    def select(self, paths: Sequence[str]) -> "SplitData":
        """The clips whose path is in `paths`, in `paths`' order (paths without features are left out)."""
        pos = {p: i for i, p in enumerate(self.paths)}
        return self.take([pos[str(p)] for p in paths if str(p) in pos])

    @staticmethod
    def concat(parts: Sequence["SplitData"]) -> "SplitData":
        return SplitData([x for d in parts for x in d.x],
                         np.concatenate([np.asarray(d.y, np.int64) for d in parts]) if parts else np.zeros(0, np.int64),
                         [p for d in parts for p in d.paths])
