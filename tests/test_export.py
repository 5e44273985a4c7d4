"""Export bundles: TFLite equals Keras, the standalone predict.py equals audioclf (also in a fresh
virtual environment without audioclf), for an MFCC, a YAMNet and an EfficientAT run, and one on
EfficientAT with YAMNet beside it; which architectures convert; EfficientAT's TFLite backbone and
NumPy front end against audioclf's."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from audioclf.export import ExportError, bundle_zip, convert_tflite, export_run, tflite_probabilities
from audioclf.training import runs

MAX_DIFF = 1e-3  # TFLite vs Keras probabilities
KINDS = ["mfcc", "yamnet", "efficientat", "finetuned", "both"]
RUN_FIXTURES = {"mfcc": "trained_run", "yamnet": "yamnet_run", "efficientat": "efficientat_run",
                "finetuned": "finetuned_run", "both": "both_run"}


@pytest.fixture(scope="module")
def yamnet_run(fsdd_small, yamnet_tflite) -> str:
    """A small YAMNet + GRU run on the FSDD subset."""
    from audioclf.datasets import SplitConfig
    from audioclf.features import YAMNetConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, train

    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=YAMNetConfig(model=str(yamnet_tflite)), name="yamnet-export",
                    model=ModelConfig(kind="gru", rnn_units=(16,), dense_units=(16,)),
                    train=TrainConfig(epochs=3, patience=None, batch_size=8, learning_rate=3e-3,
                                      warp_augment=()))
    return train(cfg)


@pytest.fixture(scope="module")
def efficientat_run(fsdd_small, efficientat_pt) -> str:
    """A small EfficientAT (mn04, frame sequence) + GRU run on the FSDD subset."""
    from audioclf.datasets import SplitConfig
    from audioclf.features import EfficientATConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, train

    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=EfficientATConfig(model=str(efficientat_pt)), name="efficientat-export",
                    model=ModelConfig(kind="gru", rnn_units=(16,), dense_units=(16,)),
                    train=TrainConfig(epochs=3, patience=None, batch_size=8, learning_rate=3e-3,
                                      warp_augment=()))
    return train(cfg)


@pytest.fixture(scope="module")
def both_run(fsdd_small, efficientat_pt, yamnet_tflite) -> str:
    """A small run on EfficientAT's frames with YAMNet's embeddings beside them: a GRU for each."""
    from audioclf.datasets import SplitConfig
    from audioclf.features import EfficientATConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, train

    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=EfficientATConfig(model=str(efficientat_pt), yamnet=str(yamnet_tflite)),
                    name="both-export", model=ModelConfig(kind="gru", rnn_units=(16,), dense_units=(16,)),
                    train=TrainConfig(epochs=3, patience=None, batch_size=8, learning_rate=3e-3,
                                      warp_augment=()))
    return train(cfg)


@pytest.fixture(scope="module")
def finetuned_run(fsdd_small, efficientat_pt) -> str:
    """A small run fine-tuning EfficientAT's last block with a dense head: its model holds the network."""
    from audioclf.datasets import SplitConfig
    from audioclf.features import EfficientATConfig
    from audioclf.training import RunConfig, train

    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=EfficientATConfig(model=str(efficientat_pt)), name="finetuned-export",
                    overrides={"model.kind": "baseline", "train.epochs": 2, "train.patience": None,
                               "train.finetune_blocks": 1})
    assert cfg.features.sequence == "mel"
    return train(cfg)


@pytest.fixture(scope="module")
def bundles(request, tmp_path_factory):
    """``bundles(kind) -> (bundle folder, run id)``: each kind's run trained and exported once, when first asked
    (so a missing EfficientAT checkpoint skips only the EfficientAT tests)."""
    root = tmp_path_factory.mktemp("bundles")
    made: dict[str, tuple[Path, str]] = {}

    def get(kind: str) -> tuple[Path, str]:
        if kind not in made:
            run_id = request.getfixturevalue(RUN_FIXTURES[kind])
            result = export_run(run_id, root / kind)
            assert result.tflite, result.tflite_error
            made[kind] = (result.path, run_id)
        return made[kind]
    return get


@pytest.fixture(scope="module")
def clips(fsdd_small, tmp_path_factory) -> list[Path]:
    """Test clips: one take of each digit and speaker, plus a stereo 44.1 kHz copy (resampled on load)."""
    import soundfile as sf

    from audioclf.audio import load_audio

    picked = [sorted((fsdd_small / d).iterdir())[k] for d in ("0", "1", "2") for k in (0, 5, 10)]
    stereo = tmp_path_factory.mktemp("stereo") / "stereo44k.wav"
    y = load_audio(picked[0], sr=44100).samples
    sf.write(stereo, np.stack([y, 0.5 * y], axis=1), 44100)
    return [*picked, stereo]


