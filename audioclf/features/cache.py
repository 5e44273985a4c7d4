"""``extract_many``: features for many files, from a disk cache or a process pool.

The cache is one SQLite file in the workspace (``cache_dir()/features.sqlite``):

* ``files``: (path, size, mtime_ns) -> content hash. A warm call only ``stat``\\ s
  each file and looks its hash up, so it never opens or re-hashes the audio.
* ``features``: (config key, content hash) -> the arrays. Keyed by content, so a
  renamed or copied clip is still a hit and an edited one is a miss.

SQLite gives atomic transactions and locking between processes, so two
trainings extracting at once cannot corrupt the cache (the worst case is both
computing the same clip). A cache that is unreadable anyway is moved aside and
rebuilt: it only holds things that can be recomputed.

Misses are computed in a process pool, in chunks of files to amortise
inter-process traffic. Workers are forked when that is safe (one thread, no
TensorFlow: a command-line extraction), which makes them start at once;
otherwise (the app's threads, a process with TensorFlow) they come from a
forkserver that has imported librosa once, or are spawned. Workers import
librosa, never TensorFlow.
YAMNet runs in this process by default, batching the windows of many clips
per model call (``extract_yamnet_many``).
"""
from __future__ import annotations

import importlib
import json
import math
import multiprocessing
import os
import sqlite3
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from audioclf import workspace
from audioclf.audio import AudioError, Clip, fingerprint, load_audio
from audioclf.features import (
    FeatureConfig,
    FeatureError,
    Features,
    config_key,
    config_to_dict,
    extract_file,
    target_rate,
)

DB_NAME = "features.sqlite"
CHUNK = 32  # files per pool task: amortises pickling/IPC, still gives smooth progress
MIN_CHUNKS_PER_WORKER = 4  # small batches get smaller chunks so both cores stay busy
IN_PROCESS_BELOW = 16  # with n_jobs=None, fewer misses than this are not worth a pool
QUERY_BATCH = 500  # stay under SQLite's bound-parameter limit
FLUSH_ROWS = 256  # write computed rows in batches: one transaction per few hundred clips
LOCK_TIMEOUT_S = 60.0
# Preloaded once in the forkserver, so every pool after the first starts in milliseconds.
WORKER_PRELOAD = ["audioclf.features.spectral"]

Progress = Callable[[int, int], None]
PathLike = str | os.PathLike


@dataclass
class CacheStats:
    """What one :func:`extract_many` call did (pass one in to have it filled)."""

    total: int = 0
    cached: int = 0  # served from the disk cache
    computed: int = 0  # extracted in this call
    errors: int = 0  # AudioError entries
    workers: int = 0  # processes that extracted, this one included (0 = no pool, this one alone)
    seconds: float = 0.0


def default_jobs() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


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

        jobs = _jobs(n_jobs, len(todo), config)
        if jobs <= 1:
            with _one_blas_thread(config):
                for chunk in _chunks(list(todo), 1 if config.kind != "yamnet" else CHUNK):
                    for path, result in zip(chunk, _extract_chunk(chunk, config)):
                        finish(path, result)
                    if progress:
                        progress(done, total)
        else:
            stats.workers = jobs
            for chunk_paths, chunk_results in _run_pool(list(todo), config, jobs):
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
            os.remove(_db_path().with_name(DB_NAME + suffix))
        except FileNotFoundError:
            pass


def cache_size() -> int:
    """Bytes the feature cache takes on disk."""
    path = _db_path()
    return path.stat().st_size if path.exists() else 0


# --- work --------------------------------------------------------------------


def _extract_one(path: str, config: FeatureConfig) -> Features | AudioError:
    try:
        return extract_file(path, config)
    except AudioError as exc:
        return exc
    except FeatureError:
        raise  # a bad config is the caller's mistake, not this file's
    except Exception as exc:  # noqa: BLE001
        if config.kind == "yamnet":
            raise  # model problems (missing, broken) concern every file: say so once
        # One odd file must not sink a 3,000-clip extraction.
        return AudioError(f"'{path}' could not be analysed ({type(exc).__name__}: {exc}); skipping it.")


def _extract_chunk(paths: list[str], config: FeatureConfig) -> list[Features | AudioError]:
    """Pool task: a list of files in, a list of results out (one pickle each way)."""
    if config.kind != "yamnet":
        return [_extract_one(p, config) for p in paths]
    # YAMNet runs fastest with the windows of many clips in one model call.
    from audioclf.features.yamnet import extract_yamnet_many

    loaded: list[Clip | AudioError] = []
    for path in paths:
        try:
            loaded.append(load_audio(path, sr=target_rate(config)))
        except AudioError as exc:
            loaded.append(exc)
    clips = [c for c in loaded if isinstance(c, Clip)]
    feats = iter(extract_yamnet_many(clips, config) if clips else [])
    return [c if isinstance(c, AudioError) else next(feats) for c in loaded]


def _one_blas_thread(config: FeatureConfig):
    """Single-threaded BLAS while extracting librosa features.

    Their matrix products are tiny (mel bank x a few dozen frames): waking a BLAS
    thread pool for each costs ~15x the product itself. Not for YAMNet, whose
    runtime manages its own threads.
    """
    if config.kind == "yamnet":
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _init_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # one worker per core already


