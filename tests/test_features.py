"""audioclf.features: configs, librosa features checked against librosa itself, plot helpers."""
from __future__ import annotations

import json
import subprocess
import sys

import librosa
import numpy as np
import pytest
import soundfile as sf

from audioclf.audio import AudioError, Clip, load_audio
from audioclf.features import (
    FeatureError,
    Features,
    MFCCConfig,
    SpectralConfig,
    YAMNetConfig,
    config_from_dict,
    config_key,
    config_to_dict,
    extract,
    extract_file,
    summarize,
    summary_names,
)
from audioclf.features.spectral import mel_spectrogram_db, spectrogram_db
from conftest import ROOT, tone

SR = 22050


@pytest.fixture(scope="module")
def a440() -> Clip:
    return Clip(tone(440.0, 1.0, SR, 0.5), SR, "a440")


@pytest.fixture(scope="module")
def spectral_a440(a440) -> Features:
    return extract(a440, SpectralConfig())


# --- configs -----------------------------------------------------------------

@pytest.mark.parametrize("cfg", [SpectralConfig(), MFCCConfig(sr=None, deltas=True), YAMNetConfig(model="x.tflite")])
def test_config_round_trip_and_hashable(cfg):
    d = config_to_dict(cfg)
    assert d["kind"] == cfg.kind
    assert config_from_dict(json.loads(json.dumps(d))) == cfg
    assert hash(cfg) == hash(config_from_dict(d))
    with pytest.raises(AttributeError):
        cfg.kind_of = 1  # frozen


def test_config_key_is_stable_across_processes_and_distinguishes_configs():
    cfg = MFCCConfig(n_mfcc=13, deltas=True)
    code = (
        "from audioclf.features import MFCCConfig, config_key;"
        "print(config_key(MFCCConfig(n_mfcc=13, deltas=True)))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert other.stdout.strip() == config_key(cfg)
    keys = {config_key(c) for c in (cfg, MFCCConfig(), MFCCConfig(n_mfcc=13), SpectralConfig(), YAMNetConfig())}
    assert len(keys) == 5


def test_json_numbers_are_coerced():
    assert config_from_dict({"kind": "mfcc", "n_fft": 1024.0, "hop_length": 512}).n_fft == 1024


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"kind": "mfcc", "n_fft": 0}, "positive whole number"),
        ({"kind": "mfcc", "hop_length": 2.5}, "positive whole number"),
        ({"kind": "spectral", "n_fft": 256, "hop_length": 512}, "larger than n_fft"),
        ({"kind": "mfcc", "n_mfcc": 50, "n_mels": 40}, "cannot exceed"),
        ({"kind": "mfcc", "deltas": "yes"}, "true or false"),
        ({"kind": "wavelets"}, "Unknown feature kind"),
        ({"kind": "mfcc", "n_fftt": 512}, "Unknown setting"),
        ({"n_fft": 512}, "needs a 'kind'"),
    ],
)
def test_bad_configs_get_clear_errors(bad, match):
    with pytest.raises(FeatureError, match=match):
        config_from_dict(bad)


def test_import_stays_light():
    code = "import sys, audioclf.features; print(any(m in sys.modules for m in ('librosa', 'tensorflow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


# --- spectral ----------------------------------------------------------------

def test_spectral_layout(spectral_a440):
    f = spectral_a440
    assert f.values.dtype == np.float32 and f.values.shape == (1 + SR // 512, 13 + 16)
    assert f.names[:2] == ("mfcc_1", "mfcc_2") and f.names[13:16] == ("centroid", "rolloff", "zcr")
    assert f.names[16] == "chroma_C" and f.names[-1] == "rms" and len(f.names) == f.dims
    assert f.times[1] == pytest.approx(512 / SR) and len(f.times) == f.n_frames
    assert f.scores is None


def test_spectral_values_describe_a_440_hz_tone(spectral_a440):
    f = spectral_a440
    col = {n: f.values[3:-3, i] for i, n in enumerate(f.names)}  # skip edge frames
    assert np.median(col["centroid"]) == pytest.approx(440, rel=0.05)
    assert np.median(col["rolloff"]) == pytest.approx(440, rel=0.1)
    assert np.median(col["zcr"]) == pytest.approx(2 * 440 / SR, rel=0.05)
    assert np.median(col["rms"]) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
    chroma = f.values[3:-3, 16:28].mean(axis=0)
    assert f.names[16 + int(np.argmax(chroma))] == "chroma_A"


def test_spectral_matches_librosa_reference(a440, spectral_a440):
    f, y = spectral_a440, a440.samples
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512, n_mels=128)
    np.testing.assert_allclose(f.values[:, :13], mfcc.T, atol=1e-3)
    centroid = librosa.feature.spectral_centroid(y=y, sr=SR, n_fft=2048, hop_length=512)[0]
    np.testing.assert_allclose(f.values[:, 13], centroid, rtol=1e-4)
    chroma = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=2048, hop_length=512, tuning=0.0)
    np.testing.assert_allclose(f.values[:, 16:28], chroma.T, atol=1e-4)


