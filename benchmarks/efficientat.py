"""EfficientAT extraction speed beside YAMNet's, in the same run: seconds of audio per second.

    python benchmarks/efficientat.py                # 120 ESC-10 clips (10 minutes of audio)
    python benchmarks/efficientat.py --clips 400    # all of ESC-10
    python benchmarks/efficientat.py --model mn10_as
    python benchmarks/efficientat.py --extract-many  # also audioclf's extract_many, cold cache, 1 vs 2 processes

Every row starts from the FLAC files and includes decoding and resampling
(44.1 kHz -> 32 kHz for EfficientAT, -> 16 kHz for YAMNet), then:
  yamnet             audioclf's batched YAMNet TFLite (extract_yamnet_many), chunks of 32 clips
  efficientat        load_model(...).embed_many: NumPy front end + the Keras network as one
                     tf.function (dynamic batch and length), clips of one length batched
Each runs in one process (TFLite / TensorFlow use both cores for the network;
decoding and the front end use one) and in 2 worker processes x 1 thread over
chunks of clips (how audioclf's process pool runs extraction). Audio seconds
per CPU second is printed too: on a shared machine it moves less than wall time.
With --extract-many, the same clips through ``audioclf.features.extract_many`` with
an empty feature cache, as a training run extracts them: EfficientAT (frames) in this
process (the default) and with ``n_jobs=2`` (this process and one forkserver worker,
which imports TensorFlow and builds the network first), and YAMNet's default.
Then the median latency of one 5 s clip (already decoded) over 30 calls.
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

from audioclf.audio import load_audio  # noqa: E402

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
ESC10 = SHARED / "datasets" / "esc10"
YAMNET = SHARED / "models" / "yamnet" / "yamnet.tflite"
EFFICIENTAT = SHARED / "models" / "efficientat" / "mn04_as_mAP_432.pt"
CHUNK = 32  # clips per call / per pool task
LATENCY_CALLS = 30


def esc10_paths(n: int, seed: int = 0) -> list[Path]:
    paths = sorted(ESC10.glob("*/*.flac"))
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False))]


def yamnet_chunk(paths: list[Path], spec: str) -> tuple[int, float]:
    """Decode ``paths`` at 16 kHz and run YAMNet: (clips done, CPU seconds of this process)."""
    from audioclf.features import YAMNetConfig
    from audioclf.features import yamnet as Y

    cpu = time.process_time()
    clips = [load_audio(p, Y.SAMPLE_RATE) for p in paths]
    return len(Y.extract_yamnet_many(clips, YAMNetConfig(spec))), time.process_time() - cpu


def efficientat_chunk(paths: list[Path], spec: str) -> tuple[int, float]:
    """Decode ``paths`` at 32 kHz and embed them with EfficientAT: (clips done, CPU seconds of this process)."""
    from audioclf.features import efficientat as E

    cpu = time.process_time()
    model = E.load_model(spec, download=False)
    out = model.embed_many([load_audio(p, E.SAMPLE_RATE).samples for p in paths])
    assert all(np.isfinite(o.logits).all() for o in out)
    return len(out), time.process_time() - cpu


def decode_chunk(paths: list[Path], spec: str) -> tuple[int, float]:
    """Only decode and resample to 32 kHz: the floor under every EfficientAT row."""
    cpu = time.process_time()
    return len([load_audio(p, 32000) for p in paths]), time.process_time() - cpu


def run_here(fn, paths: list[Path], spec: str) -> float:
    """In this process; returns its CPU seconds."""
    return sum(fn(paths[i:i + CHUNK], spec)[1] for i in range(0, len(paths), CHUNK))


def run_pool(fn, paths: list[Path], spec: str, pool: ProcessPoolExecutor) -> float:
    """Chunks over the pool's workers (each 1 thread: YAMNet and EfficientAT default to it in a worker)."""
    done = [f.result() for f in [pool.submit(fn, paths[i:i + CHUNK], spec) for i in range(0, len(paths), CHUNK)]]
    assert sum(n for n, _ in done) == len(paths)
    return sum(cpu for _, cpu in done)


def _warm(fn, paths: list[Path], spec: str, barrier) -> None:
    fn(paths, spec)
    barrier.wait()  # holds this worker until the other one is warm too


