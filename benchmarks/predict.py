"""Prediction latency: one 5 s clip, a loaded model, YAMNet features.

    python benchmarks/predict.py                 # trains a small YAMNet run first (~1 min)
    python benchmarks/predict.py --run RUN_ID    # reuse a finished run with YAMNet features

Times `load_audio(file)` + `Predictor.predict_clip(clip)` (what the Predict page
does per upload: decode, resample, batched YAMNet windows, one model call for
the whole clip and its 2 s windows) over 50 calls after a warm-up, and prints
the median and 95th percentile. Beside it the plain way, also per call: the
same decode, YAMNet one window per interpreter call, then `keras
Model.predict` on the padded embeddings. Target: median <= 100 ms.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
FSDD = SHARED / "datasets" / "fsdd"
YAMNET = SHARED / "models" / "yamnet" / "yamnet.tflite"
DEFAULT_HOME = ROOT / "workspace" / "benchmarks"
CALLS, WARMUP, SECONDS = 50, 3, 5.0
TARGET_MS = 100.0
TRAIN_CLIPS_PER_DIGIT = 20


def train_yamnet_run(yamnet: str, home: Path) -> str:
    """A small real run: default model on YAMNet embeddings of 200 FSDD clips, 5 epochs."""
    from audioclf.datasets import SplitConfig
    from audioclf.features import YAMNetConfig
    from audioclf.training import RunConfig, TrainConfig, train

    manifest = home / "bench" / "fsdd-predict.csv"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for digit in sorted(p.name for p in FSDD.iterdir() if p.is_dir()):
            for path in sorted((FSDD / digit).glob("*.wav"))[:TRAIN_CLIPS_PER_DIGIT]:
                w.writerow([str(path), digit])
    cfg = RunConfig(dataset=str(manifest), split=SplitConfig(val=0.2, test=0.1),
                    features=YAMNetConfig(model=yamnet), train=TrainConfig(epochs=5),
                    name="bench predict")
    return train(cfg)


def five_second_file(dest: Path) -> Path:
    """Ten FSDD clips end to end, trimmed or padded to 5 s, written as a 16-bit wav."""
    import soundfile as sf

    paths = sorted(FSDD.glob("*/*_theo_1.wav"))
    y = np.concatenate([sf.read(p, dtype="float32")[0] for p in paths])
    sr = sf.info(paths[0]).samplerate
    n = int(SECONDS * sr)
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    sf.write(dest, y, sr, subtype="PCM_16")
    return dest


def time_calls(fn, calls: int = CALLS, warmup: int = WARMUP) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a finished run with YAMNet features (default: train one)")
    p.add_argument("--yamnet", default=str(YAMNET), help="YAMNet .tflite (default: %(default)s)")
    p.add_argument("--calls", type=int, default=CALLS)
    p.add_argument("--home", type=Path, default=Path(os.environ.get("AUDIOCLF_HOME", DEFAULT_HOME)))
    args = p.parse_args(argv)
    os.environ["AUDIOCLF_HOME"] = str(args.home.resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from audioclf.audio import load_audio
    from audioclf.features import yamnet as Y
    from audioclf.inference import Predictor
    from audioclf.model import pad_sequences
    from audioclf.training import runs

    print(f"load: {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus", flush=True)
    trained = args.run is None
    t = time.perf_counter()
    run_id = args.run or train_yamnet_run(args.yamnet, args.home)
    if trained:
        print(f"trained run {run_id} in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    predictor = Predictor.load(run_id)
    print(f"Predictor.load: {time.perf_counter() - t:.2f} s; model {predictor.model.name}, "
          f"features {predictor.features_cfg}", flush=True)
    if predictor.features_cfg.kind != "yamnet":
        print("the run does not use YAMNet features", file=sys.stderr)
        return 1
    wav = five_second_file(args.home / "bench" / "five_seconds.wav")

    pred = predictor.predict_clip(load_audio(wav))
    ours = time_calls(lambda: predictor.predict_clip(load_audio(wav)), args.calls)

    plain_yamnet = Y.load_model(predictor.features_cfg.model, num_threads=1, batch=0)
    model = predictor.model

    def plain():
        clip = load_audio(wav, sr=Y.SAMPLE_RATE)
        _, emb = plain_yamnet.run_windows(Y.frame_waveform(clip.samples))
        return model.predict(pad_sequences([emb]), verbose=0)

    base = time_calls(plain, args.calls)
    # Where the time goes (same calls, one stage at a time).
    from audioclf.features import extract

    clip = load_audio(wav)
    feats = extract(clip, predictor.features_cfg)
    stages = {"decode (load_audio)": time_calls(lambda: load_audio(wav), args.calls),
              "YAMNet features (extract)": time_calls(lambda: extract(clip, predictor.features_cfg), args.calls),
              "model (predict_features)": time_calls(lambda: predictor.predict_features(feats), args.calls)}
    print(f"\n5 s clip, {len(pred.window_times)} windows of probabilities, predicted {pred.label!r}; "
          f"{args.calls} calls after {WARMUP} warm-up")
    print(f"{'':44} {'median ms':>10} {'p95 ms':>8}")
    print(f"{'audioclf: load_audio + predict_clip':44} {np.median(ours):10.1f} {np.percentile(ours, 95):8.1f}")
    for name, ms in stages.items():
        print(f"{'  of which ' + name:44} {np.median(ms):10.1f} {np.percentile(ms, 95):8.1f}")
    print(f"{'plain: per-window YAMNet + model.predict':44} {np.median(base):10.1f} {np.percentile(base, 95):8.1f}")
    print(f"\nratio plain / audioclf (median): {np.median(base) / np.median(ours):.2f}x")
    print(f"target median <= {TARGET_MS:.0f} ms: {'PASS' if np.median(ours) <= TARGET_MS else 'FAIL'}")
    if trained:
        runs.delete_run(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
