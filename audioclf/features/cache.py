"""``extract_many``: features for many files, served from a disk cache; the misses are
computed by :mod:`audioclf.features.parallel` (in this process or a process pool).

The cache is one SQLite file in the workspace (``cache_dir()/features.sqlite``):

* ``files``: (path, size, mtime_ns) -> content hash. A warm call only ``stat``\\ s
  each file and looks its hash up, so it never opens or re-hashes the audio.
* ``features``: (config key, content hash) -> the arrays. Keyed by content, so a
  renamed or copied clip is still a hit and an edited one is a miss.

SQLite gives atomic transactions and locking between processes, so two
trainings extracting at once cannot corrupt the cache (the worst case is both
computing the same clip). A cache that is unreadable anyway is moved aside and
rebuilt: it only holds things that can be recomputed.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from audioclf import workspace
from audioclf.audio import AudioError, fingerprint
from audioclf.features import FeatureConfig, Features, config_key, config_to_dict
from audioclf.features.parallel import default_jobs, extract_chunks, plan_jobs
from audioclf.progress import Progress

CACHE_DB = "features.sqlite"
QUERY_BATCH = 500  # stay under SQLite's bound-parameter limit
FLUSH_ROWS = 256  # write computed rows in batches: one transaction per few hundred clips
LOCK_TIMEOUT_S = 60.0

PathLike = str | os.PathLike

__all__ = ["CACHE_DB", "CacheStats", "cache_size", "clear_cache", "default_jobs", "extract_many"]


@dataclass
class CacheStats:
    """What one :func:`extract_many` call did (pass one in to have it filled)."""

    total: int = 0
    cached: int = 0  # served from the disk cache
    computed: int = 0  # extracted in this call
    errors: int = 0  # AudioError entries
    workers: int = 0  # processes that extracted, this one included (0 = no pool, this one alone)
    seconds: float = 0.0



def extract_many(
    paths: Sequence[PathLike],
    config: FeatureConfig,
    *,
    cache: bool = True,
    n_jobs: int | None = None,
    progress: Progress | None = None,
    stats: CacheStats | None = None,
) -> list[Features | AudioError]:
    """Features for each path, in input order; a file that cannot be read gives an AudioError entry.

    ``n_jobs=None`` uses every core, ``1`` runs in this process. ``progress(done, total)``
    is called in this process as work finishes, last with ``(total, total)``.
    ``stats``, if given, is filled with counts of cached/computed/failed clips.
    """
    start = time.perf_counter()
    key = config_key(config)  # also validates the config: a bad one raises FeatureError here
    stats = stats if stats is not None else CacheStats()
    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    total = len(paths)
    stats.total, stats.cached, stats.computed, stats.errors, stats.workers = total, 0, 0, 0, 0
    results: list[Features | AudioError | None] = [None] * total

    store = _Cache.open() if cache else _Cache(None)
    with store:
        hashes = store.content_hashes(paths)
        for i, found in enumerate(store.lookup(key, config, [hashes.get(p) for p in paths])):
            results[i] = found
        stats.cached = sum(isinstance(r, Features) for r in results)
        todo = _unique_todo(paths, hashes, results)
        done = total - sum(len(idx) for idx in todo.values())
        if progress:
            progress(done, total)

        pending: list[tuple[str, Features]] = []

        def finish(path: str, result: Features | AudioError) -> None:
            nonlocal done
            for i in todo[path]:
                results[i] = result
            done += len(todo[path])
            if isinstance(result, Features):
                stats.computed += 1
                if path in hashes:
                    pending.append((hashes[path], result))
                    if len(pending) >= FLUSH_ROWS:
                        store.store(key, config, pending)
                        pending.clear()

        jobs = plan_jobs(n_jobs, len(todo), config)
        stats.workers = jobs if jobs > 1 else 0
        for chunk_paths, chunk_results in extract_chunks(list(todo), config, jobs):
            for path, result in zip(chunk_paths, chunk_results):
                finish(path, result)
            if progress:
                progress(done, total)
        store.store(key, config, pending)

    stats.errors = sum(isinstance(r, AudioError) for r in results)
    stats.seconds = time.perf_counter() - start
    return results  # type: ignore[return-value]  # every slot is filled by now


def clear_cache() -> None:
    """Delete the feature cache (it is rebuilt on demand)."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.remove(_db_path().with_name(CACHE_DB + suffix))
        except FileNotFoundError:
            pass