def audioclf_predictions(run_id: str, paths) -> list:
    from audioclf.inference import Predictor

    results = Predictor.load(run_id).predict_files(paths)
    assert all(r.prediction for r in results), [r.error for r in results]
    return [r.prediction for r in results]


@pytest.mark.parametrize("kind", KINDS)
def test_bundle_files_and_tflite_equals_keras(kind, bundles, clips):
    from audioclf.features import config_from_dict, extract_many
    from audioclf.inference import Predictor

    bundle, run_id = bundles(kind)
    names = {p.name for p in bundle.iterdir()}
    assert {"model.tflite", "saved_model", "model.keras", "audioclf_layers.py", "labels.json", "features.json", "run.json",
            "predict.py", "requirements.txt", "README.md"} <= names
    assert ("yamnet.tflite" in names) == (kind in ("yamnet", "both"))
    assert ("efficientat.tflite" in names) == (kind in ("efficientat", "both"))
    assert json.loads((bundle / "labels.json").read_text()) == runs.load_run(run_id).labels
    reqs = (bundle / "requirements.txt").read_text()
    assert "ai-edge-litert" in reqs and ("librosa" in reqs) == (kind == "mfcc") and "audioclf" not in reqs
    assert ("scipy" in reqs) == (kind in ("efficientat", "finetuned", "both"))
    if kind == "finetuned":  # the model holds the network: it takes EfficientAT's 128 log-mel bands
        info = json.loads((bundle / "run.json").read_text())
        assert info["finetuned"] and info["input_dims"] == 128 and "backbone" not in info
        assert "fine-tuned EfficientAT" in (bundle / "README.md").read_text()
    assert not re.search(r"^\s*(import|from)\s+audioclf", (bundle / "predict.py").read_text(), re.M)

    predictor = Predictor.load(run_id)
    cfg = config_from_dict(runs.load_run(run_id).config["features"])
    feats = extract_many(clips, cfg)
    keras_probs = np.stack([p.probs for p in predictor.predict_many_features(feats)])
    lite_probs = tflite_probabilities(bundle / "model.tflite", [f.values for f in feats])
    assert np.abs(lite_probs - keras_probs).max() <= MAX_DIFF


PLAIN_TF = """
import json, sys
sys.modules["audioclf"] = None  # any import of audioclf fails: the bundle must do without it
import numpy as np, keras, tensorflow as tf
import audioclf_layers  # the bundle's copy of the custom layers
x = [np.load(f) for f in sys.argv[1:]]
saved = tf.saved_model.load("saved_model")
model = keras.models.load_model("model.keras")
print(json.dumps({"saved": [saved.serve(tf.constant(f[None])).numpy()[0].tolist() for f in x],
                  "keras": [model.predict_on_batch(f[None])[0].tolist() for f in x]}))
"""


def test_saved_model_and_keras_file_load_in_plain_tensorflow(bundles, clips, tmp_path):
    from audioclf.features import MFCCConfig, extract_many

    bundle, trained_run = bundles("mfcc")
    files = []
    for i, f in enumerate(extract_many(clips[:3], MFCCConfig())):
        files.append(tmp_path / f"x{i}.npy")
        np.save(files[-1], f.values)
    proc = subprocess.run([sys.executable, "-c", PLAIN_TF, *map(str, files)], cwd=bundle,
                          env={**_clean_env(), "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = np.stack([p.probs for p in audioclf_predictions(trained_run, clips[:3])])
    assert np.abs(np.array(got["saved"]) - want).max() <= MAX_DIFF
    assert np.abs(np.array(got["keras"]) - want).max() <= MAX_DIFF


def bundle_script(bundle: Path, name: str):
    """The bundle's predict.py as a module of this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bundle_predict_{name}", bundle / "predict.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.parametrize("kind", KINDS)
def test_standalone_script_computes_audioclfs_features_and_answers(kind, bundles, clips):
    """In this process (fast): the bundle's predict.py module against audioclf, clip by clip."""
    from audioclf.features import config_from_dict, extract_file

    bundle, run_id = bundles(kind)
    clf = bundle_script(bundle, kind).Classifier(bundle)
    cfg = config_from_dict(runs.load_run(run_id).config["features"])
    preds = audioclf_predictions(run_id, clips)
    for path, pred in zip(clips, preds):
        ours = clf.extract(str(path))
        theirs = extract_file(path, cfg).values
        assert ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=1e-4, atol=1e-3), path.name
        label, prob = clf.predict(str(path), threshold=0.0)
        assert label == pred.top_label and abs(prob - pred.confidence) <= MAX_DIFF


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory) -> Path:
    """A plain virtual environment with only what bundles need (from PyPI), once per session."""
    from audioclf.export.bundle import BASE_REQUIREMENTS, LIBROSA_REQUIREMENT, SCIPY_REQUIREMENT

    venv = tmp_path_factory.mktemp("bundle_venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          *BASE_REQUIREMENTS, LIBROSA_REQUIREMENT, SCIPY_REQUIREMENT],
                         capture_output=True, text=True, timeout=600, env=_clean_env())
    if pip.returncode:
        pytest.fail(f"pip could not install the bundle's requirements: {pip.stderr[-1500:]}")
    return python


