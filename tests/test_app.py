"""Every page of the Streamlit app, driven by streamlit.testing.v1.AppTest.

Real library underneath: the synthesised demo data set, real feature
extraction, a tiny real Keras training in a background process, the real
YAMNet TFLite model.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180  # seconds per script run: first runs import librosa and numba-compile
TRAIN_DEADLINE = 300


def wav_bytes(freq: float, seconds: float = 1.0, sr: int = 16000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module", autouse=True)
def app_home(tmp_path_factory, yamnet_tflite):
    """A workspace of its own for the app tests, and YAMNet from ../shared."""
    home = tmp_path_factory.mktemp("app_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOCLF_HOME", str(home))
        mp.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
        mp.delenv("AUDIOCLF_EFFICIENTAT", raising=False)  # EfficientAT's panels: tests/test_app_efficientat.py
        yield home


def new_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def train_from_form(val: float | None = None) -> tuple[AppTest, str]:
    """Start a tiny GRU run from the Train page's form and wait until it is done."""
    at = new_app("train")
    assert not at.exception
    # YAMNet is available here, so the form starts on Auto; these tests train tiny MFCC runs.
    at.selectbox(key="tr_feat").set_value("MFCC sequence").run()
    at.selectbox(key="tr_model").set_value("gru").run()
    if val is not None:
        at.slider(key="tr_val").set_value(val)
    at.number_input(key="tr_epochs").set_value(2)
    at.slider(key="tr_layers").set_value(1)
    at.selectbox(key="tr_units").set_value(16)
    at.checkbox(key="tr_warp").uncheck()  # warped copies triple the data; not what these tests check
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    run_id = at.session_state["active_run"]
    # The page shows the run it started (progress or the finished state).
    assert run_id in texts(at.subheader) + " ".join(e.label for e in at.expander) or at.get("expandable")

    from audioclf.training import run_status

    deadline = time.time() + TRAIN_DEADLINE
    while not (status := run_status(run_id)).final:
        assert time.time() < deadline, f"training did not finish: {status}"
        time.sleep(1)
    assert status.state == "done", status.message
    at.run()  # coming back to the page shows the finished run
    assert not at.exception
    assert any(s.value.startswith("Training finished") for s in at.success)
    return at, run_id


@pytest.fixture(scope="module")
def trained_run(app_home) -> str:
    """A tiny run started from the Train page's form, trained in the background to the end."""
    return train_from_form()[1]


