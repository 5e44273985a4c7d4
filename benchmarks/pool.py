"""The hand-written worker pool (features.parallel.run_pool) vs joblib.Parallel (loky backend).

    python benchmarks/pool.py                  # 3,000 FSDD clips, MFCC, 2 rounds
    python benchmarks/pool.py --app            # also with a second thread alive (the app's case)
    python benchmarks/pool.py --limit 500 --rounds 1

Both run inside the real ``extract_many`` (same cache, same chunks of files, same
``extract_chunk`` task, progress in this process): the joblib variant below replaces
``features.parallel.run_pool`` for its calls, so only the pool differs. Each pool runs
in a fresh process of its own (a pool's leftover threads or workers would change how
the other starts its workers), which first extracts one clip (librosa imported, as in
a training run) and then times, one after the other:

  cold 1  ``extract_many`` with an empty feature cache, the first call of the process:
          ours forks its workers, loky starts its own (a command-line run, a training)
  warm    the same call again: every clip is served from the cache (no pool is started)
  cold 2  an empty cache again, a later call: loky's workers are still up (the app's case)
  small   an empty cache and the first ``--small`` clips: pool start-up dominates
  app     (``--app``) cold, with another thread alive: ours then takes its workers from a
          forkserver instead of forking, the first time in the process (the app's first run)

Rounds alternate which pool's process goes first; both must give the same features.
The ratios are joblib's / ours: above 1, ours is faster (wall) or cheaper (CPU seconds
of the process and all its workers). On a busy machine the CPU column is the steadier
one: where the kernel shares the cores between sessions (sched_autogroup), a second
process of ours gets no extra CPU, and wall time then shows each pool's overhead rather
than its parallelism. Run it with the repository on PYTHONPATH (workers import audioclf).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
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


def digest(results: list) -> str:
    """A fingerprint of all feature values, to check that both pools computed the same."""
    h = hashlib.sha256()
    for r in results:
        h.update(r.values.tobytes())
    return h.hexdigest()


def run_pool_process(pool: str, paths: list[str], jobs: int, small: int, app: bool) -> dict:
    """The timings of one pool in this (fresh) process: {scenario: (wall s, cpu s)}."""
    from audioclf.features import MFCCConfig, extract_many
    from audioclf.features.cache import clear_cache

    config = MFCCConfig()
    extract_many(paths[:1], config, n_jobs=1, cache=False)  # librosa imported here
    rows: dict[str, tuple[float, float]] = {}
    clear_cache()
    *rows["cold 1"], results = timed(pool, paths, config, jobs)
    *rows["warm"], _ = timed(pool, paths, config, jobs)
    clear_cache()
    *rows["cold 2"], _ = timed(pool, paths, config, jobs)
    clear_cache()
    *rows["small"], _ = timed(pool, paths[:small], config, jobs)
    if app:
        clear_cache()
        stop = threading.Event()
        other = threading.Thread(target=stop.wait)
        other.start()
        try:
            *rows["app"], _ = timed(pool, paths, config, jobs)
        finally:
            stop.set()
            other.join()
    return {"rows": rows, "digest": digest(results)}


def report(rounds: list[dict], sizes: dict[str, int]) -> None:
    """Wall seconds, clips per second and CPU seconds of each pool, and joblib / ours."""
    print(f"\n{'':10}{'ours s':>8}{'clips/s':>9}{'cpu s':>7}  {'joblib s':>8}{'clips/s':>9}{'cpu s':>7}"
          f"  {'joblib/ours wall':>16}{'cpu':>7}")

    def line(name: str, ours: list[float], lib: list[float], clips: int) -> None:
        print(f"{name:10}{ours[0]:8.2f}{clips / ours[0]:9.0f}{ours[1]:7.1f}  {lib[0]:8.2f}{clips / lib[0]:9.0f}"
              f"{lib[1]:7.1f}  {lib[0] / ours[0]:15.2f}x{lib[1] / max(ours[1], 1e-9):6.2f}x")

    for scenario, clips in sizes.items():
        if scenario not in rounds[0]["ours"]:
            continue
        for k, rnd in enumerate(rounds, 1):
            label = scenario if len(rounds) == 1 else f"{scenario} r{k}"
            line(label, rnd["ours"][scenario], rnd["joblib"][scenario], clips)
        if len(rounds) > 1:
            med = {pool: [statistics.median(r[pool][scenario][i] for r in rounds) for i in (0, 1)] for pool in POOLS}
            line(f"{scenario} med", med["ours"], med["joblib"], clips)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "datasets" / "fsdd", help="class-folder data set of wavs")
    ap.add_argument("--limit", type=int, default=0, help="use the first N clips (0: all)")
    ap.add_argument("--rounds", type=int, default=1, help="pairs of processes (one per pool) to time")
    ap.add_argument("--jobs", type=int, default=2, help="processes per pool (default 2)")
    ap.add_argument("--small", type=int, default=100, help="clips in the small-batch row")
    ap.add_argument("--app", action="store_true", help="also time a cold run with a second thread alive")
    ap.add_argument("--pool", choices=POOLS, help=argparse.SUPPRESS)  # internal: time this pool, print JSON
    args = ap.parse_args()

    paths = sorted(str(p) for p in args.data.glob("*/*.wav"))[: args.limit or None]
    if not paths:
        raise SystemExit(f"no wav files under {args.data}: it needs ../shared/datasets/fsdd or --data")
    small = min(args.small, len(paths))
    if args.pool:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["AUDIOCLF_HOME"] = tmp  # an empty workspace, so an empty cache
            print(json.dumps(run_pool_process(args.pool, paths, args.jobs, small, args.app)))
        return

    import joblib

    print(f"{len(paths)} clips, MFCC, {args.jobs} processes per pool, joblib {joblib.__version__}; "
          f"load average {loadavg()}", flush=True)
    rounds = []
    for k in range(args.rounds):
        rnd = {}
        for pool in POOLS if k % 2 == 0 else POOLS[::-1]:
            cmd = [sys.executable, __file__, "--pool", pool, "--data", str(args.data), "--limit", str(args.limit),
                   "--jobs", str(args.jobs), "--small", str(args.small), *(["--app"] if args.app else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"the {pool} process failed:\n{proc.stderr}")
            rnd[pool] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"round {k + 1}, {pool} done; load average {loadavg()}", flush=True)
        if rnd["ours"]["digest"] != rnd["joblib"]["digest"]:
            raise SystemExit("the two pools gave different features")
        rounds.append({pool: rnd[pool]["rows"] for pool in POOLS})
    report(rounds, {"cold 1": len(paths), "warm": len(paths), "cold 2": len(paths), "small": small, "app": len(paths)})


if __name__ == "__main__":
    main()