def _clean_env() -> dict[str, str]:
    """This environment without anything that would let audioclf be found."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@pytest.mark.venv
@pytest.mark.parametrize("kind", KINDS)
def test_bundle_predicts_in_a_fresh_venv_without_audioclf(kind, fresh_venv, bundles, clips, tmp_path):
    bundle, run_id = bundles(kind)
    env = _clean_env()
    no_audioclf = subprocess.run([str(fresh_venv), "-c", "import audioclf"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True)
    assert no_audioclf.returncode != 0 and "No module named 'audioclf'" in no_audioclf.stderr
    proc = subprocess.run([str(fresh_venv), str(bundle / "predict.py"), "--threshold", "0",
                           *map(str, clips)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["file"] for r in rows] == [str(p) for p in clips]
    preds = audioclf_predictions(run_id, clips)
    assert [r["label"] for r in rows] == [p.top_label for p in preds]
    assert all(abs(float(r["probability"]) - p.confidence) <= MAX_DIFF for r, p in zip(rows, preds))


def test_every_architecture_converts_to_tflite():
    """Each model kind (and an ensemble) converts and gives Keras's probabilities, frames of any count.

    GRU is converted from real runs by the tests above; an LSTM ensemble covers LSTM and members.
    """
    from audioclf.model import ModelConfig, build_model
    from audioclf.model.configs import KINDS

    rng = np.random.default_rng(0)
    dims = 6
    seqs = [rng.normal(size=(n, dims)).astype(np.float32) * 3 for n in (1, 9, 40)]
    kinds = [("lstm", 2), ("bilstm", 1), ("simplernn", 1), ("baseline", 1)]
    assert {k for k, _ in kinds} | {"gru"} == set(KINDS)
    for kind, members in kinds:
        cfg = ModelConfig(kind=kind, rnn_units=(4,), dense_units=(4,), members=members)
        width = 2 * dims if kind == "baseline" else dims
        model = build_model(cfg, dims, 3, mean=rng.normal(size=width), variance=rng.uniform(0.5, 2, width))
        lite = tflite_probabilities(convert_tflite(model, dims), seqs)
        keras_probs = np.concatenate([np.asarray(model.predict_on_batch(s[None])) for s in seqs])
        assert np.abs(lite - keras_probs).max() <= MAX_DIFF, (kind, members)


def test_export_refuses_a_used_folder_and_zips_for_download(trained_run, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_run(trained_run, used)
    assert (used / "keep.txt").read_text() == "mine"
    data = bundle_zip(trained_run)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    top = f"audioclf-{trained_run}/"
    assert all(n.startswith(top) for n in names)
    assert {top + "model.tflite", top + "predict.py", top + "labels.json", top + "README.md"} <= set(names)


def test_cli_export(trained_run, tmp_path):
    from audioclf import cli

    out = tmp_path / "bundle"
    assert cli.main(["export", trained_run, "--out", str(out), "-q"]) == 0
    assert (out / "model.tflite").is_file() and (out / "predict.py").is_file()
    assert cli.main(["export", trained_run, "--out", str(out), "-q"]) == 1  # not empty any more


@pytest.mark.parametrize("cfg", [
    {"kind": "spectral", "sr": 22050, "n_fft": 2048, "hop_length": 512, "n_mfcc": 13, "n_mels": 128},
    {"kind": "mfcc", "sr": 16000, "n_mfcc": 13, "n_fft": 512, "hop_length": 256, "n_mels": 40, "deltas": True,
     "trim_db": 30.0, "fmax": 6000.0, "warp": 1.1},
    {"kind": "mfcc", "sr": None, "n_mfcc": 20, "n_fft": 1024, "hop_length": 512, "n_mels": 64, "deltas": False,
     "trim_db": None, "fmax": None, "warp": 1.0},
])
def test_standalone_features_equal_audioclfs_for_other_settings(cfg, clips):
    """Settings the two real runs do not use: spectral features, deltas, fmax, warp, native rate, no trim."""
    from audioclf.export import standalone
    from audioclf.features import config_from_dict, extract_file

    config = config_from_dict(cfg)
    for path in (clips[0], clips[-1]):  # mono 8 kHz, stereo 44.1 kHz
        y, sr = standalone.load(str(path), cfg["sr"])
        ours = (standalone.spectral_features if cfg["kind"] == "spectral" else standalone.mfcc_features)(y, sr, cfg)
        theirs = extract_file(path, config).values
        assert ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=1e-4, atol=1e-3), path.name


def test_standalone_efficientat_front_end_equals_audioclfs(clips):
    """The bundle's copy of EfficientAT's NumPy front end against audioclf's, within 1e-5."""
    from audioclf.audio import load_audio
    from audioclf.export import standalone
    from audioclf.features.efficientat import frontend

    rng = np.random.default_rng(3)
    waves = [load_audio(p, sr=32000).samples for p in (clips[0], clips[-1])]  # 8 kHz mono, 44.1 kHz stereo
    waves += [np.zeros(100, np.float32), np.zeros(32000, np.float32),  # shorter than the STFT's padding; silence
              (0.3 * rng.standard_normal(515)).astype(np.float32),
              np.clip(rng.standard_normal(5 * 32000), -1, 1).astype(np.float32)]
    worst = 0.0
    for y in waves:
        ours, theirs = standalone.eat_log_mel(y), frontend.log_mel(y)
        assert ours.shape == theirs.shape
        worst = max(worst, float(np.abs(ours - theirs).max()))
    print(f"EfficientAT front end, predict.py vs audioclf: max abs diff {worst:.2g}")
    assert worst <= 1e-5


