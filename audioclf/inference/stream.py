"""A live stream's audio as it arrives: PCM blocks of any format to mono float at one rate,
and the last seconds of it held in memory so that a wrong label can be corrected.

    >>> import numpy as np
    >>> to_mono_float(np.array([16384, -16384, 0, 0], np.int16), channels=2).tolist()
    [0.0, 0.0]
    >>> held = RecentAudio(keep_seconds=1.0)
    >>> held.append(0, np.ones(800, np.float32), sr=800)
    >>> held.clip(0.5, 1.0, sr=800).samples.size
    400
"""
from __future__ import annotations

import collections

import numpy as np

from ..audio import Clip
from ..errors import AudioclfError


class LiveError(AudioclfError):
    """Bad live settings or audio; the message is for people."""


def to_mono_float(samples: np.ndarray, channels: int = 1) -> np.ndarray:
    """Mono float32 in [-1, 1] from int16/int32/float PCM, interleaved or (channels, n) planar.

    Parameters
    ----------
    samples : np.ndarray
        1-D interleaved samples (``channels`` of them per instant), or 2-D
        (channels, n) planar samples.
    channels : int
        Channels of interleaved 1-D input (ignored for 2-D input).
    """
    y = np.asarray(samples)
    if y.dtype.kind == "i":
        y = y.astype(np.float32) / float(np.iinfo(y.dtype).max + 1)
    elif y.dtype.kind == "u":
        mid = float(np.iinfo(y.dtype).max + 1) / 2
        y = (y.astype(np.float32) - mid) / mid
    else:
        y = y.astype(np.float32, copy=False)
    if y.ndim == 2:
        return y.mean(axis=0) if y.shape[0] > 1 else y[0]
    if y.ndim != 1:
        raise LiveError(f"PCM blocks must be 1-D or (channels, samples), got shape {y.shape}.")
    if channels > 1:
        y = y[: len(y) // channels * channels].reshape(-1, channels).mean(axis=1)
    return y


class StreamResampler:
    """Streaming resampler (soxr) from whatever rate arrives to the features' rate.

    ``target`` None keeps the stream's own rate. The first block fixes the
    stream's rate; a block at another rate is a :class:`LiveError`.
    """

    def __init__(self, target: int | None):
        self.target = target
        self.source: int | None = None
        self._stream = None

    def rate(self) -> int | None:
        """The rate blocks come out at (None until the first block when ``target`` is None)."""
        return self.target or self.source

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        if sr != self.source:
            if self.source is not None:
                raise LiveError(f"The stream's sample rate changed from {self.source} to {sr} Hz; "
                                "reset the classifier first.")
            self.source = sr
            if self.target and self.target != sr:
                import soxr

                self._stream = soxr.ResampleStream(sr, self.target, 1, dtype="float32", quality="HQ")
        if self._stream is None:
            return y
        return self._stream.resample_chunk(y)


class RecentAudio:
    """The last ``keep_seconds`` of a stream, in memory only, as the blocks that arrived.

    Keeping blocks (stream index of the first sample, samples) costs an append per
    block, never a copy of the whole history.
    """

    def __init__(self, keep_seconds: float):
        self.keep_seconds = max(0.0, float(keep_seconds))
        self._blocks: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._n = 0  # samples held

    def append(self, first: int, block: np.ndarray, sr: int) -> None:
        """Hold ``block`` (its first sample at stream index ``first``) and drop what is older
        than ``keep_seconds`` at rate ``sr``."""
        self._blocks.append((first, block))
        self._n += block.size
        keep = int(self.keep_seconds * sr)
        while self._blocks and self._n - self._blocks[0][1].size >= keep:
            self._n -= self._blocks.popleft()[1].size

    def clip(self, start: float, end: float, sr: int | None) -> Clip | None:
        """The audio from ``start`` to ``end`` s of stream time at rate ``sr``; None when none of it is held."""
        if not sr or end <= start:
            return None
        a, b = int(round(start * sr)), int(round(end * sr))
        parts = [block[max(0, a - first):max(0, b - first)] for first, block in self._blocks
                 if first < b and first + block.size > a]
        parts = [p for p in parts if p.size]
        if not parts:
            return None
        return Clip(samples=np.concatenate(parts), sr=int(sr), name=f"live {start:.1f}-{end:.1f} s")
