"""YAMNet speed: seconds of audio per second of compute (real-time factor), and latency.

    python benchmarks/yamnet.py                 # 600 FSDD clips
    python benchmarks/yamnet.py --clips 3000    # all of FSDD
    python benchmarks/yamnet.py --synthetic 60  # 60 synthetic 5 s clips instead

Ways compared, all on clips already decoded at 16 kHz (so only YAMNet is timed):
  plain              the .tflite file as shipped: one window per invoke, embedding read from
                     preserved intermediate tensors (experimental_preserve_all_tensors), 1 thread
  batched            extract_yamnet_many: in-memory rewritten model, windows of many clips per call
  batched, 2 threads the same with TFLite's own 2 intra-op threads
  batched, 2 procs   2 worker processes x 1 thread, chunks of clips
  extract_many       audioclf.features.cache.extract_many as the app calls it (cache off; includes decoding)
Then median and 95th percentile latency of one 5 s clip over 50 calls.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audioclf.audio import Clip, load_audio  # noqa: E402
from audioclf.features import YAMNetConfig  # noqa: E402
from audioclf.features import yamnet as Y  # noqa: E402
from audioclf.features.threads import THREADS_ENV  # noqa: E402

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
FSDD = SHARED / "datasets" / "fsdd"
TFLITE = SHARED / "models" / "yamnet" / "yamnet.tflite"
CHUNK = 32  # clips per batched call / per pool task
LATENCY_CALLS = 50


def fsdd_paths(n: int, seed: int = 0) -> list[Path]:
    paths = sorted(FSDD.glob("*/*.wav"))
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False))]


def synthetic(n: int, seconds: float = 5.0, seed: int = 0) -> list[Clip]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * Y.SAMPLE_RATE)) / Y.SAMPLE_RATE
    clips = []
    for i in range(n):
        y = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        clips.append(Clip(y.astype(np.float32), Y.SAMPLE_RATE, f"syn{i}"))
    return clips


def run_plain(clips: list[Clip], spec: str) -> None:
    model = Y.load_model(spec, num_threads=1, batch=0)
    for c in clips:
        model.run_windows(Y.frame_waveform(c.samples))


def run_batched(clips: list[Clip], spec: str, threads: int = 1) -> None:
    cfg = YAMNetConfig(spec)
    for i in range(0, len(clips), CHUNK):
        _batched_chunk(clips[i : i + CHUNK], cfg, threads)


def _batched_chunk(clips: list[Clip], cfg: YAMNetConfig, threads: int = 1) -> tuple[int, float]:
    """Pool task: (clips done, CPU seconds this process spent on them)."""
    os.environ[THREADS_ENV["yamnet"]] = str(threads)  # what extract_yamnet_many's load_model() picks up
    start = time.process_time()
    n = len(Y.extract_yamnet_many(clips, cfg))
    return n, time.process_time() - start


def run_pool(clips: list[Clip], spec: str, pool: ProcessPoolExecutor) -> float:
    """Batched over the pool's processes; returns the workers' CPU seconds."""
    cfg = YAMNetConfig(spec)
    futures = [pool.submit(_batched_chunk, clips[i : i + CHUNK], cfg) for i in range(0, len(clips), CHUNK)]
    done = [f.result() for f in futures]
    assert sum(n for n, _ in done) == len(clips)
    return sum(cpu for _, cpu in done)


def run_extract_many(paths: list[Path], spec: str) -> None:
    from audioclf.features.cache import extract_many

    out = extract_many([str(p) for p in paths], YAMNetConfig(spec), cache=False)
    assert len(out) == len(paths)


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds): this process's, or what ``fn`` reports for its workers."""
    wall, cpu = time.perf_counter(), time.process_time()
    worker_cpu = fn(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, (worker_cpu if isinstance(worker_cpu, float) else cpu)


def latency(spec: str, batch: int) -> tuple[float, float]:
    model = Y.load_model(spec, batch=batch)
    y = synthetic(1)[0].samples
    model.run_windows(Y.frame_waveform(y))  # warm-up
    ms = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        model.run_windows(Y.frame_waveform(y))
        ms.append(1000 * (time.perf_counter() - start))
    return float(np.median(ms)), float(np.percentile(ms, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=600, help="FSDD clips to use (3000 = all)")
    parser.add_argument("--synthetic", type=int, default=0, help="use this many synthetic 5 s clips instead")
    parser.add_argument("--model", default=str(TFLITE), help="YAMNet .tflite file")
    args = parser.parse_args()
    spec = str(Path(args.model).resolve())

    if args.synthetic:
        paths, clips = [], synthetic(args.synthetic)
        what = f"{len(clips)} synthetic 5 s clips"
    else:
        paths = fsdd_paths(args.clips)
        clips = [load_audio(p, Y.SAMPLE_RATE) for p in paths]
        what = f"{len(clips)} FSDD clips"
    audio_s = sum(c.duration for c in clips)
    windows = sum(Y.num_frames(len(c.samples)) for c in clips)
    print(f"{what}: {audio_s:.1f} s of audio, {windows} YAMNet windows, {os.cpu_count()} CPU cores\n")

    rows: list[tuple[str, tuple[float, float]]] = []
    run_plain(clips[:4], spec)  # load and warm both models before timing
    run_batched(clips[:4], spec)
    rows.append(("plain: 1 window/invoke, preserved tensors", timed(run_plain, clips, spec)))
    rows.append(("batched, 1 process x 1 thread", timed(run_batched, clips, spec, 1)))
    run_batched(clips[:4], spec, 2)
    rows.append(("batched, 1 process x 2 threads", timed(run_batched, clips, spec, 2)))
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        run_pool(clips[: 2 * CHUNK], spec, pool)  # start workers, load a model in each
        rows.append(("batched, 2 processes x 1 thread", timed(run_pool, clips, spec, pool)))
    if paths:
        try:
            rows.append(("cache.extract_many (cache off, decodes files)", timed(run_extract_many, paths, spec)))
        except ImportError:
            pass

    # Wall time is what a user waits for; CPU time (per core) is what the machine can do when
    # nothing else runs. The pool's CPU is its workers'; extract_many's workers aren't visible.
    plain = rows[0][1][0]
    print(f"{'way':48} {'wall s':>7} {'x real time':>11} {'vs plain':>8} {'audio s/CPU s':>13}")
    for name, (wall, cpu) in rows:
        per_cpu = f"{audio_s / cpu:13.0f}" if "extract_many" not in name else f"{'-':>13}"
        print(f"{name:48} {wall:7.2f} {audio_s / wall:11.0f} {plain / wall:7.2f}x {per_cpu}")

    print(f"\nlatency of one 5 s clip ({Y.num_frames(5 * Y.SAMPLE_RATE)} windows), {LATENCY_CALLS} calls:")
    for name, batch in (("plain", 0), ("batched", Y.BATCH)):
        med, p95 = latency(spec, batch)
        print(f"  {name:8} median {med:6.1f} ms   p95 {p95:6.1f} ms")


if __name__ == "__main__":
    main()