@pytest.mark.parametrize("sequence", ["frames", "windows"])
def test_efficientat_bundle_tflite_gives_the_feature_types_features(sequence, bundles, clips, esc10_dir,
                                                                   efficientat_pt):
    """The bundle's efficientat.tflite and front end give audioclf's EfficientAT features (both sequences)."""
    from audioclf.features import EfficientATConfig, extract_file

    bundle, _run_id = bundles("efficientat")
    info = json.loads((bundle / "run.json").read_text())["backbone"]
    assert info["file"] == "efficientat.tflite" and info["checkpoint"] == "mn04_as"
    assert 0 < info["max_abs_diff"] <= 1e-3  # checked by the export itself
    assert json.loads((bundle / "features.json").read_text())["model"] == "efficientat.tflite"
    assert "efficientat.tflite" in (bundle / "README.md").read_text()
    script = bundle_script(bundle, f"eat_{sequence}")
    backbone = script.EfficientAT(bundle / "efficientat.tflite", sequence)
    cfg = EfficientATConfig(model=str(efficientat_pt), sequence=sequence)
    paths = [clips[0], clips[-1], sorted((esc10_dir / "dog").iterdir())[0]]  # 0.5 s, 0.5 s stereo, 5 s
    worst = worst_rel = 0.0
    for path in paths:
        y, _sr = script.load(str(path), script.EAT_SR)
        ours, theirs = backbone(y), extract_file(path, cfg).values
        assert ours.shape == theirs.shape, path.name
        diff = float(np.abs(ours - theirs).max())
        # float32 rounding grows with the activations (a loud 5 s clip's frame features reach ~10)
        worst, worst_rel = max(worst, diff), max(worst_rel, diff / max(1.0, float(np.abs(theirs).max())))
    print(f"EfficientAT {sequence} features, bundle TFLite vs audioclf Keras: max abs diff {worst:.2g}, "
          f"relative to the clip's largest feature {worst_rel:.2g}")
    assert worst <= 1e-3 and worst_rel <= 1e-4


def test_cli_and_runs_page_export_an_efficientat_run(bundles, tmp_path):
    """EfficientAT runs used to be refused ("the portable bundle cannot compute them"): both ways export now."""
    from streamlit.testing.v1 import AppTest

    from audioclf import cli

    _bundle, run_id = bundles("efficientat")
    out = tmp_path / "bundle"
    assert cli.main(["export", run_id, "--out", str(out), "-q"]) == 0
    assert (out / "efficientat.tflite").is_file() and (out / "model.tflite").is_file()

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/runs.py").run()
    at.selectbox(key="runs_pick").set_value(run_id).run()
    at.button(key="runs_export").click().run()
    assert not at.exception, at.exception
    assert not at.error, " ".join(str(e.value) for e in at.error)
    assert "Portable bundle (.zip)" in [b.label for b in at.get("download_button")]
    data = at.session_state[f"runs_bundle_{run_id}"]
    assert f"audioclf-{run_id}/efficientat.tflite" in zipfile.ZipFile(io.BytesIO(data)).namelist()
