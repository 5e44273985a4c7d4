"""Fine-tuning EfficientAT's top blocks with the model: the cut network, the config, a small real run."""
from __future__ import annotations

import numpy as np
import pytest

from audioclf.features import EfficientATConfig, MFCCConfig, extract
from audioclf.training import RunConfig, TrainConfig, TrainingError
from audioclf.training.config import FINETUNE_ALL


@pytest.fixture(scope="module")
def mn04(efficientat_pt):
    from audioclf.features.efficientat import load_model

    return load_model(str(efficientat_pt))


@pytest.mark.parametrize("blocks", [1, 2, FINETUNE_ALL])
def test_the_cut_network_gives_the_frame_sequence_whatever_the_padding(mn04, blocks):
    """Lower part once per clip, then the top on a padded batch: each clip's sequence is the network's own."""
    from audioclf.model import backbone as parts
    from audioclf.features.efficientat import log_mel
    from audioclf.model.sequences import PAD_VALUE, pad_sequences

    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (20000, 50000, 96000)]
    want = [e.sequence for e in mn04.embed_many(waves)]
    lower, top = parts.split_network(mn04, blocks)
    assert (lower is None) == (blocks == FINETUNE_ALL) and top.trainable and (lower is None or not lower.trainable)
    mels = [parts.mel_frames(log_mel(w)) for w in waves]
    maps = parts.run_part(lower, mels) if lower is not None else mels
    batch = pad_sequences(maps, max(len(m) for m in maps) + 9)  # more padding than any clip needs
    got = np.asarray(top(batch))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g[:len(w)], w, atol=1e-4)
        assert (g[len(w):] == PAD_VALUE).all()  # the head masks these steps


def test_finetuning_needs_efficientat_and_trains_on_its_log_mels():
    from audioclf.datasets import SplitConfig

    cfg = RunConfig(dataset="d", split=SplitConfig(), features=EfficientATConfig(sequence="windows"),
                    overrides={"train.finetune_blocks": 2})
    assert cfg.finetunes and cfg.features.sequence == "mel" and cfg.train.finetune_blocks == 2
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert not RunConfig(dataset="d", split=SplitConfig(), features=EfficientATConfig()).finetunes
    with pytest.raises(TrainingError, match="choose EfficientAT features"):
        RunConfig(dataset="d", split=SplitConfig(), features=MFCCConfig(), overrides={"train.finetune_blocks": 1})
    with pytest.raises(TrainingError, match="Fine-tune 0"):
        TrainConfig(finetune_blocks=FINETUNE_ALL + 1)
    with pytest.raises(TrainingError, match="Backbone learning rate"):
        TrainConfig(backbone_learning_rate=0)


def test_the_cli_takes_all_and_refuses_auto_in_one_line(tmp_path):
    import argparse

    from audioclf.cli import options

    assert options.finetune_blocks("all") == FINETUNE_ALL and options.finetune_blocks(" 2 ") == 2
    assert options.finetune_blocks("off") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="number of blocks"):
        options.finetune_blocks("top")
    from test_cli_options import run_cli

    code, _, err = run_cli("train", str(tmp_path), "--features", "mfcc", "--finetune-blocks", "1")
    assert code != 0 and "choose EfficientAT features" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def finetuned_run(efficientat_pt, tmp_path_factory):
    """A real run on the synthesised demo set (6 clips per class) fine-tuning the last block, 2 epochs."""
    from audioclf.datasets import SplitConfig, make_demo_dataset
    from audioclf.training import train

    root = make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo6", clips_per_class=6)
    cfg = RunConfig(dataset=str(root), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=EfficientATConfig(model=str(efficientat_pt)), name="fine-tuned",
                    overrides={"model.kind": "baseline", "train.epochs": 2, "train.patience": None,
                               "train.finetune_blocks": 1, "train.backbone_learning_rate": 1e-3})
    events = []
    return train(cfg, progress=events.append), events, root


