"""Models: every kind trains for real, saves and reloads; masking hides padding; stats live in the model."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from audioclf.datasets import SplitConfig
from audioclf.features import MFCCConfig, extract_file
from audioclf.inference import Predictor
from audioclf.model import ModelConfig, ModelError, build_model, input_stats, pad_sequences
from audioclf.model.configs import KINDS
from audioclf.model.sequences import PAD_VALUE
from audioclf.training import RunConfig, TrainConfig, runs, train


def _random_seqs(n=6, dims=5, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(3.0, 2.0, (int(rng.integers(4, 30)), dims))).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_saves_and_reloads_with_same_probabilities(kind, fsdd_small):
    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25),
                    features=MFCCConfig(), model=ModelConfig(kind=kind, rnn_units=(8,), dense_units=(8,)),
                    train=TrainConfig(epochs=2, patience=None, batch_size=8, warp_augment=()))
    run_id = train(cfg)
    assert runs.read_status(run_id)["state"] == "done"
    with open(runs.run_dir(run_id) / runs.PREDICTIONS) as f:
        rows = list(csv.DictReader(f))
    predictor = Predictor.load(run_id)
    assert predictor.model.name == f"audioclf_{kind}"
    for row in rows[:4]:
        pred = predictor.predict_features(extract_file(row["path"], MFCCConfig()))
        saved = np.array([float(row[f"p_{lab}"]) for lab in predictor.labels])
        assert np.allclose(pred.probs, saved, atol=1e-5), (kind, pred.probs, saved)
        assert pred.label == row["predicted"]


@pytest.mark.parametrize("kind", KINDS)
def test_padding_does_not_change_the_prediction(kind):
    seqs = _random_seqs()
    mean, var = input_stats(ModelConfig(kind=kind), seqs)
    model = build_model(ModelConfig(kind=kind, rnn_units=(6, 4) if kind != "baseline" else (6,),
                                    dense_units=(5,), dropout=0.0),
                        5, 3, mean=mean, variance=var)
    clip = seqs[0]
    alone = np.asarray(model(pad_sequences([clip]), training=False))
    for length in (len(clip) + 1, len(clip) + 17, 80):
        padded = np.asarray(model(pad_sequences([clip], length), training=False))
        assert np.allclose(alone, padded, atol=1e-5), (kind, length)
    batch = np.asarray(model(pad_sequences(seqs), training=False))  # padded to the longest
    assert np.allclose(alone[0], batch[0], atol=1e-5)


def test_standardisation_is_stored_in_the_saved_model(tmp_path):
    import keras

    seqs = _random_seqs(dims=4)
    cfg = ModelConfig(kind="lstm", rnn_units=(4,), dense_units=(), clip_norm=False)
    mean, var = input_stats(cfg, seqs)
    assert np.allclose(mean, np.concatenate(seqs).mean(0), atol=1e-4)
    assert np.allclose(var, np.concatenate(seqs).var(0), atol=1e-3)
    centered, _ = input_stats(ModelConfig(), seqs)  # clip_norm: stats of clip-centred frames
    assert np.allclose(centered, 0.0, atol=1e-4)
    model = build_model(cfg, 4, 2, mean=mean, variance=var)
    model.save(tmp_path / "m.keras")
    loaded = runs.load_model(tmp_path / "m.keras")
    norm = loaded.get_layer("standardize")
    assert np.allclose(np.ravel(keras.ops.convert_to_numpy(norm.mean)), mean, atol=1e-5)
    assert np.allclose(np.ravel(keras.ops.convert_to_numpy(norm.variance)), var, atol=1e-4)
    x = pad_sequences(seqs)
    assert np.allclose(model(x), loaded(x), atol=1e-6)


def test_pad_value_cannot_collide_with_real_features(fsdd_small):
    wav = next((fsdd_small / "0").iterdir())
    values = extract_file(wav, MFCCConfig()).values
    assert not np.any(np.all(values == PAD_VALUE, axis=1))
    assert values.min() > PAD_VALUE / 100


def test_bad_model_configs_have_clear_messages():
    with pytest.raises(ModelError, match="Unknown model kind 'cnn'"):
        ModelConfig(kind="cnn")
    with pytest.raises(ModelError, match="between 1 and"):
        ModelConfig(rnn_units=(0,))
    with pytest.raises(ModelError, match="At most 3 dense"):
        ModelConfig(dense_units=(4, 4, 4, 4))
    with pytest.raises(ModelError, match="activation"):
        ModelConfig(activation="sigmoid")
    with pytest.raises(ModelError, match="Dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ModelError, match="Unknown model setting"):
        ModelConfig.from_dict({"kind": "gru", "layers": 3})
    with pytest.raises(ModelError, match="list of layer sizes"):
        ModelConfig(rnn_units="wide")
    assert ModelConfig(rnn_units=128, dense_units=32).rnn_units == (128,)
    cfg = ModelConfig(kind="bilstm", rnn_units=[32, 16], dense_units=[8])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and hash(cfg)


def test_clip_norm_removes_a_constant_offset_per_clip():
    seqs = _random_seqs(dims=4, seed=3)
    for clip_norm, invariant in ((True, True), (False, False)):
        cfg = ModelConfig(kind="gru", rnn_units=(4,), dense_units=(), dropout=0.0, clip_norm=clip_norm)
        mean, var = input_stats(cfg, seqs)
        model = build_model(cfg, 4, 2, mean=mean, variance=var)
        a = model.predict_on_batch(pad_sequences(seqs[:1], 40))
        b = model.predict_on_batch(pad_sequences([seqs[0] + 7.0], 40))  # e.g. a louder recording
        assert np.allclose(a, b, atol=1e-5) == invariant


def test_one_frame_clips_keep_their_information_under_default_clip_norm():
    """YAMNet gives one embedding per 0.96 s, so most short clips are a single frame:
    per-clip normalisation must not turn them into zeros (every clip would look alike)."""
    import keras

    rng = np.random.default_rng(1)
    cfg = ModelConfig()  # defaults: clip_norm and clip_scale on, time masks on
    assert cfg.clip_norm and cfg.time_mask > 0
    train_seqs = [rng.normal(0, 1, (1, 16)).astype(np.float32) for _ in range(8)]
    mean, var = input_stats(cfg, train_seqs)
    assert np.all(var > 1e-3)  # stats of the raw frames, not of zeros
    model = build_model(cfg, 16, 3, mean=mean, variance=var)
    a, b = rng.normal(0, 1, (1, 16)), rng.normal(0, 1, (1, 16))
    pa, pb = model(pad_sequences([a]), training=False), model(pad_sequences([b]), training=False)
    assert not np.allclose(keras.ops.convert_to_numpy(pa), keras.ops.convert_to_numpy(pb), atol=1e-6)
    # In training, the time mask never blanks the only frame of a clip.
    out = model(pad_sequences([a] * 16), training=True)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))


def test_ensemble_members_learn_apart_and_the_model_averages_them(fsdd_small):
    """members=3: one saved model whose output is the mean of three different networks,
    each trained on its own loss; reloading gives the same probabilities."""
    import keras

    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25),
                    features=MFCCConfig(), model=ModelConfig(rnn_units=(8,), dense_units=(8,), members=3),
                    train=TrainConfig(epochs=3, patience=None, batch_size=8, warp_augment=()))
    run_id = train(cfg)
    assert runs.read_status(run_id)["state"] == "done"
    predictor = Predictor.load(run_id)
    model = predictor.model
    assert isinstance(model.get_layer("probs"), keras.layers.Average)
    wav = sorted(fsdd_small.glob("*/*.wav"))[-1]
    x = pad_sequences([extract_file(wav, MFCCConfig()).values])
    members = [np.asarray(keras.Model(model.input, model.get_layer(f"m{k}_probs").output)(x, training=False))
               for k in (1, 2, 3)]
    assert not np.allclose(members[0], members[1], atol=1e-3)  # different networks
    assert np.allclose(np.mean(members, axis=0), np.asarray(model(x, training=False)), atol=1e-6)
    longer = pad_sequences([extract_file(wav, MFCCConfig()).values], x.shape[1] + 13)
    assert np.allclose(model(longer, training=False), model(x, training=False), atol=1e-5)  # masking holds
    with open(runs.run_dir(run_id) / runs.PREDICTIONS) as f:
        row = next(csv.DictReader(f))
    pred = predictor.predict_features(extract_file(row["path"], MFCCConfig()))
    assert np.allclose(pred.probs, [float(row[f"p_{lab}"]) for lab in predictor.labels], atol=1e-5)
    with pytest.raises(ModelError, match="1 to 8 members"):
        ModelConfig(members=0)


def test_mean_std_pooling_has_a_finite_gradient_for_one_frame_and_constant_clips():
    """A fine-tuned backbone trains through the pooling: sqrt'(0) = inf made every weight before it NaN."""
    import tensorflow as tf

    from audioclf.model.layers import MaskedMeanStd

    rng = np.random.default_rng(0)
    x = np.stack([np.pad(rng.normal(size=(1, 4)), ((0, 4), (0, 0))),  # one real frame, then padding
                  np.repeat(rng.normal(size=(1, 4)), 5, axis=0),  # a constant clip
                  rng.normal(size=(5, 4))]).astype(np.float32)
    mask = np.array([[True] + [False] * 4, [True] * 5, [True] * 5])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = MaskedMeanStd()(xt, mask=tf.constant(mask))
        loss = tf.reduce_sum(out * tf.constant(rng.normal(size=(3, 8)).astype(np.float32)))
    grad = tape.gradient(loss, xt).numpy()
    assert np.isfinite(grad).all()
    want = [np.concatenate([c[m].mean(axis=0), c[m].std(axis=0)]) for c, m in zip(x, mask)]
    np.testing.assert_allclose(out.numpy(), want, atol=1e-6)