def cache_size() -> int:
    """Bytes the feature cache takes on disk."""
    path = _db_path()
    return path.stat().st_size if path.exists() else 0



# --- cache -------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (key TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS features (
    key TEXT NOT NULL, hash TEXT NOT NULL, frames INTEGER NOT NULL, dims INTEGER NOT NULL,
    names TEXT NOT NULL, vals BLOB NOT NULL, times BLOB NOT NULL, scores BLOB, score_dims INTEGER,
    silent INTEGER, PRIMARY KEY (key, hash));
"""
# Columns added after the first release: (name, SQL type), added to older cache files on open.
_ADDED_COLUMNS = (("silent", "INTEGER"),)


def _db_path() -> Path:
    return workspace.cache_dir() / CACHE_DB


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        have = {row[1] for row in db.execute("PRAGMA table_info(features)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:  # a cache written by an older version: its rows read as NULL
                try:
                    db.execute(f"ALTER TABLE features ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError:  # another process added it first
                    pass
    except sqlite3.Error:
        db.close()
        raise
    return db


def _batches(items: list, size: int = QUERY_BATCH) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Cache:
    """The SQLite cache, best effort: if it fails (disk full, read-only workspace),
    extraction carries on uncached with a warning rather than losing the work."""

    def __init__(self, db: sqlite3.Connection | None):
        self.db = db

    @classmethod
    def open(cls) -> "_Cache":
        path = _db_path()
        try:
            return cls(_connect(path))
        except sqlite3.OperationalError as exc:  # locked for a minute, read-only, disk full
            return cls(None)._give_up(exc)
        except sqlite3.DatabaseError:
            # Not a database any more (a stray or half-written file): keep it for
            # inspection and start afresh; everything in it can be recomputed.
            os.replace(path, path.with_name(f"{CACHE_DB}.corrupt-{time.time_ns()}"))
            try:
                return cls(_connect(path))
            except sqlite3.Error as exc:
                return cls(None)._give_up(exc)

    def __enter__(self) -> "_Cache":
        return self

    def __exit__(self, *exc) -> None:
        if self.db is not None:
            self.db.close()

    def _give_up(self, exc: Exception) -> "_Cache":
        warnings.warn(f"Feature cache unavailable ({exc}); extracting without it.", RuntimeWarning, stacklevel=3)
        if self.db is not None:
            self.db.close()
        self.db = None
        return self

    def content_hashes(self, paths: list[str]) -> dict[str, str]:
        """path -> content hash, from the stat index where size and mtime still match."""
        if self.db is None:
            return {}
        try:
            return _content_hashes(self.db, paths)
        except sqlite3.Error as exc:
            self._give_up(exc)
            return {}

    def lookup(self, key: str, config: FeatureConfig, hashes: list[str | None]) -> list[Features | None]:
        if self.db is None:
            return [None] * len(hashes)
        try:
            found = _load(self.db, key, config, sorted({h for h in hashes if h}))
        except sqlite3.Error as exc:
            self._give_up(exc)
            found = {}
        return [found.get(h) if h else None for h in hashes]

    def store(self, key: str, config: FeatureConfig, items: list[tuple[str, Features]]) -> None:
        if self.db is None or not items:
            return
        try:
            _store(self.db, key, config, items)
        except sqlite3.Error as exc:
            self._give_up(exc)


def _db_path_key(path: str) -> str:
    """A path as SQLite TEXT: itself, or for a name that is not valid UTF-8 (surrogate escapes,
    which SQLite cannot store) its bytes in hex; paths here are absolute, so no clash."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return "fsencoded:" + os.fsencode(path).hex()


