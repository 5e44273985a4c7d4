"""The core's one path from options to a run: prepare_run, feature gathering with warped
copies, honest cross-validation, the error base class, YAMNet refused up front, and
models that load with plain Keras."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import audioclf
from audioclf.datasets import SplitConfig, cv_folds, fold_split, load_dataset
from audioclf.errors import AudioclfError
from audioclf.features import MFCCConfig, YAMNetConfig
from audioclf.model import ModelConfig
from audioclf.training import RunConfig, TrainConfig, prepare_run, runs

TINY = ModelConfig(kind="gru", rnn_units=(8,), dense_units=(), time_mask=0, feature_mask=0)
SPEAKER = r"^\d+_([a-z]+)_"


def _cfg(dataset, **kw) -> RunConfig:
    base = dict(dataset=str(dataset), split=SplitConfig(val=0.25, test=0.25), features=MFCCConfig(),
                model=TINY, train=TrainConfig(epochs=1, patience=None, batch_size=8, warp_augment=()))
    base.update(kw)
    return RunConfig(**base)


# ---------------------------------------------------------------- errors

def test_every_library_error_derives_from_one_base():
    import importlib
    import pkgutil

    found = {}
    for info in pkgutil.walk_packages(audioclf.__path__, "audioclf."):
        if info.name == "audioclf.model.layers" or info.name.endswith(".__main__"):
            continue  # layers imports TensorFlow; a __main__ runs a command
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name \
                    and (name.endswith("Error") or name.endswith("Unavailable")):
                found[name] = obj
    assert {"AudioError", "FeatureError", "DatasetError", "ModelError", "TrainingError", "RunError",
            "ModelLoadError", "EvaluationError", "PredictError", "DownloadError", "CLIError",
            "YAMNetUnavailable"} <= set(found)
    outside = [n for n, cls in found.items() if not issubclass(cls, AudioclfError)]
    assert not outside
    assert issubclass(AudioclfError, ValueError)


# ---------------------------------------------------------------- YAMNet up front

@pytest.fixture
def no_yamnet(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(tmp_path / "nowhere" / "yamnet.tflite"))


def test_prepare_refuses_yamnet_without_a_model_before_any_work(fsdd_small, no_yamnet):
    from audioclf.features.yamnet import YAMNetUnavailable, how_to_provide

    before = len(runs.list_runs())
    with pytest.raises(YAMNetUnavailable, match="No YAMNet model at") as exc:
        prepare_run(_cfg(fsdd_small, features=YAMNetConfig()))
    assert how_to_provide() in str(exc.value) and isinstance(exc.value, AudioclfError)
    assert len(runs.list_runs()) == before


def test_yamnet_from_tf_hub_that_was_never_downloaded_is_refused(fsdd_small, monkeypatch, tmp_path):
    from audioclf.features import yamnet

    monkeypatch.delenv("AUDIOCLF_YAMNET", raising=False)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
    assert yamnet.resolve_spec().startswith("https://")
    with pytest.raises(yamnet.YAMNetUnavailable) as exc:
        prepare_run(_cfg(fsdd_small, features=YAMNetConfig()))
    assert str(exc.value).startswith(yamnet.NOT_SET_UP)  # the words Explore shows


def test_yamnet_with_the_shared_model_passes(fsdd_small, yamnet_tflite, monkeypatch):
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    prepared = prepare_run(_cfg(fsdd_small, features=YAMNetConfig()))
    assert prepared.labels == ["0", "1", "2"] and len(prepared.split.train) > 0


def test_cli_refuses_yamnet_without_a_model_in_one_line(fsdd_small, no_yamnet):
    from test_cli import run_cli

    t0 = time.perf_counter()
    code, out, err = run_cli("train", fsdd_small, "--features", "yamnet", "-q")
    assert code == 1 and out == ""
    assert "To use YAMNet features" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 10  # refused before any extraction or training
    code, out, err = run_cli("extract", fsdd_small, "--features", "yamnet", "-q")
    assert code == 1 and "To use YAMNet features" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- progress of warped copies

def test_extraction_progress_counts_the_warped_copies_from_the_start(fsdd_small):
    """Defect 17: one total from the first event, advancing while the copies are computed."""
    from audioclf.training import train

    events = []
    cfg = _cfg(fsdd_small, model=ModelConfig(kind="baseline", dense_units=(8,)),
               train=TrainConfig(epochs=1, patience=None, batch_size=8, warp_augment=(0.93, 1.07)))
    run_id = train(cfg, progress=events.append)
    ex = [e for e in events if e["phase"] == "extracting"]
    n_all = 36
    n_train = len(prepare_run(cfg).split.train)
    totals = {e["total"] for e in ex}
    assert totals == {n_all + 2 * n_train}, totals
    done = [e["done"] for e in ex]
    assert done == sorted(done) and done[0] == 0 and done[-1] == n_all + 2 * n_train
    assert any(n_all < d < n_all + 2 * n_train for d in done)  # it moves during the copies
    # Clips and their warped copies apart (issue 21: "Training clips 240" for 120 clips).
    m = runs.load_run(run_id).metrics
    assert (m["n_train"], m["n_train_copies"]) == (n_train, 2 * n_train)
    assert runs.read_status(run_id)["copies"] == 2 * n_train


# ---------------------------------------------------------------- cross-validation

def test_by_group_folds_are_numbered_in_the_groups_natural_order(shared_dir):
    """ESC-10's official folds: fold i holds out group "i"."""
    ds = load_dataset(shared_dir / "datasets" / "esc10")
    folds = cv_folds(ds, SplitConfig(method="group", group_pattern=r"^(\d)-"), 5)
    assert [f.groups for f in folds] == [("1",), ("2",), ("3",), ("4",), ("5",)]
    assert [f.number for f in folds] == [1, 2, 3, 4, 5]
    for f in folds:
        assert {it.group for it in f.test} == set(f.groups)
        assert not {it.group for it in f.train} & set(f.groups)


