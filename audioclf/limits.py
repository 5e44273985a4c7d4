"""Every resource limit of audioclf in one place: what one clip, one archive and one
analysis may cost, and the message a person sees when something goes past it.

A shared demo server must survive whatever a visitor uploads, so limits count what
work costs (samples decoded, bytes unpacked, array sizes), not what a file claims
to be (seconds, megabytes on disk): a 3 MB FLAC can hold 11 GB of samples and a
12 MB zip a gigabyte of WAVs.

Each limit can be changed with an environment variable, read once at import:
``AUDIOCLF_<NAME>`` (sizes in MB, e.g. ``AUDIOCLF_MAX_CLIP_MB=512``). A value that
is not a positive number is refused at start-up rather than silently ignored.

    from audioclf import limits
    limits.MAX_SECONDS          # 600.0
    limits.decode_problem(44100, 2, 44100 * 60, 16000)  # None: a minute of stereo is fine

This module imports nothing but the standard library.
"""
from __future__ import annotations

import math
import os

ENV_PREFIX = "AUDIOCLF_"
MB = 1 << 20


def _env(name: str, default: float, *, unit: int = 1, whole: bool = True) -> float | int:
    """`default` or `$AUDIOCLF_<name>`, times `unit`; ValueError if the variable is not > 0."""
    raw = os.environ.get(ENV_PREFIX + name, "").strip()
    value = float(default)
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not a positive number.")
    value *= unit
    return int(value) if whole else value


# --- audio (audioclf.audio: every load, from every page and command) ---------------------

# Longer uploads are almost always a mistake (a whole album, a podcast).
MAX_SECONDS: float = _env("MAX_SECONDS", 600.0, whole=False)
# Rates outside this band are broken or hostile headers, not recordings: telephone audio is
# 8 kHz, 384 kHz is the top rate of studio converters (8 x 48 kHz) and of common
# ultrasonic recorders (AudioMoth). A bat detector at 500 kHz: raise AUDIOCLF_MAX_SAMPLE_RATE.
MIN_SAMPLE_RATE: int = _env("MIN_SAMPLE_RATE", 1_000)
MAX_SAMPLE_RATE: int = _env("MAX_SAMPLE_RATE", 384_000)
# Samples x channels one file may decode to: the decoding work. 600 s of 48 kHz in
# 8 channels (230 M) fits; the 8-channel 655 kHz FLAC bomb (3,140 M) does not.
MAX_DECODED_SAMPLES: int = _env("MAX_DECODED_SAMPLES", 1 << 28)
# Memory of the decoded mono clip (float32) at the rate asked for: 600 s at 96 kHz fits.
MAX_CLIP_BYTES: int = _env("MAX_CLIP_MB", 256, unit=MB)
# Samples decoded per block: decoding holds one block of the file's channels at a time.
DECODE_BLOCK_SAMPLES: int = _env("DECODE_BLOCK_SAMPLES", 1 << 20)

# --- archives (audioclf.datasets.archive.safe_extract: data-set zips, uploads, ESC-50) ---

ZIP_MAX_MEMBERS: int = _env("ZIP_MAX_MEMBERS", 200_000)
# ESC-50 unpacks to ~0.9 GB: this stops zip bombs, not real data sets.
ZIP_MAX_TOTAL_BYTES: int = _env("ZIP_MAX_TOTAL_MB", 8 << 10, unit=MB)
# No audio file audioclf accepts is larger: MAX_DECODED_SAMPLES of 32-bit PCM is 1 GiB.
ZIP_MAX_MEMBER_BYTES: int = _env("ZIP_MAX_MEMBER_MB", 1 << 10, unit=MB)
# Audio compresses 1x to 3x; deflate tops out near 1030x (all zeros).
ZIP_MAX_RATIO: float = _env("ZIP_MAX_RATIO", 100.0, whole=False)
# Below these sizes any ratio is fine: a zip of a few silent clips compresses ~1000x.
# Per archive (the whole unpacked size) and per member (one file's unpacked size).
ZIP_RATIO_FREE_BYTES: int = _env("ZIP_RATIO_FREE_MB", 64, unit=MB)
ZIP_MEMBER_RATIO_FREE_BYTES: int = _env("ZIP_MEMBER_RATIO_FREE_MB", 8, unit=MB)