def test_first_page_opens_on_the_demo_data_without_tensorflow(app_home):
    code = ("import sys; from streamlit.testing.v1 import AppTest; "
            f"at = AppTest.from_file({APP!r}, default_timeout={TIMEOUT}).run(); "
            "assert not at.exception, at.exception; "
            "print([m.value for m in at.metric]); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "AUDIOCLF_HOME": str(app_home)}, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics, tf_loaded = out.stdout.strip().splitlines()[-2:]
    assert metrics.startswith("['120', '5'")  # the demo: 5 classes x 24 clips
    assert tf_loaded == "False"


def test_data_page_shows_the_demo_and_its_charts():
    at = new_app()
    assert not at.exception
    assert at.title[0].value == "Data"
    assert at.sidebar.selectbox(key="dataset").value == "demo"
    assert [m.label for m in at.metric][:2] == ["Clips", "Classes"]
    assert len(at.get("plotly_chart")) == 2  # clips per class, durations
    assert "500 MB" in texts(at.markdown)  # the upload limit is stated


def test_data_upload_refuses_non_audio_and_adds_real_clips(app_home):
    at = new_app()
    # A new data set from the form.
    form_name = next(t for t in at.text_input if t.label.startswith("Name"))
    form_name.input("tones")
    at.button(key="FormSubmitter:new_dataset-Create").click().run()
    assert not at.exception
    assert at.sidebar.selectbox(key="dataset").value == "tones"

    at.text_input(key="add_new").input("low")
    at.file_uploader[0].set_value([
        ("a.wav", wav_bytes(220), "audio/wav"),
        ("notes.wav", b"this is not audio at all", "audio/wav"),
    ])
    at.run()
    at.button(key="add_btn").click().run()
    assert not at.exception
    assert "Added 1 clip" in texts(at.success)
    assert at.error, "the non-audio file must be reported"
    assert (app_home / "datasets" / "tones" / "low" / "a.wav").is_file()
    assert not (app_home / "datasets" / "tones" / "low" / "notes.wav").exists()

    # A zip with class folders keeps the folder names as labels.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("high/h1.wav", wav_bytes(2000))
        zf.writestr("high/h2.wav", wav_bytes(2500))
    at.file_uploader[0].set_value(("more.zip", buf.getvalue(), "application/zip"))
    at.run()
    at.button(key="add_btn").click().run()
    assert not at.exception
    assert "Added 2 clip" in texts(at.success)
    assert sorted(p.name for p in (app_home / "datasets" / "tones" / "high").iterdir()) == ["h1.wav", "h2.wav"]


def test_data_background_noise_becomes_its_own_class_and_train_suggests_one(app_home):
    at = new_app("train")
    assert "No background class" in texts(at.caption)  # the demo has none
    at = new_app()
    next(t for t in at.text_input if t.label.startswith("Name")).input("noisy")
    at.button(key="FormSubmitter:new_dataset-Create").click().run()
    at.radio(key="bg_src").set_value("Upload").run()
    noise = (0.05 * np.random.default_rng(0).normal(size=int(6.5 * 16000))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, noise, 16000, format="WAV")
    at.file_uploader(key="bg_up_0").set_value(("room.wav", buf.getvalue(), "audio/wav")).run()
    at.button(key="bg_btn").click().run()
    assert not at.exception, at.exception
    assert "Added 3 clip" in texts(at.success)  # 6.5 s -> three 2 s clips
    assert len(list((app_home / "datasets" / "noisy" / "background").glob("*.wav"))) == 3


def test_train_refuses_a_one_class_data_set(app_home):
    root = app_home / "datasets" / "oneclass" / "only"
    root.mkdir(parents=True)
    for i in range(6):
        (root / f"c{i}.wav").write_bytes(wav_bytes(300 + 50 * i))
    at = new_app()
    at.sidebar.selectbox(key="dataset").set_value("oneclass").run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert "at least two classes" in texts(at.error)
    assert "6 clips, 1 class." in texts(at.caption)  # not "1 classes" (issue 21, cosmetic)
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    assert not at.exception
    assert "at least two classes" in texts(at.error)
    assert "active_run" not in at.session_state


def test_explore_draws_every_figure_and_yamnet_classes():
    at = new_app("explore")
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    # 7 feature figures + YAMNet's top classes
    assert len(charts) == 8, [e for e in at.error]
    assert not at.error
    at.select_slider(key="ex_nfft").set_value(512)
    at.slider(key="ex_nmfcc").set_value(13)
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 8


def test_explore_upload_of_a_non_audio_file_shows_an_error():
    at = new_app("explore")
    at.radio(key="a_src").set_value("Upload").run()
    at.file_uploader(key="a_up").set_value(("x.wav", b"\x00garbage" * 10, "audio/wav"))
    at.run()
    assert not at.exception
    assert at.error and "x.wav" in texts(at.error)


def test_runs_page_shows_the_trained_run(trained_run):
    at = new_app("runs")
    assert not at.exception, at.exception
    assert at.selectbox(key="runs_pick").value == trained_run
    assert [m.label for m in at.metric][:2] == ["Accuracy", "Macro F1"]
    assert at.get("plotly_chart"), "confusion matrix and learning curves"
    assert len(at.get("download_button")) == 4
    at.toggle(key="runs_norm").set_value(True).run()
    assert not at.exception


def test_runs_page_exports_a_portable_bundle(trained_run):
    at = new_app("runs")
    assert at.selectbox(key="runs_pick").value == trained_run
    at.button(key="runs_export").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    assert "Portable bundle (.zip)" in [b.label for b in at.get("download_button")]


def test_predict_classifies_an_upload_and_a_batch(trained_run, app_home):
    clip = next((app_home / "datasets" / "demo" / "siren").glob("*.wav"))
    at = new_app("predict")
    assert not at.exception, at.exception
    assert at.selectbox(key="pr_run").value == trained_run  # the best (only) run preselected
    at.slider(key=f"pr_threshold_{trained_run}").set_value(0.0)  # "not sure" off
    at.file_uploader(key="pr_file").set_value((clip.name, clip.read_bytes(), "audio/wav"))
    at.run()
    assert not at.exception, at.exception
    assert [m.label for m in at.metric][:2] == ["Predicted class", "Confidence"]
    assert at.metric[0].value in {"siren", "dial_tone", "rain", "clock_ticks", "bird_chirps"}
    assert at.get("plotly_chart")

    at.file_uploader(key="pr_batch_0").set_value([
        (clip.name, clip.read_bytes(), "audio/wav"), ("bad.wav", b"nope", "audio/wav")])
    at.run()
    at.button(key="pr_go").click().run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "file" in d.value.columns)  # not the clip's segments
    assert list(table["file"]) == [clip.name]  # the answers; the file that failed is listed apart
    failed = texts(at.warning)
    assert failed.count("`bad.wav`") == 1 and "/tmp" not in failed, "the upload's name, once, not its temp path"


