"""Classify audio files with an exported audioclf model, without audioclf.

    python predict.py FILE...                 # prints file,label,probability lines
    python predict.py --threshold 0 FILE...   # never answer "unknown"

This file is copied into every export bundle as ``predict.py`` (see
``audioclf.export``). It needs only numpy, soundfile, soxr and ai-edge-litert,
plus librosa for MFCC and spectral features; it computes the same features as
audioclf (decoding, mono mix, soxr HQ resampling, silence trim, centred
zero-padded STFT, Slaney mel bank, MFCC) and runs the bundle's ``model.tflite``
on them. YAMNet runs use the bundle's ``yamnet.tflite`` (or ``--yamnet PATH``).
It must not import audioclf: it runs where audioclf is not installed.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

HERE = Path(__file__).resolve().parent
UNKNOWN = "unknown"
# YAMNet framing (audioclf.features.yamnet): 0.975 s windows every 0.48 s at 16 kHz.
YAMNET_SR, YAMNET_WINDOW, YAMNET_HOP = 16000, 15600, 7680
YAMNET_EMBEDDING = "yamnet_frames/global_average_pooling2d/Mean"
ROLL_PERCENT, DELTA_WIDTH = 0.85, 9


# ---------------------------------------------------------------- audio


def unit_range(y: np.ndarray) -> np.ndarray:
    """Scale down (never clip) samples beyond full scale, as audioclf does."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return y / peak if peak > 1.0 else y


def load(path: str, sr: int | None) -> tuple[np.ndarray, int]:
    """Mono float32 samples of a file at rate ``sr`` (None keeps the file's)."""
    data, native = sf.read(path, dtype="float32", always_2d=True)
    if not len(data):
        raise ValueError(f"{path} contains no audio samples")
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr and sr != native:
        y = unit_range(np.ascontiguousarray(soxr.resample(y, native, sr, quality="HQ"), dtype=np.float32))
    return unit_range(np.ascontiguousarray(y, dtype=np.float32)), int(sr or native)


# ---------------------------------------------------------------- librosa features


def frames(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Centred frames of ``y`` zero-padded by half a frame at each end."""
    padded = np.pad(np.asarray(y, dtype=np.float32), frame_length // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]


def stft_magnitude(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT| (bins, frames) with a periodic Hann window, as librosa.stft(pad_mode="constant")."""
    import librosa
    import scipy.fft  # librosa's own dependency

    window = librosa.filters.get_window("hann", n_fft, fftbins=True).astype(np.float32)
    return np.abs(scipy.fft.rfft(frames(y, n_fft, hop_length) * window, axis=-1)).astype(np.float32).T


def trim_silence(y: np.ndarray, top_db: float, n_fft: int, hop_length: int) -> np.ndarray:
    """``y`` without leading/trailing frames quieter than ``top_db`` below its peak."""
    import librosa

    if not np.any(y):
        return y
    rms = np.sqrt(np.mean(np.square(frames(y, n_fft, hop_length)), axis=-1))
    loud = np.flatnonzero(librosa.power_to_db(rms**2, ref=np.max, top_db=None) > -top_db)
    if not loud.size:
        return y
    return y[loud[0] * hop_length:min(len(y), (loud[-1] + 1) * hop_length)]


def mel_bank(sr: int, n_fft: int, n_mels: int, fmax: float | None = None, warp: float = 1.0) -> np.ndarray:
    import librosa

    fmax = None if fmax is None else min(float(fmax), sr / 2.0)
    base = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax).astype(np.float32)
    if warp == 1.0:
        return base
    bins = np.arange(base.shape[1], dtype=np.float64)
    return np.stack([np.interp(bins / warp, bins, row, right=0.0) for row in base]).astype(np.float32)


def mfcc_from_power(power: np.ndarray, sr: int, n_fft: int, n_mels: int, n_mfcc: int,
                    fmax: float | None = None, warp: float = 1.0) -> np.ndarray:
    import librosa

    mel = mel_bank(sr, n_fft, n_mels, fmax, warp) @ power
    return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=n_mfcc)


def mfcc_features(y: np.ndarray, sr: int, cfg: dict) -> np.ndarray:
    """(frames, dims) MFCCs (with deltas if the config has them)."""
    import librosa

    n_fft, hop = int(cfg["n_fft"]), int(cfg["hop_length"])
    if cfg.get("trim_db") is not None:
        y = trim_silence(y, float(cfg["trim_db"]), n_fft, hop)
    power = stft_magnitude(y, n_fft, hop) ** 2
    mfcc = mfcc_from_power(power, sr, n_fft, int(cfg["n_mels"]), int(cfg["n_mfcc"]), cfg.get("fmax"),
                           float(cfg.get("warp") or 1.0))
    if cfg.get("deltas"):
        d1 = librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=1, mode="nearest")
        d2 = librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=2, mode="nearest")
        mfcc = np.concatenate([mfcc, d1, d2])
    return np.ascontiguousarray(mfcc.T, dtype=np.float32)


