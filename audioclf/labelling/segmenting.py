"""Cutting long recordings into clips: fixed windows, or the sound events above a noise floor.

::

    from audioclf.labelling.segmenting import CutConfig, cut_recording, write_segment

    segs = cut_recording("night.flac", CutConfig(method="events"))
    segs[0]                    # Cut(source='night.flac', start=12.3, end=14.1)
    write_segment(segs[0], "clips/night__0012300-0014100.wav")

Recordings are read in blocks (``soundfile``), so a night of field audio needs
memory for its loudness curve only, never for its samples. Event detection
follows the usual energy detector: frame RMS in dB, a threshold a margin above
the recording's own noise floor (a low percentile of its frames, so a quiet
event in a recording with loud ones is still found, which a threshold relative
to the peak, like ``librosa.effects.split``'s ``top_db``, misses), close events
merged (the ticks of a clock are one event), short ones dropped, long ones cut
into pieces no longer than ``max_len``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf import audio
from audioclf.errors import AudioclfError

CUT_METHODS = ("events", "fixed", "whole")
FRAME_SECONDS = 0.02  # loudness resolution of event detection
BLOCK_SECONDS = 30.0  # samples read at a time
NOISE_PERCENTILE = 10.0  # the quietest 10% of frames stand for the recording's noise floor
MIN_FLOOR_DB = -90.0  # digital silence would otherwise put the floor at -inf
MAX_SEGMENTS = 20_000  # per recording: more is a setting mistake (a 0.1 s window over hours)


class SegmentError(AudioclfError):
    """A recording cannot be cut as asked; the message says what to change."""


@dataclass(frozen=True)
class Cut:
    """A stretch ``[start, end)`` seconds of the recording ``source``."""

    source: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {"source": self.source, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True)
class CutConfig:
    """How to cut: ``"whole"`` keeps each file as one clip (a folder of short clips);
    ``"fixed"`` windows of ``length`` s every ``hop`` s (None = ``length``), or ``"events"``: stretches louder than the noise floor + ``margin_db``, gaps shorter than
    ``merge_gap`` s bridged, events shorter than ``min_len`` s dropped, longer than ``max_len``
    cut into equal pieces, each widened by ``pad`` s of context on both sides.

    A recording no longer than ``length`` (fixed) becomes one clip; a last window shorter
    than half a window is dropped.
    """

    method: str = "events"
    length: float = 2.0
    hop: float | None = None
    margin_db: float = 10.0
    min_len: float = 0.25
    max_len: float = 5.0
    merge_gap: float = 1.0
    pad: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in CUT_METHODS:
            raise SegmentError(f"Unknown cut method {self.method!r}; use one of {', '.join(CUT_METHODS)}.")
        for name in ("length", "margin_db", "min_len", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise SegmentError(f"Cut setting {name} must be a positive number, got {value!r}.")
        for name in ("merge_gap", "pad"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise SegmentError(f"Cut setting {name} must be zero or more, got {value!r}.")
        if self.hop is not None and not (isinstance(self.hop, (int, float)) and self.hop > 0):
            raise SegmentError(f"Cut setting hop must be a positive number of seconds, got {self.hop!r}.")
        if self.min_len > self.max_len:
            raise SegmentError(f"min_len ({self.min_len:g} s) is longer than max_len ({self.max_len:g} s).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CutConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------- pure functions


def fixed_windows(duration: float, length: float, hop: float | None = None) -> list[tuple[float, float]]:
    """``(start, end)`` of windows of ``length`` s every ``hop`` s over ``duration`` s.

    The last window may be shorter; one shorter than half a window is dropped (unless it
    is the only one: a short recording is kept whole).
    """
    hop = float(hop or length)
    if duration <= length:
        return [(0.0, float(duration))] if duration > 0 else []
    out = []
    start = 0.0
    while start < duration:
        end = min(start + length, duration)
        if end - start >= length / 2 or not out:
            out.append((round(start, 6), round(end, 6)))
        if end >= duration:
            break
        start += hop
    return out


def frame_db(y: np.ndarray, frame: int) -> np.ndarray:
    """RMS level in dBFS of consecutive ``frame``-sample frames (a last partial frame counts)."""
    y = np.asarray(y, dtype=np.float32)
    n = -(-len(y) // frame)
    padded = np.zeros(n * frame, np.float32)
    padded[: len(y)] = y
    ms = np.mean(padded.reshape(n, frame).astype(np.float64) ** 2, axis=1)
    return (10 * np.log10(np.maximum(ms, 1e-12))).astype(np.float32)


def noise_floor(db: np.ndarray, percentile: float = NOISE_PERCENTILE) -> float:
    """The recording's noise floor: a low percentile of its frame levels (dBFS)."""
    if not len(db):
        return MIN_FLOOR_DB
    return max(MIN_FLOOR_DB, float(np.percentile(db, percentile)))