def test_predict_not_sure_below_the_threshold_and_a_timeline_for_long_clips(trained_run, app_home):
    from audioclf.audio import load_audio
    from audioclf.inference import run_threshold

    demo = app_home / "datasets" / "demo"
    at = new_app("predict")
    slider = at.slider(key=f"pr_threshold_{trained_run}")
    assert slider.value == pytest.approx(run_threshold(trained_run) or 0.0)  # the run's suggestion
    slider.set_value(1.0)
    clip = next((demo / "siren").glob("*.wav"))
    at.file_uploader(key="pr_file").set_value((clip.name, clip.read_bytes(), "audio/wav")).run()
    assert not at.exception, at.exception
    assert at.metric[0].label == "Predicted class" and at.metric[0].value == "unknown"
    assert at.metric[2].label == "Likeliest class"
    assert "none of the classes" in texts(at.warning)
    # Cosmetic (issue 21): no "↑ below 85%" arrow (a metric delta), no "Not sure: unknown: ...".
    assert at.metric[1].label == "Confidence" and not at.metric[1].proto.delta
    assert "Not sure: unknown" not in texts(at.warning)

    # A long clip of three classes: a segment timeline and its CSV.
    parts = [load_audio(p, sr=16000).samples for c in ("siren", "rain", "clock_ticks")
             for p in sorted((demo / c).glob("*.wav"))[:2]]
    buf = io.BytesIO()
    sf.write(buf, np.concatenate(parts), 16000, format="WAV")
    at.slider(key=f"pr_threshold_{trained_run}").set_value(0.0)
    at.file_uploader(key="pr_file").set_value(("long.wav", buf.getvalue(), "audio/wav")).run()
    assert not at.exception, at.exception
    assert at.metric[0].value != "unknown"
    assert "Download segments (CSV)" in [b.label for b in at.get("download_button")]
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # probabilities and the timeline
    several = "holds several classes" in texts(at.info)
    from audioclf.inference import Predictor

    expected = Predictor.load(trained_run).predict_clip(load_audio(buf.getvalue(), name="long.wav"))
    assert several == (len(expected.classes_over_time()) > 1)


def test_a_damaged_or_deleted_run_shows_an_error(trained_run, app_home):
    broken = app_home / "runs" / f"{trained_run}-broken"
    shutil.copytree(app_home / "runs" / trained_run, broken)
    (broken / "model.keras").write_bytes(b"not a model")
    at = new_app("predict")
    at.selectbox(key="pr_run").set_value(broken.name).run()
    assert not at.exception
    assert "model" in texts(at.error).lower()

    # Deleting from the Runs page removes it; the page keeps working.
    at.switch_page("app_pages/runs.py").run()
    at.selectbox(key="runs_pick").set_value(broken.name).run()
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert not broken.exists()
    assert (app_home / "runs" / trained_run).is_dir()  # nothing else was lost


def test_a_validation_share_of_zero_trains_on_every_non_test_clip(app_home, trained_run):
    """Validation share 0 is offered (few speakers: every voice should train); the run
    then has no validation split and early stopping watches the training loss."""
    at, run_id = train_from_form(val=0.0)
    from audioclf.training import load_run

    run = load_run(run_id)
    assert run.config["split"]["val"] == 0.0
    assert len(run.history) == 2 and all("val_loss" not in h for h in run.history)
    assert run.metrics["val"] is None and 0.0 <= run.metrics["test"]["macro_f1"] <= 1.0
    # The Runs page shows such a run with its test scores only.
    at.switch_page("app_pages/runs.py").run()
    at.selectbox(key="runs_pick").set_value(run_id).run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    assert [m.label for m in at.metric][:2] == ["Accuracy", "Macro F1"]
    # Compared with another run, it has no validation bar (not a bar at 0).
    at.multiselect(key="runs_compare").set_value([run_id, trained_run]).run()
    assert not at.exception, at.exception
    import json

    fig = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if "val macro F1" in c.proto.spec))
    bars = {t["name"]: dict(zip(t["x"], t["y"])) for t in fig["data"]}
    assert bars["val macro F1"][run_id] is None and bars["val macro F1"][trained_run] is not None
    assert bars["test macro F1"][run_id] is not None
    # Predict names it by its test score, not "val macro F1 nan".
    at.switch_page("app_pages/predict.py").run()
    label = next(o for o in at.selectbox(key="pr_run").options if o.startswith(run_id))
    assert "nan" not in label and "no validation, test macro F1" in label


