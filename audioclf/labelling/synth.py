"""A long demo recording with known sound events, for trying (and testing) the labelling loop.

::

    y, events = demo_recording(600.0, seed=0)   # 10 minutes at 16 kHz
    events[0]                                   # SoundEvent(start=1.7, end=4.4, label="rain")

The events are the demo data set's sound kinds (:func:`audioclf.datasets.demo.synth_clip`:
siren, dial tone, rain, clock ticks, bird chirps) in a random order, each kind
as often as the others, with quiet room noise of random length between them.
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.datasets.demo import CLASSES, SR, synth_clip

NOISE = 0.001  # room noise between events (about -60 dBFS)
GAP = (1.5, 4.0)  # seconds of room noise between events


@dataclass(frozen=True)
class SoundEvent:
    start: float
    end: float
    label: str


def demo_recording(seconds: float = 600.0, *, seed: int = 0, sr: int = SR,
                   classes: tuple[str, ...] = CLASSES) -> tuple[np.ndarray, list[SoundEvent]]:
    """``seconds`` of float32 audio holding demo sounds at known times, and those events."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = (NOISE * rng.standard_normal(n)).astype(np.float32)
    events, t, order = [], rng.uniform(*GAP), []
    while True:
        if not order:
            order = list(rng.permutation(len(classes)))
        label = classes[order.pop()]
        clip = synth_clip(label, rng, sr)
        a = int(t * sr)
        if a + len(clip) > n:
            break
        y[a:a + len(clip)] += clip
        events.append(SoundEvent(round(a / sr, 3), round((a + len(clip)) / sr, 3), label))
        t = (a + len(clip)) / sr + rng.uniform(*GAP)
    return np.clip(y, -1.0, 1.0), events


def write_demo_recording(path: str | PathLike, seconds: float = 600.0, *, seed: int = 0,
                         sr: int = SR) -> list[SoundEvent]:
    """Write :func:`demo_recording` as a 16-bit WAV file; returns its events."""
    y, events = demo_recording(seconds, seed=seed, sr=sr)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, subtype="PCM_16")
    return events


def true_labels(clips, events: list[SoundEvent]) -> list[str | None]:
    """The event label of each ``(start, end)`` clip: the event it overlaps most (None: none)."""
    out = []
    for start, end in clips:
        best, overlap = None, 0.0
        for ev in events:
            o = min(end, ev.end) - max(start, ev.start)
            if o > overlap:
                best, overlap = ev.label, o
        out.append(best)
    return out
