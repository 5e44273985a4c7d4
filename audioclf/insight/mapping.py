"""A data set as points: one vector per clip from cached features, projected to 2-D.

::

    from audioclf.datasets import load_dataset
    from audioclf.features import MFCCConfig
    from audioclf.insight.mapping import clip_vectors, project

    vecs = clip_vectors(load_dataset("my_sounds"), MFCCConfig())
    xy = project(vecs.values, "pca")      # (clips, 2)

Clip vectors are what the health check and the map share: the mean and std of
each MFCC or spectral feature over the clip (:func:`audioclf.features.summarize`),
YAMNet's mean embedding, or EfficientAT's clip embedding. PCA is instant; UMAP (``umap-learn``, imported only
when asked for: it pulls in numba and, through its optional parametric model,
TensorFlow) and t-SNE (scikit-learn) take seconds to a minute.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from audioclf.audio import AudioError
from audioclf.errors import AudioclfError
from audioclf.features import FeatureConfig, Features, extract_many, summarize, summary_names
from audioclf.progress import Progress

PROJECTIONS = ("pca", "umap", "tsne")
PROJECTION_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
YAMNET_SILENCE = 494  # row of "Silence" in YAMNet's AudioSet class map (yamnet_class_map.csv)
SILENCE_SCORE = 0.5
TSNE_PERPLEXITY = 30.0
UMAP_NEIGHBOURS = 15
MIN_MAP_CLIPS = 3  # fewer points make no map



class MappingError(AudioclfError):
    """A map cannot be drawn as asked; the message is for people."""


@dataclass
class ClipVectors:
    """One row of ``values`` per readable clip, with its path, label and fixed split."""

    paths: list[Path]
    labels: list[str]
    splits: list[str | None]
    values: np.ndarray  # (clips, dims) float32
    names: tuple[str, ...]  # dims
    kind: str  # feature kind the vectors come from
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable clips

    def __len__(self) -> int:
        return len(self.paths)


def clip_vector(feats: Features) -> np.ndarray:
    """One vector for a clip: YAMNet's mean embedding, EfficientAT's clip embedding, or the features' mean and std.

    YAMNet windows whose "Silence" score is above :data:`SILENCE_SCORE` are left
    out of the mean: clips padded with silence (ESC-50's short sneezes) would
    otherwise all look alike. EfficientAT's is the network's own embedding of the
    clip (the mean of its frame sequence), as Auto and the dense baseline see it.
    """
    values = feats.values
    if feats.config.kind == "efficientat":
        return values.mean(axis=0).astype(np.float32)
    if feats.config.kind != "yamnet":
        return summarize(values)
    scores = feats.scores
    if scores is not None and scores.ndim == 2 and scores.shape[1] > YAMNET_SILENCE and len(values) > 1:
        keep = scores[:, YAMNET_SILENCE] < SILENCE_SCORE
        if keep.any():
            values = values[keep]
    return values.mean(axis=0).astype(np.float32)


def vector_names(feats: Features) -> tuple[str, ...]:
    """Names of :func:`clip_vector`'s dimensions."""
    if feats.config.kind in ("yamnet", "efficientat"):
        return tuple(feats.names)
    return summary_names(feats.names)


def clip_vectors(ds, config: FeatureConfig, *, progress: Progress | None = None) -> ClipVectors:
    """Vectors of every clip of a data set, features from the cache (computed where missing).

    Parameters
    ----------
    ds : audioclf.datasets.Dataset
    config : FeatureConfig
        MFCC or spectral features give mean and std per feature; YAMNet its mean embedding,
        EfficientAT its clip embedding.
    progress : callable, optional
        ``progress(done, total)`` while features are extracted.

    Returns
    -------
    ClipVectors
        Unreadable clips are left out and listed in ``errors``.
    """
    items = list(ds.items)
    results = extract_many([str(it.path) for it in items], config, progress=progress)
    rows, keep, errors, names = [], [], [], ()
    for item, res in zip(items, results):
        if isinstance(res, AudioError) or res.n_frames == 0:
            errors.append((str(item.path), str(res) if isinstance(res, AudioError) else "no frames"))
            continue
        rows.append(clip_vector(res))
        keep.append(item)
        names = names or vector_names(res)
    dims = len(names)
    values = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dims), np.float32)
    return ClipVectors(paths=[it.path for it in keep], labels=[it.label for it in keep],
                       splits=[it.split for it in keep], values=values, names=names,
                       kind=config.kind, errors=errors)


def standardize(values: np.ndarray) -> np.ndarray:
    """Each dimension to zero mean and unit variance (constant ones to zero)."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(axis=0)
    return ((values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def project(values: np.ndarray, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """(clips, dims) -> (clips, 2) with PCA, UMAP or t-SNE on standardised dimensions.

    Raises
    ------
    MappingError
        For an unknown method, fewer than :data:`MIN_MAP_CLIPS` clips, or UMAP not installed.
    """
    method = str(method).lower().replace("-", "")
    if method not in PROJECTIONS:
        raise MappingError(f"Unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}.")
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or len(values) < MIN_MAP_CLIPS:
        raise MappingError(f"A map needs at least {MIN_MAP_CLIPS} readable clips; this data set has {len(values)}.")
    x = standardize(values)
    if method == "pca":
        return _pca(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(TSNE_PERPLEXITY, (len(x) - 1) / 3.0)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x).astype(np.float32)
    return _umap(x, seed)


def _pca(x: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    n = min(2, x.shape[1], len(x))
    xy = PCA(n_components=n, random_state=0).fit_transform(x) if n else np.zeros((len(x), 0))
    # A one-dimensional feature (or identical clips) still gives a 2-D map.
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))).astype(np.float32)


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    if "tensorflow" not in sys.modules:
        # umap's __init__ imports its parametric model, and with it TensorFlow (~20 s, 1 GB),
        # which plain UMAP never uses: a None entry makes that import fail and umap skip it.
        sys.modules.setdefault("umap.parametric_umap", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Tensorflow not installed; ParametricUMAP will be unavailable"
            import umap
    except ImportError:
        raise MappingError("UMAP needs the umap-learn package (`pip install umap-learn`); "
                           "PCA and t-SNE work without it.") from None
    neighbours = max(2, min(UMAP_NEIGHBOURS, len(x) - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed)
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def select(vecs: ClipVectors, indices: Sequence[int]) -> list[tuple[Path, str]]:
    """(path, label) of the clips at ``indices`` (the map's point order), skipping bad indices."""
    return [(vecs.paths[i], vecs.labels[i]) for i in indices if 0 <= int(i) < len(vecs)]
