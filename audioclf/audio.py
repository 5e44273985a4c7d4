"""Audio in: load wav/flac/ogg/mp3 from a path or bytes as mono float32 at a chosen rate.

Decoding is libsndfile (via soundfile, which reads mp3 since libsndfile 1.1),
resampling is soxr at "HQ" quality (what librosa calls ``soxr_hq``). Anything
wrong with the input raises :class:`AudioError` with a message meant for a
person: what is wrong with which file, and what to do about it.

This module imports only numpy, soundfile and soxr so it stays fast to import.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf
import soxr

from audioclf.errors import AudioclfError

MAX_SECONDS = 600.0  # longer uploads are almost always a mistake (a whole album, a podcast)
SILENCE_DB = -60.0  # loudest 2048-sample block quieter than this (dBFS RMS) = silent
SILENCE_BLOCK = 2048
RESAMPLE_QUALITY = "HQ"  # librosa's default "soxr_hq"
SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")
# Audio containers people try that libsndfile cannot decode: name them as unsupported,
# rather than calling them corrupt.
KNOWN_UNSUPPORTED = (".m4a", ".aac", ".mp4", ".wma", ".webm", ".amr", ".3gp", ".ape", ".mov")
CONVERT_HINT = "convert it to WAV, FLAC, OGG or MP3 (e.g. `ffmpeg -i in.m4a out.wav`)"
_HASH_CHUNK = 1 << 20

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


class AudioError(AudioclfError):
    """Bad audio input; the message is meant for a person."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says (no decoding)."""

    sr: int
    channels: int
    frames: int
    duration: float
    format: str


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
    y = np.asarray(y, dtype=np.float32).ravel()
    if y.size == 0:
        return True
    n_blocks = -(-y.size // SILENCE_BLOCK)
    padded = np.zeros(n_blocks * SILENCE_BLOCK, dtype=np.float32)
    padded[: y.size] = y
    blocks = padded.reshape(n_blocks, SILENCE_BLOCK)
    # Blocks are zero-padded; the last one is measured over its real length only.
    lengths = np.full(n_blocks, SILENCE_BLOCK, dtype=np.float32)
    lengths[-1] = y.size - (n_blocks - 1) * SILENCE_BLOCK
    rms = np.sqrt(np.sum(blocks.astype(np.float64) ** 2, axis=1) / lengths)
    loudest = float(rms.max())
    return loudest <= 0.0 or 20.0 * np.log10(loudest) < threshold_db


def fingerprint(source: Source) -> str:
    """Content hash (hex) of a file or bytes; the same audio file gives the same key anywhere."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(source, (bytes, bytearray, memoryview)):
        h.update(source)
        return h.hexdigest()
    with open(source, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def probe(source: Source, *, name: str | None = None) -> AudioInfo:
    """Read the header of an audio file (or bytes) without decoding the samples."""
    with _open_sound(source, name) as (snd, info):
        return info


def load_audio(
    source: Source,
    sr: int | None = None,
    *,
    max_seconds: float | None = MAX_SECONDS,
    name: str | None = None,
) -> Clip:
    """Load a path or bytes as a mono float32 :class:`Clip` at rate ``sr`` (None keeps the file's).

    Raises :class:`AudioError` for files that are not audio, corrupt, truncated, in an
    unsupported format, empty, longer than ``max_seconds`` or with NaN/inf samples.
    """
    if sr is not None and (isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0):
        raise AudioError(f"Sample rate must be a positive whole number of Hz, got {sr!r}.")
    label = _label(source, name)
    with _open_sound(source, name) as (snd, info):
        # Duration from the header, before decoding: a 2-hour file fails in milliseconds.
        if max_seconds is not None and info.duration > max_seconds:
            raise AudioError(
                f"{label} is {info.duration:.1f} s long, more than the {max_seconds:g} s limit; "
                "trim it or split it into shorter clips."
            )
        try:
            data = snd.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioError(f"{label} could not be decoded ({exc}); the file looks corrupt.") from None

    if data.shape[0] == 0:
        raise AudioError(f"{label} contains no audio samples; record or choose a clip with sound in it.")
    if not np.isfinite(data).all():
        raise AudioError(f"{label} contains NaN or infinite sample values; re-export it from your audio editor.")
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    y = resample(y, info.sr, int(sr)) if sr else np.ascontiguousarray(y)
    return Clip(samples=_to_unit_range(y), sr=int(sr or info.sr), name=_short_name(source, name))


def _to_unit_range(y: np.ndarray) -> np.ndarray:
    # Float files may exceed full scale and resampling can overshoot slightly:
    # scale down (not clip) so the waveform's shape is kept.
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return y / peak if peak > 1.0 else y


def _label(source: Source, name: str | None) -> str:
    if name:
        return f"'{name}'"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "The uploaded audio"
    return f"'{os.fspath(source)}'"


def _short_name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ""
    return Path(os.fspath(source)).name


def _extension(source: Source, name: str | None) -> str:
    if name:
        return Path(name).suffix.lower()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ""
    return Path(os.fspath(source)).suffix.lower()


@contextmanager
def _open_sound(source: Source, name: str | None) -> Iterator[tuple[sf.SoundFile, AudioInfo]]:
    """Open once with libsndfile (paths natively: faster than Python file objects)."""
    label, ext = _label(source, name), _extension(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        size, target, raw = len(data), io.BytesIO(data), lambda: io.BytesIO(data)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        try:
            st = path.stat()
        except FileNotFoundError:
            raise AudioError(f"{label} does not exist; check the path.") from None
        except OSError as exc:
            raise AudioError(f"{label} could not be opened ({exc.strerror}); check its permissions.") from None
        if path.is_dir():
            raise AudioError(f"{label} is a folder, not an audio file.")
        size, target, raw = st.st_size, str(path), lambda: open(path, "rb")
    else:
        raise AudioError(f"Expected a file path or bytes, got {type(source).__name__}.")
    if size == 0:
        raise AudioError(f"{label} is an empty file (0 bytes); record or choose a clip with sound in it.")
    try:
        with raw() as f:
            missing = _wav_missing_bytes(f, size)
    except OSError as exc:
        raise AudioError(f"{label} could not be opened ({exc.strerror}); check its permissions.") from None
    try:
        snd = sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        raise _not_readable(label, ext) from None
    with snd:
        if missing:
            raise AudioError(
                f"{label} is truncated ({missing} bytes of audio data are missing); "
                "the file was cut off while copying or recording: get a complete copy."
            )
        if snd.samplerate <= 0 or snd.channels <= 0:
            raise AudioError(f"{label} has an invalid header (rate {snd.samplerate}, {snd.channels} channels).")
        info = AudioInfo(
            sr=int(snd.samplerate),
            channels=int(snd.channels),
            frames=int(snd.frames),
            duration=float(snd.frames) / float(snd.samplerate),
            format=str(snd.format),
        )
        yield snd, info


def _not_readable(label: str, ext: str) -> AudioError:
    if ext in KNOWN_UNSUPPORTED:
        return AudioError(f"{label} is in an unsupported format ({ext}); {CONVERT_HINT}.")
    if ext and ext not in SUPPORTED_EXTENSIONS:
        return AudioError(f"{label} is not an audio file audioclf can read ({ext}); use WAV, FLAC, OGG or MP3.")
    return AudioError(
        f"{label} is not audio or is corrupt (the decoder does not recognise it); "
        "check that it plays in a media player, or export it again as WAV."
    )


def _wav_missing_bytes(fileobj: BinaryIO, size: int) -> int:
    """Bytes the WAV 'data' chunk declares but the file lacks (0 if complete or unknown).

    libsndfile quietly reads what is there, so a cut-off file would load as a shorter clip.
    """
    head = fileobj.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    pos = 12
    while pos + 8 <= size:
        fileobj.seek(pos)
        chunk = fileobj.read(8)
        if len(chunk) < 8:
            return 0
        chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            # Streaming writers (e.g. browser recorders) leave 0 or 0xFFFFFFFF as placeholder.
            if chunk_size in (0, 0xFFFFFFFF):
                return 0
            return max(0, chunk_size - (size - pos - 8))
        pos += 8 + chunk_size + (chunk_size & 1)
    return 0


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 samples with soxr (HQ), keeping them within [-1, 1]."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    out = soxr.resample(np.asarray(y, dtype=np.float32), orig_sr, target_sr, quality=RESAMPLE_QUALITY)
    return _to_unit_range(np.ascontiguousarray(out, dtype=np.float32))