# --- copying and downloading (archive members, ESC-50, the EfficientAT release) ----------

# Bytes per read when a file is copied or downloaded: memory stays one block.
COPY_CHUNK_BYTES: int = 1 << 16
# A server that sends nothing for this long is given up on.
DOWNLOAD_TIMEOUT_SECONDS: float = _env("DOWNLOAD_TIMEOUT_SECONDS", 30.0, whole=False)

# --- analysis (the Explore page, and anything else that draws a whole clip) -------------

# Above this rate "native" is analysed at this rate: nothing a person looks at in a
# spectrogram needs more, and the arrays grow with it.
ANALYSIS_MAX_RATE: int = _env("ANALYSIS_MAX_RATE", 48_000)
# The largest spectrogram (bins x frames float32) one analysis may hold; a shorter hop
# than fits is raised (and the user told), then the rate lowered.
ANALYSIS_MAX_STFT_BYTES: int = _env("ANALYSIS_MAX_STFT_MB", 32, unit=MB)
# --- prediction (audioclf.inference.predict) ---------------------------------------------

# A clip longer than this is answered from its windows (the mean of their probabilities):
# a recurrent model run over 10 minutes in one pass took 20 s and 600 MB, the windows 2 s.
PREDICT_WHOLE_MAX_SECONDS: float = _env("PREDICT_WHOLE_MAX_SECONDS", 60.0, whole=False)
# Such a clip is decoded, and its features made, this many seconds at a time (pieces
# overlapping by one window): a feature network's maps over a whole long clip cost
# far more than the clip (EfficientAT's over 10 minutes, most of a GB).
PREDICT_PIECE_SECONDS: float = _env("PREDICT_PIECE_SECONDS", 30.0, whole=False)

# --- the app --------------------------------------------------------------------------------

# Entries of each app cache that holds per-clip results (all sessions share a cache).
APP_CACHE_ENTRIES: int = _env("APP_CACHE_ENTRIES", 16)

# --- uploads to a read-only server (app_server.uploads, checked before the body is read) ---

# Streamlit keeps uploads in memory while their widget holds them, and server.maxUploadSize
# (500 MB, for data-set zips) is per file. A demo visitor needs a clip or a few at a time:
# 20 MB holds two minutes of 44.1 kHz stereo WAV, or a small zip of clips.
READONLY_UPLOAD_BYTES: int = _env("READONLY_UPLOAD_MB", 20, unit=MB)
# What one session (a browser tab) may hold at once; removing a file frees its room.
READONLY_SESSION_FILES: int = _env("READONLY_SESSION_FILES", 20)
READONLY_SESSION_BYTES: int = _env("READONLY_SESSION_MB", 100, unit=MB)


def mb(n: float) -> str:
    """Bytes as people read them: '11.7 GB', '256 MB', '1.5 MB', '51 KB'."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GB"
    if n < MB // 10:
        return f"{n / 1024:.0f} KB"
    return f"{n / MB:.1f} MB" if n < 10 * MB else f"{n / MB:.0f} MB"


def rate_problem(sr: int) -> str | None:
    """Why a header's sample rate is refused, or None when it is in the accepted band."""
    if MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        return None
    return (f"claims a sample rate of {sr:,} Hz, outside the {MIN_SAMPLE_RATE:,} to "
            f"{MAX_SAMPLE_RATE:,} Hz audioclf accepts: the file is damaged or not a recording "
            f"(resample it, e.g. `ffmpeg -i in.wav -ar 48000 out.wav`)")


