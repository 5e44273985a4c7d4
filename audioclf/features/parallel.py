"""Running feature extraction over many clips: in this process or in a process pool.

`plan_jobs()` decides how many processes a batch deserves and `extract_chunks()`
yields ``(paths, results)`` chunk by chunk as they finish, in any order, with an
AudioError in place of the features of a file that cannot be read. Nothing here
caches: `features.cache.extract_many` serves hits from its disk cache and sends
only the misses here.

Misses go to the pool in chunks of files to amortise inter-process traffic.
Workers are forked when that is safe (one thread, no TensorFlow: a command-line
extraction), which makes them start at once; otherwise (the app's threads, a
process with TensorFlow) they come from a forkserver that has imported librosa
once, or are spawned. Workers import librosa, never TensorFlow. While workers
start, this process extracts too, so nothing waits for them.
The pretrained networks (YAMNet, EfficientAT: ``PRETRAINED``) run in this process
by default, batching many clips per model call (``extract_yamnet_many``,
``extract_efficientat_many``): their runtimes use the cores, and the model
stays loaded for prediction.
"""
from __future__ import annotations

import importlib
import math
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext

from audioclf.audio import AudioError, Clip, load_audio
from audioclf.features import FeatureConfig, FeatureError, Features, extract_file, target_rate

CHUNK = 32  # files per pool task: amortises pickling/IPC, still gives smooth progress
MIN_CHUNKS_PER_WORKER = 4  # small batches get smaller chunks so both cores stay busy
IN_PROCESS_BELOW = 16  # with n_jobs=None, fewer misses than this are not worth a pool
# Preloaded once in the forkserver, so every pool after the first starts in milliseconds.
WORKER_PRELOAD = ["audioclf.features.spectral"]

Result = Features | AudioError
PRETRAINED = ("yamnet", "efficientat")  # feature kinds computed by a network: whole chunks per call


def default_jobs() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def extract_chunks(paths: list[str], config: FeatureConfig, jobs: int) -> Iterator[tuple[list[str], list[Result]]]:
    """Yield ``(chunk of paths, their results)`` as chunks finish, in any order.

    ``jobs`` comes from :func:`plan_jobs`: 1 extracts in this process, more starts
    ``jobs - 1`` worker processes that work alongside this one.
    """
    if jobs > 1:
        yield from run_pool(paths, config, jobs)
        return
    if config.kind in PRETRAINED:
        yield from decode_ahead(paths, config)
        return
    with one_blas_thread(config):
        for chunk in chunked(paths, 1):
            yield chunk, extract_chunk(chunk, config)


def decode_ahead(paths: list[str], config: FeatureConfig) -> Iterator[tuple[list[str], list[Result]]]:
    """A network's chunks in this process, a helper thread decoding the next chunk meanwhile.

    Decoding and resampling (libsndfile, soxr) and the network (TensorFlow, TFLite)
    release the GIL, so on two cores the next chunk's audio is ready when the network
    is done with this one. The thread ends with the extraction.
    """
    chunks = chunked(paths, CHUNK)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audioclf-decode") as helper:
        pending = helper.submit(decode_chunk, chunks[0], config) if chunks else None
        for i, chunk in enumerate(chunks):
            loaded = pending.result()
            if i + 1 < len(chunks):
                pending = helper.submit(decode_chunk, chunks[i + 1], config)
            yield chunk, extract_decoded(loaded, config)


def _extract_one(path: str, config: FeatureConfig) -> Result:
    try:
        return extract_file(path, config)
    except AudioError as exc:
        return exc
    except FeatureError:
        raise  # a bad config is the caller's mistake, not this file's
    except Exception as exc:  # noqa: BLE001
        if config.kind in PRETRAINED:
            raise  # model problems (missing, broken) concern every file: say so once
        # One odd file must not sink a 3,000-clip extraction.
        return AudioError(f"'{path}' could not be analysed ({type(exc).__name__}: {exc}); skipping it.")


def extract_chunk(paths: list[str], config: FeatureConfig) -> list[Result]:
    """Pool task: a list of files in, a list of results out (one pickle each way)."""
    if config.kind not in PRETRAINED:
        return [_extract_one(p, config) for p in paths]
    return extract_decoded(decode_chunk(paths, config), config)


