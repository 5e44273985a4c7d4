"""Data set commands: `demo`, `download-esc50`, `extract` (features into the cache), `check` (health)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import (EXIT_ERROR, EXIT_OK, Command, ProgressBar, add_data_argument, add_engine_arguments,
                     add_format_argument, err, format_table, find_dataset, print_fields, write_rows)
from .options import add_feature_arguments, feature_config

MANIFESTS = (".csv", ".tsv", ".parquet", ".pq")  # DATA of `extract --store` read as a list of clips


# ---------------------------------------------------------------- demo

def demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dest", help="folder (default: <workspace>/datasets/demo, or "
                                  "audioclf-demo if your own data set is called demo)")
    p.add_argument("--clips", type=int, default=24, help="clips per class (default: 24)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")


def run_demo(args: argparse.Namespace) -> int:
    from .. import workspace
    from ..datasets.demo import CLIPS_PER_CLASS, SEED, make_demo_dataset

    # Read-only mode still builds the workspace's own demo (as the app does), nothing else.
    if args.dest:
        workspace.require_writable("write the demo data set into a folder of yours (--dest)")
    if (args.clips, args.seed) != (CLIPS_PER_CLASS, SEED):
        workspace.require_writable("build the demo data set with other --clips or --seed")
    print(make_demo_dataset(args.dest, clips_per_class=args.clips, seed=args.seed))
    return EXIT_OK


DEMO = Command("demo", "create the synthetic demo data set",
               "Synthesise a small 5-class demo data set (siren, dial tone, rain, clock ticks, bird chirps) "
               "and print its folder. An existing folder is replaced only if it is empty or a demo "
               "this command made; a folder with anything else in it is refused, never deleted.",
               demo_arguments, run_demo)


# ---------------------------------------------------------------- download-esc50

def download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dest", help="folder (default: <workspace>/datasets/esc50)")
    p.add_argument("--url", help="archive URL or local .zip (default: the official GitHub archive)")


def run_download(args: argparse.Namespace) -> int:
    from ..datasets.download import ESC50_URL, download_esc50

    bar = ProgressBar("downloading (MB)", args.quiet)
    path = download_esc50(args.dest, url=args.url or ESC50_URL,
                          progress=lambda done, total: bar(done >> 20, total >> 20))
    print(path)
    return EXIT_OK


DOWNLOAD_ESC50 = Command("download-esc50", "download and unpack the ESC-50 data set",
                         "Download ESC-50 (2,000 clips, 50 classes, about 600 MB), verify and unpack it safely, "
                         "and print its folder. --url also takes a local zip.", download_arguments, run_download)


# ---------------------------------------------------------------- extract

def extract_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_feature_arguments(p)
    p.add_argument("--jobs", type=int, help="worker processes (default: all cores)")
    p.add_argument("--no-cache", action="store_true", help="recompute and do not store")
    add_engine_arguments(p)
    p.add_argument("--store", help="a feature store to fill (a folder, NFS, s3://...); DATA may then be a "
                   "manifest (.csv or .parquet: path[,label][,group]), local or s3:// / gs://")


def run_extract(args: argparse.Namespace) -> int:
    from ..features import CacheStats, extract_many
    from ..training.prepare import check_features

    cfg = feature_config(args, auto_ok=False)
    check_features(cfg)  # YAMNet without a model: one message, not one error per clip
    if args.engine or args.store or args.address:
        return _extract_with_engine(args, cfg)
    ds = find_dataset(args.data)
    stats = CacheStats()
    paths = [str(it.path) for it in ds.items]
    results = extract_many(paths, cfg, cache=not args.no_cache, n_jobs=args.jobs,
                           progress=ProgressBar(f"extracting {cfg.kind}", args.quiet), stats=stats)
    good = [r for r in results if not isinstance(r, Exception)]
    frames = sorted(r.n_frames for r in good)
    print_fields({"data set": ds.name, "clips": stats.total, "classes": len(ds.labels), "features": cfg.kind,
                  "dims": good[0].dims if good else None,
                  "frames (min/median/max)": f"{frames[0]}/{frames[len(frames) // 2]}/{frames[-1]}" if frames else "-",
                  "from cache": stats.cached, "computed": stats.computed, "unreadable": stats.errors,
                  "workers": stats.workers, "seconds": round(stats.seconds, 2)})
    for where, why in ds.problems[:20]:
        err(f"skipped {where}: {why}")
    for r in results:
        if isinstance(r, Exception):
            err(f"unreadable: {r}")
    return EXIT_OK if good else EXIT_ERROR


def _extract_with_engine(args: argparse.Namespace, cfg) -> int:
    """`extract MANIFEST --engine ray --address ADDR --store DIR`: into a feature store, on any engine."""
    from .. import workspace
    from ..engines import get_engine

    if args.store:  # a folder of yours, like `demo --dest`: the workspace's own cache stays allowed
        workspace.require_writable("fill a feature store (--store)")
    source = args.data if args.data.lower().endswith(MANIFESTS) or "://" in args.data else find_dataset(args.data)
    with get_engine(args.engine or "local", args.address) as engine:
        result = engine.extract(source, cfg, store=args.store,
                                progress=ProgressBar(f"extracting {cfg.kind} ({engine.name})", args.quiet))
    print_fields({"engine": result.engine, "clips": result.total, "extracted": result.extracted,
                  "already stored": result.skipped, "unreadable": len(result.errors),
                  "store": result.store or "the workspace's feature cache", "seconds": round(result.seconds, 2),
                  **{f"on {node}": n for node, n in sorted(result.by_node.items())}})
    for path, why in result.errors:
        err(f"unreadable: {why}")
    return EXIT_OK if result.ok else EXIT_ERROR


EXTRACT = Command("extract", "extract features of a data set into the cache",
                  "Extract features of every clip of a data set into the workspace's feature cache "
                  "(in parallel; cached clips are skipped), and print a summary.", extract_arguments, run_extract)


# ---------------------------------------------------------------- check

CHECK_STAGES = {"reading": "reading clips", "features": "extracting {kind}", "checking": "checking"}


def check_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    p.add_argument("--top", type=int, default=20, help="mislabel suspects to list (default: 20)")
    add_format_argument(p)
    add_feature_arguments(p)


def run_check(args: argparse.Namespace) -> int:
    from ..insight.health import check_dataset

    cfg = feature_config(args, auto_ok=False)
    ds = find_dataset(args.data)
    bars: dict[str, ProgressBar] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = ProgressBar(CHECK_STAGES.get(stage, stage).format(kind=cfg.kind), args.quiet)
        bars[stage](done, total)

    report = check_dataset(ds, cfg, top=args.top, progress=progress)
    if args.format == "json":
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if args.format == "csv":
        write_rows([{"severity": f.severity, "kind": f.kind, "files": ";".join(f.paths), "message": f.message,
                     "fix": f.fix} for f in report.findings], "csv")
        return EXIT_OK
    print(f"{report.dataset}: {report.n_clips} clips, {report.n_classes} classes, {len(report.findings)} "
          f"finding(s) ({report.features} features; {report.n_suspects} mislabel suspect(s), top {args.top} listed)")
    for note in report.notes:
        print(f"note: {note}")
    if report.findings:
        print()
        print(format_table([{"severity": f.severity, "kind": f.kind, "files": _some_files(f.paths),
                             "message": f.message} for f in report.findings]))
    else:
        print("No problems found.")
    return EXIT_OK


def _some_files(paths: list[str], n: int = 3) -> str:
    """The first `n` file names, and how many more."""
    return ", ".join(Path(p).name for p in paths[:n]) + (f" (+{len(paths) - n})" if len(paths) > n else "")


CHECK = Command("check", "find duplicates, leakage, mislabelled and bad clips in a data set",
                "Health check of a data set: exact duplicates (same decoded audio) and near duplicates, "
                "leakage across train/val/test folders, likely mislabelled clips (out-of-fold predictions "
                "that confidently disagree with the label), silent, clipped, very short or long clips, mixed "
                "sample rates or channels, and class imbalance. YAMNet features find mislabelled sound events "
                "best. Fix them on the Data page's Health tab.", check_arguments, run_check)

COMMANDS = (DEMO, DOWNLOAD_ESC50, EXTRACT, CHECK)
