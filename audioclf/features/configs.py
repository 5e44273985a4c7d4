"""Feature configs: frozen, hashable settings of each feature type, with their dict form and cache key.

Each config has a class attribute ``kind``; ``CONFIG_TYPES`` maps a kind to its class:

    >>> from audioclf.features.configs import MFCCConfig, config_from_dict, config_to_dict
    >>> cfg = MFCCConfig(n_mfcc=13)
    >>> config_from_dict(config_to_dict(cfg)) == cfg
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Union

import numpy as np

from audioclf.errors import AudioclfError

# Bump when a change in extraction code changes the numbers: old cache entries then miss.
FEATURE_VERSION = 2
# The networks' input rates and the default checkpoint, as features.yamnet and
# features.efficientat.params say (they cannot be imported here; tests/test_names.py holds them equal).
YAMNET_SR = 16000
YAMNET_DIMS = 1024  # its embedding's width: what EfficientATConfig(yamnet=True) appends
EFFICIENTAT_SR = 32000
EFFICIENTAT_DEFAULT = "mn04_as"
# "frames": the last feature map averaged over frequency, one vector per 0.32 s;
# "windows": the clip embedding of each 0.96 s window, every 0.32 s (features/efficientat/features.py);
# "mel": the network's input, one 128-band log-mel frame per 10 ms (what a fine-tuned run's model takes).
EFFICIENTAT_SEQUENCES = ("frames", "windows", "mel")
MFCC_RATES = (16000, 22050, 44100)  # offered in the app; any positive rate (or None) works


class FeatureError(AudioclfError):
    """Bad feature configuration or input; the message is meant for a person."""


def _check_positive_ints(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        # Accept 512 or 512.0 (JSON, forms); refuse 512.5, 0, True or "abc".
        ok = (isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer())) \
            and not isinstance(value, (bool, np.bool_)) and value > 0
        if not ok:
            raise FeatureError(f"{type(cfg).__name__}.{name} must be a positive whole number, got {value!r}.")
        object.__setattr__(cfg, name, int(value))


def _check_optional_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is None:
            continue
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
            and np.isfinite(value) and value > 0
        if not ok:
            raise FeatureError(f"{type(cfg).__name__}.{name} must be a positive number or none, got {value!r}.")
        object.__setattr__(cfg, name, float(value))


def _check_frames(cfg: Any) -> None:
    if cfg.hop_length > cfg.n_fft:
        raise FeatureError(
            f"hop_length ({cfg.hop_length}) is larger than n_fft ({cfg.n_fft}): parts of the audio "
            "would be skipped; use a hop of at most n_fft (n_fft/2 or n_fft/4 is usual)."
        )


@dataclass(frozen=True)
class SpectralConfig:
    """Frame-wise MFCC, spectral centroid, roll-off, zero-crossing rate, 12 chroma bins and RMS."""

    kind: ClassVar[str] = "spectral"
    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mfcc: int = 13
    n_mels: int = 128

    def __post_init__(self) -> None:
        _check_positive_ints(self, "sr", "n_fft", "hop_length", "n_mfcc", "n_mels")
        _check_frames(self)
        if self.n_mfcc > self.n_mels:
            raise FeatureError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels}).")


@dataclass(frozen=True)
class MFCCConfig:
    """MFCC sequence; ``sr=None`` keeps each file's own rate; ``deltas`` appends delta and delta-delta.

    Defaults suit short sound clips: 32 ms windows, a 16 ms hop (62.5 frames/s)
    keeps sequences short for recurrent models. ``trim_db`` (None = off) cuts
    leading and trailing audio quieter than that many dB below the clip's peak,
    so recordings that differ only in silence padding give the same sequence.
    ``fmax`` (Hz, None = sr/2) is the top of the mel filter bank. ``warp`` scales
    the frequency axis the mel bank reads (1.0 = none; 1.1 hears a voice ~10% lower):
    training uses warped copies as vocal tract length augmentation.
    """

    kind: ClassVar[str] = "mfcc"
    sr: int | None = 16000
    n_mfcc: int = 20
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 40
    deltas: bool = False
    trim_db: float | None = 30.0
    fmax: float | None = None
    warp: float = 1.0

    def __post_init__(self) -> None:
        names = ("n_mfcc", "n_fft", "hop_length", "n_mels") + (() if self.sr is None else ("sr",))
        _check_positive_ints(self, *names)
        _check_frames(self)
        if self.n_mfcc > self.n_mels:
            raise FeatureError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels}).")
        if not isinstance(self.deltas, (bool, np.bool_)):
            raise FeatureError(f"MFCCConfig.deltas must be true or false, got {self.deltas!r}.")
        object.__setattr__(self, "deltas", bool(self.deltas))
        _check_optional_positive(self, "trim_db", "fmax", "warp")
        if not 0.5 <= (self.warp or 0) <= 2.0:
            raise FeatureError(f"MFCCConfig.warp must be between 0.5 and 2, got {self.warp!r}.")
        if self.fmax is not None and self.sr is not None and self.fmax > self.sr / 2:
            raise FeatureError(f"fmax ({self.fmax:g} Hz) cannot exceed half the sample rate ({self.sr / 2:g} Hz).")


@dataclass(frozen=True)
class YAMNetConfig:
    """YAMNet embeddings (1024-d per 0.96 s window, 0.48 s hop) and AudioSet scores.

    ``model`` is a TF Hub URL, a SavedModel folder or a .tflite path; ``""`` means
    ``$AUDIOCLF_YAMNET`` or the default resolution in :mod:`audioclf.features.yamnet`.
    """

    kind: ClassVar[str] = "yamnet"
    sr: ClassVar[int] = YAMNET_SR
    model: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            object.__setattr__(self, "model", os.fspath(self.model))


@dataclass(frozen=True)
class EfficientATConfig:
    """EfficientAT (AudioSet MobileNets, Schmid et al. 2023) sequences and AudioSet scores.

    ``model`` is an official checkpoint name ("mn04_as" ... "mn40_as"), a path to
    a ``.pt`` state dict, or "" (the default model, or the file ``$AUDIOCLF_EFFICIENTAT``
    names); each is resolved only by
    :func:`audioclf.features.efficientat.resolve_checkpoint` (the path, then
    ``$AUDIOCLF_EFFICIENTAT``, the workspace, the release) and read by its safe
    reader, never imported or unpickled freely. ``sequence`` is "frames" (one
    vector per 0.32 s from one pass over the clip), "windows" (the embedding of
    each 0.96 s window, every 0.32 s) or "mel" (the network's own input, the
    normalised log-mel, one frame per 10 ms: the features of a run that fine-tunes
    the network, whose model holds it). ``yamnet``, when not None, appends to each
    step YAMNet's embedding of the window nearest it in time, from that YAMNet model
    (as :class:`YAMNetConfig`'s ``model``: ``""`` is the default resolution; ``True``
    reads as ``""``, ``False`` as None): the two networks learnt AudioSet differently
    and mishear different clips, so a model that reads both hears more than either.
    """

    kind: ClassVar[str] = "efficientat"
    sr: ClassVar[int] = EFFICIENTAT_SR
    model: str = EFFICIENTAT_DEFAULT
    sequence: str = "frames"
    yamnet: str | None = None

    def __post_init__(self) -> None:
        model = self.model if isinstance(self.model, str) else os.fspath(self.model)
        object.__setattr__(self, "model", model.strip())
        from audioclf.features.efficientat.params import CHECKPOINTS
        from audioclf.features.efficientat.weights import is_path

        if self.model and not is_path(self.model) and self.model not in CHECKPOINTS:
            raise FeatureError(f"There is no EfficientAT model called {self.model!r}; choose one of "
                               f"{', '.join(CHECKPOINTS)} or give the path to a .pt file.")
        if self.sequence not in EFFICIENTAT_SEQUENCES:
            raise FeatureError(f"EfficientATConfig.sequence must be one of {', '.join(EFFICIENTAT_SEQUENCES)}, "
                               f"got {self.sequence!r}.")
        yamnet = {True: "", False: None}.get(self.yamnet, self.yamnet) \
            if isinstance(self.yamnet, (bool, np.bool_)) else self.yamnet
        if yamnet is not None and not isinstance(yamnet, (str, os.PathLike)):
            raise FeatureError(f"EfficientATConfig.yamnet must be a YAMNet model (\"\" for the default) or "
                               f"none, got {self.yamnet!r}.")
        object.__setattr__(self, "yamnet", None if yamnet is None else os.fspath(yamnet).strip())
        if self.yamnet is not None and self.sequence == "mel":
            raise FeatureError("YAMNet's embeddings cannot join the mel sequence: a run that fine-tunes "
                               "EfficientAT trains on its input alone. Use the frames or windows sequence.")


FeatureConfig = Union[SpectralConfig, MFCCConfig, YAMNetConfig, EfficientATConfig]
# Values of settings that older configs (without them) were extracted with.
_ADDED_LATER: dict[str, dict[str, Any]] = {"mfcc": {"trim_db": None}}
CONFIG_TYPES: dict[str, type] = {c.kind: c for c in (SpectralConfig, MFCCConfig, YAMNetConfig, EfficientATConfig)}


def config_to_dict(config: FeatureConfig) -> dict:
    """Plain JSON-able dict of a config, including its ``kind``."""
    check_config(config)
    return {"kind": config.kind, **dataclasses.asdict(config)}


def config_from_dict(d: dict) -> FeatureConfig:
    """Inverse of :func:`config_to_dict`; raises :class:`FeatureError` on unknown kinds or fields."""
    if not isinstance(d, dict) or "kind" not in d:
        raise FeatureError(f"A feature config needs a 'kind' ({', '.join(CONFIG_TYPES)}); got {d!r}.")
    fields = dict(d)
    kind = fields.pop("kind")
    cls = CONFIG_TYPES.get(kind)
    if cls is None:
        raise FeatureError(f"Unknown feature kind {kind!r}; choose one of {', '.join(CONFIG_TYPES)}.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise FeatureError(f"Unknown setting(s) {', '.join(unknown)} for {kind} features; known: {', '.join(sorted(known))}.")
    # A setting added later whose default is not "off" must read as off in an older
    # dict (e.g. a saved run's config), or its model would get different features.
    fields = {**_ADDED_LATER.get(kind, {}), **fields}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise FeatureError(f"Bad {kind} feature settings: {exc}") from None


def config_key(config: FeatureConfig) -> str:
    """Stable hash of a config (same in every process and run), for cache keys."""
    payload = {"version": FEATURE_VERSION, **config_to_dict(config)}
    if config.kind == "yamnet":
        # "" resolves through the environment or the workspace: different models
        # must not share cache entries. Resolving is cheap (no TensorFlow).
        from audioclf.features.yamnet import resolve_spec

        payload["model"] = resolve_spec(config.model)
    elif config.kind == "efficientat":
        # The checkpoint's identity, not its name or path: the same weights share entries
        # wherever they are found, and a different file under the same name does not.
        from audioclf.features.efficientat.weights import checkpoint_identity

        payload["model"] = checkpoint_identity(config.model)
        if config.yamnet is not None:
            from audioclf.features.yamnet import resolve_spec

            payload["yamnet"] = resolve_spec(config.yamnet)
        else:  # entries made before the setting existed stay valid
            del payload["yamnet"]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def feature_parts(config: Any, dims: int) -> tuple[int, ...]:
    """Widths of the parts of a `dims`-wide feature vector that different networks computed,
    in order: (EfficientAT's, YAMNet's) for ``EfficientATConfig(yamnet=True)``; () for one source."""
    if isinstance(config, EfficientATConfig) and config.yamnet is not None and dims > YAMNET_DIMS:
        return (dims - YAMNET_DIMS, YAMNET_DIMS)
    return ()


def check_config(config: Any) -> FeatureConfig:
    """`config` itself if it is a feature config; FeatureError otherwise."""
    if not isinstance(config, tuple(CONFIG_TYPES.values())):
        raise FeatureError(
            f"Expected a feature config (SpectralConfig, MFCCConfig, YAMNetConfig or EfficientATConfig), "
            f"got {type(config).__name__}."
        )
    return config