def _content_hashes(db: sqlite3.Connection, paths: list[str]) -> dict[str, str]:
    stats: dict[str, tuple[int, int]] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue  # missing: extraction reports it with load_audio's message
        stats[path] = (st.st_size, st.st_mtime_ns)
    known: dict[str, str] = {}
    unique = list(stats)
    by_key = {_db_path_key(p): p for p in unique}
    for batch in _batches(list(by_key)):
        marks = ",".join("?" * len(batch))
        for key, size, mtime_ns, digest in db.execute(
            f"SELECT path, size, mtime_ns, hash FROM files WHERE path IN ({marks})", batch
        ):
            path = by_key[key]
            if stats.get(path) == (size, mtime_ns):
                known[path] = digest
    fresh = []
    for path in unique:
        if path not in known and os.path.isfile(path):
            try:
                known[path] = fingerprint(path)
            except OSError:
                continue
            fresh.append((_db_path_key(path), *stats[path], known[path]))
    if fresh:
        with _transaction(db):
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fresh)
    return known


def _load(db: sqlite3.Connection, key: str, config: FeatureConfig, wanted: list[str]) -> dict[str, Features]:
    found: dict[str, Features] = {}
    names_cache: dict[str, tuple[str, ...]] = {}
    for batch in _batches(wanted):
        marks = ",".join("?" * len(batch))
        rows = db.execute(
            f"SELECT hash, frames, dims, names, vals, times, scores, score_dims, silent FROM features "
            f"WHERE key = ? AND hash IN ({marks})",
            [key, *batch],
        )
        for digest, frames, dims, names, vals, times, scores, score_dims, silent in rows:
            if names not in names_cache:
                names_cache[names] = tuple(json.loads(names))
            found[digest] = Features(
                # Copies: callers may scale features in place; frombuffer views are read-only.
                values=np.frombuffer(vals, dtype=np.float32).reshape(frames, dims).copy(),
                times=np.frombuffer(times, dtype=np.float32).copy(),
                names=names_cache[names],
                config=config,
                scores=None if scores is None else np.frombuffer(scores, dtype=np.float32).reshape(frames, score_dims).copy(),
                silent=None if silent is None else bool(silent),
            )
    return found


def _unique_todo(paths: list[str], hashes: dict[str, str], results: list) -> dict[str, list[int]]:
    """Paths still to compute -> their indices; one computation per distinct content."""
    by_content: dict[str, str] = {}
    todo: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        if results[i] is not None:
            continue
        first = by_content.setdefault(hashes.get(path, path), path)
        todo.setdefault(first, []).append(i)
    return todo


def _store(db: sqlite3.Connection, key: str, config: FeatureConfig, items: list[tuple[str, Features]]) -> None:
    rows = []
    for digest, f in items:
        values = np.ascontiguousarray(f.values, dtype=np.float32)
        scores = None if f.scores is None else np.ascontiguousarray(f.scores, dtype=np.float32)
        rows.append((
            key, digest, values.shape[0], values.shape[1], json.dumps(list(f.names)),
            values.tobytes(), np.ascontiguousarray(f.times, dtype=np.float32).tobytes(),
            None if scores is None else scores.tobytes(), None if scores is None else scores.shape[1],
            None if f.silent is None else int(f.silent),
        ))
    with _transaction(db):
        db.execute(
            "INSERT OR IGNORE INTO configs VALUES (?, ?)", (key, json.dumps(config_to_dict(config), sort_keys=True))
        )
        db.executemany(
            "INSERT OR REPLACE INTO features (key, hash, frames, dims, names, vals, times, scores, score_dims, "
            "silent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front, rolls back on error."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *exc):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
