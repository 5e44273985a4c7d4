"""Export bundles: TFLite equals Keras, the standalone predict.py equals audioclf (also in a fresh
virtual environment without audioclf), for an MFCC run and a YAMNet run; which architectures convert."""
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
def bundles(trained_run, yamnet_run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for kind, run_id in (("mfcc", trained_run), ("yamnet", yamnet_run)):
        result = export_run(run_id, root / kind)
        assert result.tflite, result.tflite_error
        out[kind] = result.path
    return out


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


@pytest.mark.parametrize("kind", ["mfcc", "yamnet"])
def test_bundle_files_and_tflite_equals_keras(kind, bundles, clips, trained_run, yamnet_run):
    from audioclf.features import config_from_dict, extract_many
    from audioclf.inference import Predictor

    bundle = bundles[kind]
    run_id = {"mfcc": trained_run, "yamnet": yamnet_run}[kind]
    names = {p.name for p in bundle.iterdir()}
    assert {"model.tflite", "saved_model", "model.keras", "audioclf_layers.py", "labels.json", "features.json", "run.json",
            "predict.py", "requirements.txt", "README.md"} <= names
    assert ("yamnet.tflite" in names) == (kind == "yamnet")
    assert json.loads((bundle / "labels.json").read_text()) == runs.load_run(run_id).labels
    reqs = (bundle / "requirements.txt").read_text()
    assert "ai-edge-litert" in reqs and ("librosa" in reqs) == (kind == "mfcc") and "audioclf" not in reqs
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


def test_saved_model_and_keras_file_load_in_plain_tensorflow(bundles, clips, trained_run, tmp_path):
    from audioclf.features import MFCCConfig, extract_many

    files = []
    for i, f in enumerate(extract_many(clips[:3], MFCCConfig())):
        files.append(tmp_path / f"x{i}.npy")
        np.save(files[-1], f.values)
    proc = subprocess.run([sys.executable, "-c", PLAIN_TF, *map(str, files)], cwd=bundles["mfcc"],
                          env={**_clean_env(), "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = np.stack([p.probs for p in audioclf_predictions(trained_run, clips[:3])])
    assert np.abs(np.array(got["saved"]) - want).max() <= MAX_DIFF
    assert np.abs(np.array(got["keras"]) - want).max() <= MAX_DIFF


@pytest.mark.parametrize("kind", ["mfcc", "yamnet"])
def test_standalone_script_computes_audioclfs_features_and_answers(kind, bundles, clips, trained_run, yamnet_run):
    """In this process (fast): the bundle's predict.py module against audioclf, clip by clip."""
    import importlib.util

    from audioclf.features import config_from_dict, extract_file

    bundle = bundles[kind]
    run_id = {"mfcc": trained_run, "yamnet": yamnet_run}[kind]
    spec = importlib.util.spec_from_file_location(f"bundle_predict_{kind}", bundle / "predict.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    clf = script.Classifier(bundle)
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
    from audioclf.export.bundle import BASE_REQUIREMENTS, LIBROSA_REQUIREMENT

    venv = tmp_path_factory.mktemp("bundle_venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          *BASE_REQUIREMENTS, LIBROSA_REQUIREMENT],
                         capture_output=True, text=True, timeout=600, env=_clean_env())
    if pip.returncode:
        pytest.fail(f"pip could not install the bundle's requirements: {pip.stderr[-1500:]}")
    return python


def _clean_env() -> dict[str, str]:
    """This environment without anything that would let audioclf be found."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@pytest.mark.venv
@pytest.mark.parametrize("kind", ["mfcc", "yamnet"])
def test_bundle_predicts_in_a_fresh_venv_without_audioclf(kind, fresh_venv, bundles, clips, trained_run,
                                                          yamnet_run, tmp_path):
    env = _clean_env()
    no_audioclf = subprocess.run([str(fresh_venv), "-c", "import audioclf"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True)
    assert no_audioclf.returncode != 0 and "No module named 'audioclf'" in no_audioclf.stderr
    proc = subprocess.run([str(fresh_venv), str(bundles[kind] / "predict.py"), "--threshold", "0",
                           *map(str, clips)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["file"] for r in rows] == [str(p) for p in clips]
    run_id = {"mfcc": trained_run, "yamnet": yamnet_run}[kind]
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
