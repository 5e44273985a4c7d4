"""What decoding each clip once tells (format, length, level, a hash of its samples), cached in the workspace.

    from audioclf.insight.clipstats import clip_stats
    stats = clip_stats(paths)          # ClipStats or AudioError per path, in order
    stats[0].duration, stats[0].silent

Used by the health check (:mod:`audioclf.insight.health`): exact duplicates by the
digest, silent and clipped clips, durations and formats.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audioclf import audio, workspace
from audioclf.audio import AudioError

STATS_FILE = "clipstats.json"
STATS_VERSION = 1
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
CLIPPED_SHARE = 0.001  # ...in more than this share of the samples (and CLIPPED_MIN of them)
CLIPPED_MIN = 10


@dataclass(frozen=True)
class ClipStats:
    """What decoding a clip once tells: format, length, level, and a hash of its samples."""

    sr: int
    channels: int
    frames: int
    digest: str  # hash of the decoded samples, rate and channel count
    peak: float
    clipped: int  # samples at or above CLIP_LEVEL
    silent: bool

    @property
    def duration(self) -> float:
        return self.frames / float(self.sr)


def read_stats(path: str | os.PathLike) -> ClipStats:
    """Decode a file once, a block at a time, and measure it; AudioError for unreadable files."""
    h = hashlib.blake2b(digest_size=16)
    peak, clipped, frames, loudest = 0.0, 0, 0, 0.0
    # stream_audio's messages name the problem (truncated, unsupported format, too costly...).
    with audio.stream_audio(path) as (info, blocks):
        for block in blocks:
            h.update(block.tobytes())  # the same digest as hashing all samples at once
            peak = max(peak, float(block.max()), -float(block.min()))
            clipped += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
            loudest = max(loudest, audio.loudest_block_power(mono))
            frames += len(block)
    if frames == 0:
        raise AudioError(f"'{Path(path).name}' contains no audio samples.")
    h.update(f"{info.sr}/{info.channels}".encode())
    return ClipStats(sr=int(info.sr), channels=int(info.channels), frames=frames, digest=h.hexdigest(),
                     peak=peak, clipped=clipped, silent=audio.is_silent_power(loudest))


def _stats_key(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _load_stats_cache(file: Path) -> dict:
    try:
        data = json.loads(file.read_text())
        return data["clips"] if data.get("version") == STATS_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # missing or damaged: it only holds what can be recomputed


def _save_stats_cache(file: Path, clips: dict) -> None:
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"version": STATS_VERSION, "clips": clips}))
        os.replace(tmp, file)
    except OSError:
        tmp.unlink(missing_ok=True)


def clip_stats(paths: Sequence[str | os.PathLike], *, progress: Callable[[int, int], None] | None = None,
               cache: bool = True) -> list[ClipStats | AudioError]:
    """:func:`read_stats` of each path in order, cached by (path, size, mtime) in the workspace."""
    file = workspace.cache_dir() / STATS_FILE
    stored = _load_stats_cache(file) if cache else {}
    out: list[ClipStats | AudioError] = []
    changed = False
    total = len(paths)
    for k, path in enumerate(map(os.fspath, paths), start=1):
        key = _stats_key(path)
        if key and key in stored:
            out.append(ClipStats(**stored[key]))
        else:
            try:
                stats = read_stats(path)
            except AudioError as exc:
                out.append(exc)
            else:
                out.append(stats)
                if key:
                    stored[key], changed = asdict(stats), True
        if progress and (k % 25 == 0 or k == total):
            progress(k, total)
    if cache and changed:
        live = {_stats_key(os.fspath(p)) for p in paths}
        # Keep other data sets' entries, drop this one's stale versions (edited or moved files).
        prefixes = {k.rsplit("|", 2)[0] for k in live if k}
        stored = {k: v for k, v in stored.items() if k in live or k.rsplit("|", 2)[0] not in prefixes}
        _save_stats_cache(file, stored)
    return out
