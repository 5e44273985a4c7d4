"""Accuracy across data sets: every feature type x model kind with its defaults, against a plain pipeline.

    python benchmarks/accuracy.py --data esc10                  # official folds, every row
    python benchmarks/accuracy.py --data fsdd --val next        # each speaker held out, the next validates
    python benchmarks/accuracy.py --data demo
    python benchmarks/accuracy.py --data esc10 --rows default plain yamnet:gru
    python benchmarks/accuracy.py --data esc10 --rows plain efficientat:baseline efficientat-windows:gru
    python benchmarks/accuracy.py --data esc10 --rows efficientat:baseline,members=3,train.learning_rate=1e-3
    python benchmarks/accuracy.py --data PATH --group-pattern '^(\\w+)-'   # your own data, by group

Each fold holds out one group (ESC-10: an official fold, the first digit of the
file name; FSDD: a speaker; a data set without groups: a stratified fifth). The
fold is written as a CSV manifest with a split column and trained through
`audioclf.training.train` with `SplitConfig(method="fixed")`, exactly as a run
started from the app or the command line: features from the workspace cache,
the feature type's own defaults (`audioclf.training.defaults`), early stopping on a
validation share of the training groups (`--val share`, 15 %) or on the next
group (`--val next`, FSDD's speaker protocol), scored once on the held-out group.

Rows: `default` is what a new user gets (`audioclf train DATA` with no options:
Auto when a pretrained model (YAMNet, EfficientAT) is available, else MFCC);
`FEATURE:MODEL` is that feature type and model kind with their defaults
(`efficientat` is EfficientAT's frame sequence, `efficientat-windows` its 0.96 s
window embeddings, the checkpoint given by --efficientat), optionally followed by
`,name=value` settings on top (`model.` is implied: `members=3`,
`train.learning_rate=1e-3`, `feature.` a setting of the feature config:
`efficientat:gru,feature.yamnet=true`); `plain` is the study's plain
pipeline, measured in the same run on the same folds: YAMNet embeddings per
0.96 s window (TFLite, one window per call) -> BiLSTM(128, sequences) ->
BiLSTM(64) -> Dense(64, relu) -> Dropout(0.3) -> softmax, inputs standardised
with the training clips' mean and std, Adam 1e-3, batch 32, at most 30 epochs,
early stopping with patience 10 on the same validation clips, best weights
restored.

Prints per-fold and mean +- std macro F1 and accuracy and seconds per fold
(training alone, and all of it with feature extraction and, for Auto, the
choice); writes the table to benchmarks/results/accuracy-<data>.md and .json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
YAMNET = SHARED / "models" / "yamnet" / "yamnet.tflite"
EFFICIENTAT = SHARED / "models" / "efficientat" / "mn04_as_mAP_432.pt"
PRESETS = {  # data set -> (folder, group pattern, validation protocol)
    "esc10": (SHARED / "datasets" / "esc10", r"^(\d)-", "share"),
    "fsdd": (SHARED / "datasets" / "fsdd", r"^\d+_([A-Za-z]+)_", "next"),
    "demo": (None, None, "share"),
}
FEATURES = ("yamnet", "mfcc", "spectral", "efficientat", "efficientat-windows")
MODELS = ("simplernn", "lstm", "gru", "bilstm", "baseline")
DEFAULT_ROWS = ["plain", "default", *(f"yamnet:{m}" for m in MODELS), "mfcc:gru", "mfcc:baseline"]
VAL_SHARE = 0.15
UNGROUPED_FOLDS = 5
DEFAULT_HOME = ROOT / "workspace" / "benchmarks"
RESULTS = ROOT / "benchmarks" / "results"
PLAIN_EPOCHS, PLAIN_PATIENCE, PLAIN_BATCH = 30, 10, 32


# ---------------------------------------------------------------- folds

def load(data: str, group_pattern: str | None):
    """(Dataset, groups per item in natural order) of a preset name or a folder."""
    from audioclf.datasets import ensure_demo_dataset, load_dataset
    from audioclf.datasets import natural_key

    folder, pattern, _ = PRESETS.get(data, (Path(data), None, "share"))
    folder = folder or ensure_demo_dataset()
    ds = load_dataset(folder, group_pattern=group_pattern or pattern)
    if all(it.group for it in ds.items):
        groups = [it.group for it in ds.items]
    else:  # no groups: a stratified fifth of each class per fold
        groups, seen = [], {}
        for it in ds.items:
            seen[it.label] = seen.get(it.label, -1) + 1
            groups.append(str(seen[it.label] % UNGROUPED_FOLDS + 1))
    return ds, groups, sorted(set(groups), key=natural_key)


def fold_manifest(ds, groups: list[str], order: list[str], test: str, val_mode: str, dest: Path) -> Path:
    """CSV manifest: the `test` group is test, with --val next the following group is val, the rest train."""
    val = order[(order.index(test) + 1) % len(order)] if val_mode == "next" else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "group"])
        for it, g in zip(ds.items, groups):
            split = "test" if g == test else "val" if g == val else "train"
            w.writerow([str(Path(it.path).resolve()), it.label, split, g])
    return dest


# ---------------------------------------------------------------- audioclf rows

def parse_row(row: str) -> tuple[str, str, dict]:
    """`FEATURE:MODEL[,name=value...]` -> (feature, model kind, {"model.x" | "train.x": value})."""
    head, *settings = row.split(",")
    feature, model = head.split(":")
    overrides = {}
    for item in settings:
        name, value = item.split("=", 1)
        name = name if name.startswith(("model.", "train.", "feature.")) else f"model.{name}"
        overrides[name] = setting_value(value)
    return feature, model, overrides


def setting_value(text: str):
    """A row's setting as the CLI reads it: JSON (numbers, lists, true/false), `none`/`null` for
    "no value" (e.g. `train.patience=none`), anything else as the string it is."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_row(row: str, manifest: Path, yamnet: str, seed: int, efficientat: str = "") -> dict:
    """Train one fold through audioclf.training.train; return its test scores and timings."""
    from dataclasses import replace

    from audioclf.datasets import SplitConfig
    from audioclf.training import AutoFeatures, RunConfig, default_feature_kind, config_for_kind, runs, train
    from audioclf.training.feature_choice import pretrained_available

    auto = AutoFeatures(yamnet_model=yamnet, efficientat_model=efficientat)
    overrides = {"train.seed": seed}
    if row == "default":
        kind = default_feature_kind(pretrained_available(auto))
        features = auto if kind == "auto" else config_for_kind(kind)
    else:
        kind, model, extra = parse_row(row)
        features = config_for_kind(kind.split("-")[0], auto)
        if kind == "efficientat-windows":
            features = replace(features, sequence="windows")
        feature_settings = {k.split(".", 1)[1]: extra.pop(k) for k in list(extra) if k.startswith("feature.")}
        features = replace(features, **feature_settings) if feature_settings else features
        overrides.update({"model.kind": model, **extra})
    cfg = RunConfig(dataset=str(manifest), split=SplitConfig(method="fixed", val=VAL_SHARE), features=features,
                    name=f"bench {row} {manifest.stem}", overrides=overrides)
    t0 = time.perf_counter()
    run_id = train(cfg)
    total = time.perf_counter() - t0
    run = runs.load_run(run_id)
    m = run.metrics
    out = {"macro_f1": m["test"]["macro_f1"], "accuracy": m["test"]["accuracy"], "epochs": m["epochs_trained"],
           "train_s": m["train_seconds"], "total_s": round(total, 1), "run": run_id,
           "features": run.config["features"]["kind"]}
    if m.get("weight_average"):  # what averaging around the best epoch did (train.average_epochs)
        out["weight_average"] = m["weight_average"]
    if m.get("feature_choice"):
        out["choice"] = {s["kind"]: s["macro_f1"] for s in m["feature_choice"]["scores"]}
    return out


