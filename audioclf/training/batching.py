"""Training batches: length-bucketed, padded, as a tf.data pipeline.

    ds = batching.dataset(x, y, weights, batch_size=32, seed=0)  # for model.fit

TensorFlow is imported inside `dataset` only.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

from ..model.sequences import pad_sequences, padded_length

BUCKET_BATCHES = 16  # batches per length-sorted pool: less padding, still shuffled


def mix(xb: np.ndarray, lengths: np.ndarray, t: np.ndarray, w: np.ndarray | None, alpha: float,
        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mixup (Zhang et al. 2018) within a padded batch: each clip blended with another of the batch.

    Every clip i gets a weight lam_i ~ Beta(alpha, alpha), taken as max(lam, 1 - lam)
    so that clip i stays the larger part (as EfficientAT's own training does), and
    becomes lam_i * x_i + (1 - lam_i) * x_j with its one-hot targets `t` and sample
    weights `w` blended alike. Only frames both clips have are blended: the mix keeps
    clip i's length and padding, so the model's mask still holds.
    """
    n = len(xb)
    perm = rng.permutation(n)
    lam = rng.beta(alpha, alpha, n)
    lam = np.maximum(lam, 1 - lam).astype(np.float32)
    steps = np.arange(xb.shape[1])
    both = (steps < lengths[:, None]) & (steps < lengths[perm][:, None])
    blended = lam[:, None, None] * xb + (1 - lam[:, None, None]) * xb[perm]
    xb = np.where(both[..., None], blended, xb).astype(np.float32)
    t = lam[:, None] * t + (1 - lam[:, None]) * t[perm]
    if w is not None:
        w = (lam * w + (1 - lam) * w[perm]).astype(np.float32)
    return xb, t.astype(np.float32), w


def batches(x: Sequence[np.ndarray], y: np.ndarray, w: np.ndarray | None, batch_size: int,
            rng: np.random.Generator | None, n_classes: int = 0, mixup: float = 0.0) -> Iterator[tuple]:
    """Length-bucketed batches (x, y) or (x, y, w): shuffle, sort pools by length, shuffle batch order.

    Sorting within pools keeps padding (and wasted recurrent steps) small while
    every epoch still sees new batch compositions. `rng=None`: fixed order.
    With `n_classes` the targets are one-hot rows instead of class indices, and
    with `mixup` (Beta's alpha; needs `n_classes` and `rng`) every batch is :func:`mix`\ ed.
    """
    n = len(x)
    lengths = np.array([len(s) for s in x])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    pool = batch_size * BUCKET_BATCHES
    out = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if rng is not None:
        rng.shuffle(out)
    eye = np.eye(n_classes, dtype=np.float32) if n_classes else None
    for idx in out:
        xb = pad_sequences([x[i] for i in idx], padded_length(lengths[idx]))
        yb, wb = (y[idx] if eye is None else eye[y[idx]]), (None if w is None else w[idx])
        if mixup and eye is not None and rng is not None:
            xb, yb, wb = mix(xb, lengths[idx], yb, wb, float(mixup), rng)
        yield (xb, yb) if wb is None else (xb, yb, wb)


def n_batches(n: int, batch_size: int) -> int:
    """How many batches `batches` yields for `n` sequences."""
    pool = batch_size * BUCKET_BATCHES
    return sum(math.ceil(min(pool, n - s) / batch_size) for s in range(0, n, pool))


def signature(dims: int, weighted: bool, n_classes: int = 0) -> tuple:
    """The tf.data output signature of `batches`: integer or one-hot targets, with or without weights."""
    import tensorflow as tf

    target = tf.TensorSpec((None, n_classes), tf.float32) if n_classes else tf.TensorSpec((None,), tf.int64)
    sig = (tf.TensorSpec((None, None, dims), tf.float32), target)
    return sig + (tf.TensorSpec((None,), tf.float32),) if weighted else sig


def dataset(x: Sequence[np.ndarray], y: np.ndarray, w: np.ndarray | None, batch_size: int,
            seed: int | None, n_classes: int = 0, mixup: float = 0.0):
    """A tf.data.Dataset of `batches`, reshuffled every epoch when `seed` is given."""
    import tensorflow as tf

    rng = np.random.default_rng(seed) if seed is not None else None
    sig = signature(x[0].shape[1], w is not None, n_classes)
    ds = tf.data.Dataset.from_generator(lambda: batches(x, y, w, batch_size, rng, n_classes, mixup),
                                        output_signature=sig)
    # A known length lets Keras show steps and avoids its "ran out of data" warning.
    return ds.apply(tf.data.experimental.assert_cardinality(n_batches(len(x), batch_size))).prefetch(2)
