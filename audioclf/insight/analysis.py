"""One clip seen through every feature audioclf computes, within a memory budget (Explore).

    a = analyse_clip("dog.wav", n_fft=1024, hop_length=256)
    plotting.spectrogram(a.spec.db, a.sr, a.heat_hop, freqs=a.spec.freqs)

A 10-minute clip at 44.1 kHz with a 64-sample hop has 413,000 frames: its spectrogram
alone is 850 MB, and no screen shows more than a few thousand columns. So the
analysis first picks a rate and hop the clip can afford
(:func:`audioclf.limits.analysis_plan`: one spectrogram under
``limits.ANALYSIS_MAX_STFT_BYTES``), then pools every array to what a figure draws
(``plotting.MAX_HEATMAP_FRAMES`` columns, ``plotting.MAX_LINE_POINTS`` points). The
result is small (a few MB whatever the clip's length), so an app can cache it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audioclf import limits
from audioclf.audio import Clip, Source, load_audio, probe
from audioclf.insight.plotting import MAX_HEATMAP_BINS, MAX_HEATMAP_FRAMES, MAX_LINE_POINTS, envelope


@dataclass(frozen=True)
class Image:
    """A pooled (rows, columns) image: column j covers frames [j * step, (j + 1) * step)."""

    values: np.ndarray
    freqs: np.ndarray | None = None  # Hz per row, for spectrograms


@dataclass(frozen=True, eq=False)
class ClipAnalysis:
    """What Explore draws for one clip, already reduced to figure size.

    Heat maps (and the centroid and roll-off drawn on them) are pooled by
    ``heat_hop / hop_length`` frames per column, lines (ZCR, RMS) by
    ``line_hop / hop_length``: pass ``heat_hop`` / ``line_hop`` to the plotting
    functions as their hop. ``envelope`` is ``plotting.envelope`` of the waveform
    (times, minimum, maximum), for ``plotting.waveform_envelope``.
    """

    sr: int
    n_fft: int
    hop_length: int  # the hop analysed with (may exceed the one asked for; see `note`)
    frames: int  # analysis frames before pooling
    duration: float
    silent: bool
    note: str | None  # what was changed to fit the budget, for the user
    heat_hop: int
    line_hop: int
    envelope: tuple[np.ndarray, np.ndarray, np.ndarray]
    spec: Image
    mel: Image
    mfcc: np.ndarray
    chroma: np.ndarray
    centroid: np.ndarray
    rolloff: np.ndarray
    zcr: np.ndarray
    rms: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays (what a cache of analyses holds per entry)."""
        arrays = (*self.envelope, self.spec.values, self.mel.values, self.mfcc, self.chroma,
                  self.centroid, self.rolloff, self.zcr, self.rms)
        return int(sum(a.nbytes for a in arrays))


def plan_clip(source: Source, *, sr: int | None, n_fft: int, hop_length: int,
              name: str | None = None) -> tuple[int, int, str | None]:
    """(rate, hop, note) an analysis of this file can afford, from its header alone."""
    info = probe(source, name=name)
    return limits.analysis_plan(info.duration, sr or info.sr, n_fft, hop_length)


def load_for_analysis(source: Source, *, sr: int | None, n_fft: int, hop_length: int,
                      name: str | None = None) -> tuple[Clip, int, str | None]:
    """The clip at the rate an analysis can afford, with that analysis's hop and a note."""
    rate, hop, note = plan_clip(source, sr=sr, n_fft=n_fft, hop_length=hop_length, name=name)
    return load_audio(source, sr=rate, name=name), hop, note


def analyse_clip(source: Source, *, sr: int | None = None, n_fft: int = 1024, hop_length: int = 256,
                 n_mfcc: int = 20, n_mels: int = 128, name: str | None = None) -> ClipAnalysis:
    """Every array Explore's figures need, for one file or bytes, within the analysis budget.

    Raises AudioError for bad audio (as ``load_audio``). The spectral features are
    ``features.extract`` with a SpectralConfig of these settings, so a figure shows
    exactly what a model would be fed.
    """
    from audioclf.features import SpectralConfig, extract
    from audioclf.features.spectral import mel_spectrogram_db, spectrogram_db

    clip, hop, note = load_for_analysis(source, sr=sr, n_fft=n_fft, hop_length=hop_length, name=name)
    cfg = SpectralConfig(sr=clip.sr, n_fft=n_fft, hop_length=hop, n_mfcc=min(n_mfcc, n_mels), n_mels=n_mels)
    feats = extract(clip, cfg)
    n = len(feats.values)
    heat_step = max(1, -(-n // MAX_HEATMAP_FRAMES))
    line_step = max(1, -(-n // MAX_LINE_POINTS))
    cols = {c: i for i, c in enumerate(feats.names)}

    def rows(prefix: str) -> np.ndarray:
        return feats.values[:, [i for c, i in cols.items() if c.startswith(prefix)]].T

    def line(column: str, step: int) -> np.ndarray:
        return pool_columns(feats.values[:, cols[column]][None, :], step)[0]

    spec = spectrogram_db(clip.samples, clip.sr, n_fft, hop)
    spec_img = Image(*pool_rows(pool_columns(spec.db, heat_step), spec.freqs, MAX_HEATMAP_BINS))
    del spec
    mel = mel_spectrogram_db(clip.samples, clip.sr, n_fft, hop, n_mels)
    mel_img = Image(pool_columns(mel.db, heat_step), mel.freqs)
    del mel
    return ClipAnalysis(
        sr=clip.sr, n_fft=n_fft, hop_length=hop, frames=n, duration=clip.duration, silent=clip.silent,
        note=note, heat_hop=hop * heat_step, line_hop=hop * line_step,
        envelope=envelope(clip.samples, clip.sr), spec=spec_img, mel=mel_img,
        mfcc=pool_columns(rows("mfcc_"), heat_step), chroma=pool_columns(rows("chroma_"), heat_step),
        centroid=line("centroid", heat_step), rolloff=line("rolloff", heat_step),
        zcr=line("zcr", line_step), rms=line("rms", line_step),
    )


def pool_columns(z: np.ndarray, step: int) -> np.ndarray:
    """Mean of each `step` consecutive columns (the last group over what is left), float32."""
    z = np.asarray(z, dtype=np.float32)
    if step <= 1:
        return np.ascontiguousarray(z)
    n = z.shape[1]
    full = n // step * step
    pooled = z[:, :full].reshape(z.shape[0], -1, step).mean(axis=2)
    if full < n:
        pooled = np.concatenate([pooled, z[:, full:].mean(axis=1, keepdims=True)], axis=1)
    return pooled.astype(np.float32)


def pool_rows(z: np.ndarray, freqs: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `limit` rows: means of groups of rows, and of their frequencies."""
    step = max(1, -(-z.shape[0] // limit))
    if step == 1:
        return z, np.asarray(freqs, dtype=np.float64)
    usable = z.shape[0] // step * step
    pooled = z[:usable].reshape(-1, step, z.shape[1]).mean(axis=1).astype(np.float32)
    return pooled, np.asarray(freqs[:usable], dtype=np.float64).reshape(-1, step).mean(axis=1)
