"""Live latency: audio in to label out, for a YAMNet, an EfficientAT and an MFCC run.

    python benchmarks/live.py                      # trains three small demo runs first (~2-3 min)
    python benchmarks/live.py --runs RUN_ID ...    # reuse finished runs

A stream of demo clips (siren, dial tone, rain, ...) at 48 kHz, 16-bit stereo,
cut into 20 ms blocks as a browser's WebRTC track delivers it, is fed to
`audioclf.inference.live.LiveClassifier` (window 1.5 s, a label every 0.5 s). The
latency of a label is the time from the `feed` call that delivered the last
sample of its window to the label being returned. Beside it the plain way,
measured in the same run on the same blocks: keep the raw audio and, every hop,
`Predictor.predict_clip` on the last window (resample, extract every feature
frame again, one model call; no reuse). The app's page shows the newest label
on its next refresh (every `REFRESH` s), which adds on average half of that.

Prints median and 95th percentile per run and way, and PASS/FAIL for the
targets (YAMNet: median <= 300 ms; EfficientAT: median <= 100 ms).
"""
from __future__ import annotations

import argparse
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
DEFAULT_HOME = ROOT / "workspace" / "benchmarks"
RATE, BLOCK = 48000, 960  # what the browser sends: 20 ms blocks at 48 kHz
WINDOW, HOP = 1.5, 0.5
STREAM_CLIPS = 8  # demo clips (2-4 s each) in the stream
TARGETS_MS = {"yamnet": 300.0, "efficientat": 100.0}
REFRESH = 0.25  # s between refreshes of the app's live label (app_pages/mic.py)


def train_runs(home: Path, yamnet: str, efficientat: str) -> list[str]:
    """Three small real runs on the demo data set: the default model on YAMNet, EfficientAT and MFCC."""
    from audioclf.datasets import SplitConfig, make_demo_dataset
    from audioclf.features import EfficientATConfig, MFCCConfig, YAMNetConfig
    from audioclf.training import RunConfig, TrainConfig, train

    root = make_demo_dataset(home / "bench" / "demo-live", clips_per_class=8)
    out = []
    for name, feats in (("bench live yamnet", YAMNetConfig(model=yamnet)),
                        ("bench live efficientat", EfficientATConfig(model=efficientat)),
                        ("bench live mfcc", MFCCConfig())):
        cfg = RunConfig(dataset=str(root), split=SplitConfig(val=0.25, test=0.25), features=feats,
                        train=TrainConfig(epochs=5, patience=None), name=name)
        out.append(train(cfg))
    return out


def stream(seed: int = 7) -> tuple[np.ndarray, list[str]]:
    """Demo clips end to end at 48 kHz as interleaved int16 stereo, and their classes."""
    from audioclf.datasets import synth_clip
    from audioclf.datasets.demo import CLASSES

    rng = np.random.default_rng(seed)
    labels = [CLASSES[i % len(CLASSES)] for i in range(STREAM_CLIPS)]
    y = np.concatenate([synth_clip(lab, rng, RATE) for lab in labels])
    pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16)
    return np.repeat(pcm, 2), labels


def run_live(predictor, pcm: np.ndarray) -> np.ndarray:
    """Latencies (ms) of LiveClassifier's labels over the stream."""
    from audioclf.inference import LiveClassifier

    live = LiveClassifier(predictor, window=WINDOW, hop=HOP, threshold=0.0)
    live.warm_up(RATE)
    out = []
    for i in range(0, len(pcm), 2 * BLOCK):
        out += [p.latency for p in live.feed(pcm[i:i + 2 * BLOCK], RATE, channels=2)]
    return np.array(out) * 1000


def run_plain(predictor, pcm: np.ndarray) -> np.ndarray:
    """Latencies (ms) of per-window predict_clip on the raw 48 kHz audio (no reuse)."""
    from audioclf.audio import Clip
    from audioclf.inference import to_mono_float

    win, hop = int(WINDOW * RATE), int(HOP * RATE)
    buf = np.zeros(0, np.float32)
    due, out = win, []
    predictor.predict_clip(Clip(np.zeros(win, np.float32) + 1e-3, RATE))  # warm-up, as the live one
    for i in range(0, len(pcm), 2 * BLOCK):
        arrived = time.perf_counter()
        buf = np.concatenate([buf, to_mono_float(pcm[i:i + 2 * BLOCK], 2)])
        while len(buf) >= due:
            predictor.predict_clip(Clip(buf[due - win:due], RATE))
            out.append(time.perf_counter() - arrived)
            due += hop
    return np.array(out) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", help="finished runs (default: train a YAMNet, an EfficientAT and an MFCC run)")
    p.add_argument("--yamnet", default=str(YAMNET), help="YAMNet .tflite (default: %(default)s)")
    p.add_argument("--efficientat", default=str(EFFICIENTAT), help="EfficientAT checkpoint (default: %(default)s)")
    p.add_argument("--home", type=Path, default=Path(os.environ.get("AUDIOCLF_HOME", DEFAULT_HOME)))
    args = p.parse_args(argv)
    os.environ["AUDIOCLF_HOME"] = str(args.home.resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("AUDIOCLF_YAMNET", args.yamnet)

    from audioclf.inference import Predictor
    from audioclf.training import runs

    print(f"load: {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus", flush=True)
    t = time.perf_counter()
    run_ids = args.runs or train_runs(args.home, args.yamnet, args.efficientat)
    if not args.runs:
        print(f"trained {len(run_ids)} runs in {time.perf_counter() - t:.1f} s", flush=True)
    pcm, labels = stream()
    print(f"stream: {len(pcm) / 2 / RATE:.1f} s of {', '.join(labels)}; window {WINDOW} s, hop {HOP} s, "
          f"{BLOCK / RATE * 1000:.0f} ms blocks at {RATE} Hz stereo int16")
    print(f"\n{'run':40} {'way':46} {'labels':>6} {'median ms':>10} {'p95 ms':>8}")
    verdicts = []
    for run_id in run_ids:
        predictor = Predictor.load(run_id)
        kind = predictor.features_cfg.kind
        name = f"{run_id} ({kind}, {runs.load_run(run_id).config['model']['kind']})"
        ours, plain = run_live(predictor, pcm), run_plain(predictor, pcm)
        for way, ms in (("audioclf: LiveClassifier.feed", ours),
                        ("plain: predict_clip on each window", plain)):
            print(f"{name:40} {way:46} {len(ms):6d} {np.median(ms):10.1f} {np.percentile(ms, 95):8.1f}")
        print(f"{'':40} {'ratio plain / audioclf (median)':46} {'':6} {np.median(plain) / np.median(ours):9.2f}x")
        if kind in TARGETS_MS:
            verdicts.append((kind, np.median(ours) <= TARGETS_MS[kind]))
    print(f"\nThe page refreshes its label every {REFRESH} s: add {REFRESH / 2 * 1000:.0f} ms on average "
          f"({REFRESH * 1000:.0f} ms at most) from label to screen.")
    for kind, ok in verdicts:
        print(f"target {kind} median <= {TARGETS_MS[kind]:.0f} ms: {'PASS' if ok else 'FAIL'}")
    if not args.runs:
        for run_id in run_ids:
            runs.delete_run(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