def test_a_folds_validation_part_is_split_like_train_splits(fsdd_small):
    ds = load_dataset(fsdd_small)
    cfg = SplitConfig(method="group", val=0.3, group_pattern=SPEAKER)
    for fold in cv_folds(ds, cfg, 3):
        split = fold_split(fold, cfg)
        train_g, val_g = {i.group for i in split.train}, {i.group for i in split.val}
        assert train_g and val_g and not train_g & val_g and not (train_g | val_g) & set(fold.groups)
        assert split.test == fold.test


def test_cross_validation_trains_with_the_warped_copies_train_adds(fsdd_small):
    """Issue 10 item 4: the same recipe as train(), warped copies included (they were left out)."""
    from audioclf.training import cross_validate

    cfg = _cfg(fsdd_small, split=SplitConfig(val=0.0), model=ModelConfig(kind="baseline", dense_units=(8,)),
               train=TrainConfig(epochs=1, patience=None, batch_size=16, warp_augment=(0.93, 1.07)))
    res = cross_validate(cfg, k=2)
    assert res.n_train == (3 * 18, 3 * 18)  # each fold's 18 training clips and two warped copies of each


def test_cli_group_cross_validation_with_a_pattern(fsdd_small):
    """`audioclf evaluate DATA --cv K --split-method group --group-pattern ...` (failed before)."""
    from test_cli import run_cli

    code, out, err = run_cli("evaluate", fsdd_small, "--cv", "3", "--split-method", "group",
                             "--group-pattern", SPEAKER, "--val", "0", "--epochs", "1", "--model", "baseline",
                             "--dense-units", "8", "--batch-size", "16", "--warp-augment", "none",
                             "--format", "json")
    assert code == 0, err
    res = json.loads(out)[0]
    assert res["k"] == 3 and res["groups"] == [["george"], ["jackson"], ["lucas"]]
    assert len(res["macro_f1"]) == 3


# ---------------------------------------------------------------- plain Keras

def test_a_runs_model_loads_with_plain_keras_and_gives_the_same_probabilities(trained_run, fsdd_small, tmp_path):
    from audioclf.features import extract_file
    from audioclf.model import predict_proba

    paths = sorted(str(p) for p in Path(fsdd_small).rglob("*.wav"))[:6]
    seqs = [extract_file(p, MFCCConfig()).values for p in paths]
    ours = predict_proba(runs.load_model(trained_run), seqs)
    from audioclf.model import pad_sequences

    np.save(tmp_path / "x.npy", pad_sequences(seqs[:1]))
    code = ("import sys, numpy as np, keras, audioclf.model.layers; "
            "m = keras.models.load_model(sys.argv[1]); "
            "np.save(sys.argv[3], np.asarray(m.predict_on_batch(np.load(sys.argv[2]))))")
    model_path = runs.run_dir(trained_run) / runs.MODEL
    out = subprocess.run([sys.executable, "-c", code, str(model_path), str(tmp_path / "x.npy"),
                          str(tmp_path / "p.npy")], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    plain = np.load(tmp_path / "p.npy")
    assert np.allclose(plain, ours[:1], atol=1e-5)