def decode_chunk(paths: list[str], config: FeatureConfig) -> list[Clip | AudioError]:
    """Each file decoded at the config's rate, or the AudioError saying why it cannot be."""
    loaded: list[Clip | AudioError] = []
    for path in paths:
        try:
            loaded.append(load_audio(path, sr=target_rate(config)))
        except AudioError as exc:
            loaded.append(exc)
    return loaded


def extract_decoded(loaded: list[Clip | AudioError], config: FeatureConfig) -> list[Result]:
    """A network's features of decoded clips, all in one batch (AudioErrors stay in place)."""
    # The networks run fastest with many clips (or their windows) in one model call.
    if config.kind == "yamnet":
        from audioclf.features.yamnet import extract_yamnet_many as extract_batch
    else:
        from audioclf.features.efficientat.features import extract_efficientat_many as extract_batch

    clips = [c for c in loaded if isinstance(c, Clip)]
    feats = iter(extract_batch(clips, config) if clips else [])
    return [c if isinstance(c, AudioError) else next(feats) for c in loaded]


def one_blas_thread(config: FeatureConfig):
    """Single-threaded BLAS while extracting librosa features.

    Their matrix products are tiny (mel bank x a few dozen frames): waking a BLAS
    thread pool for each costs ~15x the product itself. Not for the networks, whose
    runtimes manage their own threads.
    """
    if config.kind in PRETRAINED:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _init_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # one worker per core already


def plan_jobs(n_jobs: int | None, n_todo: int, config: FeatureConfig) -> int:
    """Processes to extract ``n_todo`` clips with: 1 (this one alone) or a pool's size.

    ``n_jobs=None`` means every core for a batch worth a pool; FeatureError for a bad value.
    """
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
        raise FeatureError(f"n_jobs must be a positive whole number or None, got {n_jobs!r}.")
    if n_todo <= 1 or (config.kind == "yamnet" and (n_jobs is None or not _yamnet_is_tflite(config))):
        # YAMNet: by default one process, where TFLite's own threads use the cores and
        # the model stays loaded for prediction; a pool only on request and only for
        # TFLite (with TF Hub/SavedModel every worker would import TensorFlow).
        return 1
    if config.kind == "efficientat" and n_jobs is None:
        # Likewise one process by default: each worker would import TensorFlow and build
        # the network first (benchmarks/efficientat.py measures both ways).
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


def chunked(items: list, size: int) -> list[list]:
    """`items` cut into lists of `size` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def fork_is_safe(config: FeatureConfig) -> bool:
    """Fork only for librosa features, from a process with one thread and no TensorFlow.

    A forked child inherits librosa already imported, so it starts in milliseconds
    (a forkserver worker first imports librosa, ~1-2 s). But fork copies just the
    calling thread: a lock another thread holds (TensorFlow's thread pools, a web
    server's threads, a loaded YAMNet interpreter's) stays locked in the child forever.
    """
    return (config.kind not in PRETRAINED and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1
            and not any(name == "tensorflow" or name.startswith("tensorflow.") for name in sys.modules))


def pool_context(config: FeatureConfig) -> multiprocessing.context.BaseContext:
    """How to start workers: fork when :func:`fork_is_safe`, else a forkserver, else spawn."""
    if fork_is_safe(config):
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


def run_pool(paths: list[str], config: FeatureConfig, jobs: int) -> Iterator[tuple[list[str], list[Result]]]:
    """Yield (chunk, results) from ``jobs - 1`` worker processes AND this process.

    Starting workers takes seconds (the forkserver imports librosa, and starting a
    process blocks until it has), so they start from a helper thread while this
    process, which often has librosa loaded already, works through chunks from the
    other end of the queue, and goes on taking chunks once they are up.
    """
    size = max(1, min(CHUNK, math.ceil(len(paths) / (jobs * MIN_CHUNKS_PER_WORKER))))
    queue = deque(chunked(paths, size))
    workers = jobs - 1
    ctx = pool_context(config)
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
            with one_blas_thread(config):
                yield chunk, extract_chunk(chunk, config)
        if queue:
            started.result()
        while queue or futures:
            # Keep each worker at most two chunks ahead; the rest stays for this process.
            while queue and len(futures) < 2 * workers:
                chunk = queue.popleft()
                futures[pool.submit(extract_chunk, chunk, config)] = chunk
            for future in [f for f in futures if f.done()]:
                yield futures.pop(future), future.result()
            if queue:
                chunk = queue.pop()
                with one_blas_thread(config):
                    yield chunk, extract_chunk(chunk, config)
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
