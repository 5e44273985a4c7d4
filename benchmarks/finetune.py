"""Fine-tuning EfficientAT's top blocks against the frozen network, in one run on the same folds.

    nice -n 10 python benchmarks/finetune.py                        # ESC-10 fold 1, frozen vs 1 and 2 blocks
    nice -n 10 python benchmarks/finetune.py --folds 1 2 3 --blocks 0 1 2 --model baseline
    nice -n 10 python benchmarks/finetune.py --data fsdd --folds jackson --blocks 0 2

Each fold is trained through `audioclf.training.train` exactly as a run from the
app or the command line (folds and validation as `benchmarks/accuracy.py`: the
official fold held out, early stopping on a 15 % share of the others), with the
EfficientAT defaults (`audioclf.training.defaults`) and `train.finetune_blocks`
0 (the baseline: the frozen network's frame sequence, from the feature cache),
then each N given. Printed per row: macro F1 on the held-out fold, epochs, training
seconds per epoch and their ratio to the frozen row's, the seconds the frozen lower
part took once (fine-tuning only), and the run's total seconds (features included).
Writes benchmarks/results/finetune-<data>.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import accuracy  # noqa: E402  (folds and manifests, the same as the accuracy benchmark's)

RESULTS = ROOT / "benchmarks" / "results"


def run_fold(manifest: Path, blocks: int, model: str, seed: int, efficientat: str, lr: float | None) -> dict:
    from audioclf.datasets import SplitConfig
    from audioclf.features import EfficientATConfig
    from audioclf.training import RunConfig, runs, train

    overrides = {"train.seed": seed, "train.finetune_blocks": blocks}
    if model:
        overrides["model.kind"] = model
    if blocks and lr:
        overrides["train.backbone_learning_rate"] = lr
    cfg = RunConfig(dataset=str(manifest), split=SplitConfig(method="fixed", val=accuracy.VAL_SHARE),
                    features=EfficientATConfig(model=efficientat), name=f"bench finetune {blocks} {manifest.stem}",
                    overrides=overrides)
    t0 = time.perf_counter()
    run_id = train(cfg)
    total = time.perf_counter() - t0
    m = runs.load_run(run_id).metrics
    ft = m.get("finetune") or {}
    epochs = max(int(m["epochs_trained"]), 1)
    return {"blocks": blocks, "macro_f1": m["test"]["macro_f1"], "accuracy": m["test"]["accuracy"],
            "epochs": m["epochs_trained"], "best_epoch": m.get("best_epoch"),
            "s_per_epoch": round(m["train_seconds"] / epochs, 2), "train_s": m["train_seconds"],
            "frozen_part_s": ft.get("frozen_part_seconds", 0.0), "changed_share": ft.get("changed_share"),
            "total_s": round(total, 1), "run": run_id}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="esc10", help="esc10, fsdd, demo or a data set folder (default: %(default)s)")
    p.add_argument("--folds", nargs="*", default=["1"], help="held-out groups (default: %(default)s)")
    p.add_argument("--blocks", nargs="+", type=int, default=[0, 1, 2],
                   help="train.finetune_blocks per row; 0 is the frozen baseline (default: %(default)s)")
    p.add_argument("--model", default="", help="model kind (default: EfficientAT's default)")
    p.add_argument("--backbone-lr", type=float, default=None, help="train.backbone_learning_rate (default: its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--efficientat", default=str(accuracy.EFFICIENTAT), help="checkpoint (default: %(default)s)")
    p.add_argument("--home", type=Path, default=Path(os.environ.get("AUDIOCLF_HOME", accuracy.DEFAULT_HOME)))
    p.add_argument("--keep-runs", action="store_true")
    args = p.parse_args(argv)
    os.environ["AUDIOCLF_HOME"] = str(args.home.resolve())
    from audioclf.training import runs

    ds, groups, order = accuracy.load(args.data, None)
    val_mode = accuracy.PRESETS.get(args.data, (None, None, "share"))[2]
    load_avg = os.getloadavg()[0]
    print(f"{args.data}: {len(ds.items)} clips, folds {' '.join(args.folds)}; load {load_avg:.1f}, "
          f"{os.cpu_count()} cpus", flush=True)
    print(f"{'fold':6} {'blocks':>6} {'macroF1':>8} {'epochs':>6} {'s/epoch':>8} {'x frozen':>8} "
          f"{'frozen part s':>13} {'total s':>8}", flush=True)
    rows = []
    for g in args.folds:
        manifest = accuracy.fold_manifest(ds, groups, order, g, val_mode,
                                          args.home / "bench" / f"{Path(args.data).name}-{g}-{val_mode}.csv")
        base = None
        for blocks in args.blocks:
            r = {"fold": g, **run_fold(manifest, blocks, args.model, args.seed, args.efficientat, args.backbone_lr)}
            base = r["s_per_epoch"] if blocks == 0 else base
            r["x_frozen"] = round(r["s_per_epoch"] / base, 1) if base else None
            rows.append(r)
            print(f"{g:6} {blocks:>6} {r['macro_f1']:>8.3f} {r['epochs']:>6} {r['s_per_epoch']:>8.2f} "
                  f"{r['x_frozen'] or '-':>8} {r['frozen_part_s']:>13.1f} {r['total_s']:>8.1f}", flush=True)
            if not args.keep_runs:
                runs.delete_run(r["run"])
    summary = {}
    for blocks in args.blocks:
        mine = [r for r in rows if r["blocks"] == blocks]
        summary[blocks] = {"macro_f1_mean": round(sum(r["macro_f1"] for r in mine) / len(mine), 4),
                           "s_per_epoch_mean": round(sum(r["s_per_epoch"] for r in mine) / len(mine), 2)}
        print(f"blocks {blocks}: mean macro F1 {summary[blocks]['macro_f1_mean']:.3f}, "
              f"{summary[blocks]['s_per_epoch_mean']:.2f} s/epoch", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = Path(args.data).name
    command = "python benchmarks/finetune.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (RESULTS / f"finetune-{name}.json").write_text(json.dumps({"command": command, "load": load_avg, "rows": rows,
                                                               "summary": summary}, indent=1))
    lines = [f"# Fine-tuning EfficientAT on {name}", "", f"`{command}` (load {load_avg:.1f})", "",
             "| fold | blocks | macro F1 | epochs | s/epoch | x frozen | frozen part s | total s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['fold']} | {r['blocks']} | {r['macro_f1']:.3f} | {r['epochs']} | {r['s_per_epoch']:.2f} | "
              f"{r['x_frozen'] or '-'} | {r['frozen_part_s']:.1f} | {r['total_s']:.1f} |" for r in rows]
    (RESULTS / f"finetune-{name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