def test_a_finetuned_run_moves_the_backbone_and_predicts_through_it(finetuned_run, mn04):
    from audioclf.audio import load_audio
    from audioclf.model import backbone as parts
    from audioclf.inference import Predictor
    from audioclf.training import runs

    run_id, events, root = finetuned_run
    run = runs.load_run(run_id)
    assert run.info.state == "done"
    assert [e["epoch"] for e in events if e.get("phase") == "training"] == [1, 2]
    record = run.metrics["finetune"]
    assert record["blocks"] == 1 and record["changed_share"] > 0.5 and record["seconds_per_epoch"] > 0
    assert run.config["features"]["sequence"] == "mel" and run.config["train"]["finetune_blocks"] == 1

    model = runs.load_model(run_id)  # safe mode: every layer is registered
    tuned, frozen = model.get_layer("efficientat_tuned"), model.get_layer("efficientat_frozen")
    assert [s.name for s in tuned.stages] == ["features_15", "features_16"]
    official = mn04.inference_model
    moved = [not np.allclose(a, b) for s in tuned.stages
             for a, b in zip(s.get_weights(), official.get_layer(s.name).get_weights())]
    assert any(moved) and parts.changed_share(tuned, mn04) == pytest.approx(record["changed_share"], abs=1e-3)
    for s in frozen.stages:  # the lower part is the official network, untouched
        for a, b in zip(s.get_weights(), official.get_layer(s.name).get_weights()):
            np.testing.assert_array_equal(a, b)

    predictor = Predictor.load(run_id)
    clip = load_audio(sorted((root / "siren").iterdir())[0])
    feats = extract(clip, predictor.features_cfg)
    assert feats.values.shape[1] == 128  # the model takes log-mels and runs the whole network
    pred = predictor.predict_clip(clip)
    assert pred.probs.shape == (len(run.labels),) and abs(float(pred.probs.sum()) - 1) < 1e-4
    whole = np.asarray(model.predict_on_batch(feats.values[None]))[0]
    np.testing.assert_allclose(pred.probs, whole, atol=1e-4)


def test_a_retrain_of_a_finetuned_run_starts_from_its_network_and_head(finetuned_run, mn04):
    """The warm start of a fine-tuned run: its own fine-tuned top and head, not the official weights again."""
    from dataclasses import replace

    from audioclf.model import backbone as parts
    from audioclf.model.sequences import SplitData
    from audioclf.training import runs
    from audioclf.training.fit import fit

    run_id, _, _ = finetuned_run
    run = runs.load_run(run_id)
    cfg = RunConfig.from_dict(run.config)
    initial = runs.load_model(run_id)
    rng = np.random.default_rng(2)
    data = SplitData([rng.normal(-1, 0.5, (64, 128)).astype(np.float32) for _ in range(10)],
                     np.arange(10) % len(run.labels), [f"c{i}" for i in range(10)])
    # Rates too small to move anything in one epoch: what the model holds afterwards is where it started.
    still = replace(cfg.train, epochs=1, patience=None, learning_rate=1e-12, backbone_learning_rate=1e-12)
    model, info = fit(cfg.model, still, data, None, len(run.labels), features=cfg.features, initial=initial)
    assert info["warm_start"]["used"] is True and "fine-tuned run" in info["warm_start"]["why"]
    for now, then in zip(model.get_weights(), initial.get_weights()):
        np.testing.assert_allclose(now, then, atol=1e-6)
    tuned = model.get_layer("efficientat_tuned")
    assert 0.5 < parts.changed_share(tuned, mn04)  # the run's fine-tuned blocks, far from the official ones
    np.testing.assert_allclose(model.predict_on_batch(data.x[0][None]), initial.predict_on_batch(data.x[0][None]),
                               atol=1e-5)


def test_retrain_of_a_finetuned_run_is_a_warm_start(finetuned_run):
    from audioclf.labelling import corrections
    from audioclf.training import runs

    run_id, _, _ = finetuned_run
    result = corrections.retrain(run_id)
    assert result.warm and "fine-tuned run" in runs.load_run(result.run_id).metrics["warm_start"]["why"]
    assert runs.load_run(result.run_id).metrics["finetune"]["blocks"] == 1


def test_a_finetuned_run_labels_a_live_stream(finetuned_run):
    from audioclf.datasets import synth_clip
    from audioclf.datasets.demo import CLASSES
    from audioclf.inference import LiveClassifier, Predictor

    run_id, _, _ = finetuned_run
    live = LiveClassifier(Predictor.load(run_id), window=1.5, hop=0.5, threshold=0.0)
    y = np.resize(synth_clip("siren", np.random.default_rng([5, CLASSES.index("siren")]), 32000), 3 * 32000)
    preds = [p for i in range(0, len(y), 3200) for p in live.feed(y[i:i + 3200], 32000)]
    assert len(preds) >= 3 and all(p.probs.shape == (len(CLASSES),) for p in preds)


