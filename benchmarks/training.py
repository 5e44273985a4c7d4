"""Training time: the default MFCC recurrent model on FSDD vs a plain 2-layer BiLSTM.

    python benchmarks/training.py                    # both
    python benchmarks/training.py --skip-plain       # only audioclf's default run
    python benchmarks/training.py --plain-epochs 3   # epochs of the plain model to time

audioclf: `audioclf.training.train` with the default MFCCConfig, ModelConfig and
TrainConfig (early stopping) on FSDD with a stratified split leaving about
2,500 training clips; features come from the workspace cache (extracted
first, timed separately). Reports the epoch with the best validation loss,
the time to reach it and the total training time.

Plain reference (the way a notebook would do it): per-file `librosa.load` at
22,050 Hz and `librosa.feature.mfcc` (hop 512), every clip padded to the
longest one, Masking -> Bidirectional LSTM(128) -> Bidirectional LSTM(64) ->
softmax, batch 32. A few epochs are timed and extrapolated to 30 epochs.
Target: the default model reaches its best validation score within 2 minutes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
FSDD = SHARED / "datasets" / "fsdd"
DEFAULT_HOME = ROOT / "workspace" / "benchmarks"
VAL, TEST = 0.1, 0.05  # 3,000 clips -> 2,550 training clips
PLAIN_SR, PLAIN_HOP, PLAIN_UNITS, PLAIN_BATCH, PLAIN_EPOCHS = 22050, 512, (128, 64), 32, 30
TARGET_S = 120.0


def audioclf_run(data: Path) -> dict:
    from audioclf.datasets import SplitConfig, load_dataset, split_dataset
    from audioclf.features import MFCCConfig, extract_many
    from audioclf.training import RunConfig, runs, train

    split = SplitConfig(val=VAL, test=TEST)
    t = time.perf_counter()
    extract_many([it.path for it in load_dataset(data).items], MFCCConfig())  # warm the cache
    extract_s = time.perf_counter() - t
    n_train = len(split_dataset(load_dataset(data), split).train)
    cfg = RunConfig(dataset=str(data), split=split, features=MFCCConfig(), name="bench training")
    t = time.perf_counter()
    run_id = train(cfg, progress=lambda e: e["phase"] == "training" and print(
        f"  epoch {e['epoch']:2d} val_loss {e['val_loss']:.3f} val_acc {e['val_accuracy']:.3f} "
        f"{e['elapsed']:.1f}s", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t
    run = runs.load_run(run_id)
    best = run.metrics["best_epoch"]
    hist = run.history
    out = {"model": run.config["model"], "n_train": n_train, "extract_s": extract_s, "wall_s": wall,
           "epochs": len(hist), "best_epoch": best, "to_best_s": hist[best - 1]["elapsed"],
           "train_s": hist[-1]["elapsed"], "epoch_s": hist[-1]["elapsed"] / len(hist),
           "val_acc": run.metrics["val"]["accuracy"], "test_acc": run.metrics["test"]["accuracy"],
           "test_f1": run.metrics["test"]["macro_f1"]}
    runs.delete_run(run_id)
    return out


def plain_features(paths: list[Path]) -> list:
    import librosa

    return [librosa.feature.mfcc(y=librosa.load(p, sr=PLAIN_SR)[0], sr=PLAIN_SR, hop_length=PLAIN_HOP).T
            for p in paths]


def plain_run(data: Path, epochs: int) -> dict:
    """The reference: a 2-layer BiLSTM over masked MFCC frames, all clips padded to the longest."""
    from audioclf.datasets import SplitConfig, load_dataset, split_dataset

    split = split_dataset(load_dataset(data), SplitConfig(val=VAL, test=TEST))
    labels = sorted({it.label for it in split.train})
    t = time.perf_counter()
    xtr = plain_features([it.path for it in split.train])
    xva = plain_features([it.path for it in split.val])
    extract_s = time.perf_counter() - t
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    pad = lambda xs: keras.utils.pad_sequences(xs, padding="post", dtype="float32", value=0.0)  # noqa: E731
    ytr = np.array([labels.index(it.label) for it in split.train])
    yva = np.array([labels.index(it.label) for it in split.val])
    x_train, x_val = pad(xtr), pad(xva)
    model = keras.Sequential([
        keras.Input(shape=(None, x_train.shape[-1])),
        keras.layers.Masking(0.0),
        keras.layers.Bidirectional(keras.layers.LSTM(PLAIN_UNITS[0], return_sequences=True)),
        keras.layers.Bidirectional(keras.layers.LSTM(PLAIN_UNITS[1])),
        keras.layers.Dense(len(labels), activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)
            print(f"  plain epoch {epoch + 1}: {times[-1]:.1f}s val_acc {logs['val_accuracy']:.3f}",
                  file=sys.stderr, flush=True)

    model.fit(x_train, ytr, validation_data=(x_val, yva), batch_size=PLAIN_BATCH, epochs=epochs,
              callbacks=[Clock()], verbose=0)
    # The first epoch includes tracing; later ones are the steady cost.
    steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
    return {"n_train": len(xtr), "frames": x_train.shape[1], "extract_s": extract_s, "epochs": epochs,
            "epoch_s": steady, "first_epoch_s": times[0],
            "est_30_s": times[0] + steady * (PLAIN_EPOCHS - 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=FSDD, help="FSDD folder (default: %(default)s)")
    p.add_argument("--plain-epochs", type=int, default=2, help="plain epochs to time (default: %(default)s)")
    p.add_argument("--skip-plain", action="store_true")
    p.add_argument("--home", type=Path, default=Path(os.environ.get("AUDIOCLF_HOME", DEFAULT_HOME)))
    args = p.parse_args(argv)
    os.environ["AUDIOCLF_HOME"] = str(args.home.resolve())
    print(f"load: {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus", flush=True)
    a = audioclf_run(args.data)
    print(f"\naudioclf default ({a['model']['kind']} {a['model']['rnn_units']}, MFCCConfig()): "
          f"{a['n_train']} training clips, features from cache {a['extract_s']:.1f}s")
    print(f"  epochs {a['epochs']} (best {a['best_epoch']}), {a['epoch_s']:.1f} s/epoch, "
          f"time to best {a['to_best_s']:.1f} s, training {a['train_s']:.1f} s, whole run {a['wall_s']:.1f} s")
    print(f"  val acc {a['val_acc']:.3f}, test acc {a['test_acc']:.3f}, test macro F1 {a['test_f1']:.3f}")
    print(f"  target: best within {TARGET_S:.0f} s -> {'PASS' if a['to_best_s'] <= TARGET_S else 'FAIL'}")
    if not args.skip_plain:
        b = plain_run(args.data, args.plain_epochs)
        print(f"\nplain BiLSTM{PLAIN_UNITS} @ {PLAIN_SR} Hz hop {PLAIN_HOP}, batch {PLAIN_BATCH}: "
              f"{b['n_train']} clips padded to {b['frames']} frames, librosa loop {b['extract_s']:.1f}s")
        print(f"  first epoch {b['first_epoch_s']:.1f} s, then {b['epoch_s']:.1f} s/epoch; "
              f"30 epochs ~ {b['est_30_s']:.0f} s")
        print(f"\nratio plain 30 epochs / audioclf time to best: {b['est_30_s'] / a['to_best_s']:.1f}x; "
              f"per epoch: {b['epoch_s'] / a['epoch_s']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
