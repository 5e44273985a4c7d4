"""Model and training defaults per feature type, and the feature type a new user gets.

    >>> from audioclf.training.defaults import model_defaults, train_values
    >>> model_defaults("yamnet", "bilstm").clip_norm   # a ModelConfig suited to YAMNet embeddings
    False
    >>> train_values("yamnet")                         # what differs from TrainConfig's own defaults
    {'min_epochs': 5, 'warp_augment': ()}

This is the one table of defaults: ModelConfig's and TrainConfig's own field values
are the frame-feature defaults, and ``MODEL_DEFAULTS`` / ``TRAIN_DEFAULTS`` say what
each feature type changes. Everything reads it through
:func:`audioclf.training.config.resolve_settings` (the CLI, the Train and Tune pages,
``RunConfig`` and so ``train()``).

Frame features (MFCC, spectral) describe 16-32 ms of spectrum each: per-clip
mean/variance normalisation removes a microphone's or a voice's colouring,
SpecAugment-style masks, input noise and vocal-tract-warped copies keep a
model from memorising speakers, and early stopping waits a while because the
validation loss of a few clips looks best very early. MFCC models are two
networks averaged (an ensemble): on a speaker none of the training clips
came from, one network's score depends on its initialisation by several
points, and two of them, trained on the same batches, cost less than twice one.

A YAMNet embedding already summarises ~1 s of sound at the level of events
("dog bark", "rain"), at about two frames per second. Subtracting a clip's own
mean embedding removes exactly what it says about the sound, a time mask of
ten frames blanks most of a 5 s clip, and warp copies do not apply. Its
defaults switch those off and let early stopping watch sooner.

EfficientAT's frame sequence (its last feature map averaged over frequency,
one vector per 0.32 s) is an event-level embedding too, and measured on its
own it takes the same differences into the same GRU: its window sequence, the
clip-level baseline, a BiLSTM, ensembles, no masks, less input noise and mean
pooling scored no better on environmental sounds or speech.

The values were chosen by measurement across data sets (ESC-10, FSDD and the
demo set: `benchmarks/accuracy.py`, tables in docs/RESULTS.md), not on one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import AudioclfError
from ..model.configs import ModelConfig

FEATURE_KINDS = ("mfcc", "spectral", "yamnet", "efficientat")  # features.CONFIG_TYPES, in the order forms list them
PRETRAINED_KINDS = ("efficientat", "yamnet")  # feature types that need a network's weights
DEFAULT_MODEL_KIND = ModelConfig.kind

# Differences from ModelConfig's / TrainConfig's own defaults (which suit frame features).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    # Two networks averaged: which speakers' voices one network generalises to depends on its
    # initialisation more than on any setting, and the mean of two is steadier on new speakers.
    "mfcc": {"members": 2},
    "spectral": {},
    "yamnet": {"clip_norm": False, "clip_scale": False, "time_mask": 2},
    "efficientat": {"clip_norm": False, "clip_scale": False, "time_mask": 2},
}
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "mfcc": {},
    "spectral": {},
    "yamnet": {"min_epochs": 5, "warp_augment": ()},
    "efficientat": {"min_epochs": 5, "warp_augment": ()},
}

# Settings that mean nothing for a feature type, with the reason a form shows.
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "mfcc": {},
    "spectral": {"train.warp_augment": "Warp copies re-compute MFCC features with a stretched mel bank; "
                                       "spectral frames have no warp setting."},
    "yamnet": {"train.warp_augment": "Warp copies re-compute MFCC features with a stretched mel bank; "
                                     "YAMNet embeddings come from a fixed pretrained network.",
               "model.clip_scale": "Per-clip scaling needs per-clip centring, which is off for YAMNet "
                                   "(it would remove what an embedding says about the sound)."},
    "efficientat": {"train.warp_augment": "Warp copies re-compute MFCC features with a stretched mel bank; "
                                          "EfficientAT features come from a fixed pretrained network.",
                    "model.clip_scale": "Per-clip scaling needs per-clip centring, which is off for EfficientAT "
                                        "(it would remove what its features say about the sound)."},
}


class DefaultsError(AudioclfError):
    """An unknown feature type or setting name; message is for people."""


def check_kind(feature_kind: str) -> str:
    if feature_kind not in FEATURE_KINDS:
        raise DefaultsError(f"Unknown feature type {feature_kind!r}; choose one of {', '.join(FEATURE_KINDS)}.")
    return feature_kind


def model_defaults(feature_kind: str, model_kind: str | None = None) -> ModelConfig:
    """The ModelConfig a `feature_kind` run of `model_kind` (default GRU) starts from."""
    values = MODEL_DEFAULTS.get(check_kind(feature_kind), {})
    kind = model_kind or DEFAULT_MODEL_KIND
    if kind == "baseline":  # no recurrent layers to size
        return ModelConfig(kind=kind, rnn_units=(), **values)
    return ModelConfig(kind=kind, **values)


def train_values(feature_kind: str) -> dict[str, Any]:
    """TrainConfig fields that differ from its own defaults for `feature_kind`."""
    return dict(TRAIN_DEFAULTS.get(check_kind(feature_kind), {}))


def not_applicable(feature_kind: str) -> dict[str, str]:
    """{"train.warp_augment": reason, ...}: settings that mean nothing for `feature_kind`."""
    return dict(NOT_APPLICABLE.get(check_kind(feature_kind), {}))


AUTO = "auto"
AUTO_CANDIDATES = ("efficientat", "yamnet", "mfcc")


@dataclass(frozen=True)
class AutoFeatures:
    """"Pick the feature type for me": before training, each candidate type is scored
    by a quick cross-validation on the training clips (never the test clips) and the
    best one is used, with its own model and training defaults
    (:func:`audioclf.training.feature_choice.choose_features`). Candidates that cannot run here
    (YAMNet or EfficientAT without their weights) are left out. ``yamnet_model`` is
    passed on to YAMNetConfig, ``efficientat_model`` to EfficientATConfig ("" = its default).
    """

    kind: ClassVar[str] = AUTO
    candidates: tuple[str, ...] = AUTO_CANDIDATES
    yamnet_model: str = ""
    efficientat_model: str = ""

    def __post_init__(self) -> None:
        cands = (self.candidates,) if isinstance(self.candidates, str) else tuple(self.candidates)
        if not cands:
            raise DefaultsError("Auto needs at least one candidate feature type.")
        for c in cands:
            check_kind(c)
        object.__setattr__(self, "candidates", tuple(dict.fromkeys(cands)))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": AUTO, "candidates": list(self.candidates), "yamnet_model": self.yamnet_model,
                "efficientat_model": self.efficientat_model}


def default_feature_kind(pretrained_available: bool) -> str:
    """What a new user gets: "auto" when a pretrained model (YAMNet or EfficientAT) is available
    (they win on environmental sounds, MFCC on speech, so the data decides), else "mfcc"."""
    return AUTO if pretrained_available else "mfcc"