def spectral_features(y: np.ndarray, sr: int, cfg: dict) -> np.ndarray:
    """(frames, n_mfcc + 16): MFCC, centroid, roll-off, ZCR, 12 chroma bins, RMS."""
    import librosa

    n_fft, hop = int(cfg["n_fft"]), int(cfg["hop_length"])
    mag = stft_magnitude(y, n_fft, hop)
    power = mag**2
    mfcc = mfcc_from_power(power, sr, n_fft, int(cfg["n_mels"]), int(cfg["n_mfcc"]))
    centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=n_fft, hop_length=hop)
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=sr, n_fft=n_fft, hop_length=hop, roll_percent=ROLL_PERCENT)
    padded = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2)
    zcr = librosa.feature.zero_crossing_rate(padded, frame_length=n_fft, hop_length=hop, center=False)
    bank = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0, n_chroma=12).astype(np.float32)
    chroma = librosa.util.normalize(bank @ power, norm=np.inf, axis=-2)
    rms = librosa.feature.rms(y=padded, frame_length=n_fft, hop_length=hop, center=False)
    n = min(m.shape[-1] for m in (mfcc, zcr))
    rows = np.concatenate([mfcc[:, :n], centroid[:, :n], rolloff[:, :n], zcr[:, :n], chroma[:, :n], rms[:, :n]])
    return np.ascontiguousarray(rows.T, dtype=np.float32)


# ---------------------------------------------------------------- YAMNet


class YAMNet:
    """YAMNet's 1024-d embedding per 0.975 s window, from its TFLite file."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        if not Path(path).is_file():
            raise SystemExit(f"predict.py: no YAMNet model at {path}; give its path with --yamnet")
        # The embedding is an intermediate tensor: keep every tensor readable after invoke()
        # (the runtime warns that this is for debugging; here it is the point).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        self.it.allocate_tensors()
        self.input = self.it.get_input_details()[0]["index"]
        self.emb = next(t["index"] for t in self.it.get_tensor_details() if t["name"] == YAMNET_EMBEDDING)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        n = 1 + -(-max(0, len(y) - YAMNET_WINDOW) // YAMNET_HOP)
        padded = np.zeros(YAMNET_WINDOW + (n - 1) * YAMNET_HOP, np.float32)
        padded[:len(y)] = y
        out = []
        for i in range(n):
            self.it.set_tensor(self.input, padded[None, i * YAMNET_HOP:i * YAMNET_HOP + YAMNET_WINDOW])
            self.it.invoke()
            out.append(np.array(self.it.get_tensor(self.emb), np.float32).reshape(-1))
        return np.stack(out)


# ---------------------------------------------------------------- the classifier


class Classifier:
    """The bundle: feature config, labels and model.tflite (batch 1, any number of frames)."""

    def __init__(self, folder: Path = HERE, yamnet: str | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.features = json.loads((folder / "features.json").read_text())
        self.labels = json.loads((folder / "labels.json").read_text())
        info = folder / "run.json"
        self.threshold = float((json.loads(info.read_text()) if info.is_file() else {}).get("threshold") or 0.0)
        model = folder / "model.tflite"
        if not model.is_file():
            raise SystemExit("predict.py: this bundle has no model.tflite (see README.md: use saved_model/ "
                             "with TensorFlow instead)")
        self.it = Interpreter(model_path=str(model))
        self.input = self.it.get_input_details()[0]
        self.output = self.it.get_output_details()[0]["index"]
        self.kind = self.features["kind"]
        self.yamnet = YAMNet(Path(yamnet) if yamnet else folder / "yamnet.tflite") if self.kind == "yamnet" else None

    def rate(self) -> int | None:
        return YAMNET_SR if self.kind == "yamnet" else self.features.get("sr")

    def extract(self, path: str) -> np.ndarray:
        """The (frames, dims) features audioclf would compute for this file."""
        y, sr = load(path, self.rate())
        if self.kind == "yamnet":
            return self.yamnet(y)
        if self.kind == "mfcc":
            return mfcc_features(y, sr, self.features)
        return spectral_features(y, sr, self.features)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features[None], dtype=np.float32)
        self.it.resize_tensor_input(self.input["index"], list(x.shape))
        self.it.allocate_tensors()
        self.it.set_tensor(self.input["index"], x)
        self.it.invoke()
        return np.array(self.it.get_tensor(self.output), np.float64)[0]

    def predict(self, path: str, threshold: float | None = None) -> tuple[str, float]:
        """(label, probability): the likeliest class, or "unknown" below the threshold."""
        probs = self.probabilities(self.extract(path))
        k = int(np.argmax(probs))
        limit = self.threshold if threshold is None else threshold
        return (UNKNOWN if probs[k] < limit else self.labels[k]), float(probs[k])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Classify audio files with this exported audioclf model; "
                                "prints file,label,probability lines.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--threshold", type=float, default=None,
                   help="below this probability the label is 'unknown' (default: the run's suggestion "
                        "in run.json; 0 = off)")
    p.add_argument("--yamnet", help="YAMNet .tflite file (default: yamnet.tflite beside this script)")
    args = p.parse_args(argv)
    clf = Classifier(HERE, args.yamnet)
    status = 0
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["file", "label", "probability"])
    for path in args.files:
        try:
            label, prob = clf.predict(path, args.threshold)
        except (OSError, ValueError, RuntimeError) as exc:  # unreadable file: say so, go on
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        out.writerow([path, label, f"{prob:.4f}"])
    return status


if __name__ == "__main__":
    sys.exit(main())