def test_mfcc_resamples_and_matches_librosa(tmp_path):
    path = tmp_path / "chirp.wav"
    y8k = librosa.chirp(fmin=200, fmax=3000, sr=8000, duration=0.6).astype(np.float32) * 0.5
    sf.write(path, y8k, 8000)
    cfg = MFCCConfig()
    f = extract_file(path, cfg)
    y16k = load_audio(path, sr=16000).samples
    ref = librosa.feature.mfcc(y=y16k, sr=16000, n_mfcc=20, n_fft=512, hop_length=256, n_mels=40)
    assert f.values.shape == (1 + len(y16k) // 256, 20)
    np.testing.assert_allclose(f.values, ref.T, atol=1e-3)
    # Same result when handing extract() the 8 kHz clip: it resamples itself.
    np.testing.assert_allclose(extract(load_audio(path), cfg).values, f.values, atol=1e-4)


def test_mfcc_native_rate_and_deltas(tmp_path):
    path = tmp_path / "tone8k.wav"
    sf.write(path, tone(500.0, 0.5, 8000), 8000)
    f = extract_file(path, MFCCConfig(sr=None, n_mfcc=13, deltas=True))
    assert f.values.shape == (1 + 4000 // 256, 39)
    assert f.times[1] == pytest.approx(256 / 8000)
    assert f.names[13] == "delta_mfcc_1" and f.names[26] == "delta2_mfcc_1"
    # A steady tone: deltas are near zero away from the edges, the MFCCs are not.
    middle = f.values[4:-4]
    assert np.abs(middle[:, 13:]).max() < 0.1 * np.abs(middle[:, :13]).max()


@pytest.mark.parametrize("cfg", [SpectralConfig(), MFCCConfig(deltas=True)])
@pytest.mark.parametrize("n", [1, 100, 3000])
def test_clips_shorter_than_a_window_give_frames(cfg, n):
    clip = Clip(tone(300.0, n / SR, SR, 0.3)[:n] + 0.01, SR, "short")
    f = extract(clip, cfg)
    assert f.n_frames >= 1 and np.isfinite(f.values).all()


@pytest.mark.parametrize("cfg", [SpectralConfig(), MFCCConfig(deltas=True)])
def test_digital_silence_gives_finite_features(cfg):
    f = extract(Clip(np.zeros(8000, np.float32), SR, "silence"), cfg)
    assert np.isfinite(f.values).all()


def test_real_fsdd_clip(fsdd_dir):
    f = extract_file(fsdd_dir / "7" / "7_jackson_0.wav", MFCCConfig(deltas=True))
    assert f.values.shape[1] == 60 and 10 < f.n_frames < 150 and np.isfinite(f.values).all()


def test_extract_refuses_non_clips_and_bad_files(tmp_path):
    with pytest.raises(FeatureError, match="needs a Clip"):
        extract(np.zeros(100), MFCCConfig())
    with pytest.raises(FeatureError, match="Expected a feature config"):
        extract(Clip(np.zeros(100, np.float32), SR), {"kind": "mfcc"})
    with pytest.raises(AudioError, match="no audio samples"):
        extract(Clip(np.zeros(0, np.float32), SR, "empty"), MFCCConfig())
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="bad.wav"):
        extract_file(bad, MFCCConfig())


def test_summarize():
    values = np.array([[1.0, 10.0], [3.0, 10.0]], dtype=np.float32)
    s = summarize(values)
    assert s.dtype == np.float32 and s.tolist() == [2.0, 10.0, 1.0, 0.0]
    assert summary_names(("a", "b")) == ("a_mean", "b_mean", "a_std", "b_std")
    with pytest.raises(FeatureError, match="at least one frame"):
        summarize(np.zeros((0, 3)))


# --- plot helpers ------------------------------------------------------------

def test_spectrogram_helpers(a440, spectral_a440):
    spec = spectrogram_db(a440.samples, SR, n_fft=2048, hop_length=512)
    assert spec.db.shape == (1025, spectral_a440.n_frames) and spec.freqs.shape == (1025,)
    assert spec.db.max() == pytest.approx(0.0) and spec.db.min() >= -80.0 - 1e-3
    np.testing.assert_allclose(spec.times, spectral_a440.times)
    assert spec.freqs[np.argmax(spec.db[:, 10])] == pytest.approx(440, abs=SR / 2048)
    mel, times, freqs = mel_spectrogram_db(a440.samples, SR, n_fft=2048, hop_length=512, n_mels=64)
    assert mel.shape == (64, len(times)) and freqs.shape == (64,) and np.all(np.diff(freqs) > 0)
    assert freqs[np.argmax(mel[:, 10])] == pytest.approx(440, rel=0.15)


def test_yamnet_kind_dispatches_to_its_module(yamnet_tflite):
    pytest.importorskip("audioclf.features.yamnet")
    clip = Clip(tone(440.0, 2.0, 16000), 16000, "tone")
    f = extract(clip, YAMNetConfig(model=str(yamnet_tflite)))
    assert f.values.shape[1] == 1024 and f.scores is not None and f.scores.shape == (f.n_frames, 521)


def test_stft_and_trim_match_librosa(fsdd_dir):
    """Our strided STFT and silence trim are librosa's numbers, on real speech and odd lengths."""
    import warnings

    from audioclf.features.spectral import stft_magnitude, trim_silence

    clips = [load_audio(p, sr=16000).samples for p in sorted(fsdd_dir.glob("*/*.wav"))[::150]]
    rng = np.random.default_rng(0)
    clips += [rng.normal(0, 0.1, n).astype(np.float32) for n in (1, 7, 511, 512, 513, 40000)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa: n_fft too large for tiny clips
        for y in clips:
            for n_fft, hop in ((512, 256), (2048, 512), (511, 100)):
                ref = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, pad_mode="constant"))
                ours = stft_magnitude(y, n_fft, hop)
                assert ours.shape == ref.shape
                assert np.allclose(ours, ref, rtol=1e-4, atol=1e-5 * max(1.0, ref.max()))
                if len(y) >= n_fft:
                    cut, _ = librosa.effects.trim(y, top_db=30, frame_length=n_fft, hop_length=hop)
                    assert np.array_equal(trim_silence(y, 30, n_fft, hop), cut)
