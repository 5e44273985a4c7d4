"""Audio files: what a file or upload is, and what is wrong with it before anything is decoded.

Opening a file once with libsndfile (:func:`open_sound`) gives its header as an
:class:`AudioInfo`, after checking what libsndfile itself lets through: an empty
file, a folder, a format it cannot read (named as unsupported, not as corrupt),
a WAV or Ogg file cut off while copying, a header rate outside
:mod:`audioclf.limits`' band. The messages name the file the way a person knows
it (:func:`source_label`). Decoding the samples is :mod:`audioclf.audio.decoding`.

This module imports only soundfile and the standard library.
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

import soundfile as sf

from audioclf import limits
from audioclf.errors import AudioclfError

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")
# Audio containers people try that libsndfile cannot decode: name them as unsupported,
# rather than calling them corrupt.
KNOWN_UNSUPPORTED = (".m4a", ".aac", ".mp4", ".wma", ".webm", ".amr", ".3gp", ".ape", ".mov")
CONVERT_HINT = "convert it to WAV, FLAC, OGG or MP3 (e.g. `ffmpeg -i in.m4a out.wav`)"
_HASH_CHUNK = 1 << 20
_OGG_TAIL = 65_536 + 282  # the largest Ogg page

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
    with open_sound(source, name) as (snd, info):
        return info


def printable_path(path: str | os.PathLike) -> str:
    """A path as text every encoder takes (UTF-8, JSON, the browser): bytes of a name that
    is not valid UTF-8 (Python's surrogate escapes) are shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8_path(path: str | os.PathLike) -> bool:
    """False for a path whose name is not valid UTF-8 (it holds surrogate escapes)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def source_label(source: Source, name: str | None) -> str:
    if name:
        return f"'{printable_path(name)}'"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "The uploaded audio"
    return f"'{printable_path(source)}'"


def short_name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ""
    return printable_path(Path(os.fspath(source)).name)


def extension(source: Source, name: str | None) -> str:
    if name:
        return Path(name).suffix.lower()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ""
    return Path(os.fspath(source)).suffix.lower()


@contextmanager
def open_sound(source: Source, name: str | None) -> Iterator[tuple[sf.SoundFile, AudioInfo]]:
    """Open once with libsndfile (paths natively: faster than Python file objects)."""
    label, ext = source_label(source, name), extension(source, name)
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
        # libsndfile takes the name's bytes; a str it would encode strictly as UTF-8.
        target = str(path) if is_utf8_path(path) else os.fsencode(path)
        size, raw = st.st_size, lambda: open(path, "rb")
    else:
        raise AudioError(f"Expected a file path or bytes, got {type(source).__name__}.")
    if size == 0:
        raise AudioError(f"{label} is an empty file (0 bytes); record or choose a clip with sound in it.")
    try:
        with raw() as f:
            missing = wav_missing_bytes(f, size)
            ogg_cut = ogg_truncated(f, size)
    except OSError as exc:
        raise AudioError(f"{label} could not be opened ({exc.strerror}); check its permissions.") from None
    try:
        snd = sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        raise not_readable(label, ext) from None
    with snd:
        if missing:
            raise AudioError(
                f"{label} is truncated ({missing} bytes of audio data are missing); "
                "the file was cut off while copying or recording: get a complete copy."
            )
        if ogg_cut:
            raise AudioError(
                f"{label} is truncated (its last Ogg page is {ogg_cut}); the file was cut off while "
                "copying or recording: get a complete copy."
            )
        if snd.samplerate <= 0 or snd.channels <= 0:
            raise AudioError(f"{label} has an invalid header (rate {snd.samplerate}, {snd.channels} channels).")
        rate_problem = limits.rate_problem(int(snd.samplerate))
        if rate_problem:
            raise AudioError(f"{label} {rate_problem}.")
        info = AudioInfo(
            sr=int(snd.samplerate),
            channels=int(snd.channels),
            frames=int(snd.frames),
            duration=float(snd.frames) / float(snd.samplerate),
            format=str(snd.format),
        )
        yield snd, info


def not_readable(label: str, ext: str) -> AudioError:
    if ext in KNOWN_UNSUPPORTED:
        return AudioError(f"{label} is in an unsupported format ({ext}); {CONVERT_HINT}.")
    if ext and ext not in SUPPORTED_EXTENSIONS:
        return AudioError(f"{label} is not an audio file audioclf can read ({ext}); use WAV, FLAC, OGG or MP3.")
    return AudioError(
        f"{label} is not audio or is corrupt (the decoder does not recognise it); "
        "check that it plays in a media player, or export it again as WAV."
    )


def wav_missing_bytes(fileobj: BinaryIO, size: int) -> int:
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


def ogg_truncated(fileobj: BinaryIO, size: int) -> str:
    """Why an Ogg file's end is cut off ('' if it is complete, or not Ogg).

    A complete Ogg stream ends on a whole page flagged end-of-stream; libsndfile
    decodes a cut-off one without complaint (Opus as a shorter clip, Vorbis as none).
    """
    fileobj.seek(0)
    if fileobj.read(4) != b"OggS":
        return ""
    start = max(0, size - _OGG_TAIL)
    fileobj.seek(start)
    tail = fileobj.read()
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        page = tail[pos:]
        if len(page) >= 27 and page[4] == 0:  # stream structure version 0: a real page header
            n_segments = page[26]
            if len(page) < 27 + n_segments:
                return "incomplete"
            length = 27 + n_segments + sum(page[27:27 + n_segments])
            if length > len(page):
                return "incomplete"
            return "" if page[5] & 0x04 else "not the end of the stream"
        pos = tail.rfind(b"OggS", 0, pos)
    return "missing"
