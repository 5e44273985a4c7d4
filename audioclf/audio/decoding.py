"""Decoding audio: a path or bytes as mono float32 samples at a chosen rate, in bounded blocks.

Decoding is libsndfile (via soundfile, which reads mp3 since libsndfile 1.1),
resampling is soxr at "HQ" quality (what librosa calls ``soxr_hq``). Anything
wrong with the input raises :class:`~audioclf.audio.files.AudioError` with a
message meant for a person: what is wrong with which file, and what to do about it.

What a file may cost is checked from its header before anything is decoded
(:mod:`audioclf.limits`: rate, samples x channels, the decoded clip's memory),
then the file is decoded in blocks, mixed to mono and resampled as it goes, so a
clip never holds more than one block of the file's channels beside its own
mono samples. Opening the file and the checks libsndfile does not make are
:mod:`audioclf.audio.files`.

This module imports only numpy, soundfile and soxr so it stays fast to import.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from audioclf import limits
from audioclf.audio.files import AudioError, AudioInfo, Source, open_sound, short_name, source_label

SILENCE_DB = -60.0  # loudest 2048-sample block quieter than this (dBFS RMS) = silent
SILENCE_BLOCK = 2048
RESAMPLE_QUALITY = "HQ"  # librosa's default "soxr_hq"
# A compressed file that decodes to fewer frames than its header counts was cut off;
# MP3 headers without a frame count are estimates, hence the slack.
TRUNCATED_SHARE = 0.05
TRUNCATED_MIN_SECONDS = 0.1



# eq=False: arrays make dataclass equality ambiguous; compare samples explicitly.
@dataclass(frozen=True, eq=False)
class Clip:
    """Mono float32 samples in [-1, 1] at rate ``sr``."""

    samples: np.ndarray
    sr: int
    name: str = ""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / float(self.sr)

    @property
    def silent(self) -> bool:
        """True when nothing in the clip is louder than :data:`SILENCE_DB`."""
        return is_silent(self.samples)


def is_silent(y: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """True if the loudest block of ``y`` has an RMS level below ``threshold_db`` dBFS.

    Block RMS rather than peak, so one click in digital silence still counts as silent.
    """
    return is_silent_power(loudest_block_power(y), threshold_db)


def loudest_block_power(y: np.ndarray) -> float:
    """Mean square of the loudest SILENCE_BLOCK-sample block of ``y`` (the last block over its
    own length); a long clip is measured a slice at a time, never copied whole to float64."""
    y = np.asarray(y, dtype=np.float32).ravel()
    full = y.size // SILENCE_BLOCK * SILENCE_BLOCK
    loudest = 0.0
    step = SILENCE_BLOCK * 256
    for i in range(0, full, step):
        blocks = y[i:min(i + step, full)].reshape(-1, SILENCE_BLOCK).astype(np.float64)
        loudest = max(loudest, float(np.einsum("ij,ij->i", blocks, blocks).max()) / SILENCE_BLOCK)
    if full < y.size:
        tail = y[full:].astype(np.float64)
        loudest = max(loudest, float(tail @ tail) / tail.size)
    return loudest


def is_silent_power(power: float, threshold_db: float = SILENCE_DB) -> bool:
    """:func:`is_silent` from a :func:`loudest_block_power` (for clips measured block by block)."""
    return bool(power <= 0.0 or 10.0 * math.log10(power) < threshold_db)


def load_audio(
    source: Source,
    sr: int | None = None,
    *,
    max_seconds: float | None = limits.MAX_SECONDS,
    name: str | None = None,
) -> Clip:
    """Load a path or bytes as a mono float32 :class:`Clip` at rate ``sr`` (None keeps the file's).

    Raises :class:`AudioError` for files that are not audio, corrupt, truncated, in an
    unsupported format, empty, longer than ``max_seconds``, with NaN/inf samples, or that
    would cost more to decode than :mod:`audioclf.limits` allows (checked from the header,
    before decoding). Memory: the clip itself plus one decoded block of the file.
    """
    if sr is not None:
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise AudioError(f"Sample rate must be a positive whole number of Hz, got {sr!r}.")
        if limits.rate_problem(int(sr)):
            raise AudioError(f"A sample rate of {int(sr):,} Hz is outside the {limits.MIN_SAMPLE_RATE:,} "
                             f"to {limits.MAX_SAMPLE_RATE:,} Hz audioclf works at.")
    with stream_audio(source, sr=sr, max_seconds=max_seconds, name=name) as (info, blocks):
        out_sr = int(sr or info.sr)
        y = _mono_resampled(blocks, info, out_sr, source_label(source, name))
    if y.size == 0:
        raise AudioError(f"{source_label(source, name)} contains no audio samples; "
                         "record or choose a clip with sound in it.")
    return Clip(samples=to_unit_range(y, inplace=True), sr=out_sr, name=short_name(source, name))


@dataclass(frozen=True)
class Scan:
    """What decoding a whole file found, without keeping its samples (:func:`check_audio`)."""

    info: AudioInfo
    frames: int  # frames actually decoded
    silent: bool


def check_audio(source: Source, *, max_seconds: float | None = limits.MAX_SECONDS, name: str | None = None) -> Scan:
    """Decode a whole file to prove it is usable audio, keeping one block at a time.

    The same checks and messages as :func:`load_audio` (which a file passing this
    one will also pass at its own rate), in the memory of one block.
    """
    loudest, frames = 0.0, 0
    with stream_audio(source, max_seconds=max_seconds, name=name) as (info, blocks):
        for block in blocks:
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
            loudest = max(loudest, loudest_block_power(mono))
            frames += len(block)
    if frames == 0:
        raise AudioError(f"{source_label(source, name)} contains no audio samples; "
                         "record or choose a clip with sound in it.")
    return Scan(info=info, frames=frames, silent=is_silent_power(loudest))


@contextmanager
def stream_audio(
    source: Source,
    *,
    sr: int | None = None,
    max_seconds: float | None = limits.MAX_SECONDS,
    name: str | None = None,
) -> Iterator[tuple[AudioInfo, Iterator[np.ndarray]]]:
    """``with stream_audio(path) as (info, blocks):`` the header, checked against the limits,
    and the file's samples as (frames, channels) float32 blocks.

    ``sr`` is the rate the caller will resample to (None: the file's), for the memory
    check. Each block is overwritten by the next: use it before asking for another.
    Blocks are whole multiples of SILENCE_BLOCK frames (but the last). Raises
    AudioError before decoding for a file that is too long or too costly, and while
    decoding for corrupt data, NaN/inf samples, a file longer than its header says,
    or one that ends far short of it (truncated).
    """
    label = source_label(source, name)
    with open_sound(source, name) as (snd, info):
        # From the header, before decoding: a 2-hour file or a bomb fails in milliseconds.
        if max_seconds is not None and info.duration > max_seconds:
            raise AudioError(
                f"{label} is {info.duration:.1f} s long, more than the {max_seconds:g} s limit; "
                "trim it or split it into shorter clips."
            )
        problem = limits.decode_problem(info.sr, info.channels, info.frames, sr)
        if problem:
            raise AudioError(f"{label} {problem}.")
        yield info, _blocks(snd, info, label, max_seconds, sr)


def stream_pieces(
    source: Source,
    sr: int,
    seconds: float,
    overlap: float = 0.0,
    *,
    max_seconds: float | None = limits.MAX_SECONDS,
    name: str | None = None,
) -> Iterator[tuple[float, Clip, bool]]:
    """A file as consecutive mono clips at ``sr``: ``(start s, Clip, last)`` for pieces of
    ``seconds`` (the last one shorter), each starting ``overlap`` s before the previous ends.

    For work on a long file in the memory of one piece: the whole clip is never held,
    at the file's rate or at ``sr``. The same checks and messages as :func:`load_audio`;
    each piece is scaled into [-1, 1] on its own. Close the generator (or use it up)
    to close the file.
    """
    size = max(1, int(round(seconds * sr)))
    step = size - min(size - 1, max(0, int(round(overlap * sr))))
    label, short = source_label(source, name), short_name(source, name)
    with stream_audio(source, sr=sr, max_seconds=max_seconds, name=name) as (info, blocks):
        stream = (soxr.ResampleStream(info.sr, sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
                  if sr != info.sr else None)
        buf, start, done = np.zeros(0, np.float32), 0, False
        while not done:
            block = next(blocks, None)
            if block is None:
                done = True
                mono = stream.resample_chunk(np.zeros(0, np.float32), last=True) if stream else None
            else:
                mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
                mono = stream.resample_chunk(mono) if stream else mono.copy()
            if mono is not None and len(mono):
                buf = np.concatenate([buf, mono])
            # A piece is full, and not the last, once a sample beyond it has arrived.
            while len(buf) > size:
                yield start / sr, Clip(to_unit_range(buf[:size].copy(), inplace=True), sr, short), False
                buf, start = buf[step:], start + step
        if start == 0 and not len(buf):
            raise AudioError(f"{label} contains no audio samples; record or choose a clip with sound in it.")
        if len(buf):
            yield start / sr, Clip(to_unit_range(buf.copy(), inplace=True), sr, short), True


def _blocks(snd: sf.SoundFile, info: AudioInfo, label: str, max_seconds: float | None,
            sr: int | None) -> Iterator[np.ndarray]:
    per_block = max(1, limits.DECODE_BLOCK_SAMPLES // info.channels // SILENCE_BLOCK) * SILENCE_BLOCK
    buf = np.empty((per_block, info.channels), dtype=np.float32)
    # A header can understate the length (MP3 estimates, placeholder sizes): the same
    # limits hold for what is really decoded, with a block of slack.
    cap = limits.MAX_DECODED_SAMPLES // info.channels
    if max_seconds is not None:
        cap = min(cap, int(max_seconds * info.sr) + per_block)
    cap = min(cap, limits.MAX_CLIP_BYTES // 4 * info.sr // (sr or info.sr) + per_block)
    decoded = 0
    while True:
        try:
            block = snd.read(dtype="float32", always_2d=True, out=buf)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioError(f"{label} could not be decoded ({exc}); the file looks corrupt.") from None
        if not len(block):
            break
        decoded += len(block)
        if decoded > cap:
            raise AudioError(f"{label} decodes to more audio than its header announces "
                             f"({decoded / info.sr:.0f} s and counting, against {info.duration:.0f} s), "
                             "more than audioclf decodes per file: the file is damaged.")
        if not np.isfinite(block).all():
            raise AudioError(f"{label} contains NaN or infinite sample values; "
                             "re-export it from your audio editor.")
        yield block
    missing = info.frames - decoded
    if missing > max(TRUNCATED_SHARE * info.frames, TRUNCATED_MIN_SECONDS * info.sr):
        raise AudioError(
            f"{label} is truncated (it ends after {decoded / info.sr:.1f} s of the "
            f"{info.duration:.1f} s its header announces); the file was cut off while copying or "
            "recording: get a complete copy."
        )


def _mono_resampled(blocks: Iterator[np.ndarray], info: AudioInfo, out_sr: int, label: str) -> np.ndarray:
    """Mix each block to mono and resample it as it comes, into one growing float32 array."""
    stream = (soxr.ResampleStream(info.sr, out_sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
              if out_sr != info.sr else None)
    # np.empty commits no memory until written: sized from the header (already checked),
    # it grows only if the header understated the length.
    out = np.empty(math.ceil(info.frames * out_sr / info.sr) + 16, dtype=np.float32)
    n = 0

    def put(piece: np.ndarray) -> None:
        nonlocal out, n
        if n + len(piece) > len(out):
            out = np.concatenate([out[:n], np.empty(max(len(piece), len(out) // 2), np.float32)])
        out[n:n + len(piece)] = piece
        n += len(piece)

    for block in blocks:
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
        put(stream.resample_chunk(mono) if stream else mono)
    if stream:
        put(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return out[:n] if n > len(out) // 2 else out[:n].copy()


def to_unit_range(y: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    # Float files may exceed full scale and resampling can overshoot slightly:
    # scale down (not clip) so the waveform's shape is kept.
    peak = max(float(np.max(y)), -float(np.min(y))) if y.size else 0.0
    if peak <= 1.0:
        return y
    if inplace:
        y /= peak
        return y
    return y / peak




def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 samples with soxr (HQ), keeping them within [-1, 1]."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    out = soxr.resample(np.asarray(y, dtype=np.float32), orig_sr, target_sr, quality=RESAMPLE_QUALITY)
    return to_unit_range(np.ascontiguousarray(out, dtype=np.float32))
