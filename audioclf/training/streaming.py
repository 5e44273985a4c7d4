"""Training from a feature store within a memory budget: batches streamed from Parquet row groups.

    part = StoreSplit.of(store, features_cfg, items, labels, budget=parse_bytes("200MB"))
    model, info = fit(model_cfg, train_cfg, part, val_part, n_classes)   # fit takes either kind
    probs = part.predict(model)                                          # streamed as well

A :class:`StoreSplit` is the clips of one split part (their content hashes and
integer labels) in a :class:`~audioclf.features.store.FeatureStore`. Each epoch
reads the store's row groups in a new random order into a shuffle buffer that
holds about ``budget`` bytes of feature values (a fixed number of clips: the
budget over the mean clip's bytes), cuts the buffer into
length-bucketed padded batches (``batching.batches``) and reads on, so memory
holds one buffer, however large the data set. Standardisation statistics are
summed over the same stream (float64), so they equal ``input_stats`` on all the
clips at once. TensorFlow is imported inside `dataset` only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from ..errors import AudioclfError
from ..model.configs import ModelConfig
from ..model.sequences import clip_centered
from . import batching

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
MIN_BUDGET = 10**6  # below a megabyte the buffer holds too few clips to shuffle


class BudgetError(AudioclfError):
    """A memory budget that cannot be read or is too small."""


def parse_bytes(text: str | int) -> int:
    """'200MB', '1.5 GiB', '500k' or a number of bytes -> bytes."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = (m.group(2).lower() if m else "").replace("bytes", "b")
    unit = unit if unit.endswith("b") or not unit else unit + "b"
    if not m or unit not in UNITS:
        raise BudgetError(f"{text!r} is not an amount of memory; write e.g. 200MB, 1.5GB or 512MiB.")
    value = int(float(m.group(1)) * UNITS[unit])
    if value < MIN_BUDGET:
        raise BudgetError(f"A memory budget of {text} is too small to shuffle clips; give at least 1MB.")
    return value


