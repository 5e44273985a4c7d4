"""A run's clips from a feature store instead of memory: `train(cfg, store=..., memory_budget=...)`.

The split's clips are extracted into the store first (clips already there are
skipped: same path, size, mtime), then each part becomes a
:class:`~audioclf.training.streaming.StoreSplit` that `fit` streams in
budget-sized buffers. Warped training copies are not streamed (they would be
other feature configs in the store); a run says so in metrics.json.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..jobs import Cancelled
from .streaming import StoreSplit, parse_bytes

DEFAULT_BUDGET = "200MB"


@dataclass
class StoreParts:
    """train/val/test as StoreSplits (None for an empty part), hash -> path, unreadable clips."""

    parts: dict[str, StoreSplit | None]
    path_of: dict[str, str]
    problems: list[str] = field(default_factory=list)
    root: str = ""
    budget: int = 0
    config_key: str = ""

    def record(self) -> dict:
        """What metrics.json keeps of the store a run trained from."""
        train = self.parts.get("train")
        return {"root": self.root, "memory_budget": self.budget, "config_key": self.config_key,
                "largest_buffer_bytes": train.peak_bytes if train else 0,
                "note": "trained from the feature store in batches; warped training copies are not streamed"}


def gather_from_store(cfg, prepared, store_root: str, memory_budget: int | str | None,
                      progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> StoreParts:
    """Fill the store with the split's clips and open each part as a StoreSplit."""
    from ..engines import get_engine
    from ..features.store import FeatureStore

    budget = parse_bytes(memory_budget if memory_budget is not None else DEFAULT_BUDGET)
    split, labels = prepared.split, prepared.labels
    items = [*split.train, *split.val, *split.test]

    def report(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled()
        if progress:
            progress(done, total)

    result = get_engine("local").extract(items, cfg.features, store=store_root, progress=report)
    store = FeatureStore(store_root)
    stored = store.stored_files(cfg.features)
    path_of: dict[str, str] = {}
    parts: dict[str, StoreSplit | None] = {}
    for name, part in (("train", split.train), ("val", split.val), ("test", split.test)):
        hashes, ys = [], []
        for it in part:
            hit = stored.get(os.path.abspath(str(it.path)))
            if hit is None:
                continue  # unreadable: listed in problems
            hashes.append(hit[2])
            ys.append(labels.index(it.label))
            path_of[hit[2]] = str(it.path)
        parts[name] = StoreSplit.of(store, cfg.features, hashes, np.array(ys, np.int64), budget) if hashes else None
    return StoreParts(parts, path_of, [f"{p}: {why}" for p, why in result.errors], store.root, budget,
                      result.config_key)
