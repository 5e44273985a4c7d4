"""A hyperparameter search on ESC-10 against the defaults, both scored once on a test fold.

    AUDIOCLF_YAMNET=../shared/models/yamnet/yamnet.tflite python benchmarks/tuning.py
    python benchmarks/tuning.py --features mfcc --trials 30 --timeout 1200

ESC-10's official fold (the first digit of a file name; clips cut from one
recording share it) decides the split, through a CSV manifest with a split
column: fold 1 is the test set, fold 2 validates (the search's objective and
early stopping), folds 3-5 train. The search (`audioclf.tuning`, default space
of the feature type, TPE, median pruner) never sees fold 1; its best config is
trained once more as a run and scored on fold 1, like a run with the library's
defaults on the same split. Prints the search time, trials finished / pruned /
failed, the configuration found and both test macro F1.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
ESC10 = SHARED / "datasets" / "esc10"
YAMNET = SHARED / "models" / "yamnet" / "yamnet.tflite"
FOLD = re.compile(r"^(\d)-")
SPLIT_OF_FOLD = {"1": "test", "2": "val"}  # every other fold trains
DEFAULT_HOME = ROOT / "workspace" / "benchmarks"


def manifest(data: Path, dest: Path) -> Path:
    """path,label,split,group rows of ESC-10: fold 1 test, fold 2 val, the rest train."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "group"])
        for path in sorted(data.glob("*/*.flac")):
            fold = FOLD.match(path.name).group(1)
            w.writerow([str(path), path.parent.name, SPLIT_OF_FOLD.get(fold, "train"), fold])
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ESC10)
    p.add_argument("--features", choices=("mfcc", "spectral", "yamnet"), default="yamnet")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--timeout", type=float, default=None, help="seconds for the search (default: none)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--home", type=Path, default=DEFAULT_HOME, help="workspace (feature cache, runs, studies)")
    p.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = p.parse_args()
    os.environ.setdefault("AUDIOCLF_HOME", str(args.home))
    os.environ.setdefault("AUDIOCLF_YAMNET", str(YAMNET))

    from audioclf import tuning
    from audioclf.datasets import SplitConfig
    from audioclf.features import CONFIG_TYPES
    from audioclf.training import RunConfig, runs, train

    csv_path = manifest(args.data, Path(os.environ["AUDIOCLF_HOME"]) / "manifests" / "esc10-fold1-test.csv")
    base = RunConfig(dataset=str(csv_path), split=SplitConfig(method="fixed", val=0.0, test=0.0),
                     features=CONFIG_TYPES[args.features](), name=f"esc10 {args.features} defaults")

    def test_f1(run_id: str) -> float:
        return runs.load_run(run_id).metrics["test"]["macro_f1"]

    t0 = time.time()
    default_run = train(base)
    default_seconds = time.time() - t0
    print(f"defaults: run {default_run}, test macro F1 {test_f1(default_run):.3f} ({default_seconds:.0f} s)",
          flush=True)

    cfg = tuning.TuneConfig(base=base, space=tuning.default_space(args.features), trials=args.trials,
                            timeout=args.timeout, workers=args.workers)
    last = [None]

    def progress(e: dict) -> None:
        if e.get("phase") == "searching":
            key = (e.get("trials"), e.get("complete"), e.get("pruned"))
            if key != last[0]:
                last[0] = key
                print(f"  trials {e['trials']}: {e['complete']} finished, {e['pruned']} pruned, "
                      f"best val macro F1 {e['best_value']}", flush=True)

    t0 = time.time()
    result = tuning.run_study(cfg, progress=progress)
    total = time.time() - t0
    tuned = test_f1(result.run_id)
    out = {"features": args.features, "trials": result.n_trials, "finished": result.n_complete,
           "pruned": result.n_pruned, "failed": result.n_failed, "search_seconds": result.seconds,
           "total_seconds_with_final_run": round(total, 1), "best_trial": result.best_trial,
           "best_val_macro_f1": result.best_value, "best_params": result.best_params,
           "tuned_run": result.run_id, "tuned_test_macro_f1": tuned,
           "default_run": default_run, "default_test_macro_f1": test_f1(default_run),
           "study": result.study}
    print(json.dumps(out, indent=2, default=str))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
