"""Defaults per feature type (form, CLI, library) and the Auto feature choice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audioclf.datasets import SplitConfig
from audioclf.features import MFCCConfig, YAMNetConfig
from audioclf.model import ModelConfig
from audioclf.training import AutoFeatures, RunConfig, TrainConfig, TrainingError, model_defaults, resolve_settings

ROOT = Path(__file__).resolve().parents[1]


def test_each_feature_type_has_its_own_defaults_and_user_values_stay():
    mfcc = RunConfig("d", SplitConfig(), MFCCConfig())
    yam = RunConfig("d", SplitConfig(), YAMNetConfig())
    assert mfcc.model == model_defaults("mfcc") and mfcc.train == TrainConfig()
    # Two averaged networks for MFCC: one network's score on a new speaker depends on its initialisation.
    assert mfcc.model.members == 2 and yam.model.members == 1
    # A clip-level embedding must not be centred on its own clip; ten-frame masks blank a 5 s clip.
    assert not yam.model.clip_norm and yam.model.time_mask < mfcc.model.time_mask
    assert yam.train.warp_augment == () and yam.train.min_epochs < mfcc.train.min_epochs
    mine = {"model.dropout": 0.5, "model.kind": "bilstm", "train.epochs": 7}
    for features in (MFCCConfig(), YAMNetConfig()):
        cfg = RunConfig("d", SplitConfig(), features, overrides=mine)
        assert (cfg.model.dropout, cfg.model.kind, cfg.train.epochs) == (0.5, "bilstm", 7)
        assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # An explicit ModelConfig is kept as it is.
    assert RunConfig("d", SplitConfig(), YAMNetConfig(), model=ModelConfig()).model == ModelConfig()
    with pytest.raises(TrainingError, match="model.dropuot"):
        resolve_settings("yamnet", {"model.dropuot": 0.1})
    assert model_defaults("yamnet", "baseline").rnn_units == ()


def test_efficientat_gets_the_measured_event_embedding_defaults():
    from audioclf.features import EfficientATConfig

    mfcc = RunConfig("d", SplitConfig(), MFCCConfig())
    eat = RunConfig("d", SplitConfig(), EfficientATConfig())
    # The choice docs/RESULTS.md measured: the frame sequence into a GRU, never centred on its own clip.
    assert eat.features.sequence == "frames" and eat.model.kind == "gru"
    assert not eat.model.clip_norm and not eat.model.clip_scale and eat.model.time_mask < mfcc.model.time_mask
    assert eat.train.warp_augment == () and eat.train.min_epochs < mfcc.train.min_epochs
    mine = RunConfig("d", SplitConfig(), EfficientATConfig(), overrides={"model.time_mask": 0, "model.kind": "baseline"})
    assert (mine.model.time_mask, mine.model.kind, mine.model.rnn_units) == (0, "baseline", ())


def test_auto_keeps_model_and_training_open_until_the_choice():
    cfg = RunConfig("d", SplitConfig(), AutoFeatures(), overrides={"model.kind": "lstm"})
    assert cfg.is_auto and cfg.model is None and cfg.train is None
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    chosen = cfg.resolved(YAMNetConfig())
    assert chosen.model == model_defaults("yamnet", "lstm") and not chosen.is_auto
    with pytest.raises(Exception, match="Unknown feature type"):
        AutoFeatures(candidates=("mfcc", "wav2vec"))


def test_cli_applies_the_feature_types_defaults_and_keeps_given_options(monkeypatch, yamnet_tflite):
    from audioclf.cli import CLIError, build_parser, feature_config, model_config, run_config, train_config

    parse = build_parser().parse_args
    args = parse(["train", "d", "--features", "yamnet", "--dropout", "0.5", "--patience", "none"])
    assert model_config(args) == model_defaults("yamnet").__class__(**{**model_defaults("yamnet").to_dict(),
                                                                       "dropout": 0.5})
    assert train_config(args).patience is None and train_config(args).min_epochs == 5
    assert model_config(parse(["train", "d", "--features", "mfcc"])) == model_defaults("mfcc")
    # What a new user gets: Auto with a YAMNet model, MFCC without.
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    auto = run_config(parse(["train", "d", "--time-mask", "3"]))
    assert auto.is_auto and dict(auto.overrides) == {"model.time_mask": 3}
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(ROOT / "no-such-yamnet.tflite"))
    assert isinstance(feature_config(parse(["train", "d"])), MFCCConfig)
    with pytest.raises(CLIError, match="feature type"):
        feature_config(parse(["train", "d", "--features", "auto", "--n-mfcc", "13"]))


@pytest.fixture(scope="module")
def esc_small(esc10_dir, tmp_path_factory) -> Path:
    """Three ESC-10 classes x 8 clips (two official folds each), linked into a class-folder set."""
    dest = tmp_path_factory.mktemp("esc_small")
    for label in ("dog", "rain", "rooster"):
        (dest / label).mkdir()
        for src in sorted((esc10_dir / label).glob("*.flac"))[:8]:
            (dest / label / src.name).symlink_to(src)
    return dest


def test_auto_chooses_on_training_clips_only_and_the_run_records_it(esc_small, yamnet_tflite, monkeypatch):
    from audioclf.training import runs, train

    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    events = []
    cfg = RunConfig(str(esc_small), SplitConfig(val=0.25, test=0.25), AutoFeatures(),
                    overrides={"model.kind": "gru", "model.rnn_units": [16], "train.epochs": 2})
    run_id = train(cfg, progress=events.append)
    run = runs.load_run(run_id)
    runs.delete_run(run_id)  # other tests pick "the best run" of the shared workspace
    choice = run.metrics["feature_choice"]
    scored = {s["kind"] for s in choice["scores"] if s["macro_f1"] is not None}
    assert scored == {"yamnet", "mfcc"}  # EfficientAT has no weights in this session: left out, saying why
    assert all(s["note"].startswith("not available") for s in choice["scores"] if s["kind"] == "efficientat")
    # Environmental sounds: the embedding separates them at least as well as MFCC summaries.
    assert choice["winner"] == "yamnet", choice
    n_test = run.metrics["test"]["n"]
    assert choice["n_clips"] == 24 - n_test  # training and validation clips, never the test clips
    saved = RunConfig.from_dict(run.config)  # the run folder says what was trained
    assert saved.features.kind == "yamnet" and saved.model == model_defaults("yamnet", "gru").__class__(
        **{**model_defaults("yamnet", "gru").to_dict(), "rnn_units": (16,)})
    assert saved.train.epochs == 2 and any(e["phase"] == "choosing" for e in events)
    assert np.isfinite(run.metrics["test"]["macro_f1"])


def test_train_form_follows_the_feature_type_and_keeps_the_users_values(monkeypatch, yamnet_tflite, workspace_home):
    from streamlit.testing.v1 import AppTest

    from audioclf.datasets import ensure_demo_dataset

    ensure_demo_dataset()
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception
    assert at.selectbox(key="tr_feat").value.startswith("Auto")  # YAMNet available: the data decides
    at.selectbox(key="tr_feat").set_value("MFCC sequence").run()
    assert (at.slider(key="tr_time_mask").value, at.number_input(key="tr_min_epochs").value) == (10, 15)
    assert at.number_input(key="tr_average").value == TrainConfig().average_epochs  # weight averaging offered
    assert at.checkbox(key="tr_clip_norm").value and not at.checkbox(key="tr_warp").disabled
    at.session_state["tr_dropout"] = 0.5  # a value the user set
    at.run()
    at.selectbox(key="tr_feat").set_value("YAMNet embeddings (pretrained)").run()
    assert not at.exception
    assert (at.slider(key="tr_time_mask").value, at.number_input(key="tr_min_epochs").value) == (2, 5)
    assert not at.checkbox(key="tr_clip_norm").value
    assert at.checkbox(key="tr_warp").disabled  # means nothing for YAMNet, and says why
    assert at.slider(key="tr_dropout").value == 0.5
    # Without a YAMNet model the form still starts on Auto (issue 21: it opened on MFCC), and says
    # in the list that YAMNet is not set up.
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(ROOT / "no-such-yamnet.tflite"))
    at2 = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at2.switch_page("app_pages/train.py")
    at2.run()
    assert at2.selectbox(key="tr_feat").value.startswith("Auto")
    assert "YAMNet embeddings (pretrained) · not set up here" in at2.selectbox(key="tr_feat").options
