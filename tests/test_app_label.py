"""The Label page and the "wrong? this is ..." controls, driven by streamlit.testing.v1.AppTest.

Real library underneath: synthesised recordings with known events, the real YAMNet
TFLite model, real (tiny) Keras training for the corrections.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from conftest import ROOT

APP = str(ROOT / "app.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def home(tmp_path_factory, yamnet_tflite):
    """This module's own workspace, and two 40 s recordings of the demo's sounds."""
    from audioclf.labelling import synth

    home = tmp_path_factory.mktemp("label_home")
    recordings = tmp_path_factory.mktemp("label_recordings")
    for k in range(2):
        synth.write_demo_recording(recordings / f"take-{k}.wav", 40.0, seed=20 + k)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOCLF_HOME", str(home))
        mp.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
        mp.delenv("AUDIOCLF_READONLY", raising=False)
        mp.delenv("AUDIOCLF_READONLY_ALLOW", raising=False)
        mp.delenv("AUDIOCLF_EFFICIENTAT", raising=False)
        yield home, recordings


def new_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def clean(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)


def test_label_a_folder_then_name_merge_split_discard_move_and_save(home):
    from audioclf.datasets import load_dataset
    from audioclf.labelling import session as lab

    _, recordings = home
    at = new_app("label")
    clean(at)
    assert at.selectbox(key="lab_session").value == "Start a new session..."
    at.text_input(key="lab_path").set_value(str(recordings)).run()
    at.selectbox(key="lab_embedder").set_value("yamnet")
    at.text_input(key="lab_name").set_value("takes")
    at.button(key="lab_go").click().run()
    clean(at)
    assert at.selectbox(key="lab_session").value == "takes"
    s = lab.load_session("takes")
    assert "groups by YAMNet" in texts(at.markdown) and len(s.groups) >= 3
    assert any("Cut" in m.value for m in at.success)
    assert len(at.get("audio")) >= len(s.groups)  # each card plays its most typical clips

    first = s.groups[0]
    at.text_input(key=f"lab_gname_takes_{first.id}").set_value("my_sound").run()
    clean(at)
    assert lab.load_session("takes").group(first.id).name == "my_sound"

    n = len(s.groups)
    at.multiselect(key="lab_merge").set_value([s.groups[1].id, s.groups[2].id]).run()
    at.button(key="lab_merge_go").click().run()
    clean(at)
    assert len(lab.load_session("takes").groups) == n - 1
    at.button(key=f"lab_split_{s.groups[1].id}").click().run()
    clean(at)
    assert len(lab.load_session("takes").groups) == n
    last = lab.load_session("takes").groups[-1]
    at.button(key=f"lab_discard_{last.id}").click().run()
    clean(at)
    assert lab.load_session("takes").group(last.id).discarded
    clip = lab.load_session("takes").members(first.id)[0]
    at.multiselect(key="lab_move").set_value([clip.id]).run()
    at.selectbox(key="lab_move_to").set_value("new").run()
    at.text_input(key="lab_move_new").set_value("odd_one").run()
    at.button(key="lab_move_go").click().run()
    clean(at)
    s = lab.load_session("takes")
    assert s.group(s.clip(clip.id).group).name == "odd_one"

    at.text_input(key="lab_ds_name").set_value("takes_set")
    at.button(key="lab_save").click().run()
    clean(at)
    assert "takes_set" in texts(at.success)
    ds = load_dataset(home[0] / "datasets" / "takes_set")
    assert "my_sound" in ds.labels and "odd_one" in ds.labels
    assert ds.groups == ["take-0", "take-1"]  # each clip's recording is its group
    assert at.sidebar.selectbox(key="dataset").value == "takes_set"


def test_label_upload_refuses_non_audio_and_demo_recording_works(home):
    from audioclf.labelling import session as lab

    at = new_app("label")
    assert at.selectbox(key="lab_session").value == "takes"  # the newest session opens
    at.selectbox(key="lab_session").set_value("Start a new session...").run()
    at.radio(key="lab_src").set_value("Upload recordings").run()
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), 16000, format="WAV")
    at.file_uploader(key="lab_up").set_value([("notes.wav", b"not audio at all", "audio/wav"),
                                              ("quiet.wav", buf.getvalue(), "audio/wav")]).run()
    at.text_input(key="lab_name").set_value("uploads")
    at.button(key="lab_go").click().run()
    assert not at.exception, at.exception
    assert "notes.wav" in texts(at.warning)  # the bad upload is named and skipped
    assert at.error and "No clips could be cut" in texts(at.error)  # a silent recording gives no clips
    assert "uploads" not in lab.list_sessions()

    at.radio(key="lab_src").set_value("A demo recording").run()
    at.selectbox(key="lab_embedder").set_value("yamnet")
    at.text_input(key="lab_name").set_value("demo_rec")
    at.button(key="lab_go").click().run()
    clean(at)
    s = lab.load_session("demo_rec")
    assert len(s.groups) == 5 and len(s.clips) >= 15  # two minutes of the five demo sounds


@pytest.fixture(scope="module")
def small_run(home, yamnet_tflite) -> str:
    """A tiny YAMNet run on a demo data set in this module's workspace (corrections grow it)."""
    from audioclf.datasets import SplitConfig
    from audioclf.datasets.demo import make_demo_dataset
    from audioclf.features import YAMNetConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, train

    root = make_demo_dataset(home[0] / "datasets" / "fixme", clips_per_class=6)
    cfg = RunConfig(dataset=str(root), split=SplitConfig(val=0.2, test=0.3, seed=1),
                    features=YAMNetConfig(model=str(yamnet_tflite)), name="fix me",
                    model=ModelConfig(kind="baseline", dense_units=(32,)),
                    train=TrainConfig(epochs=8, patience=None, batch_size=8, learning_rate=3e-3))
    return train(cfg)


