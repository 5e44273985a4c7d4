"""The efficientat feature type: its config, extraction (frames and windows), the cache, and a small real run."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from audioclf.audio import Clip, load_audio
from audioclf.features import (CacheStats, EfficientATConfig, FeatureError, config_from_dict, config_key,
                               config_to_dict, extract, extract_many)
from audioclf.features.efficientat import features as eat
from audioclf.features.efficientat import params, weights


@pytest.fixture(scope="module", autouse=True)
def owners_checkpoint(efficientat_pt):
    """The owner's setting names the checkpoint: a config may name it (issue 21, major 7)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.ENV_WEIGHTS, str(efficientat_pt))
        yield


@pytest.fixture(scope="module")
def esc10_clips(esc10_dir):
    """Three ESC-10 clips of three classes."""
    return [sorted((esc10_dir / c).glob("*.flac"))[0] for c in ("dog", "rain", "rooster")]


def test_config_round_trips_and_refuses_unknown_models():
    cfg = EfficientATConfig()
    assert cfg.model == "mn04_as" and cfg.sequence == "frames" and cfg.sr == 32000
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_dict({"kind": "efficientat", "model": " ", "sequence": "windows"}) == \
        EfficientATConfig(model="", sequence="windows")
    with pytest.raises(FeatureError, match="no EfficientAT model called 'mn99_as'"):
        EfficientATConfig(model="mn99_as")
    with pytest.raises(FeatureError, match="sequence must be one of"):
        EfficientATConfig(sequence="mean")
    with pytest.raises(FeatureError, match="Unknown setting"):
        config_from_dict({"kind": "efficientat", "code": "os.system"})


def test_the_cache_key_is_the_checkpoint_s_identity(efficientat_pt, tmp_path, monkeypatch):
    monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    copy = tmp_path / "renamed.pt"
    shutil.copy(efficientat_pt, copy)
    by_path, by_copy = EfficientATConfig(model=str(efficientat_pt)), EfficientATConfig(model=str(copy))
    # Not downloaded: the official name is keyed by the SHA-256 its download must have.
    assert config_key(by_path) == config_key(by_copy) == config_key(EfficientATConfig()) == \
        config_key(EfficientATConfig(model=""))
    assert weights.checkpoint_identity(str(copy)) == "sha256:" + params.CHECKPOINTS["mn04_as"].sha256
    assert config_key(by_path) != config_key(EfficientATConfig(model=str(efficientat_pt), sequence="windows"))
    other = tmp_path / "other.pt"
    other.write_bytes(copy.read_bytes() + b"\0")  # another file: another key, even under the same settings
    assert config_key(EfficientATConfig(model=str(other))) != config_key(by_path)
    assert config_key(EfficientATConfig(model="mn10_as")) != config_key(by_path)


def test_frames_are_the_network_s_sequence_and_average_to_its_embedding(efficientat_pt, esc10_clips):
    from audioclf.features import efficientat

    clip = load_audio(esc10_clips[0])
    feats = extract(clip, EfficientATConfig(model=str(efficientat_pt)))
    model = efficientat.load_model(str(efficientat_pt))
    ref = model.embed(efficientat.to_32k(clip))
    assert feats.values.shape == (16, 384) and feats.scores.shape == (16, 527)  # 5 s: 501 mel frames / 32
    np.testing.assert_allclose(feats.values, ref.sequence, atol=1e-5)
    np.testing.assert_allclose(eat.clip_embedding(feats), ref.embedding, atol=1e-5)
    probs = eat.clip_probabilities(feats, model)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-ref.logits)), atol=1e-4)
    names = efficientat.audioset_labels()
    assert "Dog" in [names[i] for i in np.argsort(-probs)[:5]]
    assert ((feats.scores >= 0) & (feats.scores <= 1)).all()
    np.testing.assert_allclose(np.diff(feats.times), params.SEQUENCE_HOP_SECONDS, atol=1e-6)
    assert feats.names[0] == "efficientat_0" and feats.silent is False