def test_train_refuses_yamnet_features_without_a_yamnet_model(app_home, monkeypatch, tmp_path):
    """Defect 7: refused before a background run starts, with the help Explore gives; since issue 21
    before Start too: the reason shows when YAMNet is chosen, and Start is disabled."""
    from audioclf.training import list_runs

    monkeypatch.setenv("AUDIOCLF_YAMNET", str(tmp_path / "missing" / "yamnet.tflite"))
    before = len(list_runs())
    at = new_app("train")
    at.selectbox(key="tr_feat").set_value("YAMNet embeddings (pretrained)").run()
    assert not at.exception, at.exception
    assert "To use YAMNet features" in texts(at.warning)
    assert at.button(key="FormSubmitter:train_form-Start training").disabled
    assert "active_run" not in at.session_state and len(list_runs()) == before


def test_kfold_keeping_groups_together_names_the_group_of_each_fold(app_home, fsdd_small):
    """Issue 10 item 4: the page's k-fold with groups kept together honours the regex."""
    dest = app_home / "datasets" / "digits"
    if not dest.exists():
        shutil.copytree(fsdd_small, dest, symlinks=True)
    at = new_app()
    at.sidebar.selectbox(key="dataset").set_value("digits").run()
    at.switch_page("app_pages/train.py").run()
    at.selectbox(key="tr_feat").set_value("MFCC sequence").run()
    at.selectbox(key="tr_split").set_value("kfold").run()
    at.selectbox(key="tr_model").set_value("baseline").run()
    # Form widgets commit together on submit: the group regex keeps its default (FSDD speakers).
    at.slider(key="tr_k").set_value(3)
    at.checkbox(key="tr_kgroup").check()
    at.slider(key="tr_val").set_value(0.0)
    at.number_input(key="tr_epochs").set_value(1)
    at.checkbox(key="tr_warp").uncheck()
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    cv = at.session_state["cv_result"]
    assert cv["k"] == 3 and cv["groups"] == [["george"], ["jackson"], ["lucas"]]


def test_compare_defaults_to_runs_with_scores(trained_run):
    """A newer cancelled run has no scores to compare (issue 11, item 10)."""
    from audioclf.training import runs

    from audioclf import jobs

    cancelled = runs.create_run(jobs.read_json(runs.run_dir(trained_run) / runs.CONFIG))
    runs.update_status(cancelled, state="cancelled", message="Cancelled.")
    try:
        at = new_app("runs")
        scored = [r.id for r in runs.list_runs() if r.test_macro_f1 is not None]
        assert at.multiselect(key="runs_compare").value == scored[:2]
        assert cancelled not in at.multiselect(key="runs_compare").value
        at.selectbox(key="runs_pick").set_value(cancelled).run()
        assert not at.exception, at.exception
        assert texts(at.info) == "This run was cancelled."  # not "is cancelled. Cancelled."
    finally:
        runs.delete_run(cancelled)


def test_batch_prediction_classifies_only_the_new_uploads(trained_run, app_home, caplog):
    """After a batch the uploader is empty, so the next batch is only the new files
    (item 9), and nothing calls Streamlit outside the script thread (item 14)."""
    demo = app_home / "datasets" / "demo"
    clips = sorted((demo / "siren").glob("*.wav"))[:2]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted((demo / "rain").glob("*.wav"))[:3]:
            zf.write(p, p.name)
    at = new_app("predict")
    at.selectbox(key="pr_run").set_value(trained_run).run()
    caplog.set_level(logging.WARNING)
    seen = len(caplog.records)  # AppTest's own start logs one such warning: not ours
    at.file_uploader(key="pr_batch_0").set_value(
        [(c.name, c.read_bytes(), "audio/wav") for c in clips] + [("rain.zip", buf.getvalue(), "application/zip")])
    at.run()
    at.button(key="pr_go").click().run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 5
    assert not at.file_uploader(key="pr_batch_1").value, "the uploader starts empty"
    assert not [b for b in at.button if b.key == "pr_go"], "nothing waits to be classified again"

    new = sorted((demo / "clock_ticks").glob("*.wav"))[0]
    at.file_uploader(key="pr_batch_1").set_value((new.name, new.read_bytes(), "audio/wav"))
    at.run()
    assert not at.dataframe, "the last batch's table is not the new files' result"
    at.button(key="pr_go").click().run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["file"]) == [new.name]
    bare = [r.getMessage() for r in caplog.records[seen:] if "ScriptRunContext" in r.getMessage()]
    assert not bare, bare