def decode_problem(sr: int, channels: int, frames: int, target_sr: int | None) -> str | None:
    """Why decoding this file would cost too much, or None; from header values only.

    `frames` per channel at the file's rate `sr`; `target_sr` is the rate the clip is
    wanted at (None: the file's own).
    """
    decoded = frames * channels
    if decoded > MAX_DECODED_SAMPLES:
        return (f"would decode to {decoded:,} samples ({frames:,} frames x {channels} channels "
                f"at {sr:,} Hz), more than the {MAX_DECODED_SAMPLES:,} audioclf decodes per file; "
                "mix it down to mono or stereo, lower its rate or split it into shorter clips")
    out_rate = target_sr or sr
    clip_bytes = clip_nbytes(frames, sr, out_rate)
    if clip_bytes > MAX_CLIP_BYTES:
        return (f"would take {mb(clip_bytes)} of memory at {out_rate:,} Hz, more than the "
                f"{mb(MAX_CLIP_BYTES)} one clip may use; choose a lower sample rate or split it "
                "into shorter clips")
    return None


def clip_nbytes(frames: int, sr: int, out_rate: int) -> int:
    """Bytes of a mono float32 clip of `frames` at `sr` once resampled to `out_rate`."""
    return 4 * math.ceil(frames * out_rate / sr)


def zip_member_problem(size: int, packed: int) -> str | None:
    """Why one archive member is too large to unpack, or None; from its header's sizes."""
    if size > ZIP_MAX_MEMBER_BYTES:
        return f"would unpack to {mb(size)}, more than the {mb(ZIP_MAX_MEMBER_BYTES)} allowed per file"
    if size > ZIP_MEMBER_RATIO_FREE_BYTES and size / max(1, packed) > ZIP_MAX_RATIO:
        return (f"would expand {size / max(1, packed):.0f}-fold ({mb(packed)} to {mb(size)}), more "
                f"than the {ZIP_MAX_RATIO:g}-fold of any real audio: it looks like a zip bomb")
    return None


def zip_total_problem(n_members: int, total: int, packed: int) -> str | None:
    """Why a whole archive is too large to unpack, or None; from its headers' sizes."""
    if n_members > ZIP_MAX_MEMBERS:
        return f"it holds {n_members:,} files, more than the {ZIP_MAX_MEMBERS:,} allowed"
    if total > ZIP_MAX_TOTAL_BYTES:
        return f"it would expand to {mb(total)}, more than {mb(ZIP_MAX_TOTAL_BYTES)}"
    if total > ZIP_RATIO_FREE_BYTES and total / max(1, packed) > ZIP_MAX_RATIO:
        return (f"it would expand {total / max(1, packed):.0f}-fold ({mb(packed)} to {mb(total)}), "
                f"more than the {ZIP_MAX_RATIO:g}-fold of any real audio: it looks like a zip bomb")
    return None


def analysis_plan(seconds: float, sr: int, n_fft: int, hop_length: int) -> tuple[int, int, str | None]:
    """(rate, hop) an analysis of a clip can afford, and a note for the user when they changed.

    Keeps ``bins x frames x 4`` bytes (one float32 spectrogram) under
    ANALYSIS_MAX_STFT_BYTES: first the hop grows (up to n_fft, so no sample is
    skipped), then the rate drops (halving, down to MIN_SAMPLE_RATE).
    """
    rate, hop = min(sr, ANALYSIS_MAX_RATE), hop_length
    max_frames = max(2, ANALYSIS_MAX_STFT_BYTES // (4 * (n_fft // 2 + 1)))

    def frames(r: int, h: int) -> int:
        return int(seconds * r) // h + 1

    if frames(rate, hop) > max_frames:
        hop = max(hop_length, min(n_fft, math.ceil(seconds * rate / (max_frames - 1))))
    while frames(rate, hop) > max_frames and rate // 2 >= MIN_SAMPLE_RATE:
        rate //= 2
    notes = ([f"at {rate:,} Hz instead of {sr:,} Hz"] if rate != sr else []) + (
        [f"with hop {hop} instead of {hop_length}"] if hop != hop_length else [])
    if not notes:
        return rate, hop, None
    return rate, hop, (f"This {seconds:.0f} s clip is analysed {' and '.join(notes)}, so that one of its "
                       f"spectrograms stays under {mb(ANALYSIS_MAX_STFT_BYTES)}.")
