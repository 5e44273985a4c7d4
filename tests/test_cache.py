"""extract_many: disk cache keyed by content and config, process pool, progress, bad files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audioclf import workspace
from audioclf.audio import AudioError
from audioclf.features import CacheStats, Features, MFCCConfig, SpectralConfig, extract_file, extract_many
from audioclf.features.cache import CACHE_DB, cache_size, clear_cache
from conftest import ROOT, tone

CFG = MFCCConfig(n_mfcc=13)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh, empty workspace (and so an empty cache) for each test."""
    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path / "ws"))
    return workspace.home()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Twelve short, different real wav files (tones at different pitches and lengths)."""
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i in range(12):
        path = folder / f"clip_{i:02d}.wav"
        sf.write(path, tone(200.0 + 90 * i, 0.2 + 0.05 * i, 16000, 0.4), 16000)
        paths.append(path)
    return paths


def same(a: Features, b: Features) -> bool:
    return a.names == b.names and np.array_equal(a.values, b.values) and np.array_equal(a.times, b.times)


def test_second_call_is_served_from_cache(home, clips):
    cold, warm = CacheStats(), CacheStats()
    first = extract_many(clips, CFG, n_jobs=1, stats=cold)
    assert (cold.total, cold.cached, cold.computed, cold.errors) == (12, 0, 12, 0)
    second = extract_many(clips, CFG, stats=warm)
    assert (warm.cached, warm.computed, warm.workers) == (12, 0, 0)
    assert all(same(a, b) for a, b in zip(first, second))
    assert all(same(a, extract_file(p, CFG)) for a, p in zip(second, clips))
    assert second[0].config == CFG and (home / "cache" / CACHE_DB).is_file()
    # Cached arrays are the caller's to modify.
    second[0].values *= 2
    assert same(extract_many(clips[:1], CFG)[0], first[0])


def test_changed_content_invalidates(home, tmp_path):
    path = tmp_path / "edit.wav"
    sf.write(path, tone(300.0, 0.5), 16000)
    before = extract_many([path], CFG)[0]
    sf.write(path, tone(1200.0, 0.5), 16000)  # same size, new content
    stats = CacheStats()
    after = extract_many([path], CFG, stats=stats)[0]
    assert stats.computed == 1 and stats.cached == 0
    assert not np.allclose(before.values, after.values)
    assert same(after, extract_file(path, CFG))


def test_cache_is_keyed_by_content_not_path(home, clips, tmp_path):
    extract_many(clips[:3], CFG)
    copy = tmp_path / "renamed.wav"
    shutil.copy(clips[1], copy)
    stats = CacheStats()
    result = extract_many([copy], CFG, stats=stats)[0]
    assert stats.cached == 1 and same(result, extract_file(clips[1], CFG))


def test_duplicate_content_is_computed_once(home, clips, tmp_path):
    copy = tmp_path / "dup.wav"
    shutil.copy(clips[0], copy)
    stats = CacheStats()
    out = extract_many([clips[0], copy, clips[0]], CFG, stats=stats)
    assert stats.computed == 1 and all(same(out[0], o) for o in out)


def test_different_config_is_a_different_entry(home, clips):
    extract_many(clips[:4], CFG)
    stats = CacheStats()
    out = extract_many(clips[:4], MFCCConfig(n_mfcc=20), stats=stats)
    assert stats.computed == 4 and stats.cached == 0 and out[0].values.shape[1] == 20
    spectral = extract_many(clips[:4], SpectralConfig(), stats=stats)
    assert stats.computed == 4 and spectral[0].names[-1] == "rms"


def test_progress_reaches_total_in_order(home, clips):
    calls = []
    extract_many(clips, CFG, n_jobs=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (12, 12) and calls[0] == (0, 12)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    warm = []
    extract_many(clips, CFG, progress=lambda d, t: warm.append((d, t)))
    assert warm == [(12, 12)]
    empty = []
    assert extract_many([], CFG, progress=lambda d, t: empty.append((d, t))) == []
    assert empty == [(0, 0)]


def test_bad_files_give_audio_errors_at_their_index(home, clips, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    missing = tmp_path / "gone.wav"
    paths = [clips[0], text, clips[1], missing]
    stats = CacheStats()
    out = extract_many(paths, CFG, n_jobs=1, stats=stats)
    assert isinstance(out[0], Features) and isinstance(out[2], Features)
    assert isinstance(out[1], AudioError) and "notes.wav" in str(out[1])
    assert isinstance(out[3], AudioError) and "does not exist" in str(out[3])
    assert stats.errors == 2 and stats.computed == 2


def test_parallel_matches_in_process(home, clips, tmp_path):
    text = tmp_path / "bad.wav"
    text.write_text("nope")
    paths = [*clips, text]
    serial = extract_many(paths, CFG, n_jobs=1, cache=False)
    stats = CacheStats()
    ticks = []
    parallel = extract_many(paths, CFG, n_jobs=2, cache=False, stats=stats, progress=lambda d, t: ticks.append(d))
    assert stats.workers == 2 and stats.computed == 12 and stats.errors == 1
    assert all(same(a, b) for a, b in zip(serial[:-1], parallel[:-1]))
    assert isinstance(parallel[-1], AudioError) and "bad.wav" in str(parallel[-1])
    assert ticks[-1] == 13 and len(ticks) > 2  # chunks report as they finish
    assert cache_size() == 0 or not (home / "cache" / CACHE_DB).exists()  # cache=False wrote nothing


def test_extract_chunks_yields_every_file_once_without_a_cache(home, clips, tmp_path):
    """parallel.extract_chunks, what extract_many sends its misses to, touches no cache:
    in this process or with a worker, every path comes back once, a bad one as an AudioError."""
    from audioclf.features.parallel import extract_chunks

    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    paths = [str(p) for p in [*clips, bad]]
    for jobs in (1, 2):
        got = {path: result for chunk, results in extract_chunks(paths, CFG, jobs)
               for path, result in zip(chunk, results, strict=True)}
        assert sorted(got) == sorted(paths)
        assert isinstance(got[str(bad)], AudioError)
        assert all(same(got[str(p)], extract_file(p, CFG)) for p in clips[:3])
    assert not (home / "cache" / CACHE_DB).exists()


def test_concurrent_writers_share_one_cache(home, clips):
    code = (
        "import sys; from audioclf.features import MFCCConfig, CacheStats, extract_many;"
        "s = CacheStats(); r = extract_many(sys.argv[1:], MFCCConfig(n_mfcc=13), n_jobs=1, stats=s);"
        "assert s.errors == 0; print(s.computed + s.cached)"
    )
    env = {**os.environ, "AUDIOCLF_HOME": str(home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *map(str, clips)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "12"
    stats = CacheStats()
    out = extract_many(clips, CFG, stats=stats)
    assert stats.cached == 12
    assert all(same(a, extract_file(p, CFG)) for a, p in zip(out, clips))


def test_corrupt_cache_file_is_replaced(home, clips):
    db = workspace.cache_dir() / CACHE_DB
    db.write_bytes(b"this is not an sqlite database" * 100)
    stats = CacheStats()
    out = extract_many(clips[:2], CFG, stats=stats)
    assert stats.computed == 2 and all(isinstance(o, Features) for o in out)
    assert list(workspace.cache_dir().glob(f"{CACHE_DB}.corrupt-*"))
    extract_many(clips[:2], CFG, stats=stats)
    assert stats.cached == 2
    clear_cache()
    assert cache_size() == 0


def test_bad_n_jobs(home, clips):
    from audioclf.features import FeatureError

    with pytest.raises(FeatureError, match="n_jobs"):
        extract_many(clips, CFG, n_jobs=0, cache=False)


def test_yamnet_scores_survive_the_cache(home, fsdd_small, yamnet_tflite, tmp_path, monkeypatch):
    pytest.importorskip("audioclf.features.yamnet")
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))  # another workspace: the owner's setting
    from audioclf.features import YAMNetConfig

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF")
    paths = [*sorted(fsdd_small.glob("*/*.wav"))[:3], bad]
    cfg = YAMNetConfig(model=str(yamnet_tflite))
    cold, warm = CacheStats(), CacheStats()
    first = extract_many(paths, cfg, stats=cold)
    assert cold.computed == 3 and isinstance(first[3], AudioError)
    assert first[0].values.shape[1] == 1024 and first[0].scores.shape == (first[0].n_frames, 521)
    second = extract_many(paths, cfg, stats=warm)
    assert warm.cached == 3 and warm.computed == 0
    for a, b in zip(first[:3], second[:3]):
        assert same(a, b) and np.array_equal(a.scores, b.scores)


def test_workers_fork_only_when_it_is_safe(home, clips):
    """A one-thread process without TensorFlow forks its workers (instant start) and gets the
    same features; a process with another thread, TensorFlow or YAMNet work does not fork."""
    code = """
