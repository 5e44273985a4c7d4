"""A demo data set synthesised from code: five clearly different kinds of sound.

`make_demo_dataset()` writes <workspace>/datasets/demo/<class>/<class>_NNN.wav
(16-bit mono) so a newcomer can train a model at first start with no download.
Every clip varies in pitch, timing, loudness and background noise, so a model
has to learn the kind of sound, not memorise one waveform.

The demo code only ever replaces a folder it made: its marker file lists every
file it wrote, and a folder holding anything else (a user's own data set named
``demo``, any folder given to ``audioclf demo --dest``) is refused, never
deleted. When a user's data set has the name ``demo``, the built-in demo is
kept under ``FALLBACK_NAME`` instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioclfError

DEMO_NAME = "demo"
FALLBACK_NAME = "audioclf-demo"  # the built-in demo's name when a user's data set is called "demo"
CLASSES = ("siren", "dial_tone", "rain", "clock_ticks", "bird_chirps")
CLIP_SECONDS = (2.0, 4.0)  # shortest and longest demo clip
CLIPS_PER_CLASS, SEED, SR = 24, 0, 16000  # the built-in demo's parameters
MARKER = ".demo-complete.json"
SYNTHESIS_VERSION = 1  # bump when the synthesis changes, so old demo folders are rebuilt
_CLIP_NAME = re.compile(r"([a-z_]+)/\1_\d{3}\.wav")  # what every version so far has written

Synth = Callable[[np.random.Generator, int, int], np.ndarray]


def _tone(freq: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Sine with a (possibly time-varying) frequency: phase is the running sum of frequency."""
    freq = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return np.sin(2 * np.pi * np.cumsum(freq) / sr)


def _bandpass_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float) -> np.ndarray:
    """White noise with everything outside [low, high] Hz removed (FFT mask, soft edges)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    edge = 0.15 * (high - low) + 1.0
    gain = np.clip((freqs - low + edge) / edge, 0, 1) * np.clip((high + edge - freqs) / edge, 0, 1)
    y = np.fft.irfft(spectrum * gain, n)
    return y / (np.abs(y).max() + 1e-9)


def _decay(n: int, sr: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * sr))


def _siren(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    # Wail (slow sine sweep) or yelp (fast triangle sweep), with two harmonics.
    centre, depth = rng.uniform(600, 1000), rng.uniform(200, 450)
    rate = rng.uniform(0.3, 0.8) if rng.random() < 0.5 else rng.uniform(2.5, 5.0)
    t = np.arange(n) / sr
    phase = 2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)
    sweep = np.sin(phase) if rate < 1 else 2 / np.pi * np.arcsin(np.sin(phase))
    freq = centre + depth * sweep
    return _tone(freq, n, sr) + 0.3 * _tone(2 * freq, n, sr) + 0.1 * _tone(3 * freq, n, sr)


def _dial_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    # 350 + 440 Hz (North American dial tone), switched on and off like a busy signal.
    detune = rng.uniform(0.98, 1.02)
    y = _tone(350 * detune, n, sr) + _tone(440 * detune, n, sr)
    on, off = rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.5)
    t = np.arange(n) / sr + rng.uniform(0, on + off)
    gate = (t % (on + off)) < on
    # 5 ms ramps avoid clicks at each switch, which would sound like the clock class.
    ramp = np.convolve(gate.astype(float), np.ones(int(0.005 * sr)) / int(0.005 * sr), "same")
    return y * ramp


def _rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    # A bed of band-limited noise plus many short bright droplet transients.
    y = 0.5 * _bandpass_noise(rng, n, sr, rng.uniform(300, 800), rng.uniform(3000, 6000))
    drop_len = int(0.015 * sr)
    droplet = _bandpass_noise(rng, drop_len, sr, 2000, 7000) * _decay(drop_len, sr, 0.003)
    for start in rng.integers(0, n - drop_len, size=int(rng.uniform(20, 60) * n / sr)):
        y[start : start + drop_len] += rng.uniform(0.2, 1.0) * droplet
    return y


def _clock_ticks(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    # Tick-tock: a damped resonant click every period, the "tock" a little lower.
    period = rng.uniform(0.25, 0.6)
    click_len = int(0.02 * sr)
    t = np.arange(click_len) / sr
    pitch = rng.uniform(1500, 3500)
    tick = np.sin(2 * np.pi * pitch * t) * _decay(click_len, sr, 0.002)
    tock = np.sin(2 * np.pi * 0.8 * pitch * t) * _decay(click_len, sr, 0.002)
    y = np.zeros(n)
    jitter = 0.004 * sr
    for k, start in enumerate(np.arange(rng.uniform(0, period), n / sr, period)):
        i = int(start * sr + rng.uniform(-jitter, jitter))
        if 0 <= i < n - click_len:
            y[i : i + click_len] += tick if k % 2 == 0 else tock
    return y


def _bird_chirps(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    # Groups of short, fast upward FM sweeps at irregular times.
    y = np.zeros(n)
    t = rng.uniform(0, 0.3)
    while t < n / sr - 0.2:
        for _ in range(rng.integers(2, 6)):
            length = int(rng.uniform(0.04, 0.12) * sr)
            start = int(t * sr)
            if start + length >= n:
                break
            f0 = rng.uniform(2000, 3200)
            freq = np.linspace(f0, f0 * rng.uniform(1.4, 2.0), length)
            y[start : start + length] += _tone(freq, length, sr) * np.hanning(length)
            t += length / sr + rng.uniform(0.02, 0.08)
        t += rng.uniform(0.2, 0.8)
    return y


SYNTHS: dict[str, Synth] = {
    "siren": _siren,
    "dial_tone": _dial_tone,
    "rain": _rain,
    "clock_ticks": _clock_ticks,
    "bird_chirps": _bird_chirps,
}


def synth_clip(label: str, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """One demo clip of class `label` (float32 mono, 2-4 s, peak 0.2-0.9 plus background noise)."""
    n = int(rng.uniform(*CLIP_SECONDS) * sr)
    y = SYNTHS[label](rng, n, sr)
    y = y / (np.abs(y).max() + 1e-9) * rng.uniform(0.2, 0.9)
    y += rng.uniform(0.002, 0.02) * rng.standard_normal(n)  # background hiss at varying SNR
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * sr))
    return np.clip(y * fade, -1.0, 1.0).astype(np.float32)


def _params(clips_per_class: int, seed: int, sr: int) -> dict:
    return {"version": SYNTHESIS_VERSION, "classes": list(CLASSES), "clips_per_class": clips_per_class,
            "seed": seed, "sr": sr}


def _marker(root: Path) -> dict | None:
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _complete(root: Path, params: dict) -> bool:
    marker = _marker(root)
    return marker is not None and {k: marker.get(k) for k in params} == params


def _files(root: Path) -> dict[str, int]:
    """Every file under `root` (relative POSIX path -> size), the marker left out."""
    return {p.relative_to(root).as_posix(): p.lstat().st_size
            for p in root.rglob("*") if (p.is_symlink() or not p.is_dir()) and p.name != MARKER}


def marked(root: str | PathLike) -> bool:
    """True if `root` carries the demo's marker: this code made it (a user may have added to it since)."""
    return _marker(Path(root)) is not None


