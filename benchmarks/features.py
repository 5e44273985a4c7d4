"""Feature-extraction speed on FSDD: the plain per-file librosa loop vs extract_many, cold and warm.

    python benchmarks/features.py                      # spectral, mfcc (and yamnet if the model is there)
    python benchmarks/features.py --only mfcc --limit 500
    python benchmarks/features.py --only mfcc --scaling  # cold time for 250 ... 3000 clips

For each extractor, in one process:
  plain   a per-file ``librosa.load`` + ``librosa.feature.*`` loop, the way a notebook does it
          (YAMNet: a per-file ``extract`` loop with no cache and no batching across clips)
  1st     ``extract_many`` with an empty cache, the first call of this process: includes starting
          the workers (forked from this one-thread process, so librosa is already in them)
  cold    the same again with an empty cache (a later call of the same process)
  warm    ``extract_many`` again: stat + one cache read
Peak RSS is the sum over this process and its workers, sampled from /proc while extracting
(a forkserver's workers are not our children, so getrusage(RUSAGE_CHILDREN) would not see
them). The sampler is a thread, and a process with threads does not fork its workers: the
memory row is the forkserver path, the app's.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audioclf.features import (  # noqa: E402
    CacheStats, MFCCConfig, SpectralConfig, YAMNetConfig, extract_file, extract_many,
)

SHARED = ROOT.parent / "shared"
SCALING = (250, 500, 1000, 2000, 3000)
SAMPLE_S = 0.05


def plain_spectral(path: Path, cfg: SpectralConfig) -> None:
    import librosa

    y, sr = librosa.load(path, sr=cfg.sr)
    kw = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length)
    librosa.feature.mfcc(y=y, sr=sr, n_mfcc=cfg.n_mfcc, n_mels=cfg.n_mels, **kw)
    librosa.feature.spectral_centroid(y=y, sr=sr, **kw)
    librosa.feature.spectral_rolloff(y=y, sr=sr, **kw)
    librosa.feature.zero_crossing_rate(y, frame_length=cfg.n_fft, hop_length=cfg.hop_length)
    librosa.feature.chroma_stft(y=y, sr=sr, **kw)
    librosa.feature.rms(y=y, frame_length=cfg.n_fft, hop_length=cfg.hop_length)


def plain_mfcc(path: Path, cfg: MFCCConfig) -> None:
    import librosa

    y, sr = librosa.load(path, sr=cfg.sr)
    if cfg.trim_db is not None:  # the same features as ours: the default trims silence first
        y, _ = librosa.effects.trim(y, top_db=cfg.trim_db, frame_length=cfg.n_fft, hop_length=cfg.hop_length)
    librosa.feature.mfcc(y=y, sr=sr, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                         n_mels=cfg.n_mels, fmax=cfg.fmax)


def plain_yamnet(path: Path, cfg: YAMNetConfig) -> None:
    from audioclf.features import extract_file

    extract_file(path, cfg)


PLAIN = {"spectral": plain_spectral, "mfcc": plain_mfcc, "yamnet": plain_yamnet}


class TreeSampler:
    """Peak resident memory and CPU seconds of this process and its descendants, from /proc.

    Pool workers are the forkserver's children, so getrusage(RUSAGE_CHILDREN) misses them.
    """

    def __init__(self) -> None:
        self.peak = 0
        self._cpu: dict[int, float] = {}
        self._start = _cpu_of_tree()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu(self) -> float:
        """CPU seconds used by the tree since the sampler started (last 50 ms of workers may be missed)."""
        return sum(t - self._start.get(pid, 0.0) for pid, t in self._cpu.items())

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(SAMPLE_S)

    def _sample(self) -> None:
        rss = 0
        for pid, (cpu, resident) in _tree().items():
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), cpu)
            rss += resident
        self.peak = max(self.peak, rss)


def _tree() -> dict[int, tuple[float, int]]:
    """pid -> (CPU seconds, resident bytes) for this process and all descendants (Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return {os.getpid(): (r.ru_utime + r.ru_stime, r.ru_maxrss * 1024)}
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    out, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if pid in stats:  # fields after the name: state ppid ... utime(11) stime(12) ... rss(21)
            f = stats[pid]
            out[pid] = ((int(f[11]) + int(f[12])) / tick, int(f[21]) * page)
    return out


def _cpu_of_tree() -> dict[int, float]:
    return {pid: cpu for pid, (cpu, _) in _tree().items()}


def fresh_workspace() -> None:
    os.environ["AUDIOCLF_HOME"] = tempfile.mkdtemp(prefix="audioclf-bench-")


def time_plain(paths: list[Path], cfg) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for p in paths:
        PLAIN[cfg.kind](p, cfg)
    return time.perf_counter() - start, time.process_time() - cpu


def time_many(paths: list[Path], cfg, jobs: int | None) -> tuple[float, CacheStats]:
    stats = CacheStats()
    start = time.perf_counter()
    out = extract_many(paths, cfg, n_jobs=jobs, stats=stats)
    elapsed = time.perf_counter() - start
    assert len(out) == len(paths) and stats.errors == 0, stats
    return elapsed, stats


def bench(kind: str, cfg, paths: list[Path], jobs: int | None) -> dict:
    n = len(paths)
    # Imports and model loads happen before the clock, in this process, for both ways;
    # the workers' start-up is part of "1st".
    PLAIN[kind](paths[0], cfg)
    extract_file(paths[0], cfg)
    plain, plain_cpu = time_plain(paths, cfg)
    # Timed runs carry no sampler: its /proc scans every 50 ms take this process's
    # GIL and CPU from the extraction and roughly halved the measured speed.
    fresh_workspace()
    first, cold_stats = time_many(paths, cfg, jobs)  # includes starting the workers
    fresh_workspace()
    cold, _ = time_many(paths, cfg, jobs)  # empty cache again, a later call
    warm, warm_stats = time_many(paths, cfg, jobs)
    assert warm_stats.cached == n, warm_stats
    fresh_workspace()
    with TreeSampler() as tree:  # memory and CPU of a cold run, not timed
        time_many(paths, cfg, jobs)
    return dict(kind=kind, n=n, plain=n / plain, first=n / first, cold=n / cold, warm=n / warm,
                first_x=plain / first, cold_x=plain / cold, warm_x=plain / warm, rss=tree.peak,
                workers=cold_stats.workers, plain_cpu=plain_cpu, cold_cpu=tree.cpu)


def scaling(kind: str, cfg, paths: list[Path], jobs: int | None) -> None:
    print(f"\nscaling, {kind}, cold cache (fresh workspace per row):")
    print(f"{'clips':>6} {'seconds':>8} {'ms/clip':>8} {'clips/s':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    for n in SCALING:
        if n > len(paths):
            break
        fresh_workspace()
        t, _ = time_many(paths[:n], cfg, jobs)
        fresh_workspace()
        with TreeSampler() as tree:  # CPU and memory from a second, untimed cold run
            time_many(paths[:n], cfg, jobs)
        print(f"{n:6d} {t:8.2f} {1000 * t / n:8.2f} {n / t:8.0f} {tree.cpu:8.1f} {tree.peak / 2**20:13.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "datasets" / "fsdd", help="class-folder data set of wavs")
    ap.add_argument("--yamnet", type=Path, default=SHARED / "models" / "yamnet" / "yamnet.tflite")
    ap.add_argument("--only", nargs="+", choices=sorted(PLAIN), help="extractors to run (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="use the first N clips (sorted)")
    ap.add_argument("--jobs", type=int, default=None, help="n_jobs for extract_many (default: all cores)")
    ap.add_argument("--scaling", action="store_true", help="also time cold extraction of 250..3000 clips")
    args = ap.parse_args()

    paths = sorted(args.data.glob("*/*.wav"))
    if not paths:
        sys.exit(f"No wav files under {args.data}/<class>/; pass --data.")
    # Interleave classes so every prefix (limit, scaling rows) is a mix of them.
    paths = sorted(paths, key=lambda p: (p.stem.split("_", 1)[-1], p.parent.name))[: args.limit]

    configs = {"spectral": SpectralConfig(), "mfcc": MFCCConfig()}
    if args.yamnet.is_file():
        configs["yamnet"] = YAMNetConfig(model=str(args.yamnet))
    elif not args.only or "yamnet" in args.only:
        print(f"(yamnet skipped: no model at {args.yamnet})")
    kinds = [k for k in configs if not args.only or k in args.only]

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(paths)} clips from {args.data}, {cores} cores, load average {load:.1f} at start\n")
    print(f"{'extractor':9} {'plain/s':>8} {'1st/s':>8} {'cold/s':>8} {'warm/s':>9} {'1st x':>7} {'cold x':>7} "
          f"{'warm x':>8} {'workers':>7} {'plain CPU s':>11} {'cold CPU s':>10} {'peak RSS MiB':>13}")
    for kind in kinds:
        r = bench(kind, configs[kind], paths, args.jobs)
        print(f"{kind:9} {r['plain']:8.0f} {r['first']:8.0f} {r['cold']:8.0f} {r['warm']:9.0f} {r['first_x']:6.2f}x "
              f"{r['cold_x']:6.2f}x {r['warm_x']:7.0f}x {r['workers']:7d} {r['plain_cpu']:11.1f} "
              f"{r['cold_cpu']:10.1f} {r['rss'] / 2**20:13.0f}", flush=True)
    print("\n(clips per second; 'x' = wall-clock speed-up over plain; '1st' = empty cache in a process whose")
    print(" extraction workers must still start; 'cold' = empty cache, a later call; CPU s = all processes,")
    print(f" so on an idle machine cold wall ~ CPU / {cores};")
    print(" peak RSS = this process + workers during a cold run)")
    if args.scaling:
        for kind in kinds:
            if kind != "yamnet":
                scaling(kind, configs[kind], paths, args.jobs)


if __name__ == "__main__":
    main()
