"""Class profiles: what each class sounds like on average, and which features tell them apart.

::

    from audioclf.insight.profiles import class_profiles

    prof = class_profiles(load_dataset("my_sounds"))
    prof.mel["dog"]          # (n_mels, PROFILE_FRAMES) mean mel spectrogram in dB
    prof.ranking[:5]         # features with the highest ANOVA F, with mutual information

The spectral features come from the feature cache (:class:`SpectralConfig`);
the ranking scores each clip-level summary (mean and std of a frame feature)
with scikit-learn's ANOVA F (``f_classif``) and mutual information
(``mutual_info_classif``), the ranking a person would otherwise do by hand.
Mel spectrograms are computed for at most ``max_per_class`` clips per class,
each stretched onto :data:`PROFILE_FRAMES` columns (start to end of the clip),
so clips of different lengths average sensibly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from audioclf.audio import AudioError, load_audio
from audioclf.errors import AudioclfError
from audioclf.features import SpectralConfig, extract_many, summarize, summary_names
from audioclf.progress import Progress

PROFILE_FRAMES = 64
PROFILE_MELS = 64
MAX_PER_CLASS = 20
PROFILE_SEED = 0



class ProfileError(AudioclfError):
    """Profiles cannot be computed as asked; the message is for people."""


@dataclass
class FeatureScore:
    """How well one clip-level feature separates the classes."""

    name: str
    f_score: float  # ANOVA F (between-class / within-class variance); nan when undefined
    mutual_info: float  # nats; 0 = tells nothing about the class


@dataclass
class ClassProfiles:
    """Per-class mean mel spectrograms and feature means, and the feature ranking."""

    labels: list[str]
    counts: dict[str, int]  # readable clips per class
    mel: dict[str, np.ndarray]  # class -> (PROFILE_MELS, PROFILE_FRAMES) dB
    mel_freqs: np.ndarray  # band centre frequencies (Hz)
    feature_names: tuple[str, ...]  # frame features (centroid, rolloff, mfcc_1...)
    means: np.ndarray  # (classes, features): class mean of each clip's mean
    ranking: list[FeatureScore]  # best first (by F); empty with one class
    errors: list[tuple[str, str]] = field(default_factory=list)  # unreadable clips


def stretch(S: np.ndarray, frames: int = PROFILE_FRAMES) -> np.ndarray:
    """(bands, t) -> (bands, frames): each output column averages its share of the clip."""
    S = np.asarray(S, dtype=np.float32)
    t = S.shape[1]
    if t == 0:
        raise ProfileError("An empty spectrogram cannot be stretched.")
    edges = np.linspace(0, t, frames + 1)
    out = np.empty((S.shape[0], frames), dtype=np.float32)
    for j in range(frames):
        lo = int(np.floor(edges[j]))
        hi = max(lo + 1, int(np.ceil(edges[j + 1])))
        out[:, j] = S[:, lo:min(hi, t)].mean(axis=1)
    return out


def mean_mel(paths: list[str], sr: int = 22050, n_mels: int = PROFILE_MELS) -> tuple[np.ndarray | None, np.ndarray]:
    """Mean of the clips' stretched mel spectrograms (dB) and the band frequencies."""
    from audioclf.features.spectral import mel_spectrogram_db

    acc, n, freqs = None, 0, np.zeros(n_mels)
    for path in paths:
        try:
            clip = load_audio(path, sr=sr)
        except AudioError:
            continue
        spec = mel_spectrogram_db(clip.samples, clip.sr, n_fft=2048, hop_length=512, n_mels=n_mels)
        freqs = spec.freqs
        s = stretch(spec.db)
        acc = s if acc is None else acc + s
        n += 1
    return (acc / n if n else None), freqs


def rank_features(X: np.ndarray, y: np.ndarray, names: tuple[str, ...], *,
                  seed: int = PROFILE_SEED) -> list[FeatureScore]:
    """ANOVA F and mutual information of each column of ``X`` with the labels ``y``, best F first."""
    from sklearn.feature_selection import f_classif, mutual_info_classif

    if len(set(y.tolist())) < 2:
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        f, _ = f_classif(X, y)
    neighbours = max(1, min(3, np.bincount(np.unique(y, return_inverse=True)[1]).min() - 1))
    mi = mutual_info_classif(X, y, n_neighbors=neighbours, random_state=seed)
    scores = [FeatureScore(n, float(fv), float(m)) for n, fv, m in zip(names, f, mi)]
    return sorted(scores, key=lambda s: (-np.nan_to_num(s.f_score, nan=-1.0), -s.mutual_info))


def class_profiles(ds, *, config: SpectralConfig = SpectralConfig(), max_per_class: int = MAX_PER_CLASS,
                   progress: Progress | None = None) -> ClassProfiles:
    """Profiles of every class of a data set.

    Parameters
    ----------
    ds : audioclf.datasets.Dataset
    config : SpectralConfig
        Frame features to average and rank (from the cache; computed where missing).
    max_per_class : int
        Clips per class whose mel spectrograms are averaged (a random, seeded sample).
    progress : callable, optional
        ``progress(done, total)``: feature extraction, then one step per class.

    Raises
    ------
    ProfileError
        When no clip of the data set can be read.
    """
    items = list(ds.items)
    classes = sorted({it.label for it in items})
    steps = len(items) + len(classes)
    tick = (lambda done: progress(done, steps)) if progress else (lambda done: None)
    results = extract_many([str(it.path) for it in items], config,
                           progress=(lambda d, t: tick(d)) if progress else None)
    rows, labels, errors, good = [], [], [], {}
    names: tuple[str, ...] = ()
    for it, res in zip(items, results):
        if isinstance(res, AudioError):
            errors.append((str(it.path), str(res)))
            continue
        rows.append(summarize(res.values))
        labels.append(it.label)
        good.setdefault(it.label, []).append(str(it.path))
        names = names or res.names
    if not rows:
        raise ProfileError("No clip of this data set could be read, so there is nothing to profile.")
    X, y = np.stack(rows), np.asarray(labels)
    present = sorted(good)
    dims = len(names)
    means = np.stack([X[y == c, :dims].mean(axis=0) for c in present])
    ranking = rank_features(X, y, summary_names(names))
    rng = random.Random(PROFILE_SEED)
    mel, freqs = {}, np.zeros(PROFILE_MELS)
    for k, label in enumerate(present, start=1):
        paths = good[label]
        sample = paths if len(paths) <= max_per_class else rng.sample(paths, max_per_class)
        m, f = mean_mel(sample, sr=config.sr)
        if m is not None:
            mel[label], freqs = m, f
        tick(len(items) + k)
    return ClassProfiles(labels=present, counts={c: len(good[c]) for c in present}, mel=mel, mel_freqs=freqs,
                         feature_names=names, means=means, ranking=ranking, errors=errors)