def is_demo(root: str | PathLike) -> bool:
    """True if `root` is a demo folder this code made and nobody has added to or changed since.

    The marker lists the files written and their sizes; markers of older versions
    (without the list) count only if every file has a demo clip's name.
    """
    root = Path(root)
    marker = _marker(root) if root.is_dir() and not root.is_symlink() else None
    if marker is None:
        return False
    files = _files(root)
    if isinstance(marker.get("files"), dict):
        return files == marker["files"]
    return all(_CLIP_NAME.fullmatch(name) for name in files)


def _holds_nothing(root: Path) -> bool:
    """A folder with no file in it (empty, or only empty folders): replacing it loses nothing."""
    return root.is_dir() and not root.is_symlink() and not any(
        p.is_symlink() or not p.is_dir() for p in root.rglob("*"))


def _check_replaceable(root: Path) -> None:
    if os.path.lexists(root) and not (_holds_nothing(root) or is_demo(root)):
        raise AudioclfError(
            f"'{root}' already holds files the demo did not make, so it is left as it is "
            "(the demo only replaces a demo folder it made). Choose a new or empty folder.")


def _build(folder: Path, clips_per_class: int, seed: int, sr: int) -> None:
    for c, label in enumerate(CLASSES):
        (folder / label).mkdir()
        for i in range(clips_per_class):
            # One generator per clip: a clip does not depend on how many came before it.
            rng = np.random.default_rng([seed, c, i])
            sf.write(folder / label / f"{label}_{i:03d}.wav", synth_clip(label, rng, sr), sr,
                     subtype="PCM_16")


def _pick(params: dict) -> Path | None:
    from audioclf import workspace

    for name in (DEMO_NAME, FALLBACK_NAME):
        root = workspace.datasets_dir() / name
        if _complete(root, params) or not os.path.lexists(root) or _holds_nothing(root) or is_demo(root):
            return root
    return None


def demo_root() -> Path | None:
    """Where the workspace's built-in demo is (or will be built); None if both names are taken.

    ``datasets/demo`` unless a user's own data set has that name (or a user added to
    an old demo there); then ``FALLBACK_NAME``.
    """
    return _pick(_params(CLIPS_PER_CLASS, SEED, SR))


def make_demo_dataset(
    root: str | PathLike | None = None,
    clips_per_class: int = CLIPS_PER_CLASS,
    seed: int = SEED,
    sr: int = SR,
) -> Path:
    """Synthesise the demo data set into `root` (default: the workspace's, see `demo_root`).

    Idempotent: a complete folder with the same parameters is returned at once.
    It is built in a temporary folder and renamed into place, so a half-built
    folder is never seen, and concurrent callers end up with one complete copy.
    An existing folder is replaced only if it holds no file or is a demo this code
    made (`is_demo`); anything else raises AudioclfError and is left untouched.
    """
    if clips_per_class < 1:
        raise AudioclfError("clips_per_class must be at least 1.")
    params = _params(clips_per_class, seed, sr)
    if root is None:
        root = _pick(params)
        if root is None:
            raise AudioclfError(f"Your own data sets are called '{DEMO_NAME}' and '{FALLBACK_NAME}', "
                                "so the built-in demo has no name left: rename one of them.")
    root = Path(root)
    if _complete(root, params):
        return root
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        _build(tmp, clips_per_class, seed, sr)
        (tmp / MARKER).write_text(json.dumps({**params, "files": _files(tmp)}))
        if os.path.lexists(root):
            if _complete(root, params):  # another process won the race
                return root
            _check_replaceable(root)  # again: it may have changed while we built
            # Stale (older version, other parameters) or empty: swap it out.
            old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
            os.replace(root, old / root.name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, root)
        except OSError:
            if not _complete(root, params):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def ensure_demo_dataset() -> Path:
    """The workspace's built-in demo data set (see `demo_root`), built on first use (a few seconds).

    Never replaces a user's data set: if ``demo`` is one, the demo is ``FALLBACK_NAME``.
    """
    return make_demo_dataset()
