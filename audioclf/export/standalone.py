"""Classify audio files with an exported audioclf model, without audioclf.

    python predict.py FILE...                 # prints file,label,probability lines
    python predict.py --threshold 0 FILE...   # never answer "unknown"

This file is copied into every export bundle as ``predict.py`` (see
``audioclf.export``). It needs only numpy, soundfile, soxr and ai-edge-litert,
plus librosa for MFCC and spectral features and scipy for EfficientAT; it computes the same features as
audioclf (decoding, mono mix, soxr HQ resampling, silence trim, centred
zero-padded STFT, Slaney mel bank, MFCC) and runs the bundle's ``model.tflite``
on them. YAMNet runs use the bundle's ``yamnet.tflite`` (or ``--yamnet PATH``);
EfficientAT runs its NumPy front end (Kaldi mel banks, as the official model)
and the bundle's ``efficientat.tflite``.
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
# EfficientAT's front end (audioclf.features.efficientat.params): 32 kHz, 10 ms log-mel frames.
EAT_SR, EAT_N_FFT, EAT_WIN, EAT_HOP, EAT_MELS, EAT_FMAX = 32000, 1024, 800, 320, 128, 15000.0
EAT_PREEMPHASIS, EAT_LOG_OFFSET, EAT_SHIFT, EAT_SCALE = 0.97, 1e-5, 4.5, 5.0
# The network's step is 32 mel frames (0.32 s); "windows" are 3 steps (0.96 s) every step.
EAT_STEP_FRAMES, EAT_WINDOW_FRAMES = 32, 96


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


# ---------------------------------------------------------------- EfficientAT


def eat_window() -> np.ndarray:
    """A symmetric Hann window of 800 samples centred in 1024 zeros (as torch.stft pads it)."""
    n = np.arange(EAT_WIN, dtype=np.float64)
    hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (EAT_WIN - 1))).astype(np.float32)
    out = np.zeros(EAT_N_FFT, np.float32)
    left = (EAT_N_FFT - EAT_WIN) // 2
    out[left:left + EAT_WIN] = hann
    return out


def kaldi_mel(freq) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def eat_mel_banks() -> np.ndarray:
    """(128, 513) Kaldi-style triangles, linear in mel, 0-15 kHz; the Nyquist bin gets no weight."""
    lo, hi = kaldi_mel(0.0), kaldi_mel(EAT_FMAX)
    edges = lo + (hi - lo) / (EAT_MELS + 1) * np.arange(EAT_MELS + 2)[:, None]
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    mel = kaldi_mel(np.arange(EAT_N_FFT // 2) * (EAT_SR / EAT_N_FFT))[None, :]
    banks = np.zeros((EAT_MELS, EAT_N_FFT // 2 + 1), np.float32)
    banks[:, :-1] = np.maximum(0.0, np.minimum((mel - left) / (centre - left), (right - mel) / (right - centre)))
    return banks


def eat_log_mel(y: np.ndarray) -> np.ndarray:
    """EfficientAT's input for 32 kHz mono samples: (128, frames) normalised log-mel, 10 ms per frame."""
    y = np.asarray(y, np.float32).ravel()
    min_samples = EAT_N_FFT // 2 + 2  # centred reflect padding needs more samples than it adds
    if y.size < min_samples:
        y = np.pad(y, (0, min_samples - y.size))
    y = y[1:] - np.float32(EAT_PREEMPHASIS) * y[:-1]
    padded = np.pad(y, EAT_N_FFT // 2, mode="reflect")
    import scipy.fft  # not numpy.fft: the same float32 transform as audioclf's, so the same rounding

    spec = scipy.fft.rfft(np.lib.stride_tricks.sliding_window_view(padded, EAT_N_FFT)[::EAT_HOP] * eat_window(),
                          axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = power @ eat_mel_banks().T
    out = (np.log(mel + np.float32(EAT_LOG_OFFSET)) + np.float32(EAT_SHIFT)) / np.float32(EAT_SCALE)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def eat_windows(mel: np.ndarray) -> list[np.ndarray]:
    """0.96 s windows of a log-mel every 0.32 s, the last padded with the log-mel of silence; a shorter clip is one."""
    n = mel.shape[1]
    if n <= EAT_WINDOW_FRAMES:
        return [mel]
    starts = np.arange(1 + -(-(n - EAT_WINDOW_FRAMES) // EAT_STEP_FRAMES)) * EAT_STEP_FRAMES
    silence = (np.log(EAT_LOG_OFFSET) + EAT_SHIFT) / EAT_SCALE
    padded = np.full((mel.shape[0], starts[-1] + EAT_WINDOW_FRAMES), silence, np.float32)
    padded[:, :n] = mel
    return [padded[:, s:s + EAT_WINDOW_FRAMES] for s in starts]


class EfficientAT:
    """EfficientAT's features from its TFLite file: the frame sequence, or window embeddings."""

    def __init__(self, path: Path, sequence: str):
        from ai_edge_litert.interpreter import Interpreter

        if not Path(path).is_file():
            raise SystemExit(f"predict.py: no EfficientAT model at {path}")
        if sequence not in ("frames", "windows"):
            raise SystemExit(f"predict.py: unknown EfficientAT sequence {sequence!r} in features.json")
        self.sequence = sequence
        self.runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")

    def run(self, mel: np.ndarray) -> dict[str, np.ndarray]:
        """The network's outputs for one (128, frames) log-mel (batch axis dropped)."""
        out = self.runner(mel=np.ascontiguousarray(mel[None, :, :, None], dtype=np.float32))
        return {k: np.asarray(v, np.float32)[0] for k, v in out.items()}

    def __call__(self, y: np.ndarray, mel: np.ndarray | None = None) -> np.ndarray:
        mel = eat_log_mel(y) if mel is None else mel
        if self.sequence == "frames":
            return self.run(mel)["sequence"]
        return np.stack([self.run(w)["embedding"] for w in eat_windows(mel)])

    def times(self, steps: int, n_frames: int) -> np.ndarray:
        """Centres (s) of the steps of a clip with ``n_frames`` mel frames, as audioclf gives them."""
        hop = EAT_HOP / EAT_SR
        if self.sequence == "frames":
            return np.arange(steps) * EAT_STEP_FRAMES * hop + EAT_STEP_FRAMES * hop / 2
        if n_frames <= EAT_WINDOW_FRAMES:
            return np.array([n_frames * hop / 2])
        return (np.arange(steps) * EAT_STEP_FRAMES + EAT_WINDOW_FRAMES / 2) * hop


def yamnet_alongside(yamnet: YAMNet, y32: np.ndarray, times: np.ndarray) -> np.ndarray:
    """YAMNet's embedding of the window nearest each step (audioclf's ``efficientat ... yamnet=True``)."""
    y16 = unit_range(np.ascontiguousarray(soxr.resample(y32, EAT_SR, YAMNET_SR, quality="HQ"), dtype=np.float32))
    emb = yamnet(y16)
    centres = (np.arange(len(emb)) * YAMNET_HOP + YAMNET_WINDOW / 2) / YAMNET_SR
    return emb[np.abs(np.asarray(times, np.float64)[:, None] - centres[None, :]).argmin(axis=1)]


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
        # An EfficientAT run may hear through YAMNet too ("yamnet" in features.json names the copy).
        hears_yamnet = self.kind == "yamnet" or self.features.get("yamnet") is not None
        self.yamnet = YAMNet(Path(yamnet) if yamnet else folder / "yamnet.tflite") if hears_yamnet else None
        # "mel" (a fine-tuned run): model.tflite holds the network and takes its log-mels
        self.efficientat = EfficientAT(folder / self.features.get("model", "efficientat.tflite"),
                                       self.features.get("sequence", "frames")) \
            if self.kind == "efficientat" and self.features.get("sequence") != "mel" else None

    def rate(self) -> int | None:
        return {"yamnet": YAMNET_SR, "efficientat": EAT_SR}.get(self.kind, self.features.get("sr"))

    def extract(self, path: str) -> np.ndarray:
        """The (frames, dims) features audioclf would compute for this file."""
        y, sr = load(path, self.rate())
        if self.kind == "yamnet":
            return self.yamnet(y)
        if self.kind == "efficientat" and not self.efficientat:
            return np.ascontiguousarray(eat_log_mel(y).T)
        if self.kind == "efficientat":
            mel = eat_log_mel(y)
            seq = self.efficientat(y, mel)
            if self.features.get("yamnet") is None:
                return seq
            return np.hstack([seq, yamnet_alongside(self.yamnet, y, self.efficientat.times(len(seq), mel.shape[1]))])
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
