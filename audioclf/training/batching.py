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


def batches(x: Sequence[np.ndarray], y: np.ndarray, w: np.ndarray | None, batch_size: int,
            rng: np.random.Generator | None) -> Iterator[tuple]:
    """Length-bucketed batches (x, y) or (x, y, w): shuffle, sort pools by length, shuffle batch order.

    Sorting within pools keeps padding (and wasted recurrent steps) small while
    every epoch still sees new batch compositions. `rng=None`: fixed order.
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
    for idx in out:
        xb = pad_sequences([x[i] for i in idx], padded_length(lengths[idx]))
        if w is None:
            yield xb, y[idx]
        else:
            yield xb, y[idx], w[idx]


def n_batches(n: int, batch_size: int) -> int:
    """How many batches `batches` yields for `n` sequences."""
    pool = batch_size * BUCKET_BATCHES
    return sum(math.ceil(min(pool, n - s) / batch_size) for s in range(0, n, pool))


def dataset(x: Sequence[np.ndarray], y: np.ndarray, w: np.ndarray | None, batch_size: int,
            seed: int | None):
    """A tf.data.Dataset of `batches`, reshuffled every epoch when `seed` is given."""
    import tensorflow as tf

    dims = x[0].shape[1]
    rng = np.random.default_rng(seed) if seed is not None else None
    sig = (tf.TensorSpec((None, None, dims), tf.float32), tf.TensorSpec((None,), tf.int64))
    if w is not None:
        sig += (tf.TensorSpec((None,), tf.float32),)
    ds = tf.data.Dataset.from_generator(lambda: batches(x, y, w, batch_size, rng), output_signature=sig)
    # A known length lets Keras show steps and avoids its "ran out of data" warning.
    return ds.apply(tf.data.experimental.assert_cardinality(n_batches(len(x), batch_size))).prefetch(2)
