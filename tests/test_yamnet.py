"""YAMNet features: the real TFLite model from ../shared, and the SavedModel/TF Hub path
with a small SavedModel of YAMNet's signature built here."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.audio import AudioError, Clip, load_audio
from audioclf.features import YAMNetConfig, extract
from audioclf.features import yamnet as Y

SR = 16000


def noise(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, int(seconds * sr)).astype(np.float32)


@pytest.fixture(scope="module")
def cfg(yamnet_tflite) -> YAMNetConfig:
    return YAMNetConfig(str(yamnet_tflite))


@pytest.fixture(scope="module")
def names(yamnet_tflite) -> list[str]:
    return Y.class_names(str(yamnet_tflite))


# ---------------------------------------------------------------- TFLite (the real model)


def test_zeros_hear_silence(cfg, names):
    f = Y.extract_yamnet(Clip(np.zeros(3 * SR, np.float32), SR, "zeros"), cfg)
    # SavedModel framing: 1 window + ceil((48000 - 15600) / 7680) hops.
    assert f.values.shape == (6, 1024) and f.values.dtype == np.float32
    assert f.scores.shape == (6, 521)
    assert f.names == tuple(f"yamnet_{i}" for i in range(1024))
    np.testing.assert_allclose(f.times, 0.4875 + 0.48 * np.arange(6), atol=1e-6)
    top = Y.top_classes(f.scores, k=3, names=names)
    assert "Silence" in [name for name, _ in top]
    assert all(0.0 <= s <= 1.0 for _, s in top)


def test_uniform_noise_is_white_noise(cfg, names):
    f = Y.extract_yamnet(Clip(noise(3.0), SR), cfg)
    top = Y.top_classes(f.scores, k=3, names=names)
    assert top[0][0] == "White noise", top
    assert top[0][1] >= top[1][1] >= top[2][1]


def test_short_clip_is_one_window_and_resampled(cfg, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, noise(0.3, sr=8000, seed=1), 8000)
    clip = load_audio(path)
    assert clip.sr == 8000
    f = extract(clip, cfg)  # through the features dispatch
    assert f.values.shape == (1, 1024) and f.scores.shape == (1, 521)
    assert np.isfinite(f.values).all()
    direct = Y.extract_yamnet(clip, cfg)  # resamples itself
    np.testing.assert_allclose(direct.values, f.values, atol=1e-4)


def test_num_frames_matches_savedmodel_padding():
    assert [Y.num_frames(n) for n in (0, 1, 15600, 15601, 15600 + 7680, 15600 + 7681)] == [1, 1, 1, 2, 2, 3]
    y = noise(1.2)
    w = Y.frame_waveform(y)
    assert w.shape == (2, 15600)
    np.testing.assert_array_equal(w[1, : len(y) - 7680], y[7680:])
    assert not w[1, len(y) - 7680 :].any()


def test_batched_equals_one_window_per_call(yamnet_tflite):
    batched = Y.load_model(str(yamnet_tflite))
    plain = Y.load_model(str(yamnet_tflite), batch=0)  # the file as is, embedding from preserved tensors
    assert batched.batch > 1 and plain.batch == 0
    t = np.arange(5 * SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * noise(5.0, seed=2)).astype(np.float32)
    windows = Y.frame_waveform(y)  # 10 windows: 2 batches of 4 and 2 single calls
    s_b, e_b = batched.run_windows(windows)
    s_p, e_p = plain.run_windows(windows)
    assert e_b.shape == (10, 1024)
    np.testing.assert_allclose(e_b, e_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s_b, s_p, rtol=1e-5, atol=1e-6)
    assert np.abs(e_b[0] - e_b[5]).max() > 1e-3  # different windows differ


def test_many_clips_equal_one_by_one(cfg):
    clips = [Clip(noise(s, seed=i), SR, f"c{i}") for i, s in enumerate((0.4, 2.0, 0.9, 1.5))]
    many = Y.extract_yamnet_many(clips, cfg)
    assert [f.values.shape[0] for f in many] == [1, 4, 1, 3]
    for clip, f in zip(clips, many):
        one = Y.extract_yamnet(clip, cfg)
        np.testing.assert_allclose(one.values, f.values, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(one.scores, f.scores, rtol=1e-5, atol=1e-6)


def test_model_is_loaded_once(yamnet_tflite, cfg):
    a = Y.load_model(str(yamnet_tflite))
    Y.extract_yamnet(Clip(noise(0.5), SR), cfg)
    assert Y.load_model(str(yamnet_tflite)) is a
    assert Y.load_model(str(yamnet_tflite) + "/../yamnet.tflite") is a  # same file, same model


def test_threads_share_the_model_safely(cfg):
    clips = [Clip(noise(2.0, seed=10 + i), SR) for i in range(4)]
    want = [Y.extract_yamnet(c, cfg).values for c in clips]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        got[i] = Y.extract_yamnet(clips[i], cfg).values

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_allclose(got[i], want[i], rtol=1e-5, atol=1e-5)


def test_env_selects_the_model(yamnet_tflite, tmp_path, monkeypatch):
    other = tmp_path / "mine" / "yamnet.tflite"
    other.parent.mkdir()
    shutil.copyfile(yamnet_tflite, other)  # a real copy (in tmp): a symlink resolves to the shared file
    monkeypatch.setenv(Y.ENV_MODEL, str(other))
    assert Y.resolve_spec("") == str(other.resolve())
    model = Y.load_model("")
    assert model.spec == str(other.resolve()) and model is not Y.load_model(str(yamnet_tflite))
    # No class map beside this copy: generic names, still 521 of them.
    assert model.class_names()[:2] == ["class_0", "class_1"] and len(model.class_names()) == 521
    f = Y.extract_yamnet(Clip(np.zeros(SR, np.float32), SR), YAMNetConfig())
    assert f.values.shape == (2, 1024)
    # An explicit config wins over the environment.
    assert Y.resolve_spec(str(yamnet_tflite)) == str(Path(yamnet_tflite).resolve())


def test_workspace_model_is_found(yamnet_tflite, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv(Y.ENV_MODEL, raising=False)
    assert Y.resolve_spec("") == Y.DEFAULT_HANDLE
    local = tmp_path / "ws" / "models" / "yamnet"
    local.mkdir(parents=True, exist_ok=True)
    (local / "yamnet.tflite").symlink_to(yamnet_tflite)
    (local / "yamnet_class_map.csv").symlink_to(Path(yamnet_tflite).with_name("yamnet_class_map.csv"))
    assert Y.resolve_spec("") == str((local / "yamnet.tflite").resolve())
    assert Y.class_names()[0] == "Speech"


def test_missing_model_says_how_to_provide_one(tmp_path):
    missing = tmp_path / "nowhere" / "yamnet.tflite"
    with pytest.raises(Y.YAMNetUnavailable) as err:
        extract(Clip(np.zeros(SR, np.float32), SR), YAMNetConfig(str(missing)))
    msg = str(err.value)
    assert str(missing) in msg and "AUDIOCLF_YAMNET" in msg
    assert str(Path("models") / "yamnet" / "yamnet.tflite") in msg and "internet" in msg


def test_not_a_model_is_a_clear_error(tmp_path):
    text = tmp_path / "model.txt"
    text.write_text("hello")
    with pytest.raises(Y.YAMNetUnavailable, match="neither a .tflite file nor a SavedModel"):
        Y.load_model(str(text))
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"not a flatbuffer")
    with pytest.raises(Y.YAMNetUnavailable, match="not a usable YAMNet TFLite model"):
        Y.load_model(str(fake))


def test_nan_samples_are_an_audio_error(cfg):
    y = np.zeros(SR, np.float32)
    y[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        Y.extract_yamnet(Clip(y, SR, "bad"), cfg)


def test_top_classes_average_over_frames():
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.7, 0.0]], np.float32)
    assert Y.top_classes(scores, k=2, names=["a", "b", "c"]) == [("a", pytest.approx(0.5)), ("b", pytest.approx(0.4))]
    with pytest.raises(ValueError, match="class names"):
        Y.top_classes(scores, names=["a", "b"])


# ---------------------------------------------------------------- SavedModel / TF Hub path


@pytest.fixture(scope="module")
def savedmodel_dir(tmp_path_factory) -> Path:
    """A SavedModel with YAMNet's signature: waveform -> (scores, embeddings, log_mel), plus a class map."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("yamnet_savedmodel")
    class_map = root / "src_class_map.csv"
    class_map.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},Sound {i}\n" for i in range(521)))
    rng = np.random.default_rng(0)
    mel = tf.constant(np.abs(rng.normal(size=(257, 64))).astype(np.float32))
    proj = tf.constant(rng.normal(size=(128, 1024)).astype(np.float32) / 8)
    head = tf.constant(rng.normal(size=(1024, 521)).astype(np.float32) / 32)

    class TinyYAMNet(tf.Module):
        def __init__(self):
            super().__init__()
            self.mel, self.proj, self.head = tf.Variable(mel), tf.Variable(proj), tf.Variable(head)
            self.class_map = tf.saved_model.Asset(str(class_map))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            # Like YAMNet: pad to at least one 0.975 s window, 25 ms STFT every 10 ms,
            # log-mel, 96-frame patches every 48 frames, one embedding per patch.
            pad = tf.maximum(0, 15600 - tf.shape(waveform)[0])
            waveform = tf.pad(waveform, [[0, pad]])
            spec = tf.abs(tf.signal.stft(waveform, 400, 160, 512))
            log_mel = tf.math.log(tf.matmul(spec, self.mel) + 0.001)
            patches = tf.signal.frame(log_mel, 96, 48, axis=0)  # (frames, 96, 64)
            pooled = tf.concat([tf.reduce_mean(patches, 1), tf.math.reduce_std(patches, 1)], axis=1)
            embeddings = tf.nn.relu(tf.matmul(pooled, self.proj))
            scores = tf.sigmoid(tf.matmul(embeddings, self.head))
            return scores, embeddings, log_mel

        @tf.function(input_signature=[])
        def class_map_path(self):
            return self.class_map.asset_path

    path = root / "tiny_yamnet"
    tf.saved_model.save(TinyYAMNet(), str(path))
    return path


