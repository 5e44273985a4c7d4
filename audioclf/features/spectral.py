"""librosa frame features: MFCC, spectral centroid, roll-off, zero-crossing rate, chroma, RMS.

Everything for one clip comes from ONE short-time Fourier transform: the
magnitude is computed once and handed to ``librosa.feature.*`` through ``S=``.
Mel and chroma filter banks depend only on the settings, so they are built
once per process and reused for every clip.

The plot helpers (:func:`spectrogram_db`, :func:`mel_spectrogram_db`) use the
same frames, so a plot and the features fed to a model line up exactly.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import librosa
import numpy as np
import scipy.fft

# librosa loads its submodules lazily, on first attribute access (~1-5 s of scipy and
# numba imports). Import them here so that the process pool's forkserver, which
# preloads this module, pays that once instead of every worker on its first clip.
import librosa.core.spectrum  # noqa: F401,E402
import librosa.feature  # noqa: F401,E402
import librosa.filters  # noqa: F401,E402
import librosa.util.utils  # noqa: F401,E402  (compiles numba kernels at import)
import librosa.core.audio  # noqa: F401,E402
import librosa.effects  # noqa: F401,E402

from audioclf.audio import Clip
from audioclf.features import Features, MFCCConfig, SpectralConfig

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
ROLL_PERCENT = 0.85
DELTA_WIDTH = 9
TOP_DB = 80.0  # dynamic range kept by the dB plots (librosa's default)
STFT_BLOCK = 2048  # frames per FFT call: ~8 MB of temporaries at n_fft 1024


class Spectrogram(NamedTuple):
    """A (bins, frames) dB image with its axes: frame-centre ``times`` (s) and bin ``freqs`` (Hz)."""

    db: np.ndarray
    times: np.ndarray
    freqs: np.ndarray


def frames(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """(n_frames, frame_length) view of centred frames: ``y`` zero-padded by half a frame
    at each end, as librosa frames with ``center=True, pad_mode="constant"``."""
    padded = np.pad(np.asarray(y, dtype=np.float32), frame_length // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]


@lru_cache(maxsize=8)
def hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, librosa's default STFT window."""
    return librosa.filters.get_window("hann", n_fft, fftbins=True).astype(np.float32)


def stft_magnitude(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT| (bins, frames); centred frames, zero-padded so even a tiny clip gives one frame.

    The same numbers as ``abs(librosa.stft(y, n_fft, hop_length, pad_mode="constant"))``
    (to float32 rounding, tested) in a third of the time on short clips, where
    librosa.stft's per-call set-up costs more than the FFTs.
    """
    # Constant (zero) padding: reflection needs at least n_fft/2 samples and
    # would invent signal in very short clips.
    windowed = frames(y, n_fft, hop_length)
    out = np.empty((windowed.shape[0], n_fft // 2 + 1), dtype=np.float32)
    for i in range(0, len(windowed), STFT_BLOCK):  # blocks bound the temporaries on long clips
        out[i:i + STFT_BLOCK] = np.abs(scipy.fft.rfft(windowed[i:i + STFT_BLOCK] * hann(n_fft), axis=-1))
    return out.T


def frame_times(n_frames: int, sr: int, hop_length: int) -> np.ndarray:
    """Centre time (s) of each centred STFT frame."""
    return (np.arange(n_frames) * (hop_length / sr)).astype(np.float32)


@lru_cache(maxsize=16)
def mel_basis(sr: int, n_fft: int, n_mels: int, fmax: float | None = None) -> np.ndarray:
    """librosa's Slaney mel filter bank (n_mels, 1 + n_fft/2), cached per settings."""
    fmax = None if fmax is None else min(float(fmax), sr / 2.0)  # sr=None configs meet any rate
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax).astype(np.float32)


@lru_cache(maxsize=16)
def chroma_basis(sr: int, n_fft: int) -> np.ndarray:
    # tuning=0: estimating tuning per clip is slow, and noisy for non-musical sounds.
    return librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0, n_chroma=12).astype(np.float32)


@lru_cache(maxsize=32)
def warped_mel_basis(sr: int, n_fft: int, n_mels: int, fmax: float | None, warp: float) -> np.ndarray:
    """Mel bank reading the spectrum with frequencies scaled by ``warp``: band at f sees f * warp.

    Equivalent to mel_basis applied to the spectrum stretched along frequency by 1/warp,
    i.e. vocal tract length perturbation (a shorter or longer voice, same timing).
    """
    base = mel_basis(sr, n_fft, n_mels, fmax)
    if warp == 1.0:
        return base
    bins = np.arange(base.shape[1], dtype=np.float64)
    # Row m weights bin k by base[m, k / warp]; past Nyquist the weight is 0.
    return np.stack([np.interp(bins / warp, bins, row, right=0.0) for row in base]).astype(np.float32)


def _mfcc_from_power(power: np.ndarray, sr: int, n_fft: int, n_mels: int, n_mfcc: int,
                     fmax: float | None = None, warp: float = 1.0) -> np.ndarray:
    mel = warped_mel_basis(sr, n_fft, n_mels, fmax, warp) @ power
    return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=n_mfcc)