@dataclass
class StoreSplit:
    """One part of a split (train, val or test) read from a feature store in budget-sized buffers."""

    store: object  # features.store.FeatureStore
    config: object  # the feature config the store holds
    label_of: dict[str, int]  # content hash -> class index
    budget: int
    dims: int = 0
    units: list = field(default_factory=list)  # the row groups holding at least one of these clips
    clip_bytes: float = 0.0  # mean bytes of one clip's features
    peak_bytes: int = 0  # the most feature bytes one buffer held (what the budget bounds)

    @property
    def buffer_clips(self) -> int:
        """Clips per buffer: the budget over the mean clip (a fixed count gives every epoch the
        same number of batches, which Keras wants to know)."""
        return max(1, int(self.budget // max(self.clip_bytes, 1.0)))

    @classmethod
    def of(cls, store, config, hashes: Sequence[str], y: Sequence[int], budget: int) -> "StoreSplit":
        """The clips `hashes` (labels `y`, class indices) of `store`; only their row groups are read."""
        import pyarrow.compute as pc

        label_of = {h: int(v) for h, v in zip(hashes, y)}
        wanted = _strings(set(label_of))
        units, dims, nbytes, seen = [], 0, 0, set()
        for path, group, rows in store.row_groups(config):
            table = _read_group(store, path, group, ("hash", "frames", "dims"))
            mask = pc.is_in(table.column("hash"), value_set=wanted)
            if pc.any(mask).as_py():
                units.append((path, group, rows))
                mine = table.filter(mask)
                dims = dims or int(mine.column("dims")[0].as_py())
                for h, f, d in zip(*(mine.column(c).to_pylist() for c in ("hash", "frames", "dims"))):
                    if h not in seen:
                        seen.add(h)
                        nbytes += f * d * 4
        missing = len(label_of) - len(seen)
        if missing:
            raise BudgetError(f"{missing} of the {len(label_of)} clips are not in the feature store {store.root}; "
                              "extract them into it first (audioclf extract ... --store).")
        return cls(store, config, label_of, int(budget), dims, units, nbytes / max(1, len(seen)))

    def __len__(self) -> int:
        return len(self.label_of)

    @property
    def y(self) -> np.ndarray:
        return np.array(sorted(self.label_of.values()), np.int64)  # counts only (class weights)

    def buffers(self, seed: int | None) -> Iterator[tuple[list[np.ndarray], np.ndarray, list[str]]]:
        """(sequences, labels, hashes), `buffer_clips` at a time, in a random order per seed."""
        from ..features.store import table_to_features

        xs, ys, hs, held = [], [], [], 0
        names = ()
        for table in self.store.iter_batches(self.config, hashes=self.label_of, seed=seed,
                                             columns=("hash", "frames", "dims", "values", "times"),
                                             units=self.units):
            for h, f in zip(table.column("hash").to_pylist(), table_to_features(table, self.config, names)):
                xs.append(f.values)
                ys.append(self.label_of[h])
                hs.append(h)
                held += f.values.nbytes
                if len(xs) >= self.buffer_clips:
                    self.peak_bytes = max(self.peak_bytes, held)
                    yield xs, np.array(ys, np.int64), hs
                    xs, ys, hs, held = [], [], [], 0
        if xs:
            self.peak_bytes = max(self.peak_bytes, held)
            yield xs, np.array(ys, np.int64), hs

    def input_stats(self, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
        """`model.building.input_stats` over every clip, summed buffer by buffer."""
        total, sq, n = None, None, 0
        for xs, _, _ in self.buffers(None):
            if cfg.kind == "baseline":
                rows = np.stack([np.concatenate([s.mean(0), s.std(0)]) for s in xs]).astype(np.float64)
            else:
                seqs = clip_centered(xs, cfg.clip_scale) if cfg.clip_norm else xs
                rows = np.concatenate([np.asarray(s, np.float64) for s in seqs], axis=0)
            total = rows.sum(0) if total is None else total + rows.sum(0)
            sq = np.square(rows).sum(0) if sq is None else sq + np.square(rows).sum(0)
            n += len(rows)
        mean = total / n
        return mean, np.maximum(sq / n - np.square(mean), 1e-8)

    def batches(self, batch_size: int, seed: int | None, class_w: np.ndarray | None, n_classes: int = 0,
                mixup: float = 0.0) -> Iterator[tuple]:
        """Length-bucketed padded batches, each buffer shuffled on its own (an epoch per call);
        `n_classes` and `mixup` as in :func:`~audioclf.training.batching.batches`."""
        rng = np.random.default_rng(seed) if seed is not None else None
        epoch_seed = None if rng is None else int(rng.integers(2**31))
        for xs, ys, _ in self.buffers(epoch_seed):
            w = None if class_w is None else class_w[ys].astype(np.float32)
            yield from batching.batches(xs, ys, w, batch_size, rng, n_classes, mixup)

    def dataset(self, batch_size: int, seed: int | None, class_w: np.ndarray | None = None, n_classes: int = 0,
                mixup: float = 0.0):
        """A tf.data.Dataset of :meth:`batches`: a new row-group order every epoch when `seed` is given."""
        import tensorflow as tf

        sig = batching.signature(self.dims, class_w is not None, n_classes)
        epochs = iter(range(1 << 30))

        def gen():
            yield from self.batches(batch_size, None if seed is None else seed + next(epochs), class_w, n_classes,
                                    mixup)

        full, rest = divmod(len(self), self.buffer_clips)
        steps = full * batching.n_batches(self.buffer_clips, batch_size) + (batching.n_batches(rest, batch_size)
                                                                             if rest else 0)
        ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
        return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)

    def predict(self, model) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(probabilities, labels, hashes) of every clip, buffer by buffer."""
        from ..model.building import predict_proba

        probs, ys, hs = [], [], []
        for xs, y, h in self.buffers(None):
            probs.append(predict_proba(model, xs))
            ys.append(y)
            hs += h
        return np.concatenate(probs), np.concatenate(ys), hs


def _read_group(store, path: str, group: int, columns):
    import pyarrow.parquet as pq

    with store.fs.open_input_file(path) as f:
        return pq.ParquetFile(f).read_row_group(group, columns=list(columns))


def _strings(values):
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())
