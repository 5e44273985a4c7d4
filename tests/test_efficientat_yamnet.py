"""EfficientAT features that also hear through YAMNet (``EfficientATConfig(yamnet=...)``): the config, the
aligned sequence, a model with a network for each part, training, and where it is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from audioclf.audio import load_audio
from audioclf.errors import AudioclfError
from audioclf.features import (EfficientATConfig, FeatureError, YAMNetConfig, config_from_dict, config_key,
                               config_to_dict, extract)
from audioclf.features.configs import YAMNET_DIMS, feature_parts
from audioclf.features.efficientat import weights


@pytest.fixture(scope="module", autouse=True)
def owners_checkpoint(efficientat_pt):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.ENV_WEIGHTS, str(efficientat_pt))
        yield


def test_config_reads_old_dicts_as_off_and_keys_the_yamnet_model(yamnet_tflite):
    off = EfficientATConfig()
    assert off.yamnet is None
    # A saved run's config from before the setting: the same config, the same cache entries.
    assert config_from_dict({"kind": "efficientat", "model": "mn04_as", "sequence": "frames"}) == off
    both = EfficientATConfig(yamnet=str(yamnet_tflite))
    assert config_from_dict(json.loads(json.dumps(config_to_dict(both)))) == both
    assert EfficientATConfig(yamnet=True).yamnet == "" and EfficientATConfig(yamnet=False).yamnet is None
    assert config_key(both) != config_key(off)
    assert config_key(both) != config_key(EfficientATConfig(yamnet=str(yamnet_tflite), sequence="windows"))
    with pytest.raises(FeatureError, match="cannot join the mel sequence"):
        EfficientATConfig(sequence="mel", yamnet="")
    with pytest.raises(FeatureError, match="must be a YAMNet model"):
        EfficientATConfig(yamnet=3)
    assert feature_parts(both, 384 + YAMNET_DIMS) == (384, YAMNET_DIMS)
    assert feature_parts(off, 384) == () and feature_parts(YAMNetConfig(), YAMNET_DIMS) == ()


@pytest.mark.parametrize("sequence", ["frames", "windows"])
def test_each_step_carries_yamnets_nearest_window(sequence, esc10_dir, yamnet_tflite):
    clip = load_audio(sorted((esc10_dir / "dog").glob("*.flac"))[0], sr=32000)
    alone = extract(clip, EfficientATConfig(sequence=sequence))
    both = extract(clip, EfficientATConfig(sequence=sequence, yamnet=str(yamnet_tflite)))
    yam = extract(clip, YAMNetConfig(model=str(yamnet_tflite)))
    assert both.values.shape == (alone.n_frames, alone.dims + YAMNET_DIMS)
    assert np.array_equal(both.values[:, :alone.dims], alone.values)
    assert np.array_equal(both.times, alone.times) and np.array_equal(both.scores, alone.scores)
    assert both.names[alone.dims] == "yamnet_0" and len(both.names) == both.dims
    # A 5 s clip: 16 steps of 0.32 s against 10 YAMNet windows every 0.48 s; each step the nearest.
    nearest = np.abs(alone.times[:, None] - yam.times[None, :]).argmin(axis=1)
    assert len(set(nearest)) == yam.n_frames
    assert np.allclose(both.values[:, alone.dims:], yam.values[nearest], atol=1e-5)


def test_a_model_gets_a_network_for_each_part_and_saves(tmp_path):
    import keras

    from audioclf.model import ModelConfig, ModelError
    from audioclf.model.building import build_model, custom_objects, input_stats, predict_proba

    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(int(rng.integers(3, 8)), 6 + 10)).astype(np.float32) for _ in range(8)]
    for kind in ("gru", "baseline"):
        cfg = ModelConfig(kind=kind, rnn_units=(4,) if kind == "gru" else (), dense_units=(4,), members=2)
        mean, var = input_stats(cfg, seqs)
        model = build_model(cfg, 16, 3, mean=mean, variance=var, parts=(6, 10))
        slices = {layer.name: layer.ranges for layer in model.layers if layer.name.startswith("part")}
        width = 16 if kind == "baseline" else 0  # the baseline reads [means, stds]: both halves of a part
        assert slices == {"part1": [[0, 6]] + ([[16, 22]] if width else []),
                          "part2": [[6, 16]] + ([[22, 32]] if width else [])}
        assert len(model.get_layer("probs").input) == 4  # two networks for each of the two parts
        before = predict_proba(model, seqs)
        model.save(tmp_path / f"{kind}.keras")
        again = keras.saving.load_model(tmp_path / f"{kind}.keras", custom_objects=custom_objects())
        assert np.allclose(predict_proba(again, seqs), before, atol=1e-6)
        with pytest.raises(ModelError, match="do not add up"):
            build_model(cfg, 16, 3, mean=mean, variance=var, parts=(6, 9))


def test_a_run_trains_on_both_and_fine_tuning_is_refused(fsdd_small, yamnet_tflite, efficientat_pt):
    from audioclf.datasets import SplitConfig
    from audioclf.inference import Predictor
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, TrainingError, runs, train

    features = EfficientATConfig(model=str(efficientat_pt), yamnet=str(yamnet_tflite))
    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25, seed=0), features=features,
                    model=ModelConfig(kind="gru", rnn_units=(8,), dense_units=(8,)),
                    train=TrainConfig(epochs=2, patience=None, batch_size=8, warp_augment=()))
    run_id = train(cfg)
    run = runs.load_run(run_id)
    assert run.info.state == "done" and run.config["features"]["yamnet"] == str(yamnet_tflite)
    assert run.info.features == "efficientat+yamnet"  # what the runs table and pickers show
    model = runs.load_model(run_id)
    assert model.input_shape[-1] == 384 + YAMNET_DIMS and model.get_layer("part2").ranges == [[384, 1408]]
    clip = sorted((fsdd_small / "1").iterdir())[0]
    predictor = Predictor.load(run_id)
    (result,) = predictor.predict_files([clip])
    assert result.prediction is not None and result.prediction.top_label in run.labels
    # Live: 1.5 s windows of a 48 kHz stream, each heard through both networks.
    from audioclf.inference import LiveClassifier

    y = load_audio(clip, sr=48000).samples
    live = LiveClassifier(predictor, window=1.5, hop=0.5, threshold=0.0)
    pcm = (np.resize(y, 4 * 48000) * 32767).astype(np.int16)
    preds = [p for i in range(0, len(pcm), 960) for p in live.feed(pcm[i:i + 960], 48000)]
    assert len(preds) >= 4 and all(p.label in run.labels for p in preds)
    from audioclf.training.prepare import check_features

    missing = EfficientATConfig(model=str(efficientat_pt), yamnet=str(yamnet_tflite.parent / "no-yamnet.tflite"))
    with pytest.raises(AudioclfError, match="no-yamnet.tflite"):  # said before any clip is extracted
        check_features(missing)
    with pytest.raises(TrainingError, match="Fine-tuning trains EfficientAT on its own"):
        RunConfig(dataset=str(fsdd_small), split=SplitConfig(), features=features,
                  overrides={"train.finetune_blocks": 1})


def test_cli_with_yamnet(yamnet_tflite):
    import argparse

    from audioclf.cli.common import CLIError
    from audioclf.cli.options import add_feature_arguments, feature_config

    parser = argparse.ArgumentParser()
    add_feature_arguments(parser)
    args = parser.parse_args(["--features", "efficientat", "--with-yamnet", "--yamnet-model", str(yamnet_tflite)])
    assert feature_config(args) == EfficientATConfig(model="", yamnet=str(yamnet_tflite))
    assert feature_config(parser.parse_args(["--features", "efficientat"])).yamnet is None
    with pytest.raises(CLIError, match="--with-yamnet adds YAMNet to efficientat features, not to yamnet"):
        feature_config(parser.parse_args(["--features", "yamnet", "--with-yamnet"]))


def test_a_search_over_hearing_through_yamnet_needs_yamnet(fsdd_small, efficientat_pt, yamnet_tflite, monkeypatch):
    from audioclf import tuning
    from audioclf.datasets import SplitConfig
    from audioclf.training import RunConfig

    base = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25, seed=0),
                     features=EfficientATConfig(model=str(efficientat_pt)))
    space = tuning.SearchSpace((tuning.parse_param("features.yamnet", "false,true"),))
    cfg = tuning.TuneConfig(base=base, space=space, trials=2)
    trials = {tuning.apply_params(base, {"features.yamnet": v}).features.yamnet for v in (False, True)}
    assert trials == {None, ""}
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite.parent / "gone.tflite"))
    with pytest.raises(AudioclfError, match="gone.tflite"):  # refused before the search starts
        tuning.search_items(cfg)
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    labels, train, val = tuning.search_items(cfg)
    assert len(labels) == 3 and train and val
