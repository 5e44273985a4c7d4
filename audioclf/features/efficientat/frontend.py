"""EfficientAT's front end in NumPy: 32 kHz waveform -> normalised log-mel (128 x frames, 10 ms each).

The same numbers as the official ``AugmentMelSTFT`` in eval mode::

    y[t] - 0.97 y[t-1]                      pre-emphasis (one sample shorter)
    |STFT|^2                                n_fft 1024, hop 320, symmetric Hann of 800 centred in 1024,
                                            frames centred (reflect padding at both ends)
    Kaldi mel banks @ power                 128 triangles on the mel scale 1127 ln(1 + f/700), 0-15 kHz
    (log(mel + 1e-5) + 4.5) / 5
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse

from audioclf.features.efficientat import params

MIN_SAMPLES = params.N_FFT // 2 + 2  # reflect padding needs more samples than the pad (after pre-emphasis)


def num_frames(n_samples: int) -> int:
    """Mel frames for ``n_samples`` at 32 kHz (short inputs are padded to :data:`MIN_SAMPLES`)."""
    return 1 + (max(n_samples, MIN_SAMPLES) - 1) // params.HOP_LENGTH


def preemphasis(y: np.ndarray, coef: float = params.PREEMPHASIS) -> np.ndarray:
    """``y[1:] - coef * y[:-1]``: the official filter is a valid convolution, one sample shorter."""
    return y[1:] - np.float32(coef) * y[:-1]


@functools.lru_cache(maxsize=None)
def stft_window(win_length: int = params.WIN_LENGTH, n_fft: int = params.N_FFT) -> np.ndarray:
    """A symmetric Hann window of ``win_length`` zero-padded on both sides to ``n_fft`` (as torch.stft does)."""
    window = scipy.signal.get_window("hann", win_length, fftbins=False).astype(np.float32)
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft, dtype=np.float32)
    out[left:left + win_length] = window
    out.setflags(write=False)
    return out


def power_spectrogram(y: np.ndarray, n_fft: int = params.N_FFT, hop: int = params.HOP_LENGTH) -> np.ndarray:
    """(n_fft // 2 + 1, frames) power of the centred, reflect-padded STFT of ``y`` (float32; a transposed view)."""
    padded = np.pad(y, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * stft_window(n_fft=n_fft)
    spec = scipy.fft.rfft(frames, axis=-1)  # float32 in, complex64 out: the official code is float32 too
    return (spec.real ** 2 + spec.imag ** 2).T


def kaldi_mel_scale(freq: np.ndarray | float) -> np.ndarray:
    """Kaldi's (and HTK's) mel scale, ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=None)
def mel_banks(n_mels: int = params.N_MELS, n_fft: int = params.N_FFT, sr: int = params.SAMPLE_RATE,
              fmin: float = params.FMIN, fmax: float = params.FMAX) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Kaldi-style triangular mel filters, without VTLN warping.

    As Kaldi's ``MelBanks`` (and torchaudio.compliance.kaldi.get_mel_banks): the
    band edges are equally spaced on the mel scale between ``fmin`` and ``fmax``,
    each triangle rises from its left edge to 1 at its centre and falls to its right
    edge *in the mel domain*, and only the ``n_fft // 2`` bins below Nyquist get
    weights; the Nyquist bin's column is zero. Not librosa's Slaney filters: no
    area normalisation, triangles linear in mel rather than in Hz.
    """
    if not 0.0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"Mel bands need 0 <= fmin < fmax <= {sr / 2:g} Hz, got {fmin:g} and {fmax:g}.")
    lo, hi = kaldi_mel_scale(fmin), kaldi_mel_scale(fmax)
    delta = (hi - lo) / (n_mels + 1)
    edges = lo + delta * np.arange(n_mels + 2)[:, None]  # left, centre, right of band i: edges[i], [i+1], [i+2]
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    mel = kaldi_mel_scale(np.arange(n_fft // 2) * (sr / n_fft))[None, :]
    rising = (mel - left) / (centre - left)
    falling = (right - mel) / (right - centre)
    banks = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    banks[:, :-1] = np.maximum(0.0, np.minimum(rising, falling))
    banks.setflags(write=False)
    return banks


@functools.lru_cache(maxsize=1)
def _sparse_banks():
    # Each FFT bin feeds at most two bands: a sparse product is ~5x faster than BLAS's dense one
    # single-threaded, and never wakes a BLAS thread pool (which, on a busy machine, cost 10x more).
    return scipy.sparse.csr_array(mel_banks().T)


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """EfficientAT's input for a mono 32 kHz waveform in [-1, 1]: (128, frames) float32, 10 ms per frame.

    Inputs shorter than :data:`MIN_SAMPLES` (about 16 ms) are zero-padded at the end
    first, since centred reflect padding needs more samples than it adds.
    """
    y = np.asarray(waveform, dtype=np.float32).ravel()
    if y.size < MIN_SAMPLES:
        y = np.pad(y, (0, MIN_SAMPLES - y.size))
    power = power_spectrogram(preemphasis(y))
    mel = power.T @ _sparse_banks()  # (frames, 513) @ (513, 128), both C-contiguous
    out = (np.log(mel + np.float32(params.LOG_OFFSET)) + np.float32(params.NORM_SHIFT)) / np.float32(params.NORM_SCALE)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def frame_times(n: int) -> np.ndarray:
    """Centres (s) of the first ``n`` mel frames (frame i is centred on sample i * hop)."""
    return (np.arange(n) * params.HOP_LENGTH / params.SAMPLE_RATE).astype(np.float32)


def sequence_times(n: int) -> np.ndarray:
    """Centres (s) of the first ``n`` steps of the network's time sequence (32 mel frames each)."""
    step = params.SEQUENCE_HOP_SECONDS
    return (np.arange(n) * step + step / 2).astype(np.float32)