def _clip(label: str, seed: int) -> bytes:
    from audioclf.datasets.demo import synth_clip

    buf = io.BytesIO()
    sf.write(buf, synth_clip(label, np.random.default_rng([seed, 3])), 16000, format="WAV")
    return buf.getvalue()


def test_next_most_useful_lists_clips_and_moves_one(home, small_run):
    from audioclf.labelling import session as lab

    at = new_app("label")
    at.selectbox(key="lab_session").set_value("takes").run()
    at.selectbox(key="lab_run").set_value(small_run).run()
    at.number_input(key="lab_useful_n").set_value(3)
    at.button(key="lab_useful_go").click().run()
    clean(at)
    listed = [c for c in at.caption if "the model says" in c.value]
    assert 1 <= len(listed) <= 3
    clip_id = listed[0].value.split(" ")[0]
    target = lab.load_session("takes").groups[0].id
    at.selectbox(key=f"lab_useful_to_{clip_id}").set_value(target).run()
    at.button(key=f"lab_useful_mv_{clip_id}").click().run()
    clean(at)
    assert lab.load_session("takes").clip(clip_id).group == target


def test_predict_wrong_answer_is_added_and_the_retrain_shows_before_and_after(home, small_run):
    from audioclf.labelling.corrections import dataset_folder
    from audioclf.training import runs

    at = new_app("predict")
    at.selectbox(key="pr_run").set_value(small_run).run()
    at.file_uploader(key="pr_file").set_value(("mystery.wav", _clip("siren", 1), "audio/wav")).run()
    clean(at)
    said = at.metric[0].value
    other = next(lab for lab in runs.load_run(small_run).labels if lab != said)
    at.selectbox(key="pr_wrong_class").set_value(other).run()
    at.button(key="pr_wrong_add").click().run()
    clean(at)
    assert "Added to the data set" in texts(at.success)
    assert len(list((dataset_folder(small_run) / other).glob("correction-*"))) == 1
    assert at.button(key="pr_retrain").label == "Retrain with 1 correction(s)"
    at.button(key="pr_retrain").click().run()
    clean(at)
    new_run = at.selectbox(key="pr_run").value
    assert new_run != small_run and runs.load_run(new_run).info.state == "done"
    assert "Retrained as run" in texts(at.success) and "warm start" in texts(at.success)
    labels = [m.label for m in at.metric]
    assert any(lab.startswith("Macro F1 on the") for lab in labels) and "Corrections now right" in labels


def test_a_row_of_the_batch_table_can_be_corrected(home, small_run):
    from audioclf.labelling.corrections import dataset_folder
    from audioclf.training import runs

    at = new_app("predict")
    at.selectbox(key="pr_run").set_value(small_run).run()
    at.file_uploader(key="pr_batch_0").set_value([("a.wav", _clip("rain", 5), "audio/wav"),
                                                  ("b.wav", _clip("siren", 6), "audio/wav")]).run()
    at.button(key="pr_go").click().run()
    clean(at)
    at.selectbox(key="pr_fix_row").set_value(1).run()
    said = next(d.value for d in at.dataframe if "file" in d.value.columns)["predicted"].iloc[1]
    other = next(lab for lab in runs.load_run(small_run).labels if lab != said)
    at.selectbox(key="pr_fix_1_class").set_value(other).run()
    at.button(key="pr_fix_1_add").click().run()
    clean(at)
    assert "Added to the data set" in texts(at.success)
    assert any(p.read_bytes() == _clip("siren", 6) for p in (dataset_folder(small_run) / other).glob("correction-*"))


def test_corrections_in_read_only_mode_only_when_the_owner_allows(home, small_run, monkeypatch):
    monkeypatch.setenv("AUDIOCLF_READONLY", "1")
    at = new_app("predict")
    with pytest.raises(ValueError, match="navigation page"):
        at.switch_page("app_pages/label.py")
    at.file_uploader(key="pr_file").set_value(("x.wav", _clip("rain", 2), "audio/wav")).run()
    clean(at)
    assert not [b for b in at.button if b.key == "pr_wrong_add"]  # no "wrong?" control at all
    monkeypatch.setenv("AUDIOCLF_READONLY_ALLOW", "corrections")
    at = new_app("predict")
    at.file_uploader(key="pr_file").set_value(("x.wav", _clip("rain", 2), "audio/wav")).run()
    clean(at)
    assert [b for b in at.button if b.key == "pr_wrong_add"]