import sys, threading
import numpy as np
from audioclf.features import MFCCConfig, YAMNetConfig, CacheStats, extract_many
from audioclf.features.parallel import pool_context
cfg, paths = MFCCConfig(n_mfcc=13), sys.argv[1:]
print(pool_context(cfg).get_start_method(), pool_context(YAMNetConfig()).get_start_method())
s = CacheStats()
forked = extract_many(paths, cfg, n_jobs=2, cache=False, stats=s)
serial = extract_many(paths, cfg, n_jobs=1, cache=False)
assert s.workers == 2 and all(np.array_equal(a.values, b.values) for a, b in zip(forked, serial))
assert threading.active_count() == 1  # the pool's threads are gone: the next call may fork again
stop = threading.Event()
t = threading.Thread(target=stop.wait); t.start()
print(pool_context(cfg).get_start_method())
stop.set(); t.join()
import tensorflow
assert threading.active_count() == 1
print(pool_context(cfg).get_start_method())
"""
    env = {**os.environ, "AUDIOCLF_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, clips)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fork", "forkserver", "forkserver", "forkserver"]


def _jobs_in_child(queue) -> None:
    from audioclf.features.parallel import plan_jobs

    queue.put(plan_jobs(None, 1000, CFG))


def test_a_worker_process_never_starts_a_pool_of_its_own():
    """A pool worker that extracts (a guard-less script re-run by spawn/forkserver) stays in
    its own process instead of starting pools recursively."""
    import multiprocessing

    from audioclf.features.parallel import default_jobs, plan_jobs

    assert plan_jobs(None, 1000, CFG) == default_jobs()  # here, in the main process: every core
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_jobs_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=120) == 1
    child.join(timeout=60)


def test_cache_records_silence_and_upgrades_an_older_cache_file(home, clips, tmp_path):
    import sqlite3

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(4000, np.float32), 16000)
    # A cache file as versions before the silence flag wrote it: no `silent` column.
    path = workspace.cache_dir() / CACHE_DB
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE features (key TEXT NOT NULL, hash TEXT NOT NULL, frames INTEGER NOT NULL, "
                   "dims INTEGER NOT NULL, names TEXT NOT NULL, vals BLOB NOT NULL, times BLOB NOT NULL, "
                   "scores BLOB, score_dims INTEGER, PRIMARY KEY (key, hash))")
    cold = extract_many([clips[0], quiet], CFG, n_jobs=1)
    warm = extract_many([clips[0], quiet], CFG, n_jobs=1)
    assert [f.silent for f in cold] == [False, True]
    assert [f.silent for f in warm] == [False, True]
