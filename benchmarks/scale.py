"""Extraction throughput: the local pool vs Ray (one node, two nodes) on this machine, and a cost model.

    python benchmarks/scale.py                        # 3,000 FSDD clips, YAMNet, 1 round
    python benchmarks/scale.py --features mfcc --rounds 2
    python benchmarks/scale.py --limit 500            # a quick look

Every mode runs in a fresh process with an empty feature cache and an empty
feature store, and extracts the same clips into a store (the output a cluster
job has):

  local   ``get_engine("local")``: the process pool and SQLite cache of today
  ray1    a Ray cluster of one node with 2 CPUs (``ray.cluster_utils.Cluster``), joined by address
  ray2    a Ray cluster of two nodes with 1 CPU each, on this machine

The timed part is the extraction job (on Ray: the actors start and load the
model, then decode, extract and write shards); starting the cluster and joining
it are printed apart, since a real cluster is up before the job. Each mode runs
two jobs in its process: "first" (the local pool loads YAMNet in this process;
Ray starts the actor pool) and "again" (the local model still loaded; Ray's warm
actors still up). The bar (Ray <= 1.3x the local pool) is judged on "again":
both sides warm, the cost a job adds in a session that runs several; "first"
is printed beside it, the cost of a session's first job. Every Ray service listens on
127.0.0.1. The overhead ratio is Ray's time over the local pool's in the same
run; rounds alternate the order of the modes. The cost model projects the
measured rate per CPU to 10^6 clips of 10 s (YAMNet: in model windows, since a
0.4 s FSDD clip costs one 0.975 s window like a 1 s clip does; MFCC: in seconds
of audio).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
MODES = ("local", "ray1", "ray2")
YAMNET_FILE = SHARED / "models" / "yamnet" / "yamnet.tflite"
NODE_MB = 150
PROJECT_CLIPS = 1_000_000
PROJECT_SECONDS = 10.0
MACHINE_CORES = (16, 64)  # machine sizes the cost model prices
DEADLINES_H = (1.0, 8.0)
BAR = 1.3  # issue 20: Ray's extraction time at most this many times the local pool's


def clips(limit: int | None, data: str = "fsdd") -> list[str]:
    paths = sorted(str(p) for p in (SHARED / "datasets" / data).glob("*/*.*"))
    if not paths:
        sys.exit(f"No clips under {SHARED}/datasets/{data} (set AUDIOCLF_SHARED).")
    return paths[:limit] if limit else paths


def feature_config(kind: str):
    from audioclf.features import MFCCConfig, YAMNetConfig

    if kind == "yamnet":
        return YAMNetConfig(model=str(YAMNET_FILE))
    return MFCCConfig()


# ---------------------------------------------------------------- one mode, in its own process

def cpu_seconds() -> float:
    """CPU time (user + system) of this process, its reaped children and its live descendants
    (the local pool's workers; the Ray nodes this process started, their actors and services).

    Less sensitive to other work on the machine than wall time: under load, a job's share of
    the cores, not its cost, sets its wall time."""
    import resource

    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    mine, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, pp in parent.items() if pp in mine and pid not in mine}
        mine |= new
        grew = bool(new)
    mine.discard(os.getpid())
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + sum(cpu[p] for p in mine)


def child(mode: str, kind: str, limit: int | None, out: str, data: str = "fsdd") -> None:
    from audioclf.engines import get_engine

    paths = clips(limit, data)
    cfg = feature_config(kind)
    row: dict = {"mode": mode, "clips": len(paths)}
    cluster = None
    if mode == "local":
        engine = get_engine("local")
    else:
        from ray.cluster_utils import Cluster

        t0 = time.perf_counter()
        head_cpus = 2 if mode == "ray1" else 1
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": head_cpus, "object_store_memory": NODE_MB << 20, "include_dashboard": False,
            "node_ip_address": "127.0.0.1"})
        if mode == "ray2":
            cluster.add_node(num_cpus=1, object_store_memory=NODE_MB << 20, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        row["cluster_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        engine = get_engine("ray", address=cluster.address)
        row["connect_seconds"] = round(time.perf_counter() - t0, 2)
    try:
        from audioclf.features.store import FeatureStore

        for job in ("first", "again"):
            # "again": a second job in the same session (the local model loaded; Ray's warm actor
            # pool up, as a long-lived driver finds it). Each job starts from an empty store and an
            # empty cache, so both compute every clip.
            os.environ["AUDIOCLF_HOME"] = tempfile.mkdtemp(prefix=f"scale-{mode}-{job}-")
            store = tempfile.mkdtemp(prefix=f"scale-{mode}-{job}-store-")
            c0, t0 = cpu_seconds(), time.perf_counter()
            result = engine.extract(paths, cfg, store=store)
            row[f"seconds_{job}"] = round(time.perf_counter() - t0, 3)
            row[f"cpu_{job}"] = round(cpu_seconds() - c0, 3)
            if job == "first":
                shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(os.environ["AUDIOCLF_HOME"], ignore_errors=True)
        idx = FeatureStore(store).index(cfg)
        shutil.rmtree(store, ignore_errors=True)
        row.update(extracted=result.extracted, errors=len(result.errors), by_node=result.by_node,
                   frames=int(sum(idx.column("frames").to_pylist())), cpus=engine.describe().cpus,
                   stored=idx.num_rows)
    finally:
        engine.close()
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
    Path(out).write_text(json.dumps(row))


def run_child(mode: str, kind: str, limit: int | None, home: str, data: str = "fsdd") -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    # The shared YAMNet file is outside every workspace's models folder: the benchmark's owner names it.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUDIOCLF_HOME": tempfile.mkdtemp(dir=home),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "TF_CPP_MIN_LOG_LEVEL": "3",
           "AUDIOCLF_YAMNET": str(YAMNET_FILE)}
    cmd = [sys.executable, __file__, "--child", mode, "--features", kind, "--out", out, "--data", data]
    if limit:
        cmd += ["--limit", str(limit)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(Path(out).read_text())


# ---------------------------------------------------------------- report

def audio_seconds(paths: list[str]) -> float:
    import soundfile as sf

    return sum(sf.info(p).duration for p in paths)


def project(a: float, b: float, unit: str, efficiency: float) -> list[str]:
    """Lines of the cost model: hours and machines for PROJECT_CLIPS clips of PROJECT_SECONDS."""
    from audioclf.features.yamnet import num_frames

    per_clip = num_frames(int(PROJECT_SECONDS * 16000)) if unit == "windows" else PROJECT_SECONDS
    cpu_seconds = PROJECT_CLIPS * (a + b * per_clip)
    core_hours = cpu_seconds / 3600
    lines = [f"two-node scaling on this machine (ray1 time / ray2 time, same 2 CPUs): {efficiency:.2f}",
             f"projected: {PROJECT_CLIPS:,} clips of {PROJECT_SECONDS:g} s ({per_clip:g} {unit} each) = "
             f"{core_hours:,.0f} CPU-hours at the measured per-CPU cost (perfect scaling assumed)"]
    for cores in MACHINE_CORES:
        for hours in DEADLINES_H:
            machines = max(1, -(-core_hours // (cores * hours)))
            lines.append(f"  {cores:>3}-CPU machines to finish in {hours:g} h: {machines:,.0f}"
                         f"   (one such machine: {core_hours / cores:,.1f} h)")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", choices=("yamnet", "mfcc"), default="yamnet")
    p.add_argument("--limit", type=int, help="first N FSDD clips (default: all 3,000)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--data", default="fsdd", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    if args.child:
        child(args.child, args.features, args.limit, args.out, args.data)
        return
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.features} features")
    loads = [os.getloadavg()[0]]
    paths = clips(args.limit)
    home = tempfile.mkdtemp(prefix="scale-home-")
    rows: dict[str, list[dict]] = {m: [] for m in args.modes}
    for r in range(args.rounds):
        order = args.modes if r % 2 == 0 else list(reversed(args.modes))
        for mode in order:
            row = run_child(mode, args.features, args.limit, home)
            rows[mode].append(row)
            loads.append(os.getloadavg()[0])
            print(f"  round {r + 1} {mode:<5} first job {row['seconds_first']:7.2f} s, again "
                  f"{row['seconds_again']:7.2f} s, {row['extracted']} clips; CPU-seconds {row['cpu_first']:.1f}, "
                  f"{row['cpu_again']:.1f}"
                  + (f"  (cluster start {row['cluster_seconds']:.1f} s, join {row['connect_seconds']:.1f} s)"
                     if "cluster_seconds" in row else ""), flush=True)
    first = {m: statistics.median(x["seconds_first"] for x in rs) for m, rs in rows.items()}
    again = {m: statistics.median(x["seconds_again"] for x in rs) for m, rs in rows.items()}
    seconds = again
    n = len(paths)
    print(f"\n{n} FSDD clips ({audio_seconds(paths) / 60:.1f} min of audio), median of {args.rounds} round(s); "
          "'again' = the second job in the same process (local model loaded, Ray's actors warm); "
          f"load average {min(loads):.1f}-{max(loads):.1f} during the runs")
    print("| mode | CPUs | first job s | again s | clips/s (again) | vs local pool (again) | first job vs local | "
          "each node's share |")
    print("|---|---|---|---|---|---|---|---|")
    for m in args.modes:
        last = rows[m][-1]
        share = ", ".join(f"{k}: {v}" for k, v in sorted(last["by_node"].items()))
        ratio = f"{again[m] / again['local']:.2f}x" if "local" in again else "-"
        ratio1 = f"{first[m] / first['local']:.2f}x" if "local" in first else "-"
        print(f"| {m} | {last['cpus']:g} | {first[m]:.1f} | {again[m]:.1f} | {n / again[m]:.0f} | {ratio} | "
              f"{ratio1} | {share} |")
    cpu1 = {m: statistics.median(x["cpu_first"] for x in rs) for m, rs in rows.items()}
    cpu2 = {m: statistics.median(x["cpu_again"] for x in rs) for m, rs in rows.items()}
    print("\nCPU-seconds per job (all processes of the mode; medians): "
          + ", ".join(f"{m} first {cpu1[m]:.1f} / again {cpu2[m]:.1f}" for m in args.modes))
    if "local" in again:
        for m in (m for m in args.modes if m != "local"):
            verdict = "meets" if again[m] / again["local"] <= BAR else "misses"
            print(f"{m}: again {again[m] / again['local']:.2f}x the local pool's time ({verdict} the {BAR:g}x bar), "
                  f"first job {first[m] / first['local']:.2f}x; CPU-seconds again "
                  f"{cpu2[m] / cpu2['local']:.2f}x, first {cpu1[m] / cpu1['local']:.2f}x")
    unit = "windows" if args.features == "yamnet" else "audio seconds"
    best = min(args.modes, key=lambda m: again[m])
    cpus = rows[best][-1]["cpus"]
    short_work = rows[best][-1]["frames"] if unit == "windows" else audio_seconds(paths)
    # Long clips (ESC-10: 400 clips of 5 s) on the local pool, for the per-unit cost of long clips:
    # cost per clip = a + b * units, from the two measured points, per CPU.
    long_paths = clips(None, "esc10")
    long_row = run_child("local", args.features, None, home, "esc10")
    long_work = long_row["frames"] if unit == "windows" else audio_seconds(long_paths)
    t_short = again[best] * cpus / n  # CPU-seconds per clip
    t_long = long_row["seconds_again"] * long_row["cpus"] / len(long_paths)
    u_short, u_long = short_work / n, long_work / len(long_paths)
    b = max(1e-9, (t_long - t_short) / (u_long - u_short))
    a = max(0.0, t_short - b * u_short)
    print(f"\nlong clips: {len(long_paths)} ESC-10 clips ({u_long:.1f} {unit} each) on the local pool: "
          f"{long_row['seconds_again']:.1f} s")
    eff = again["ray1"] / again["ray2"] if "ray1" in again and "ray2" in again else 1.0
    print(f"cost model: CPU-seconds per clip = {a * 1000:.1f} ms + {b * 1000:.2f} ms x {unit} "
          f"(FSDD {u_short:.2f} and ESC-10 {u_long:.1f} {unit} per clip, {best} and local)")
    for line in project(a, b, unit, eff):
        print(line)
    shutil.rmtree(home, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": seconds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