def test_the_tune_space_varies_finetuning_for_efficientat_only():
    from audioclf.datasets import SplitConfig
    from audioclf.tuning import apply_params, check_space, parse_vary
    from audioclf.tuning.space import SearchSpace, suggest

    base = RunConfig(dataset="d", split=SplitConfig(), features=EfficientATConfig())
    tuned = apply_params(base, {"train.finetune_blocks": 2, "train.backbone_learning_rate": 3e-4})
    assert tuned.finetunes and tuned.features.sequence == "mel" and tuned.train.backbone_learning_rate == 3e-4
    assert apply_params(tuned, {"train.finetune_blocks": 0}).features.sequence == "frames"  # frozen again
    assert not apply_params(tuned, {"features.kind": "mfcc"}).finetunes  # MFCC has no blocks: dropped
    space = SearchSpace((parse_vary("features.kind=efficientat,mfcc"), parse_vary("train.finetune_blocks=0,1,2")))
    check_space(space, base)

    class Trial:  # what Optuna's trial answers, first choice each time
        def suggest_categorical(self, name, choices):
            return choices[-1]

    assert suggest(Trial(), space, base) == {"features.kind": "mfcc"}  # no fine-tuning asked of MFCC


def test_a_search_trial_fine_tunes_and_is_scored_through_the_network(efficientat_pt, workspace_home):
    from audioclf.datasets import SplitConfig, make_demo_dataset
    from audioclf.tuning import TuneConfig, parse_vary, run_study
    from audioclf.tuning.space import SearchSpace

    root = make_demo_dataset(workspace_home / "tune_ft", clips_per_class=5, seed=3)
    base = RunConfig(dataset=str(root), split=SplitConfig(val=0.4, test=0.0, seed=0),
                     features=EfficientATConfig(model=str(efficientat_pt)),
                     overrides={"model.kind": "baseline", "train.epochs": 1, "train.patience": None})
    cfg = TuneConfig(base=base, space=SearchSpace((parse_vary("train.finetune_blocks=1"),
                                                   parse_vary("train.seed=0,1"))),
                     trials=1, workers=1, final_run=False)
    result = run_study(cfg)
    assert result.n_complete == 1 and 0.0 <= result.best_value <= 1.0, result.message
    assert result.best_config["train"]["finetune_blocks"] == 1
    assert result.best_config["features"]["sequence"] == "mel"


def test_fine_tuning_stops_early_and_cancels(efficientat_pt):
    """fit's schedule holds for fine-tuning: early stopping on the validation loss, and a cancel between batches."""
    from audioclf.model import ModelConfig
    from audioclf.model.sequences import SplitData
    from audioclf.training.fit import fit

    rng = np.random.default_rng(1)

    def data(n):  # log-mel-like noise with labels nothing can learn: validation loss rises early
        return SplitData([rng.normal(-1, 0.5, (64, 128)).astype(np.float32) for i in range(n)],
                         np.arange(n) % 2, [f"c{i}" for i in range(n)])

    features = EfficientATConfig(model=str(efficientat_pt), sequence="mel")
    model_cfg = ModelConfig(kind="baseline", dense_units=(16,))
    train_cfg = TrainConfig(finetune_blocks=1, epochs=40, patience=2, min_epochs=0, reduce_lr=None, batch_size=8,
                            learning_rate=1e-2, backbone_learning_rate=1e-2)
    rows = []
    model, info = fit(model_cfg, train_cfg, data(12), data(6), 2, features=features, on_epoch=rows.append)
    assert info["epochs_trained"] < 40 and len(rows) == info["epochs_trained"] and not info["cancelled"]
    assert info["finetune"]["blocks"] == 1 and model.input_shape[-1] == 128
    _, info = fit(model_cfg, train_cfg, data(12), data(6), 2, features=features, should_stop=lambda: True)
    assert info["cancelled"] and info["epochs_trained"] == 1
