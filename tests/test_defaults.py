"""Options behind the accurate defaults: silence trim, mel warp, per-clip CMVN, pooling, masking, warp copies."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from audioclf.audio import Clip
from audioclf.cli import build_parser, feature_config, model_config, train_config
from audioclf.datasets import SplitConfig
from audioclf.features import FeatureError, MFCCConfig, config_from_dict, config_to_dict, extract
from audioclf.model import ModelConfig, ModelError, build_model, input_stats, pad_sequences
from audioclf.training import RunConfig, TrainConfig, TrainingError
from audioclf.training.defaults import model_defaults

SR = 16000


def _tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _seqs(n=4, dims=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(2.0, 1.5, (int(rng.integers(10, 40)), dims)).astype(np.float32) for _ in range(n)]


def test_trim_drops_leading_and_trailing_silence():
    pad = np.zeros(SR // 2, np.float32)
    clip = Clip(np.concatenate([pad, _tone(440, 0.5), pad]), SR, "padded")
    kept = extract(clip, MFCCConfig(trim_db=None)).n_frames
    trimmed = extract(clip, MFCCConfig(trim_db=30)).n_frames
    alone = extract(Clip(_tone(440, 0.5), SR), MFCCConfig(trim_db=30)).n_frames
    assert kept > 90 and abs(trimmed - alone) <= 3 < kept - trimmed
    # Digital silence has nothing to trim against and still gives frames.
    assert extract(Clip(np.zeros(SR // 4, np.float32), SR), MFCCConfig(trim_db=30)).n_frames > 0


def test_warp_moves_a_tone_down_the_mel_bands():
    from audioclf.features.spectral import mel_basis, stft_magnitude, warped_mel_basis

    power = stft_magnitude(_tone(1000, 0.3), 512, 256) ** 2
    peak = {w: int(np.argmax((warped_mel_basis(SR, 512, 40, None, w) @ power).mean(1))) for w in (1.0, 1.25)}
    # Band at f reads f * warp: the 1000 Hz tone lands where 800 Hz would be unwarped.
    expect = int(np.argmax((mel_basis(SR, 512, 40) @ (stft_magnitude(_tone(800, 0.3), 512, 256) ** 2)).mean(1)))
    assert peak[1.25] < peak[1.0] and abs(peak[1.25] - expect) <= 1
    a = extract(Clip(_tone(1000, 0.3), SR), MFCCConfig(warp=1.25)).values
    assert not np.allclose(a, extract(Clip(_tone(1000, 0.3), SR), MFCCConfig()).values)


def test_new_feature_options_round_trip_and_refuse_bad_values():
    cfg = MFCCConfig(trim_db=None, fmax=4000, warp=1.1)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    for bad in (dict(trim_db=-3), dict(fmax="high"), dict(fmax=9000), dict(warp=3.0), dict(warp=None)):
        with pytest.raises(FeatureError):
            MFCCConfig(**bad)


def test_clip_scale_makes_the_model_blind_to_a_clips_level_and_spread():
    seqs = _seqs()
    for scale, invariant in ((True, True), (False, False)):
        cfg = ModelConfig(kind="gru", rnn_units=(4,), dense_units=(), dropout=0.0, clip_scale=scale,
                          time_mask=0, feature_mask=0, input_noise=0.0)
        mean, var = input_stats(cfg, seqs)
        model = build_model(cfg, 6, 2, mean=mean, variance=var)
        a = model.predict_on_batch(pad_sequences(seqs[:1], 48))
        b = model.predict_on_batch(pad_sequences([seqs[0] * 3.0 + 5.0], 48))
        assert np.allclose(a, b, atol=1e-4) == invariant


@pytest.mark.parametrize("pooling", ["last", "mean", "meanmax"])
def test_pooling_ignores_padding_and_masks_act_only_in_training(pooling):
    seqs = _seqs(seed=1)
    cfg = ModelConfig(kind="gru", rnn_units=(8,), dense_units=(8,), pooling=pooling, time_mask=8, feature_mask=2)
    mean, var = input_stats(cfg, seqs)
    model = build_model(cfg, 6, 3, mean=mean, variance=var)
    short, long = pad_sequences(seqs[:1]), pad_sequences(seqs[:1], len(seqs[0]) + 24)
    assert np.allclose(model.predict_on_batch(short), model.predict_on_batch(long), atol=1e-5)
    x = pad_sequences(seqs)
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=False)))


def test_new_model_and_train_options_are_checked_and_round_trip():
    with pytest.raises(ModelError, match="pooling"):
        ModelConfig(pooling="attention")
    with pytest.raises(ModelError, match="mask"):
        ModelConfig(time_mask=-1)
    with pytest.raises(TrainingError, match="Warp"):
        TrainConfig(warp_augment=(0.1,))
    with pytest.raises(TrainingError):
        TrainConfig(reduce_lr=0)
    cfg = RunConfig(dataset="x", split=SplitConfig(), features=MFCCConfig(fmax=4000),
                    model=ModelConfig(pooling="mean", clip_scale=False, time_mask=4),
                    train=TrainConfig(reduce_lr=None, warp_augment=[0.95]))
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_cli_exposes_the_new_options():
    args = build_parser().parse_args(
        ["train", "somewhere", "--trim-db", "none", "--fmax", "4000", "--no-deltas", "--pooling", "last",
         "--no-clip-scale", "--time-mask", "0", "--feature-mask", "2", "--reduce-lr", "none",
         "--warp-augment", "0.95,1.05"])
    assert feature_config(args) == MFCCConfig(trim_db=None, fmax=4000.0)
    assert model_config(args) == replace(model_defaults("mfcc"), pooling="last", clip_scale=False, time_mask=0,
                                         feature_mask=2)
    assert train_config(args) == TrainConfig(reduce_lr=None, warp_augment=(0.95, 1.05))
    defaults = build_parser().parse_args(["train", "somewhere", "--features", "mfcc"])
    assert (feature_config(defaults), model_config(defaults), train_config(defaults)) == \
        (MFCCConfig(), model_defaults("mfcc"), TrainConfig())


def test_warp_augment_adds_training_copies(fsdd_small):
    from audioclf.training import runs, train

    tiny = ModelConfig(kind="gru", rnn_units=(8,), dense_units=())
    split = SplitConfig(val=0.25, test=0.25)
    counts = {}
    for warps in ((), (0.9, 1.1)):
        run = train(RunConfig(dataset=str(fsdd_small), split=split, features=MFCCConfig(), model=tiny,
                              train=TrainConfig(epochs=1, patience=None, batch_size=16, warp_augment=warps)))
        metrics = runs.load_run(run).metrics
        counts[warps] = (metrics["n_train"], metrics.get("n_train_copies", 0))
    # n_train counts the clips; the warped copies are counted apart (issue 21: "240 clips" for 120)
    assert counts[(0.9, 1.1)] == (counts[()][0], 2 * counts[()][0]) and counts[()] == (counts[()][0], 0)
    assert counts[()][0] > 0


def test_a_saved_config_without_trim_db_keeps_meaning_no_trim():
    old = {k: v for k, v in config_to_dict(MFCCConfig(trim_db=None)).items() if k not in ("trim_db", "fmax", "warp")}
    assert config_from_dict(old) == MFCCConfig(trim_db=None)
    assert config_from_dict(config_to_dict(MFCCConfig())).trim_db == MFCCConfig().trim_db


def test_early_stopping_waits_for_min_epochs():
    from audioclf.model.sequences import SplitData
    from audioclf.training import fit

    rng = np.random.default_rng(0)
    x = [rng.normal(size=(12, 4)).astype(np.float32) for _ in range(24)]
    y = np.arange(24) % 2  # labels unrelated to the inputs: validation loss soon stops improving
    data = SplitData(x, y, [])
    tiny = ModelConfig(kind="gru", rnn_units=(4,), dense_units=(), time_mask=0, feature_mask=0)
    cfg = TrainConfig(learning_rate=0.3, batch_size=8, epochs=8, patience=1, min_epochs=5, reduce_lr=None)
    _, info = fit(tiny, cfg, data, data, 2)
    assert info["epochs_trained"] >= 6  # nothing can stop it before epoch 5 is watched
    assert 6 <= info["best_epoch"] <= info["epochs_trained"]  # best chosen among watched epochs
    with pytest.raises(TrainingError, match="Minimum epochs"):
        TrainConfig(min_epochs=-1)


def test_a_saved_run_config_without_min_epochs_keeps_meaning_watch_every_epoch():
    cfg = RunConfig(dataset="x", split=SplitConfig(), features=MFCCConfig(), model=ModelConfig(), train=TrainConfig())
    d = cfg.to_dict()
    assert RunConfig.from_dict(d).train.min_epochs == TrainConfig().min_epochs == 15
    del d["train"]["min_epochs"]
    assert RunConfig.from_dict(d).train.min_epochs == 0