def warm_pool(pool: ProcessPoolExecutor, fn, paths: list[Path], spec: str, workers: int) -> None:
    """Load the model (and trace the network) in every worker before timing."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(workers)
        for f in [pool.submit(_warm, fn, paths, spec, barrier) for _ in range(workers)]:
            f.result()


def extract_many_rows(paths: list[Path], model: str, yamnet: str) -> list[tuple[str, tuple[float, float]]]:
    """extract_many with an empty cache each time: (row name, (wall s, CPU s of this process))."""
    import tempfile

    from audioclf.features import CacheStats, EfficientATConfig, YAMNetConfig, extract_many

    out = []
    for name, cfg, jobs in (("extract_many efficientat, 1 process (default)", EfficientATConfig(model=model), None),
                            ("extract_many efficientat, n_jobs=2", EfficientATConfig(model=model), 2),
                            ("extract_many yamnet, 1 process (default)", YAMNetConfig(model=yamnet), None)):
        with tempfile.TemporaryDirectory() as home:
            os.environ["AUDIOCLF_HOME"] = home
            stats = CacheStats()
            cpu, start = time.process_time(), time.perf_counter()
            extract_many(paths, cfg, n_jobs=jobs, stats=stats)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            # A forkserver worker is not this process's child: its CPU time is not counted here.
            out.append((f"{name} [{max(1, stats.workers)} proc]", (wall, cpu if stats.workers <= 1 else float("nan"))))
            assert stats.computed == len(paths), stats
    return out


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds as ``fn`` reports them)."""
    start = time.perf_counter()
    cpu = fn(*args)
    return time.perf_counter() - start, cpu


def latency(embed, y: np.ndarray) -> float:
    embed(y)
    ms = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        embed(y)
        ms.append(1000 * (time.perf_counter() - start))
    return float(np.median(ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=120, help="ESC-10 clips to use (400 = all)")
    parser.add_argument("--model", default=str(EFFICIENTAT), help="EfficientAT checkpoint: a .pt path or a name")
    parser.add_argument("--yamnet", default=str(YAMNET), help="YAMNet .tflite file")
    parser.add_argument("--no-pool", action="store_true", help="skip the 2-process rows")
    parser.add_argument("--extract-many", action="store_true",
                        help="also time extract_many (cold cache): efficientat with 1 and 2 processes, yamnet")
    args = parser.parse_args()
    from audioclf.features import efficientat as E
    from audioclf.features import yamnet as Y

    paths = esc10_paths(args.clips)
    audio_s = sum(load_audio(p).duration for p in paths)
    print(f"{len(paths)} ESC-10 clips, {audio_s:.0f} s of audio, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}; EfficientAT {E.load_model(args.model, download=False).name}\n")

    rows: list[tuple[str, tuple[float, float]]] = [("decode + resample to 32 kHz only, 1 process",
                                                     timed(run_here, decode_chunk, paths, ""))]
    for label, fn, spec in (("yamnet", yamnet_chunk, args.yamnet), ("efficientat", efficientat_chunk, args.model)):
        run_here(fn, paths[:4], spec)  # load the model and trace the network before timing
        rows.append((f"{label}, 1 process", timed(run_here, fn, paths, spec)))
    if not args.no_pool:
        for label, fn, spec in (("yamnet", yamnet_chunk, args.yamnet), ("efficientat", efficientat_chunk, args.model)):
            with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
                warm_pool(pool, fn, paths[:4], spec, 2)
                rows.append((f"{label}, 2 processes x 1 thread", timed(run_pool, fn, paths, spec, pool)))

    if args.extract_many:
        rows += extract_many_rows(paths, args.model, args.yamnet)

    # Wall time is what a user waits for on this (shared) machine; CPU time is what the work costs.
    yamnet_best = min(wall for name, (wall, _) in rows if name.startswith("yamnet"))
    print(f"{'way (decoding included)':44} {'wall s':>7} {'x real time':>11} {'vs best yamnet':>14} "
          f"{'audio s/CPU s':>13}")
    for name, (wall, cpu) in rows:
        print(f"{name:44} {wall:7.2f} {audio_s / wall:11.0f} {yamnet_best / wall:13.2f}x {audio_s / cpu:13.0f}")
    print(f"(load average now {os.getloadavg()[0]:.1f})")

    y32 = load_audio(paths[0], E.SAMPLE_RATE).samples
    y16 = load_audio(paths[0], Y.SAMPLE_RATE).samples
    yam = Y.load_model(args.yamnet)
    eat = E.load_model(args.model, download=False)
    print(f"\nlatency of one {len(y32) / E.SAMPLE_RATE:.0f} s clip (decoded), median of {LATENCY_CALLS} calls:")
    print(f"  yamnet       {latency(lambda y: yam.run_windows(Y.frame_waveform(y)), y16):6.1f} ms")
    print(f"  efficientat  {latency(eat.embed, y32):6.1f} ms")


if __name__ == "__main__":
    main()