def test_windows_are_clip_embeddings_of_0_96_s(efficientat_pt, esc10_clips):
    from audioclf.features import efficientat

    clip = load_audio(esc10_clips[1])
    cfg = EfficientATConfig(model=str(efficientat_pt), sequence="windows")
    feats = extract(clip, cfg)
    assert feats.values.shape == (len(eat.window_starts(501)), 384) == (14, 384)
    # A window is the embedding of that stretch of mel frames.
    model = efficientat.load_model(str(efficientat_pt))
    mel = efficientat.log_mel(efficientat.to_32k(clip))
    third = model.run(mel[None, :, 64:160])
    np.testing.assert_allclose(feats.values[2], third["embedding"][0], atol=1e-5)
    np.testing.assert_allclose(feats.times[2], (64 + 48) * 0.01, atol=1e-6)
    short = extract(Clip(clip.samples[: clip.sr // 2], clip.sr), cfg)
    assert short.values.shape == (1, 384)


def test_the_cache_serves_the_second_extraction(efficientat_pt, esc10_clips, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path))
    cfg = EfficientATConfig(model=str(efficientat_pt))
    first, second = CacheStats(), CacheStats()
    a = extract_many(esc10_clips, cfg, stats=first)
    b = extract_many(esc10_clips, cfg, stats=second)
    assert (first.computed, first.cached) == (3, 0) and (second.computed, second.cached) == (0, 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.values, y.values)
        np.testing.assert_array_equal(x.scores, y.scores)
        assert y.silent is False and y.config == cfg


def test_missing_weights_are_one_clear_error(tmp_path, esc10_clips):
    from audioclf.errors import AudioclfError

    cfg = EfficientATConfig(model=str(tmp_path / "nowhere.pt"))
    with pytest.raises(AudioclfError, match="No EfficientAT checkpoint at"):
        extract_many(esc10_clips[:1], cfg, cache=False)


@pytest.fixture(scope="module")
def esc_tiny(esc10_dir, tmp_path_factory):
    """Three ESC-10 classes, 8 clips each (folds 1-4 train/val, fold 5 is not used)."""
    dest = tmp_path_factory.mktemp("esc_tiny")
    for c in ("dog", "rain", "rooster"):
        (dest / c).mkdir()
        for p in sorted((esc10_dir / c).glob("[1-4]-*.flac"))[:8]:
            (dest / c / p.name).symlink_to(p)
    return dest


def test_a_small_efficientat_run_trains_and_predicts(esc_tiny, efficientat_pt):
    from audioclf.datasets import SplitConfig
    from audioclf.inference import Predictor
    from audioclf.training import RunConfig, TrainConfig, runs, train

    cfg = RunConfig(dataset=str(esc_tiny), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=EfficientATConfig(model=str(efficientat_pt)), name="efficientat tiny",
                    overrides={"model.kind": "baseline", "train.epochs": 12, "train.patience": None})
    assert not cfg.train.warp_augment and cfg.model.clip_norm is False  # the feature type's defaults
    run_id = train(cfg)
    run = runs.load_run(run_id)
    assert run.config["features"]["kind"] == "efficientat"
    assert run.metrics["test"]["macro_f1"] >= 0.6  # dog, rain and rooster are easy for an AudioSet model
    pred = Predictor.load(run_id).predict_clip(load_audio(sorted((esc_tiny / "rooster").iterdir())[0]))
    assert pred.probs.shape == (3,) and abs(float(pred.probs.sum()) - 1) < 1e-4
    assert pred.top_label == "rooster"


def test_live_labels_an_efficientat_run_over_whole_steps(eat_demo_run):
    from audioclf.datasets import synth_clip
    from audioclf.datasets.demo import CLASSES
    from audioclf.inference import LiveClassifier, Predictor

    def demo(label: str, rate: int, seconds: float) -> np.ndarray:
        clip = synth_clip(label, np.random.default_rng([5, CLASSES.index(label)]), rate)
        return np.resize(clip, int(seconds * rate))

    predictor = Predictor.load(eat_demo_run)
    live = LiveClassifier(predictor, window=1.5, hop=0.5, threshold=0.0)
    live.warm_up(48000)
    rate = 48000
    y = np.concatenate([demo("siren", rate, 4), demo("rain", rate, 4)])
    pcm = np.repeat((np.clip(y, -1, 1) * 32767).astype(np.int16), 2)  # a browser's int16 stereo
    preds = []
    for i in range(0, len(pcm), 2 * 960):
        preds += live.feed(pcm[i:i + 2 * 960], rate, channels=2)
    assert live.sample_rate == 32000 and live.hop_seconds == pytest.approx(0.5)
    assert live.window_seconds == pytest.approx((5 * 10240 - 320) / 32000)  # five whole 0.32 s steps
    assert len(preds) == pytest.approx((8 - live.window_seconds) / 0.5 + 1, abs=1)
    assert {p.top_label for p in preds if p.time < 4.0} == {"siren"}
    assert {p.top_label for p in preds if p.time > 4.0 + live.window_seconds} == {"rain"}

    # At the features' own rate nothing is resampled: each label is predict_clip of its window.
    y32 = demo("dial_tone", 32000, 3)
    live.reset()
    got = [q for i in range(0, len(y32), 640) for q in live.feed(y32[i:i + 640], 32000)]
    win = int(round(live.window_seconds * 32000))
    assert len(got) >= 3
    for q in got:
        end = int(round(q.time * 32000))
        want = predictor.predict_clip(Clip(y32[end - win:end], 32000)).probs
        np.testing.assert_allclose(q.probs, want, atol=1e-4)


def test_auto_chooses_among_efficientat_yamnet_and_mfcc_and_says_why(esc_tiny, efficientat_pt, yamnet_tflite,
                                                                     monkeypatch, tmp_path):
    from audioclf.datasets import load_dataset
    from audioclf.training import AutoFeatures, choose_features, default_feature_kind
    from audioclf.training.feature_choice import pretrained_available, usable_candidates

    monkeypatch.setenv("AUDIOCLF_YAMNET", str(tmp_path / "no-yamnet.tflite"))
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(efficientat_pt))
    assert pretrained_available() and default_feature_kind(pretrained_available()) == "auto"
    assert usable_candidates(AutoFeatures())[0] == ["efficientat", "mfcc"]  # EfficientAT alone makes Auto
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    ds = load_dataset(esc_tiny)
    choice = choose_features(ds.items, ds.labels, AutoFeatures())
    scores = {s.kind: s.macro_f1 for s in choice.scores}
    assert set(scores) == {"efficientat", "yamnet", "mfcc"} and all(v is not None for v in scores.values())
    # Dog, rain and rooster: the pretrained ears beat MFCC summaries, and the first of them wins a tie.
    assert choice.winner in ("efficientat", "yamnet") and scores["mfcc"] <= scores[choice.winner]
    assert choice.reason.startswith(f"{choice.winner} (macro F1 ")
    assert all(f"{k} " in choice.reason for k in scores if k != choice.winner)


def run_cli(*argv) -> tuple[int, str, str]:
    import contextlib
    import io

    from audioclf import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_cli_extracts_and_trains_with_efficientat(esc_tiny, efficientat_pt):
    import json

    code, out, err = run_cli("extract", esc_tiny, "--features", "efficientat", "--efficientat-model", efficientat_pt,
                             "--efficientat-sequence", "windows", "-q")
    assert code == 0, err
    assert "384" in next(line for line in out.splitlines() if line.startswith("dims"))
    code, out, err = run_cli("train", esc_tiny, "--features", "efficientat", "--efficientat-model", efficientat_pt,
                             "--model", "baseline", "--epochs", "3", "--val", "0.25", "--test", "0.25",
                             "--format", "json", "-q")
    assert code == 0, err
    run_id = json.loads(out)[0]["run"]
    from audioclf.training import runs

    cfg = runs.load_run(run_id).config
    assert cfg["features"] == {"kind": "efficientat", "model": str(efficientat_pt), "sequence": "frames",
                               "yamnet": None}
    assert cfg["train"]["warp_augment"] == [] and cfg["model"]["kind"] == "baseline"
    runs.delete_run(run_id)


def test_cli_efficientat_errors_are_one_line(esc_tiny):
    code, out, err = run_cli("extract", esc_tiny, "--features", "efficientat", "--efficientat-model", "mn99_as")
    assert code == 1 and out == "" and err.count("\n") == 1 and "no EfficientAT model called 'mn99_as'" in err
    code, _, err = run_cli("extract", esc_tiny, "--features", "mfcc", "--efficientat-sequence", "windows")
    assert code == 1 and err.count("\n") == 1 and "applies to efficientat features" in err
    code, _, err = run_cli("extract", esc_tiny, "--features", "efficientat", "--n-mfcc", "13")
    assert code == 1 and "does not apply to efficientat" in err


def test_map_and_health_use_the_clip_embedding(esc_tiny, efficientat_pt):
    from audioclf.datasets import load_dataset
    from audioclf.insight import check_dataset, clip_vectors, project

    ds = load_dataset(esc_tiny)
    cfg = EfficientATConfig(model=str(efficientat_pt))
    vecs = clip_vectors(ds, cfg)
    feats = extract_many([str(p) for p in vecs.paths[:1]], cfg)[0]
    assert vecs.values.shape == (24, 384) and vecs.kind == "efficientat" and vecs.names[0] == "efficientat_0"
    np.testing.assert_allclose(vecs.values[0], eat.clip_embedding(feats), atol=1e-6)
    assert project(vecs.values, "pca").shape == (24, 2)
    report = check_dataset(ds, cfg)
    assert report.features == "efficientat" and not report.of_kind("duplicate", "leakage")


def test_the_tune_space_of_efficientat():
    from dataclasses import replace

    from audioclf import tuning
    from audioclf.datasets import SplitConfig
    from audioclf.training import RunConfig

    base = RunConfig(dataset="x", split=SplitConfig(), features=EfficientATConfig())
    space = tuning.default_space("efficientat")
    assert "baseline" in space.get("model.kind").choices
    tuning.check_space(space, base)
    tuning.check_space(space.with_param(tuning.parse_vary("features.sequence=frames,windows")), base)
    cfg = tuning.apply_params(base, {"features.sequence": "windows", "model.kind": "baseline"})
    assert cfg.features == replace(base.features, sequence="windows") and cfg.model.kind == "baseline"
