"""Grouping unlabelled clips: embed them with pretrained features, then cluster.

::

    from audioclf.labelling.grouping import embed_clips, group_vectors

    emb = embed_clips(paths)                   # the best embedder available ("auto")
    groups = group_vectors(emb.values, k=None) # k estimated by silhouette
    groups.assignments, groups.k, groups.k_reason, groups.spread, groups.examples

Embedders are feature kinds of :mod:`audioclf.features`, extracted through
``extract_many`` and its cache: a pretrained tagger (EfficientAT when its
weights are here, else YAMNet) gives one embedding per clip and its AudioSet
tag probabilities (group names come from those); without one, MFCC summaries
(mean and std per coefficient). Per kind (:data:`CLIP_VECTORS`): EfficientAT's
own clip embedding and clip probabilities (the network's, exactly); YAMNet's
mean over the windows it does not call "Silence"
(:func:`audioclf.insight.mapping.clip_vector`: padded short clips would
otherwise all look alike), its scores averaged the same way. A new tagger
plugs in by kind: a config ``config_from_dict`` knows, its class names in
:data:`TAGGERS` and, if the generic mean over non-silent frames does not suit
it, its clip vector in :data:`CLIP_VECTORS`.

Clips are grouped in a reduced space: dimensions standardised, PCA to at most
:data:`GROUPING_PCA_DIMS`, rows scaled to unit length (cosine geometry suits learned
embeddings, and makes loudness-like directions count less). The default
method is spectral clustering on a k-nearest-neighbour graph of that space,
which follows groups that are not round blobs (one sound class recorded in
several rooms); k-means is offered too (``benchmarks/labelling.py`` compares
them against true labels).
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from audioclf.audio import AudioError
from audioclf.errors import AudioclfError
from audioclf.features import FeatureConfig, MFCCConfig, YAMNetConfig, config_from_dict, extract_many
from audioclf.insight.mapping import SILENCE_SCORE, clip_vector
from audioclf.progress import Progress
from audioclf.training.feature_choice import feature_availability

EMBEDDERS = ("auto", "efficientat", "yamnet", "mfcc")
PREFERENCE = ("efficientat", "yamnet", "mfcc")  # best first, by grouping quality on ESC-10
GROUPING_METHODS = ("spectral", "kmeans")
GROUPING_PCA_DIMS = 32
K_RANGE = (2, 12)  # searched when no k is given
MIN_GROUP_CLIPS = 3
N_EXAMPLES = 3
SILENCE_TAG = "Silence"  # AudioSet's name, in YAMNet's and EfficientAT's class lists



class GroupingError(AudioclfError):
    """Clips cannot be embedded or grouped as asked; the message says why."""


# ---------------------------------------------------------------- embedders


def _yamnet_names(cfg: YAMNetConfig) -> list[str]:
    from audioclf.features import yamnet

    return yamnet.class_names(cfg.model)


def _efficientat_names(cfg: FeatureConfig) -> list[str]:
    return list(importlib.import_module("audioclf.features.efficientat").audioset_labels())


# kind -> the AudioSet class names of its scores. Kinds not listed here have no tags.
TAGGERS: dict[str, Callable[[FeatureConfig], list[str]]] = {
    "yamnet": _yamnet_names,
    "efficientat": _efficientat_names,
}


def available_embedders() -> list[str]:
    """The embedders that can run here, best first."""
    return [k for k in PREFERENCE if feature_availability(k) is None]


def resolve_embedder(embedder: str = "auto") -> str:
    """``"auto"`` -> the best available kind; a named kind is checked (GroupingError if unusable)."""
    embedder = str(embedder or "auto").lower()
    if embedder not in EMBEDDERS:
        raise GroupingError(f"Unknown embedder {embedder!r}; choose one of {', '.join(EMBEDDERS)}.")
    if embedder == "auto":
        return available_embedders()[0]
    reason = feature_availability(embedder)
    if reason:
        raise GroupingError(f"The {embedder} embedder is not available: {reason}")
    return embedder


def embedder_config(kind: str) -> FeatureConfig:
    """The feature config an embedder kind extracts with (MFCC as the Train page's default)."""
    if kind == "mfcc":
        return MFCCConfig()
    return config_from_dict({"kind": kind})


@dataclass
class EmbeddedClips:
    """One row per readable clip: its vector and, for a tagger, its mean tag scores."""

    paths: list[str]
    values: np.ndarray  # (clips, dims) float32
    kind: str
    tags: np.ndarray | None = None  # (clips, classes) mean scores, for taggers
    tag_names: list[str] | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of clips left out

    def __len__(self) -> int:
        return len(self.paths)


def _silence_index(names: Sequence[str] | None) -> int | None:
    if not names:
        return None
    try:
        return list(names).index(SILENCE_TAG)
    except ValueError:
        return None


def clip_tags(scores: np.ndarray, silence: int | None) -> np.ndarray:
    """Mean tag scores over the frames not scored as silence (all frames if every one is)."""
    scores = np.asarray(scores, np.float32).reshape(-1, scores.shape[-1])
    if silence is not None and len(scores) > 1:
        keep = scores[:, silence] < SILENCE_SCORE
        if keep.any():
            scores = scores[keep]
    return scores.mean(axis=0)


def generic_vectors(feats, silence: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A clip's vector and tags: the mean of its frames not scored as silence (MFCC: summaries)."""
    if feats.config.kind in ("yamnet", "mfcc", "spectral"):
        vector = clip_vector(feats)
    else:
        values = feats.values
        if feats.scores is not None and silence is not None and len(values) > 1:
            keep = feats.scores[:, silence] < SILENCE_SCORE
            if keep.any():
                values = values[keep]
        vector = values.mean(axis=0).astype(np.float32)
    tags = clip_tags(feats.scores, silence) if feats.scores is not None else None
    return vector, tags


def _efficientat_vectors(feats, silence: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    # The network's own clip embedding and clip probabilities: per-step "silence" scores of the
    # frame sequence are a class-activation map, not a verdict to drop frames by.
    from audioclf.features.efficientat.features import clip_embedding, clip_probabilities

    return clip_embedding(feats), clip_probabilities(feats)


# kind -> (Features, index of "Silence" or None) -> (clip vector, clip tag scores or None).
CLIP_VECTORS: dict[str, Callable] = {"efficientat": _efficientat_vectors}


def embed_clips(paths: Sequence[str], embedder: str = "auto", *, config: FeatureConfig | None = None,
                progress: Progress | None = None) -> EmbeddedClips:
    """Embed clips with ``embedder`` (see :func:`resolve_embedder`), features from the cache.

    ``config`` overrides the embedder's feature config (e.g. a YAMNet model path).
    Unreadable clips are left out and listed in ``errors``.
    """
    if config is not None:
        kind = config.kind
    else:
        kind = resolve_embedder(embedder)
        config = embedder_config(kind)
    paths = [str(p) for p in paths]
    results = extract_many(paths, config, progress=progress) if paths else []
    names = TAGGERS[kind](config) if kind in TAGGERS else None
    silence = _silence_index(names)
    vectors = CLIP_VECTORS.get(kind, generic_vectors)
    keep, rows, tags, errors = [], [], [], []
    for path, res in zip(paths, results):
        if isinstance(res, AudioError) or res.n_frames == 0:
            errors.append((path, str(res) if isinstance(res, AudioError) else "no feature frames"))
            continue
        vector, tag = vectors(res, silence)
        keep.append(path)
        rows.append(np.asarray(vector, np.float32))
        if tag is not None:
            tags.append(np.asarray(tag, np.float32))
    dims = rows[0].shape[0] if rows else 0
    values = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dims), np.float32)
    tag_array = np.stack(tags) if names is not None and rows and len(tags) == len(rows) else None
    return EmbeddedClips(paths=keep, values=values, kind=kind, tags=tag_array,
                     tag_names=names if tag_array is not None else None, errors=errors)


# ---------------------------------------------------------------- grouping


@dataclass
class Groups:
    """A grouping of ``n`` clips into ``k`` groups, numbered by size (largest first)."""

    assignments: np.ndarray  # (n,) group of each clip, 0..k-1
    k: int
    k_reason: str
    method: str
    spread: list[float]  # per group: mean distance of its clips to its centroid
    examples: list[list[int]]  # per group: clip indices nearest its centroid, most typical first
    silhouettes: dict[int, float] = field(default_factory=dict)  # k -> score, when k was estimated
    coords: np.ndarray | None = None  # (n, d) the reduced space the groups were found in


def reduce(values: np.ndarray, dims: int = GROUPING_PCA_DIMS) -> np.ndarray:
    """Standardised, PCA to at most ``dims`` dimensions, rows scaled to unit length."""
    from sklearn.decomposition import PCA

    x = np.asarray(values, np.float64)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    n = min(dims, x.shape[1], len(x) - 1)
    if n >= 1:
        x = PCA(n_components=n, random_state=0).fit_transform(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def neighbours(n: int) -> int:
    """The k-nearest-neighbour graph's degree for ``n`` clips: about sqrt(n), within 5-20."""
    return int(max(2, min(n - 1, min(20, max(5, round(np.sqrt(n)))))))


def cluster(z: np.ndarray, k: int, method: str = "spectral", seed: int = 0) -> np.ndarray:
    """Group labels 0..k-1 of the rows of ``z`` (see :data:`GROUPING_METHODS`)."""
    from sklearn.cluster import KMeans, SpectralClustering

    if method not in GROUPING_METHODS:
        raise GroupingError(f"Unknown grouping method {method!r}; choose one of {', '.join(GROUPING_METHODS)}.")
    if method == "spectral" and len(z) > 2 * k:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Graph is not fully connected": still a usable grouping
            model = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=neighbours(len(z)),
                                       assign_labels="cluster_qr", random_state=seed)
            return model.fit_predict(z).astype(np.int64)
    return KMeans(k, n_init=10, random_state=seed).fit_predict(z).astype(np.int64)


def estimate_k(z: np.ndarray, k_range: tuple[int, int] = K_RANGE, method: str = "spectral",
               seed: int = 0) -> tuple[int, str, dict[int, float]]:
    """The k with the best silhouette over ``k_range`` (inclusive), a sentence saying why, and
    every k's score. The silhouette compares each clip's distance to its own group with its
    distance to the nearest other group: high when groups are tight and apart."""
    from sklearn.metrics import silhouette_score

    low, high = max(2, int(k_range[0])), min(int(k_range[1]), len(z) - 1)
    if high < low:
        raise GroupingError(f"{len(z)} clips are too few to compare groupings; add clips or choose k.")
    scores = {}
    for k in range(low, high + 1):
        labels = cluster(z, k, method, seed)
        scores[k] = float(silhouette_score(z, labels)) if len(set(labels.tolist())) > 1 else -1.0
    best = max(scores, key=lambda k: (round(scores[k], 6), -k))
    others = sorted((k for k in scores if k != best), key=lambda k: -scores[k])
    runner = f"; next best k={others[0]} ({scores[others[0]]:.2f})" if others else ""
    reason = (f"k={best}: the highest silhouette ({scores[best]:.2f}) of k {low}-{high}{runner}. "
              "The silhouette is high when clips sit much closer to their own group than to the next one.")
    return best, reason, scores


def describe(z: np.ndarray, assignments: np.ndarray, k: int,
             n_examples: int = N_EXAMPLES) -> tuple[list[float], list[list[int]]]:
    """Per group: its spread (mean distance to its centroid) and its most typical clips."""
    spread, examples = [], []
    for g in range(k):
        members = np.flatnonzero(assignments == g)
        if not len(members):
            spread.append(0.0)
            examples.append([])
            continue
        dist = np.linalg.norm(z[members] - z[members].mean(axis=0), axis=1)
        spread.append(round(float(dist.mean()), 4))
        examples.append(members[np.argsort(dist, kind="stable")[:n_examples]].tolist())
    return spread, examples


def by_size(assignments: np.ndarray) -> np.ndarray:
    """Renumber groups 0..k-1 from the largest to the smallest (ties by first clip)."""
    ids, first, counts = np.unique(assignments, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    remap = {int(ids[i]): rank for rank, i in enumerate(order)}
    return np.array([remap[int(a)] for a in assignments], np.int64)


def group_vectors(values: np.ndarray, k: int | None = None, *, method: str = "spectral",
                  k_range: tuple[int, int] = K_RANGE, seed: int = 0,
                  n_examples: int = N_EXAMPLES) -> Groups:
    """Group clip vectors into ``k`` groups (None: estimated, see :func:`estimate_k`)."""
    values = np.asarray(values, np.float32)
    if values.ndim != 2 or len(values) < MIN_GROUP_CLIPS:
        raise GroupingError(f"Grouping needs at least {MIN_GROUP_CLIPS} readable clips; got {len(values)}.")
    z = reduce(values)
    silhouettes: dict[int, float] = {}
    if k is None:
        k, reason, silhouettes = estimate_k(z, k_range, method, seed)
    else:
        k = int(k)
        if not 1 <= k <= len(values):
            raise GroupingError(f"Cannot make {k} groups of {len(values)} clips; choose 1 to {len(values)}.")
        reason = f"k={k}: chosen."
    assignments = np.zeros(len(z), np.int64) if k == 1 else by_size(cluster(z, k, method, seed))
    k = int(assignments.max()) + 1
    spread, examples = describe(z, assignments, k, n_examples)
    return Groups(assignments=assignments, k=k, k_reason=reason, method=method, spread=spread,
                  examples=examples, silhouettes=silhouettes, coords=z)