def _jobs(n_jobs: int | None, n_todo: int, config: FeatureConfig) -> int:
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
        raise FeatureError(f"n_jobs must be a positive whole number or None, got {n_jobs!r}.")
    if n_todo <= 1 or (config.kind == "yamnet" and (n_jobs is None or not _yamnet_is_tflite(config))):
        # YAMNet: by default one process, where TFLite's own threads use the cores and
        # the model stays loaded for prediction; a pool only on request and only for
        # TFLite (with TF Hub/SavedModel every worker would import TensorFlow).
        return 1
    if multiprocessing.parent_process() is not None:
        # Already a worker (e.g. a script without an `if __name__ == "__main__":` guard,
        # re-run by its forkserver worker): a pool here would start pools recursively.
        return 1
    if n_jobs is None:
        return 1 if n_todo < IN_PROCESS_BELOW else min(default_jobs(), n_todo)
    return min(n_jobs, n_todo)


def _yamnet_is_tflite(config: FeatureConfig) -> bool:
    from audioclf.features.yamnet import resolve_spec

    return resolve_spec(config.model).endswith(".tflite")


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _fork_is_safe(config: FeatureConfig) -> bool:
    """Fork only for librosa features, from a process with one thread and no TensorFlow.

    A forked child inherits librosa already imported, so it starts in milliseconds
    (a forkserver worker first imports librosa, ~1-2 s). But fork copies just the
    calling thread: a lock another thread holds (TensorFlow's thread pools, a web
    server's threads, a loaded YAMNet interpreter's) stays locked in the child forever.
    """
    return (config.kind != "yamnet" and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1
            and not any(name == "tensorflow" or name.startswith("tensorflow.") for name in sys.modules))


def _pool_context(config: FeatureConfig) -> multiprocessing.context.BaseContext:
    if _fork_is_safe(config):
        for name in WORKER_PRELOAD:  # imported once here, inherited by every worker
            importlib.import_module(name)
        return multiprocessing.get_context("fork")
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(WORKER_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def _ready() -> bool:
    return True


def _run_pool(paths: list[str], config: FeatureConfig, jobs: int) -> Iterable[tuple[list[str], list]]:
    """Yield (chunk, results) from ``jobs - 1`` worker processes AND this process.

    Starting workers takes seconds (the forkserver imports librosa, and starting a
    process blocks until it has), so they start from a helper thread while this
    process, which often has librosa loaded already, works through chunks from the
    other end of the queue: a pool is never slower than extracting in-process.
    """
    size = max(1, min(CHUNK, math.ceil(len(paths) / (jobs * MIN_CHUNKS_PER_WORKER))))
    queue = deque(_chunks(paths, size))
    workers = jobs - 1
    ctx = _pool_context(config)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
    starter: ThreadPoolExecutor | None = None
    if ctx.get_start_method() == "fork":
        # Forking takes milliseconds, and must happen before this process has a second thread.
        for _ in range(workers):
            pool.submit(_ready)
        started: Future = Future()
        started.set_result(None)
    else:
        starter = ThreadPoolExecutor(max_workers=1)
        started = starter.submit(lambda: [f.result() for f in [pool.submit(_ready) for _ in range(workers)]])
    futures: dict = {}
    try:
        while queue and not started.done():
            chunk = queue.pop()
            with _one_blas_thread(config):
                yield chunk, _extract_chunk(chunk, config)
        if queue:
            started.result()
        while queue or futures:
            # Keep each worker at most two chunks ahead; the rest stays for this process.
            while queue and len(futures) < 2 * workers:
                chunk = queue.popleft()
                futures[pool.submit(_extract_chunk, chunk, config)] = chunk
            for future in [f for f in futures if f.done()]:
                yield futures.pop(future), future.result()
            if queue:
                chunk = queue.pop()
                with _one_blas_thread(config):
                    yield chunk, _extract_chunk(chunk, config)
            elif futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield futures.pop(future), future.result()
    except BrokenProcessPool:
        raise FeatureError(
            "A feature-extraction worker process stopped unexpectedly (out of memory?). "
            "Clips done so far are cached; run again, or use n_jobs=1 to extract in one process."
        ) from None
    finally:
        for future in futures:
            future.cancel()
        if started.done():
            # Waits for the pool's threads too, so the next call finds one thread and may fork.
            pool.shutdown(wait=True, cancel_futures=True)
        else:
            # This process did all the work before the workers were up: don't wait for them
            # (a process start holds the pool's lock); the helper thread closes the pool.
            starter.submit(pool.shutdown, wait=True, cancel_futures=True)
        if starter is not None:
            starter.shutdown(wait=False)


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
    return workspace.cache_dir() / DB_NAME


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
            os.replace(path, path.with_name(f"{DB_NAME}.corrupt-{time.time_ns()}"))
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
    for batch in _batches(unique):
        marks = ",".join("?" * len(batch))
        for path, size, mtime_ns, digest in db.execute(
            f"SELECT path, size, mtime_ns, hash FROM files WHERE path IN ({marks})", batch
        ):
            if stats.get(path) == (size, mtime_ns):
                known[path] = digest
    fresh = []
    for path in unique:
        if path not in known and os.path.isfile(path):
            try:
                known[path] = fingerprint(path)
            except OSError:
                continue
            fresh.append((path, *stats[path], known[path]))
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