def active_spans(active: np.ndarray) -> list[tuple[int, int]]:
    """``[(first, last + 1)]`` frame ranges where ``active`` is True."""
    a = np.concatenate([[False], np.asarray(active, bool), [False]])
    edges = np.flatnonzero(np.diff(a.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def event_spans(db: np.ndarray, frame_seconds: float, cfg: CutConfig,
                duration: float | None = None) -> list[tuple[float, float]]:
    """Sound events ``(start, end)`` in seconds from frame levels ``db`` (see :class:`CutConfig`)."""
    duration = len(db) * frame_seconds if duration is None else float(duration)
    threshold = noise_floor(db) + cfg.margin_db
    runs = [(a * frame_seconds, b * frame_seconds) for a, b in active_spans(db > threshold)]
    merged: list[list[float]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] <= cfg.merge_gap:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    out = []
    for start, end in merged:
        if end - start < cfg.min_len:
            continue
        pieces = int(np.ceil((end - start) / cfg.max_len))
        step = (end - start) / pieces
        for k in range(pieces):
            a, b = start + k * step, start + (k + 1) * step
            out.append((round(max(0.0, a - cfg.pad), 6), round(min(duration, b + cfg.pad), 6)))
    return out


# ---------------------------------------------------------------- files


def _read_blocks(path: Path, block_seconds: float = BLOCK_SECONDS):
    """Mono float32 blocks of a file and its rate, without decoding it all at once."""
    with sf.SoundFile(str(path)) as snd:
        sr = int(snd.samplerate)
        for block in snd.blocks(blocksize=max(1, int(block_seconds * sr)), dtype="float32", always_2d=True):
            yield sr, block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]


def recording_db(path: str | PathLike, frame_seconds: float = FRAME_SECONDS) -> tuple[np.ndarray, float, float]:
    """Frame levels (dBFS) of a whole recording, read in blocks; its duration and the frame length (s)."""
    info = audio.probe(path)  # AudioError with a clear message for anything unreadable
    frame = max(1, int(round(frame_seconds * info.sr)))
    levels, rest = [], np.zeros(0, np.float32)
    try:
        for _, block in _read_blocks(Path(path)):
            block = np.concatenate([rest, block])
            whole = len(block) // frame * frame
            if whole:
                levels.append(frame_db(block[:whole], frame))
            rest = block[whole:]
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise audio.AudioError(f"'{Path(path).name}' could not be decoded ({exc}); the file looks corrupt.") from None
    if len(rest):
        levels.append(frame_db(rest, frame))
    db = np.concatenate(levels) if levels else np.zeros(0, np.float32)
    return db, info.duration, frame / info.sr


def cut_recording(path: str | PathLike, cfg: CutConfig = CutConfig()) -> list[Cut]:
    """The segments of one recording, in time order (AudioError if it cannot be read).

    With ``"events"``, a recording in which nothing stands above its noise floor (one long
    sound, or silence) gives no events; see :func:`cut_all` for the fallback.
    """
    path = Path(path)
    if cfg.method == "whole":
        duration = audio.probe(path).duration
        spans = [(0.0, duration)] if duration > 0 else []
    elif cfg.method == "fixed":
        duration = audio.probe(path).duration
        spans = fixed_windows(duration, cfg.length, cfg.hop)
    else:
        db, duration, frame_seconds = recording_db(path)
        spans = event_spans(db, frame_seconds, cfg, duration)
    if len(spans) > MAX_SEGMENTS:
        raise SegmentError(f"Cutting {path.name} this way gives {len(spans)} clips, more than the "
                           f"{MAX_SEGMENTS} limit; use longer windows or a larger hop.")
    return [Cut(str(path), a, b) for a, b in spans if b > a]


def cut_all(paths, cfg: CutConfig = CutConfig(), *, progress=None
            ) -> tuple[list[Cut], list[tuple[str, str]]]:
    """Segments of many recordings and ``(path, why)`` for each one that gave none.

    A recording without events (a steady sound all through: rain, an engine) falls back to
    fixed windows of ``max_len`` s, so no recording silently disappears; digital silence
    gives nothing and is listed.
    """
    paths = [Path(p) for p in paths]
    out, problems = [], []
    for k, path in enumerate(paths):
        try:
            segs = cut_recording(path, cfg)
            if not segs and cfg.method == "events":
                db, duration, _ = recording_db(path)
                if len(db) and float(db.max()) > audio.SILENCE_DB:
                    segs = [Cut(str(path), a, b) for a, b in fixed_windows(duration, cfg.max_len)]
            if not segs:
                problems.append((str(path), "no sound above its noise floor (silent?), skipped"))
            out += segs
        except audio.AudioError as exc:
            problems.append((str(path), str(exc)))
        if progress is not None:
            progress(k + 1, len(paths))
    return out, problems


def read_segment(seg: Cut, sr: int | None = None) -> audio.Clip:
    """The samples of a segment as a mono :class:`audio.Clip` (at ``sr``, or the file's rate)."""
    info = audio.probe(seg.source)
    a, b = int(round(seg.start * info.sr)), int(round(seg.end * info.sr))
    try:
        data, file_sr = sf.read(seg.source, start=a, stop=max(a + 1, b), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise audio.AudioError(f"'{Path(seg.source).name}' could not be decoded ({exc}).") from None
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr and sr != file_sr:
        y = audio.resample(y, file_sr, int(sr))
    return audio.Clip(samples=np.clip(y, -1.0, 1.0).astype(np.float32), sr=int(sr or file_sr),
                      name=Path(seg.source).name)


def write_segment(seg: Cut, dest: str | PathLike) -> Path:
    """Write a segment as a 16-bit WAV at the recording's rate (atomically) and return ``dest``."""
    clip = read_segment(seg)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), clip.samples, clip.sr, format="WAV", subtype="PCM_16")
    os.replace(tmp, dest)
    return dest


def clip_name(stem: str, seg: Cut) -> str:
    """``<stem>--<start ms>-<end ms>.wav``: the recording stays readable in the clip's name
    (see :data:`audioclf.labelling.saving.GROUP_PATTERN`; ``--`` because ``datasets.safe_name``
    squashes ``__``)."""
    return f"{stem}--{int(round(seg.start * 1000)):07d}-{int(round(seg.end * 1000)):07d}.wav"