def test_savedmodel_through_tensorflow_hub(savedmodel_dir, monkeypatch):
    import tensorflow_hub as hub

    monkeypatch.setenv(Y.ENV_MODEL, str(savedmodel_dir))  # a config may name only the owner's model

    raw = hub.load(str(savedmodel_dir))  # hub.load takes a local folder like a URL
    scores, emb, log_mel = raw(np.zeros(15600, np.float32))
    assert tuple(scores.shape) == (1, 521) and tuple(emb.shape) == (1, 1024) and log_mel.shape[-1] == 64

    model = Y.load_model(str(savedmodel_dir))
    assert isinstance(model, Y.SavedModelYAMNet)
    assert Y.load_model(str(savedmodel_dir)) is model
    cfg = YAMNetConfig(str(savedmodel_dir))
    f = Y.extract_yamnet(Clip(noise(3.0, sr=22050), 22050), cfg)
    assert f.values.shape == (6, 1024) and f.scores.shape == (6, 521)
    np.testing.assert_allclose(f.times, Y.frame_times(6))
    short = Y.extract_yamnet(Clip(noise(0.2), SR), cfg)
    assert short.values.shape == (1, 1024)
    t = np.arange(3 * SR) / SR
    tone = Y.extract_yamnet(Clip((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), SR), cfg)
    assert np.abs(tone.values - f.values).max() > 1e-2  # different sounds, different embeddings
    names = Y.class_names(str(savedmodel_dir))
    assert names[:2] == ["Sound 0", "Sound 1"] and len(names) == 521
    assert Y.top_classes(f.scores, k=1, names=names)[0][0].startswith("Sound ")


def test_savedmodel_from_env(savedmodel_dir, monkeypatch):
    monkeypatch.setenv(Y.ENV_MODEL, str(savedmodel_dir))
    f = extract(Clip(noise(1.0), SR), YAMNetConfig())
    assert f.values.shape == (2, 1024) and f.scores.shape == (2, 521)


def test_unreachable_hub_says_how_to_provide_one(savedmodel_dir, tmp_path, monkeypatch):
    # savedmodel_dir: TensorFlow is already imported, so this costs only the failed lookup.
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
    with pytest.raises(Y.YAMNetUnavailable) as err:
        Y.load_model("https://yamnet.invalid/google/yamnet/1")  # .invalid never resolves
    msg = str(err.value)
    assert "Could not load YAMNet from https://yamnet.invalid" in msg
    assert "AUDIOCLF_YAMNET" in msg and "internet" in msg
    assert os.environ["TFHUB_CACHE_DIR"] == str(tmp_path / "hub")  # a user's setting is kept
