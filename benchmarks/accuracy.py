"""Speaker-independent accuracy on FSDD for every feature type x model type, default settings.

    python benchmarks/accuracy.py                                  # 3 held-out speakers, all rows
    python benchmarks/accuracy.py --speakers 6                     # every speaker held out once
    python benchmarks/accuracy.py --features mfcc --models gru     # one row
    python benchmarks/accuracy.py --yamnet ../shared/models/yamnet/yamnet.tflite

For each held-out speaker: its 500 clips are the test split; the validation
split (early stopping) is another whole speaker, the next one in name order;
the remaining four speakers train (`--val seen`: five speakers train and a share
of their clips validates; `--val none`: five speakers train with no validation,
for the configured number of epochs). Nothing about a test speaker is seen
before testing. Each run goes through `audioclf.training.train` exactly as the app's
runs do (features cached in the workspace, a run folder per run), with the
default ModelConfig / TrainConfig of each model kind. Prints macro F1,
accuracy and time per run, then the mean over held-out speakers per row.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
FSDD = SHARED / "datasets" / "fsdd"
YAMNET = SHARED / "models" / "yamnet" / "yamnet.tflite"
FEATURES = ("mfcc", "spectral", "yamnet")
MODELS = ("baseline", "simplernn", "lstm", "gru", "bilstm")
TARGET_F1 = 0.90  # issue 3: MFCC + the default recurrent model, mean over held-out speakers
DEFAULT_HOME = ROOT / "workspace" / "benchmarks"
RESULTS = ROOT / "benchmarks" / "results"


def parse_overrides(items: list[str]) -> dict:
    """['sr=8000', 'deltas=true', 'rnn_units=128,64'] -> {'sr': 8000, 'deltas': True, ...}."""
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        value = json.loads(f"[{text}]") if "," in text else json.loads(text) if text else None
        out[key.strip()] = value
    return out


def feature_config(kind: str, yamnet: str, overrides: dict | None = None):
    from audioclf.features import MFCCConfig, SpectralConfig, YAMNetConfig

    if kind == "yamnet":
        return YAMNetConfig(model=yamnet)
    return {"mfcc": MFCCConfig, "spectral": SpectralConfig}[kind](**(overrides or {}))


def speaker_manifest(data: Path, test_speaker: str, val_speaker: str | None, dest: Path) -> Path:
    """A CSV manifest of FSDD with a fixed split: one speaker test, one val, the rest train.

    With no `val_speaker` the manifest has no val rows, so the fixed split holds out a
    stratified share of the training speakers' clips for validation (as the app does
    for a data set with train/ and test/ folders only)."""
    from audioclf.datasets import FSDD_SPEAKER_PATTERN, load_dataset

    ds = load_dataset(data, group_pattern=FSDD_SPEAKER_PATTERN)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "group"])
        for it in ds.items:
            split = "test" if it.group == test_speaker else "val" if it.group == val_speaker else "train"
            w.writerow([str(Path(it.path).resolve()), it.label, split, it.group])
    return dest


def speakers(data: Path) -> list[str]:
    from audioclf.datasets import FSDD_SPEAKER_PATTERN, load_dataset

    return load_dataset(data, group_pattern=FSDD_SPEAKER_PATTERN).groups


def run_one(manifest: Path, feature: str, model: str, yamnet: str, verbose: bool,
            feature_opts: dict | None = None, model_opts: dict | None = None,
            train_opts: dict | None = None, val_share: float | None = None) -> dict:
    """Train one run with default settings; return its test scores and timings."""
    from audioclf import runs
    from audioclf.datasets import SplitConfig
    from audioclf.models import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, train

    split = SplitConfig(method="fixed") if val_share is None else SplitConfig(method="fixed", val=val_share)
    cfg = RunConfig(dataset=str(manifest), split=split,
                    features=feature_config(feature, yamnet, feature_opts),
                    model=ModelConfig(kind=model, **(model_opts or {})),
                    train=TrainConfig(**(train_opts or {})),
                    name=f"bench {feature} {model} {manifest.stem}")
    marks = {"t0": time.perf_counter(), "extracted": None}

    def progress(event: dict) -> None:
        if event["phase"] == "training" and marks["extracted"] is None:
            marks["extracted"] = time.perf_counter()
        if verbose and event["phase"] == "training":
            print(f"    epoch {event['epoch']:3d} loss {event['loss']:.3f} "
                  f"val_acc {event.get('val_accuracy', float('nan')):.3f} {event['elapsed']:.0f}s",
                  file=sys.stderr)

    run_id = train(cfg, progress=progress)
    total = time.perf_counter() - marks["t0"]
    m = runs.load_run(run_id).metrics
    return {"feature": feature, "model": model, "run": run_id,
            "macro_f1": m["test"]["macro_f1"], "accuracy": m["test"]["accuracy"],
            "val_macro_f1": (m["val"] or {}).get("macro_f1"), "epochs": m["epochs_trained"],
            "best_epoch": m["best_epoch"], "train_s": m["train_seconds"], "total_s": round(total, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=FSDD, help="FSDD folder (default: %(default)s)")
    p.add_argument("--speakers", type=int, default=3, help="hold out the first N speakers (1-6, default 3)")
    p.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES))
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--yamnet", default=str(YAMNET), help="YAMNet model for the yamnet rows (default: %(default)s)")
    p.add_argument("--home", type=Path, default=Path(os.environ.get("AUDIOCLF_HOME", DEFAULT_HOME)),
                   help="workspace for the feature cache and runs (default: $AUDIOCLF_HOME or %(default)s)")
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders (default: delete them)")
    p.add_argument("--feature-opts", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override feature settings (not the defaults any more), e.g. sr=8000 deltas=true")
    p.add_argument("--model-opts", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. rnn_units=128,64")
    p.add_argument("--train-opts", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. batch_size=64")
    p.add_argument("--only", nargs="*", default=[], help="held-out speakers by name (instead of --speakers)")
    p.add_argument("--val", choices=("speaker", "seen", "none"), default="speaker",
                   help="validation clips for early stopping: all clips of the next speaker (speaker, "
                        "default), a stratified share of the five training speakers' clips (seen), "
                        "or none: five speakers train for the configured epochs (none)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every epoch")
    args = p.parse_args(argv)

    os.environ["AUDIOCLF_HOME"] = str(args.home.resolve())
    from audioclf import runs

    names = speakers(args.data)
    held = args.only or names[:max(1, min(args.speakers, len(names)))]
    fo, mo, to = (parse_overrides(x) for x in (args.feature_opts, args.model_opts, args.train_opts))
    if fo or mo or to:
        print(f"NOT the defaults: features {fo} model {mo} training {to}")
    print(f"FSDD {args.data}: speakers {', '.join(names)}; held out: {', '.join(held)}; "
          f"load: {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus", flush=True)
    print(f"{'feature':9} {'model':10} {'test':10} {'val':10} {'macroF1':>8} {'acc':>6} "
          f"{'epochs':>6} {'best':>5} {'train_s':>8} {'total_s':>8}", flush=True)
    rows = []
    for feature in args.features:
        for model in args.models:
            for spk in held:
                val = names[(names.index(spk) + 1) % len(names)] if args.val == "speaker" else None
                manifest = speaker_manifest(args.data, spk, val, args.home / "bench" / f"fsdd-{spk}-{args.val}.csv")
                r = run_one(manifest, feature, model, args.yamnet, args.verbose, fo, mo, to,
                            val_share=0.0 if args.val == "none" else None)
                val = val or args.val
                r.update(test_speaker=spk, val_speaker=val)
                rows.append(r)
                print(f"{feature:9} {model:10} {spk:10} {val:10} {r['macro_f1']:8.3f} {r['accuracy']:6.3f} "
                      f"{r['epochs']:6d} {r['best_epoch']:5d} {r['train_s']:8.1f} {r['total_s']:8.1f}", flush=True)
                if not args.keep_runs:
                    runs.delete_run(r["run"])

    print(f"\nMean over {len(held)} held-out speaker(s)")
    print(f"{'feature':9} {'model':10} {'macroF1':>8} {'min':>6} {'acc':>6} {'train_s':>8}")
    for feature in args.features:
        for model in args.models:
            sel = [r for r in rows if r["feature"] == feature and r["model"] == model]
            f1 = [r["macro_f1"] for r in sel]
            print(f"{feature:9} {model:10} {sum(f1) / len(f1):8.3f} {min(f1):6.3f} "
                  f"{sum(r['accuracy'] for r in sel) / len(sel):6.3f} "
                  f"{sum(r['train_s'] for r in sel) / len(sel):8.1f}")
    from audioclf.models import ModelConfig

    default = ModelConfig().kind
    sel = [r["macro_f1"] for r in rows if r["feature"] == "mfcc" and r["model"] == default]
    if sel:
        mean = sum(sel) / len(sel)
        print(f"\nTarget: mfcc + default model ({default}) mean macro F1 {mean:.3f} "
              f"{'>=' if mean >= TARGET_F1 else '<'} {TARGET_F1} -> {'PASS' if mean >= TARGET_F1 else 'FAIL'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accuracy.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