# ---------------------------------------------------------------- the plain pipeline

class PlainFeatures:
    """YAMNet embeddings the plain way: librosa.load at 16 kHz, one TFLite window per call."""

    def __init__(self, spec: str):
        from audioclf.features import yamnet as Y

        self.Y = Y
        self.model = Y.load_model(spec, num_threads=1, batch=0)  # batch=0: one window per invoke
        self.cache: dict[str, np.ndarray] = {}
        self.seconds = 0.0

    def __call__(self, path: str) -> np.ndarray:
        if path not in self.cache:
            import librosa

            t0 = time.perf_counter()
            y, _ = librosa.load(path, sr=16000, mono=True)
            self.cache[path] = self.model.run_windows(self.Y.frame_waveform(y))[1]
            self.seconds += time.perf_counter() - t0
        return self.cache[path]


def plain_row(manifest: Path, feats: PlainFeatures, seed: int) -> dict:
    """The study's plain pipeline on the same fold as the audioclf rows."""
    import keras
    from keras import layers
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    rows = list(csv.DictReader(open(manifest)))
    labels = sorted({r["label"] for r in rows})
    part = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    if not part["val"]:  # the same rule as the audioclf rows: a stratified share of train
        tr, va = train_test_split(part["train"], test_size=VAL_SHARE, random_state=0,
                                  stratify=[r["label"] for r in part["train"]])
        part["train"], part["val"] = tr, va
    t0 = time.perf_counter()
    x = {s: [feats(r["path"]) for r in rs] for s, rs in part.items()}
    y = {s: np.array([labels.index(r["label"]) for r in rs]) for s, rs in part.items()}
    extract_s = time.perf_counter() - t0
    frames = np.concatenate(x["train"])
    mu, sd = frames.mean(0), frames.std(0) + 1e-6
    length = max(len(s) for xs in x.values() for s in xs)

    def pad(xs):
        out = np.zeros((len(xs), length, frames.shape[1]), np.float32)
        for i, s in enumerate(xs):
            out[i, :len(s)] = (s - mu) / sd
        return out

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((length, frames.shape[1])),
                              layers.Bidirectional(layers.LSTM(128, return_sequences=True)),
                              layers.Bidirectional(layers.LSTM(64)), layers.Dense(64, activation="relu"),
                              layers.Dropout(0.3), layers.Dense(len(labels), activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t1 = time.perf_counter()
    hist = model.fit(pad(x["train"]), y["train"], validation_data=(pad(x["val"]), y["val"]),
                     epochs=PLAIN_EPOCHS, batch_size=PLAIN_BATCH, verbose=0,
                     callbacks=[keras.callbacks.EarlyStopping(patience=PLAIN_PATIENCE, restore_best_weights=True)])
    train_s = time.perf_counter() - t1
    pred = model.predict(pad(x["test"]), verbose=0).argmax(1)
    return {"macro_f1": float(f1_score(y["test"], pred, average="macro")),
            "accuracy": float(accuracy_score(y["test"], pred)), "epochs": len(hist.history["loss"]),
            "train_s": round(train_s, 1), "total_s": round(train_s + extract_s, 1), "features": "yamnet"}


# ---------------------------------------------------------------- report

def summary(results: list[dict], rows: list[str]) -> list[dict]:
    out = []
    for row in rows:
        sel = [r for r in results if r["row"] == row]
        if not sel:
            continue
        f1 = np.array([r["macro_f1"] for r in sel])
        out.append({"row": row, "folds": len(sel), "macro_f1_mean": float(f1.mean()), "macro_f1_std": float(f1.std()),
                    "accuracy_mean": float(np.mean([r["accuracy"] for r in sel])),
                    "per_fold": [round(float(v), 3) for v in f1],
                    "train_s": float(np.mean([r["train_s"] for r in sel])),
                    "total_s": float(np.mean([r["total_s"] for r in sel])),
                    "features": sorted({r["features"] for r in sel})})
    return out


def markdown(data: str, table: list[dict], command: str, load: float) -> str:
    plain = next((t for t in table if t["row"] == "plain"), None)
    lines = [f"# Accuracy on {data}", "", f"`{command}` (load average at start {load:.1f}, {os.cpu_count()} cpus)", "",
             "| row | features | macro F1 mean ± std | per fold | accuracy | train s/fold | total s/fold |"
             + (" vs plain |" if plain else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if plain else "")]
    for t in table:
        diff = f" {t['macro_f1_mean'] - plain['macro_f1_mean']:+.3f} |" if plain else ""
        lines.append(f"| {t['row']} | {', '.join(t['features'])} | {t['macro_f1_mean']:.3f} ± {t['macro_f1_std']:.3f} | "
                     f"{' '.join(f'{v:.2f}' for v in t['per_fold'])} | {t['accuracy_mean']:.3f} | "
                     f"{t['train_s']:.1f} | {t['total_s']:.1f} |{diff}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="esc10", help="esc10, fsdd, demo, or a data set folder (default: %(default)s)")
    p.add_argument("--group-pattern", help="regex naming a clip's group (fold) from its file name")
    p.add_argument("--rows", nargs="+", default=DEFAULT_ROWS,
                   help="plain, default, or FEATURE:MODEL with FEATURE in %s and MODEL in %s (default: %s)"
                        % (", ".join(FEATURES), ", ".join(MODELS), " ".join(DEFAULT_ROWS)))
    p.add_argument("--folds", nargs="*", default=[], help="only these held-out groups (default: every group)")
    p.add_argument("--val", choices=("share", "next"), help="validation: a stratified 15%% share of the training "
                   "groups, or the whole next group (default: next for fsdd, share otherwise)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every row (default: %(default)s)")
    p.add_argument("--yamnet", default=str(YAMNET), help="YAMNet model (default: %(default)s)")
    p.add_argument("--efficientat", default=str(EFFICIENTAT),
                   help="EfficientAT checkpoint: a .pt path or an official name (default: %(default)s)")
    p.add_argument("--home", type=Path, default=Path(os.environ.get("AUDIOCLF_HOME", DEFAULT_HOME)),
                   help="workspace for the feature cache and runs (default: $AUDIOCLF_HOME or %(default)s)")
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders (default: delete them)")
    args = p.parse_args(argv)
    for row in args.rows:
        try:
            ok = row in ("plain", "default") or (parse_row(row)[0] in FEATURES and parse_row(row)[1] in MODELS)
        except ValueError:
            ok = False
        if not ok:
            p.error(f"unknown row {row!r}")

    os.environ["AUDIOCLF_HOME"] = str(args.home.resolve())
    os.environ.setdefault("AUDIOCLF_YAMNET", args.yamnet)
    if Path(args.efficientat).is_file():
        os.environ.setdefault("AUDIOCLF_EFFICIENTAT", args.efficientat)
    from audioclf.training import runs

    ds, groups, order = load(args.data, args.group_pattern)
    val_mode = args.val or PRESETS.get(args.data, (None, None, "share"))[2]
    held = [g for g in order if not args.folds or g in args.folds]
    load_avg = os.getloadavg()[0]
    name = Path(args.data).name
    print(f"{name}: {len(ds.items)} clips, {len(ds.labels)} classes, groups {', '.join(order)}; "
          f"validation: {val_mode}; load {load_avg:.1f}, {os.cpu_count()} cpus", flush=True)
    print(f"{'row':16} {'fold':8} {'features':9} {'macroF1':>8} {'acc':>6} {'epochs':>6} {'train_s':>8} {'total_s':>8}",
          flush=True)
    plain_feats = PlainFeatures(args.yamnet) if "plain" in args.rows else None
    results = []
    for g in held:
        manifest = fold_manifest(ds, groups, order, g, val_mode, args.home / "bench" / f"{name}-{g}-{val_mode}.csv")
        for row in args.rows:
            r = plain_row(manifest, plain_feats, args.seed) if row == "plain" else run_row(
                row, manifest, args.yamnet, args.seed, args.efficientat)
            r.update(row=row, fold=g)
            results.append(r)
            extra = f"  choice {r['choice']}" if r.get("choice") else ""
            if r.get("weight_average"):
                extra += "  average {epochs} epochs, val loss {best} -> {averaged}, used {used}".format(
                    **r["weight_average"])
            print(f"{row:16} {g:8} {r['features']:9} {r['macro_f1']:8.3f} {r['accuracy']:6.3f} {r['epochs']:6d} "
                  f"{r['train_s']:8.1f} {r['total_s']:8.1f}{extra}", flush=True)
            if r.get("run") and not args.keep_runs:
                runs.delete_run(r["run"])
    table = summary(results, args.rows)
    print(f"\nMean over {len(held)} fold(s)")
    for t in table:
        print(f"{t['row']:16} {t['macro_f1_mean']:.3f} ± {t['macro_f1_std']:.3f}  acc {t['accuracy_mean']:.3f}  "
              f"train {t['train_s']:.1f} s/fold  total {t['total_s']:.1f} s/fold  folds {t['per_fold']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (RESULTS / f"accuracy-{name}.md").write_text(markdown(name, table, command.strip(), load_avg))
    (RESULTS / f"accuracy-{name}.json").write_text(json.dumps({"command": command, "load": load_avg,
                                                               "results": results, "summary": table}, indent=2))
    print(f"\nwritten: {RESULTS / f'accuracy-{name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
