"""Prediction with a trained run: clips, long clips over time, files, mismatched features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf import jobs
from audioclf.audio import Clip, load_audio
from audioclf.features import MFCCConfig, extract
from audioclf.inference import FeatureMismatchError, PredictError, Predictor
from audioclf.inference.predict import WINDOW_SECONDS


@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor.load(trained_run)


def test_predict_clip_gives_probabilities_and_top_k(predictor, fsdd_small):
    clip = load_audio(next((fsdd_small / "1").iterdir()))
    pred = predictor.predict_clip(clip)
    assert pred.labels == ("0", "1", "2")
    assert pred.probs.shape == (3,) and np.isclose(pred.probs.sum(), 1.0, atol=1e-5)
    top = pred.top_k(2)
    assert len(top) == 2 and top[0][0] == pred.label and top[0][1] >= top[1][1]
    assert len(pred.window_probs) == 0 and not pred.silent
    # Same answer whatever rate the clip comes in at (resampled to the run's config).
    again = predictor.predict_clip(load_audio(next((fsdd_small / "1").iterdir()), sr=22050))
    assert np.allclose(again.probs, pred.probs, atol=0.05)


def test_long_clip_gets_windows_over_time(predictor, fsdd_small):
    parts = [load_audio(p, sr=16000).samples for d in ("0", "1", "2") for p in sorted((fsdd_small / d).iterdir())[:3]]
    long = Clip(np.concatenate(parts), 16000, "long")
    assert long.duration > 2 * WINDOW_SECONDS
    pred = predictor.predict_clip(long)
    n = len(pred.window_times)
    assert n >= 3 and pred.window_probs.shape == (n, 3)
    assert np.all(np.diff(pred.window_times) > 0) and pred.window_times[-1] < long.duration
    assert np.allclose(pred.window_probs.sum(1), 1.0, atol=1e-5)


def test_features_from_another_config_are_refused(predictor, fsdd_small):
    clip = load_audio(next((fsdd_small / "0").iterdir()))
    other = extract(clip, MFCCConfig(n_mfcc=13))
    with pytest.raises(FeatureMismatchError, match="n_mfcc=13.*n_mfcc=20"):
        predictor.predict_features(other)


def test_predict_files_reports_errors_per_file_and_flags_silence(predictor, fsdd_small, tmp_path):
    good = next((fsdd_small / "2").iterdir())
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16000, np.float32), 16000)
    seen = []
    results = predictor.predict_files([good, broken, quiet], progress=lambda d, t: seen.append((d, t)))
    assert [r.path for r in results] == [str(good), str(broken), str(quiet)]
    assert results[0].prediction is not None and not results[0].error
    assert results[1].prediction is None and "broken.wav" in results[1].error
    assert results[2].prediction is not None and results[2].prediction.silent
    assert seen and seen[-1][1] == 3
    single = predictor.predict_clip(load_audio(good))
    assert np.allclose(results[0].prediction.probs, single.probs, atol=1e-5)


def test_unfinished_run_cannot_be_loaded(trained_run):
    from audioclf.training import runs

    run_id = runs.create_run(jobs.read_json(runs.run_dir(trained_run) / runs.CONFIG))
    with pytest.raises(PredictError, match="not done"):
        Predictor.load(run_id)
    runs.delete_run(run_id)


def test_batch_decodes_each_file_once_and_a_warm_batch_not_at_all(predictor, tmp_path, monkeypatch):
    import soundfile

    from conftest import tone

    paths = []
    for i, freq in enumerate((300.0, 520.0, 910.0)):  # fresh contents: not in the feature cache yet
        paths.append(tmp_path / f"tone{i}.wav")
        sf.write(paths[-1], tone(freq, 0.8), 16000)
    paths.append(tmp_path / "hush.wav")
    sf.write(paths[-1], np.zeros(12000, np.float32), 16000)
    decoded = []
    real_read = soundfile.SoundFile.read

    def counting_read(self, *args, **kwargs):
        if self.tell() == 0:  # a decode starts (files are read in blocks)
            decoded.append(Path(self.name).name)
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(soundfile.SoundFile, "read", counting_read)
    cold = predictor.predict_files(paths)
    assert sorted(decoded) == sorted(p.name for p in paths)  # one decode per file
    decoded.clear()
    warm = predictor.predict_files(paths)
    assert decoded == []  # features and the silence flag both come from the cache
    assert [r.prediction.silent for r in warm] == [False, False, False, True]
    assert [r.prediction.silent for r in cold] == [False, False, False, True]
    for a, b in zip(cold, warm):
        assert np.allclose(a.prediction.probs, b.prediction.probs, atol=1e-6)


def test_a_batch_gives_each_clip_its_own_windows(predictor, fsdd_small):
    parts = [load_audio(p, sr=16000).samples for d in ("0", "1", "2") for p in sorted((fsdd_small / d).iterdir())[:3]]
    long_a, long_b = Clip(np.concatenate(parts), 16000), Clip(np.concatenate(parts[::-1][:6]), 16000)
    short = load_audio(next((fsdd_small / "1").iterdir()), sr=16000)
    feats = [extract(c, predictor.features_cfg) for c in (long_a, short, long_b)]
    batch = predictor.predict_many_features(feats)
    for f, pred in zip(feats, batch):
        alone = predictor.predict_features(f)
        assert np.array_equal(pred.window_times, alone.window_times)
        assert np.allclose(pred.window_probs, alone.window_probs, atol=1e-5)
        assert np.allclose(pred.probs, alone.probs, atol=1e-5)
    assert len(batch[0].window_times) > len(batch[2].window_times) > 0 and len(batch[1].window_times) == 0


def _long_wav(path: Path, seconds: float = 20.0, sr: int = 16000) -> Path:
    """Tones that change every 2.5 s, a little noise: windows with different answers."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * (300 + 150 * (np.floor(t / 2.5) % 4)) * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, y.astype(np.float32), sr)
    return path


