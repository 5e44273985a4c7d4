"""The background / other class helper: a long noise recording becomes short clips of its own class."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from audioclf import datasets
from audioclf.audio import AudioError, load_audio


def noise_wav(seconds: float, sr: int = 16000, channels: int = 1) -> bytes:
    y = (0.05 * np.random.default_rng(0).normal(size=(int(seconds * sr), channels))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV")
    return buf.getvalue()


def test_a_long_recording_becomes_clips_of_the_background_class():
    root = datasets.create_dataset("with_background")
    paths = datasets.add_background(root, noise_wav(20.0, 44100, 2), "room tone.wav")
    assert len(paths) == 10 and {p.parent.name for p in paths} == {datasets.BACKGROUND_LABEL}
    clips = [load_audio(p) for p in paths]
    assert all(c.sr == 44100 and abs(c.duration - 2.0) < 1e-3 for c in clips)
    assert [p.name for p in paths][:2] == ["room tone_001.wav", "room tone_002.wav"]
    # A last piece shorter than half a clip is dropped; a short recording is kept whole.
    assert len(datasets.add_background(root, noise_wav(6.5))) == 3
    short = datasets.add_background(root, noise_wav(1.2))
    assert len(short) == 1 and abs(load_audio(short[0]).duration - 1.2) < 1e-3
    assert "background" in datasets.load_dataset(root).labels


def test_not_audio_writes_nothing_and_names_are_recognised():
    root = datasets.create_dataset("bg_refused")
    with pytest.raises(AudioError):
        datasets.add_background(root, b"definitely not audio", "x.wav")
    assert not (root / datasets.BACKGROUND_LABEL).exists()
    with pytest.raises(ValueError, match="0.25 to 60 s"):
        datasets.add_background(root, noise_wav(1.0), seconds=0.1)
    assert datasets.has_background(["dog", "Background Noise"]) and datasets.has_background(["_background", "x"])
    assert not datasets.has_background(["dog", "cat"])
