"""The hand-written worker pool (features.parallel.run_pool) vs joblib.Parallel (loky backend).

    python benchmarks/pool.py                  # 3,000 FSDD clips, MFCC, 2 rounds
    python benchmarks/pool.py --app            # also with a second thread alive (the app's case)
    python benchmarks/pool.py --limit 500 --rounds 1

Both run inside the real ``extract_many`` (same cache, same chunks of files, same
``extract_chunk`` task, progress in this process): the joblib variant below replaces
``features.parallel.run_pool`` for its calls, so only the pool differs. Per round and pool:

  cold    ``extract_many`` with an empty feature cache: every clip is computed
  warm    the same call again: every clip is served from the cache (no pool is started)
  small   an empty cache and the first ``--small`` clips: pool start-up dominates
  app     (``--app``) cold, with another thread alive: ours then takes its workers from a
          forkserver instead of forking (loky always starts its own processes)

Before timing, this process extracts one clip (librosa imported, as in a training run).
Our pool forks from a one-thread process and extracts in this process while the
workers start; loky keeps its workers between calls, so its round-1 "cold" pays for
starting them (a command-line run's case) and later rounds find them ready (the app's).
Rounds alternate which pool goes first. The ratios are joblib's / ours: above 1, ours
is faster (wall) or cheaper (CPU seconds of this process and all its workers). On a
busy machine the CPU column is the steadier one: where the kernel shares the cores
between sessions (sched_autogroup), a second process of ours gets no extra CPU, and
wall time then shows each pool's overhead rather than its parallelism.
Run it with the repository on PYTHONPATH (workers import audioclf).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
POOLS = ("ours", "joblib")


def _chunk_task(chunk: list[str], config) -> tuple[list[str], list]:
    from audioclf.features.parallel import extract_chunk

    return chunk, extract_chunk(chunk, config)


def joblib_pool(paths: list[str], config, jobs: int):
    """run_pool's contract with joblib: yield (chunk, results) as chunks finish, any order."""
    import math

    from joblib import Parallel, delayed

    from audioclf.features.parallel import CHUNK, MIN_CHUNKS_PER_WORKER, chunked

    size = max(1, min(CHUNK, math.ceil(len(paths) / (jobs * MIN_CHUNKS_PER_WORKER))))
    run = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    yield from run(delayed(_chunk_task)(chunk, config) for chunk in chunked(paths, size))


def cpu_seconds() -> float:
    """CPU time used so far by this process and every process below it, live or ended.

    Live descendants are read from /proc (a forkserver's workers are not our children);
    ended ones are in their parent's reaped-children times.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parent, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        used[int(entry)] = sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    me, below = os.getpid(), set()
    grew = True
    while grew:
        new = {pid for pid, ppid in parent.items() if (ppid == me or ppid in below) and pid not in below}
        below |= new
        grew = bool(new)
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + sum(used[pid] for pid in below)


def timed(pool: str, paths: list[str], config, jobs: int) -> tuple[float, float, list]:
    """Wall seconds and CPU seconds (all processes) for extract_many(paths) with the given pool."""
    from audioclf.features import CacheStats, extract_many
    from audioclf.features import parallel

    ticks: list[int] = []
    stats = CacheStats()
    with mock.patch.object(parallel, "run_pool", joblib_pool) if pool == "joblib" else nullcontext():
        cpu, start = cpu_seconds(), time.perf_counter()
        out = extract_many(paths, config, n_jobs=jobs, progress=lambda d, t: ticks.append(d), stats=stats)
        seconds = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
    assert ticks[-1] == len(paths) and stats.errors == 0, (ticks[-1:], stats)
    return seconds, cpu, out


def same(a: list, b: list) -> bool:
    import numpy as np

    return len(a) == len(b) and all(np.array_equal(x.values, y.values) for x, y in zip(a, b))


def one_round(k: int, paths: list[str], config, jobs: int, small: int, app: bool) -> dict:
    from audioclf.features.cache import clear_cache

    order = POOLS if k % 2 == 0 else POOLS[::-1]
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    results = {}
    for pool in order:
        clear_cache()
        *rows["cold", pool], results[pool] = timed(pool, paths, config, jobs)
        *rows["warm", pool], _ = timed(pool, paths, config, jobs)
        clear_cache()
        *rows["small", pool], _ = timed(pool, paths[:small], config, jobs)
        if app:
            clear_cache()
            stop = threading.Event()
            other = threading.Thread(target=stop.wait)
            other.start()
            try:
                *rows["app", pool], _ = timed(pool, paths, config, jobs)
            finally:
                stop.set()
                other.join()
    if not same(results["ours"], results["joblib"]):
        raise SystemExit("the two pools gave different features")
    return rows


def report(rounds: list[dict], n: int, small: int) -> None:
    """Wall seconds, clips per second and CPU seconds of each pool, and joblib / ours."""
    sizes = {"cold": n, "warm": n, "small": small, "app": n}
    print(f"\n{'':9}{'ours s':>8}{'clips/s':>9}{'cpu s':>7}  {'joblib s':>8}{'clips/s':>9}{'cpu s':>7}"
          f"  {'joblib/ours wall':>16}{'cpu':>7}")

    def line(name: str, ours: tuple[float, float], lib: tuple[float, float], clips: int) -> None:
        print(f"{name:9}{ours[0]:8.2f}{clips / ours[0]:9.0f}{ours[1]:7.1f}  {lib[0]:8.2f}{clips / lib[0]:9.0f}"
              f"{lib[1]:7.1f}  {lib[0] / ours[0]:15.2f}x{lib[1] / max(ours[1], 1e-9):6.2f}x")

    for scenario, clips in sizes.items():
        if (scenario, "ours") not in rounds[0]:
            continue
        for k, rows in enumerate(rounds, 1):
            line(f"{scenario} {k}", rows[scenario, "ours"], rows[scenario, "joblib"], clips)
        if len(rounds) > 1:
            med = {pool: tuple(statistics.median(r[scenario, pool][i] for r in rounds) for i in (0, 1))
                   for pool in POOLS}
            line(f"{scenario} med", med["ours"], med["joblib"], clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "datasets" / "fsdd", help="class-folder data set of wavs")
    ap.add_argument("--limit", type=int, default=0, help="use the first N clips (0: all)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="processes per pool (default 2)")
    ap.add_argument("--small", type=int, default=100, help="clips in the small-batch row")
    ap.add_argument("--app", action="store_true", help="also time a cold run with a second thread alive")
    ap.add_argument("--home", type=Path, help="workspace (default: a temporary one)")
    args = ap.parse_args()

    paths = sorted(str(p) for p in args.data.glob("*/*.wav"))[: args.limit or None]
    if not paths:
        raise SystemExit(f"no wav files under {args.data}: it needs ../shared/datasets/fsdd or --data")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AUDIOCLF_HOME"] = str(args.home or tmp)
        import joblib

        from audioclf.features import MFCCConfig, extract_many

        extract_many(paths[:1], MFCCConfig(), n_jobs=1, cache=False)  # librosa imported here
        print(f"{len(paths)} clips, MFCC, {args.jobs} processes per pool, joblib {joblib.__version__}; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        rounds = []
        for k in range(args.rounds):
            rounds.append(one_round(k, paths, MFCCConfig(), args.jobs, min(args.small, len(paths)), args.app))
            print(f"round {k + 1} done; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        report(rounds, len(paths), min(args.small, len(paths)))


if __name__ == "__main__":
    main()