def test_stream_pieces_cover_the_file_once_with_their_overlap(tmp_path):
    from audioclf.audio import stream_pieces

    path = _long_wav(tmp_path / "long.wav", seconds=10.0)
    whole = load_audio(path, sr=8000)
    pieces = list(stream_pieces(path, 8000, 3.0, 1.0))
    assert [s for s, _, _ in pieces] == [0.0, 2.0, 4.0, 6.0, 8.0] and [last for *_, last in pieces] == [0] * 4 + [1]
    assert all(len(p.samples) == 24000 for _, p, _ in pieces[:-1]) and len(pieces[-1][1].samples) == 16000
    for start, piece, _ in pieces:  # the same samples as one decode at that rate
        a = int(start * 8000)
        assert np.allclose(piece.samples, whole.samples[a:a + len(piece.samples)], atol=1e-4)
    assert pieces[-1][0] + pieces[-1][1].duration == pytest.approx(whole.duration)


def test_a_long_clip_is_answered_a_piece_at_a_time_with_the_windows_of_one_pass(demo_run, tmp_path, monkeypatch):
    """Major 3: past limits.PREDICT_WHOLE_MAX_SECONDS a file is streamed through the features
    in pieces of limits.PREDICT_PIECE_SECONDS; pieces start on the window grid, so (YAMNet's
    frames being local) each window is the one a pass over the whole clip cuts."""
    from audioclf import features, limits

    predictor = Predictor.load(demo_run)
    path = _long_wav(tmp_path / "long.wav")
    monkeypatch.setattr(limits, "PREDICT_WHOLE_MAX_SECONDS", 5.0)
    whole = predictor.predict_clip(load_audio(path, sr=16000))  # whole-clip features, then windows
    monkeypatch.setattr(limits, "PREDICT_PIECE_SECONDS", 6.0)
    seen = []
    real = features.extract
    monkeypatch.setattr(features, "extract", lambda clip, cfg: seen.append(clip.duration) or real(clip, cfg))
    streamed = predictor.predict_audio(path)
    assert len(seen) > 3 and max(seen) <= 6.0 + 1e-6  # never more than a piece (nor the frame-step probe)
    assert np.allclose(streamed.window_times, whole.window_times, atol=1e-3)
    assert np.allclose(streamed.window_probs, whole.window_probs, atol=1e-4)
    assert np.allclose(streamed.probs, whole.probs, atol=1e-4) and streamed.duration == pytest.approx(20.0)
    assert streamed.name == "long.wav" and not streamed.silent
    assert [s.label for s in streamed.segments()] == [s.label for s in whole.segments()]
    # The batch path streams such a file too.
    (result,) = predictor.predict_files([path])
    assert np.allclose(result.prediction.window_probs, streamed.window_probs)
