"""The local engine: today's process pool and SQLite cache on this machine. It never imports Ray.

Extraction goes through :func:`audioclf.features.extract_many` (cache hits served,
misses in the pool). With a store, the clips are also written there as shards,
and clips already stored (same path, size and mtime) are not extracted again.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Iterable, Sequence

from audioclf.engines.base import STORE_SHARD_ROWS, ClusterInfo, ExtractResult, NodeInfo, R, T
from audioclf.progress import Progress
from audioclf.engines.manifest import is_uri, read_manifest
from audioclf.features import FeatureConfig, Features, config_key

URI_BATCH = 32  # clips decoded per batch when a manifest names remote files


class LocalEngine:
    """Work in this process and its pool (the default)."""

    name = "local"
    address = None

    def __init__(self, n_jobs: int | None = None):
        self.n_jobs = n_jobs

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def describe(self) -> ClusterInfo:
        from audioclf.features.parallel import default_jobs

        host = socket.gethostname()
        return ClusterInfo(engine=self.name, address=None,
                           nodes=[NodeInfo(node_id=host, host=host, cpus=float(default_jobs()), is_head=True)])

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, env: dict[str, str] | None = None) -> list[R]:
        """`fn` of each item, in order, in this process (folds and checks load TensorFlow once);
        `env` is for engines whose tasks run in other processes, and is ignored here."""
        return [fn(item) for item in items]

    def extract(self, source: Any, config: FeatureConfig, *, store: str | os.PathLike | None = None,
                progress: Progress | None = None, skip_existing: bool = True) -> ExtractResult:
        """Extract every clip of `source` (manifest, data set, paths); see :mod:`audioclf.engines`."""
        from audioclf.features import CacheStats, extract_many

        t0 = time.perf_counter()
        key = config_key(config)
        table = read_manifest(source)
        rows = table.to_pylist()
        result = ExtractResult(engine=self.name, total=len(rows), config_key=key,
                               store=None if store is None else os.fspath(store))
        fstore = _open_store(store)
        todo = rows
        if fstore is not None and skip_existing:
            mask = not_stored_mask(fstore, config, [r["path"] for r in rows])
            todo = [r for r, m in zip(rows, mask) if m]
            result.skipped = len(rows) - len(todo)
        local = [r for r in todo if not is_uri(r["path"])]
        remote = [r for r in todo if is_uri(r["path"])]
        done_before = result.skipped

        def report(done: int, _total: int) -> None:
            if progress:
                progress(done_before + done, len(rows))

        if progress:
            progress(done_before, len(rows))
        stats = CacheStats()
        feats = extract_many([r["path"] for r in local], config, n_jobs=self.n_jobs, progress=report, stats=stats)
        result.workers = max(1, stats.workers)
        result.skipped += stats.cached if fstore is None else 0
        pairs = list(zip(local, feats))
        done_before += len(local)
        if remote:
            pairs += self._extract_remote(remote, config, report)
        host = socket.gethostname()
        computed = 0
        pending = []
        for row, f in pairs:
            if not isinstance(f, Features):
                result.errors.append((row["path"], str(f)))
                continue
            computed += 1
            if fstore is not None:
                pending.append(_store_row(row, f))
                if len(pending) >= STORE_SHARD_ROWS:
                    fstore.write(config, pending, key=key)
                    pending = []
        if fstore is not None:
            fstore.write(config, pending, key=key)
        result.extracted = computed - (stats.cached if fstore is None else 0)
        if result.extracted:
            result.by_node[host] = result.extracted
        result.seconds = time.perf_counter() - t0
        return result

    def _extract_remote(self, rows: Sequence[dict], config: FeatureConfig, report) -> list:
        from audioclf.engines.work import decode, extract_clips

        out = []
        for i in range(0, len(rows), URI_BATCH):
            batch = rows[i:i + URI_BATCH]
            decoded = [decode(r["path"], config) for r in batch]
            feats = extract_clips([d.clip for d in decoded], config)
            for r, d, f in zip(batch, decoded, feats):
                out.append(({**r, "_hash": d.hash, "_size": d.size, "_mtime": d.mtime_ns}, f))
            report(i + len(batch), 0)  # counted after the local clips
        return out


def _open_store(store):
    if store is None:
        return None
    from audioclf.features.store import FeatureStore

    return FeatureStore(store)


def not_stored_mask(fstore, config: FeatureConfig, paths: Sequence[str]) -> list[bool]:
    """For each path: True when it is not in the store yet (or changed since: other size or mtime)."""
    stored = fstore.stored_files(config)
    out = []
    for path in paths:
        have = stored.get(path)
        if have is None:
            out.append(True)
        elif is_uri(path):
            out.append(False)  # a remote object is taken as unchanged: checking costs a request per file
        else:
            try:
                st = os.stat(path)
            except OSError:
                out.append(True)  # gone: extraction reports it
                continue
            out.append((st.st_size, st.st_mtime_ns) != tuple(have[:2]))
    return out


def _store_row(row: dict, feats: Features):
    from audioclf.audio import fingerprint
    from audioclf.features.store import StoreRow

    if "_hash" in row:
        digest, size, mtime = row["_hash"], row["_size"], row["_mtime"]
    else:
        st = os.stat(row["path"])
        digest, size, mtime = fingerprint(row["path"]), st.st_size, st.st_mtime_ns
    return StoreRow(hash=digest, path=row["path"], features=feats, label=row.get("label"),
                    group=row.get("group"), size=size, mtime_ns=mtime)