def spectral_frames(y: np.ndarray, sr: int, config: SpectralConfig) -> tuple[np.ndarray, tuple[str, ...]]:
    """(frames, n_mfcc + 16) values and their names, all from one STFT."""
    n_fft, hop = config.n_fft, config.hop_length
    mag = stft_magnitude(y, n_fft, hop)
    power = mag**2
    mfcc = _mfcc_from_power(power, sr, n_fft, config.n_mels, config.n_mfcc)
    centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=n_fft, hop_length=hop)
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=sr, n_fft=n_fft, hop_length=hop, roll_percent=ROLL_PERCENT)
    # ZCR and RMS are time-domain: same framing as the STFT (centred, zero-padded) so frames align.
    padded = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2)
    zcr = librosa.feature.zero_crossing_rate(padded, frame_length=n_fft, hop_length=hop, center=False)
    chroma = librosa.util.normalize(chroma_basis(sr, n_fft) @ power, norm=np.inf, axis=-2)
    # Time-domain RMS: from the Hann-windowed |STFT| it would read sqrt(3/8) too low.
    rms = librosa.feature.rms(y=padded, frame_length=n_fft, hop_length=hop, center=False)
    n = min(m.shape[-1] for m in (mfcc, zcr))
    rows = np.concatenate([mfcc[:, :n], centroid[:, :n], rolloff[:, :n], zcr[:, :n], chroma[:, :n], rms[:, :n]])
    names = (
        tuple(f"mfcc_{i + 1}" for i in range(config.n_mfcc))
        + ("centroid", "rolloff", "zcr")
        + tuple(f"chroma_{p}" for p in PITCH_CLASSES)
        + ("rms",)
    )
    return np.ascontiguousarray(rows.T, dtype=np.float32), names


def trim_silence(y: np.ndarray, top_db: float, n_fft: int, hop_length: int) -> np.ndarray:
    """``y`` without leading/trailing frames quieter than ``top_db`` below its peak (never empty).

    ``librosa.effects.trim(y, top_db, frame_length=n_fft, hop_length=hop_length)``'s cut
    (tested), with the frame energies taken from one strided view rather than its
    general framing code: this runs for every clip of every MFCC extraction.
    """
    y = np.asarray(y, dtype=np.float32)
    if not np.any(y):
        return y  # digital silence: nothing to trim against
    windowed = frames(y, n_fft, hop_length)
    rms = np.empty(len(windowed), dtype=np.float32)
    for i in range(0, len(windowed), STFT_BLOCK):  # blocks bound the temporaries on long clips
        rms[i:i + STFT_BLOCK] = np.sqrt(np.mean(np.square(windowed[i:i + STFT_BLOCK]), axis=-1))
    loud = np.flatnonzero(librosa.power_to_db(rms**2, ref=np.max, top_db=None) > -top_db)
    if not loud.size:
        return y
    return y[loud[0] * hop_length:min(len(y), (loud[-1] + 1) * hop_length)]


def mfcc_frames(y: np.ndarray, sr: int, config: MFCCConfig) -> tuple[np.ndarray, tuple[str, ...]]:
    """(frames, n_mfcc) or (frames, 3*n_mfcc) with deltas, and the names."""
    if config.trim_db is not None:
        y = trim_silence(y, config.trim_db, config.n_fft, config.hop_length)
    power = stft_magnitude(y, config.n_fft, config.hop_length) ** 2
    mfcc = _mfcc_from_power(power, sr, config.n_fft, config.n_mels, config.n_mfcc, config.fmax, config.warp)
    names = tuple(f"mfcc_{i + 1}" for i in range(config.n_mfcc))
    if config.deltas:
        # mode="nearest" works for any number of frames ("interp" needs >= width frames),
        # so short clips and long clips get deltas computed the same way.
        d1 = librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=1, mode="nearest")
        d2 = librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=2, mode="nearest")
        mfcc = np.concatenate([mfcc, d1, d2])
        names = names + tuple(f"delta_{n}" for n in names) + tuple(f"delta2_{n}" for n in names)
    return np.ascontiguousarray(mfcc.T, dtype=np.float32), names


def extract_spectral(clip: Clip, config: SpectralConfig) -> Features:
    """Spectral frame features of a clip already at ``config.sr``."""
    values, names = spectral_frames(clip.samples, clip.sr, config)
    return Features(values, frame_times(len(values), clip.sr, config.hop_length), names, config)


def extract_mfcc(clip: Clip, config: MFCCConfig) -> Features:
    """MFCC sequence of a clip (already at ``config.sr`` unless that is None)."""
    values, names = mfcc_frames(clip.samples, clip.sr, config)
    return Features(values, frame_times(len(values), clip.sr, config.hop_length), names, config)


def spectrogram_db(y: np.ndarray, sr: int, n_fft: int = 2048, hop_length: int = 512) -> Spectrogram:
    """Linear-frequency spectrogram in dB (re the loudest bin), for plots."""
    mag = stft_magnitude(y, n_fft, hop_length)
    db = librosa.amplitude_to_db(mag, ref=np.max, top_db=TOP_DB)
    return Spectrogram(db.astype(np.float32), frame_times(db.shape[1], sr, hop_length), librosa.fft_frequencies(sr=sr, n_fft=n_fft))


def mel_spectrogram_db(y: np.ndarray, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128) -> Spectrogram:
    """Mel spectrogram in dB (re the loudest bin), with mel band centre frequencies, for plots."""
    power = stft_magnitude(y, n_fft, hop_length) ** 2
    db = librosa.power_to_db(mel_basis(sr, n_fft, n_mels) @ power, ref=np.max, top_db=TOP_DB)
    freqs = librosa.mel_frequencies(n_mels=n_mels + 2, fmax=sr / 2.0)[1:-1]
    return Spectrogram(db.astype(np.float32), frame_times(db.shape[1], sr, hop_length), freqs)
