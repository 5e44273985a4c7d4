"""Extracting features: the :class:`Features` result, ``extract`` and clip-level summaries.

Every extractor takes a frozen, hashable config and returns a (frames x dims)
float32 sequence with frame times and dimension names, so one result feeds
both plots and models::

    from audioclf.audio import load_audio
    from audioclf.features import MFCCConfig, extract, summarize

    feats = extract(load_audio("dog.wav"), MFCCConfig())
    feats.values.shape        # (frames, 20)
    summarize(feats.values)   # (40,) clip-level mean and std

librosa (``features.spectral``) and TensorFlow (``features.yamnet``,
``features.efficientat``) are
imported only when a feature is computed, so importing this package is cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from audioclf.audio import AudioError, Clip, load_audio, resample
from audioclf.features.configs import FeatureConfig, FeatureError, check_config

if TYPE_CHECKING:
    from os import PathLike


@dataclass
class Features:
    """A (frames x dims) float32 sequence with frame-centre ``times`` (s) and dimension ``names``."""

    values: np.ndarray
    times: np.ndarray
    names: tuple[str, ...]
    config: FeatureConfig
    scores: np.ndarray | None = None  # AudioSet scores per frame: YAMNet (frames, 521), EfficientAT (frames, 527)
    # Whether the clip was (near) silence (audio.Clip.silent), recorded at extraction so
    # that features from the cache can say so without decoding the audio again.
    silent: bool | None = None

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def dims(self) -> int:
        return int(self.values.shape[1])



def target_rate(config: FeatureConfig) -> int | None:
    """Sample rate the extractor wants (None = the file's own)."""
    return check_config(config).sr


def extract(clip: Clip, config: FeatureConfig) -> Features:
    """Features of a clip for a config; resamples the clip if its rate differs."""
    check_config(config)
    if not isinstance(clip, Clip):
        raise FeatureError(f"extract() needs a Clip from audioclf.audio.load_audio, got {type(clip).__name__}.")
    if clip.samples.size == 0:
        raise AudioError(f"'{clip.name or 'clip'}' contains no audio samples; nothing to extract.")
    silent = clip.silent
    sr = config.sr
    if sr is not None and sr != clip.sr:
        clip = Clip(resample(clip.samples, clip.sr, sr), sr, clip.name)
    extractor = _extractor(config.kind)
    feats = extractor(clip, config)
    feats.silent = silent
    return feats


def extract_file(path: str | PathLike | bytes, config: FeatureConfig, *, name: str | None = None) -> Features:
    """Load a file (or bytes) at the config's rate and extract its features."""
    return extract(load_audio(path, sr=target_rate(config), name=name), config)


def summarize(values: np.ndarray) -> np.ndarray:
    """Clip-level summary: per-dimension mean then std, shape (2*dims,), float32."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] == 0:
        raise FeatureError(f"summarize() needs a (frames, dims) array with at least one frame, got shape {values.shape}.")
    return np.concatenate([values.mean(axis=0), values.std(axis=0)]).astype(np.float32)


def summary_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Names matching :func:`summarize`'s output."""
    return tuple(f"{n}_mean" for n in names) + tuple(f"{n}_std" for n in names)


def _extractor(kind: str) -> Callable[[Clip, Any], Features]:
    # Imported on first use: librosa takes ~1 s to import and TensorFlow far longer.
    if kind == "yamnet":
        from audioclf.features.yamnet import extract_yamnet

        return extract_yamnet
    if kind == "efficientat":
        from audioclf.features.efficientat.features import extract_efficientat

        return extract_efficientat
    from audioclf.features import spectral

    return spectral.extract_spectral if kind == "spectral" else spectral.extract_mfcc

