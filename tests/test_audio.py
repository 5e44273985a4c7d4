"""audioclf.audio and audioclf.workspace with real files written by the tests."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audioclf import limits, workspace
from audioclf.audio import (
    AudioError,
    Clip,
    fingerprint,
    is_silent,
    load_audio,
    probe,
)
from conftest import tone


# --- workspace -------------------------------------------------------------

def test_workspace_follows_env_on_every_call(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path / "a"))
    assert workspace.home() == (tmp_path / "a").resolve()
    assert workspace.cache_dir() == (tmp_path / "a" / "cache").resolve()
    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path / "b"))
    for sub in (workspace.datasets_dir(), workspace.cache_dir(), workspace.runs_dir(), workspace.models_dir()):
        assert sub.is_dir() and sub.parent == (tmp_path / "b").resolve()


def test_workspace_default_is_local_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("AUDIOCLF_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert workspace.home() == (tmp_path / "workspace").resolve()
    assert (tmp_path / "workspace").is_dir()


# --- good input ------------------------------------------------------------

def test_wav_loads_as_float32_mono(wav_file):
    clip = load_audio(wav_file)
    assert isinstance(clip, Clip)
    assert clip.sr == 16000 and clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration == pytest.approx(1.0)
    assert clip.name == "tone.wav"
    assert not clip.silent
    assert np.max(np.abs(clip.samples)) == pytest.approx(0.5, abs=1e-3)


def test_stereo_44k_is_mixed_to_mono_and_resampled(tmp_path):
    sr = 44100
    left, right = tone(440.0, 1.0, sr, 0.8), np.zeros(sr, np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), sr)
    info = probe(path)
    assert (info.sr, info.channels, info.frames) == (44100, 2, 44100)
    clip = load_audio(path, sr=16000)
    assert clip.sr == 16000 and clip.samples.ndim == 1
    assert len(clip.samples) == 16000
    # Mono mix halves a one-sided tone; the peak frequency stays at 440 Hz.
    assert np.max(np.abs(clip.samples[100:-100])) == pytest.approx(0.4, abs=0.01)
    spectrum = np.abs(np.fft.rfft(clip.samples))
    assert np.argmax(spectrum) * 16000 / len(clip.samples) == pytest.approx(440.0, abs=2)


def test_8k_file_keeps_its_rate_or_upsamples(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, tone(300.0, 0.5, 8000), 8000, subtype="PCM_16")
    native = load_audio(path)
    assert native.sr == 8000 and len(native.samples) == 4000
    up = load_audio(path, sr=22050)
    assert up.sr == 22050 and len(up.samples) == pytest.approx(11025, abs=1)
    assert np.max(np.abs(up.samples)) <= 1.0


@pytest.mark.parametrize("fmt, ext", [("OGG", ".ogg"), ("MP3", ".mp3"), ("FLAC", ".flac")])
def test_compressed_formats(tmp_path, fmt, ext):
    path = tmp_path / f"clip{ext}"
    sf.write(path, tone(1000.0, 1.0, 16000), 16000, format=fmt)
    clip = load_audio(path, sr=16000)
    assert probe(path).format == fmt
    assert abs(len(clip.samples) - 16000) < 2000  # mp3 encoders add a little padding
    spectrum = np.abs(np.fft.rfft(clip.samples))
    assert np.argmax(spectrum) * 16000 / len(clip.samples) == pytest.approx(1000.0, abs=5)


def test_load_from_bytes(wav_file):
    data = wav_file.read_bytes()
    clip = load_audio(data, sr=8000, name="upload.wav")
    assert clip.sr == 8000 and len(clip.samples) == 8000 and clip.name == "upload.wav"
    assert probe(data).frames == 16000
    assert fingerprint(data) == fingerprint(wav_file)


def test_fingerprint_changes_with_content(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, tone(440.0), 16000)
    sf.write(b, tone(441.0), 16000)
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint(a.read_bytes())


def test_silent_clip_loads_but_is_flagged(tmp_path):
    path = tmp_path / "silence.wav"
    quiet = np.random.default_rng(0).normal(0, 1e-5, 16000).astype(np.float32)
    sf.write(path, quiet, 16000, subtype="FLOAT")
    clip = load_audio(path)
    assert clip.silent
    assert is_silent(np.zeros(10, np.float32))
    assert not is_silent(tone(200.0, 0.2, 16000, 0.05))


def test_float_wav_above_full_scale_is_scaled_into_range(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, tone(440.0, 0.5, 16000, 2.0), 16000, subtype="FLOAT")
    clip = load_audio(path)
    assert np.max(np.abs(clip.samples)) == pytest.approx(1.0, abs=1e-6)


# --- bad input: one test per case -------------------------------------------

def test_truncated_wav(tmp_path, wav_file):
    path = tmp_path / "cut.wav"
    path.write_bytes(wav_file.read_bytes()[:5000])
    with pytest.raises(AudioError, match="truncated") as err:
        load_audio(path)
    assert "cut.wav" in str(err.value)


def test_wav_cut_inside_header(tmp_path, wav_file):
    path = tmp_path / "stub.wav"
    path.write_bytes(wav_file.read_bytes()[:30])
    with pytest.raises(AudioError, match="not audio or is corrupt"):
        load_audio(path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not a recording\n" * 20)
    with pytest.raises(AudioError, match="not audio or is corrupt") as err:
        load_audio(path)
    assert "notes.wav" in str(err.value)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        load_audio(path)
    with pytest.raises(AudioError, match="empty file"):
        load_audio(b"")


def test_valid_header_with_zero_samples(tmp_path):
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)


def test_unsupported_format(tmp_path):
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioError, match="unsupported format"):
        load_audio(path)


def test_nan_samples(tmp_path):
    y = tone(440.0, 0.5)
    y[1000:1010] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path)


def test_inf_samples(tmp_path):
    y = tone(440.0, 0.5)
    y[5] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path)


def test_too_long_is_refused_from_header(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 5, np.int16), 8000, subtype="PCM_16")
    with pytest.raises(AudioError, match="more than the 3 s limit"):
        load_audio(path, max_seconds=3)
    assert load_audio(path, max_seconds=None).duration == pytest.approx(5.0)
    assert limits.MAX_SECONDS >= 60


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)


def test_bad_sample_rate_argument(wav_file):
    with pytest.raises(AudioError, match="Sample rate"):
        load_audio(wav_file, sr=0)
