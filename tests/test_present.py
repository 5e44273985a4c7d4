"""The Present and Live pages and read-only mode, driven by streamlit.testing.v1.AppTest.

A real run (the session's demo YAMNet run) is copied into this module's own
workspace; the app runs for real on it. The microphone itself needs a browser:
tests/test_live_e2e.py drives it in chromium with a fake microphone.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180
PAGES = ("present", "live", "predict", "runs", "explore", "dataset_map", "data")
# Controls that train, delete or change data sets: none may appear in read-only mode.
FORBIDDEN = ("Start training", "Cancel training", "Delete", "Delete for good", "Save recording", "Create")


@pytest.fixture(scope="module")
def home(tmp_path_factory, workspace_home, demo_run, yamnet_tflite):
    """This module's workspace, holding a copy of the demo run."""
    home = tmp_path_factory.mktemp("present_home")
    shutil.copytree(workspace_home / "runs" / demo_run, home / "runs" / demo_run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOCLF_HOME", str(home))
        mp.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
        mp.delenv("AUDIOCLF_READONLY", raising=False)
        yield home


def new_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def of_type(at: AppTest, kind: str) -> list:
    return [e for e in at.get(kind)] + [e for e in at.get("unknown") if getattr(e, "type", "") == kind]


def clean(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)


def headline(labels: list[str]) -> str:
    """ "Bird, rain, siren, speech or tone?": the Present page's title for these classes."""
    text = ", ".join(labels[:-1]) + " or " + labels[-1] + "?"
    return text[0].upper() + text[1:]


def test_present_page_shows_the_run(home, demo_run):
    from audioclf.training import runs

    run = runs.load_run(demo_run)
    at = new_app("present")
    clean(at)
    # A headline from what it tells apart, not the run's name (issue 21): that is small, below.
    assert texts(at.title) == headline(run.labels)
    assert f"Run `{demo_run}` · {run.info.name}" in texts(at.caption)
    assert "Model: Dense baseline (clip mean and std) on YAMNet features, trained on the data set `demo8`." \
        in texts(at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == str(len(run.labels))
    assert metrics["Accuracy on unseen clips"] == f"{run.metrics['test']['accuracy']:.0%}"
    assert "Macro F1 (test)" in metrics
    # One example clip per class to play, each a correctly classified held-out clip.
    examples = runs.example_clips(demo_run)
    assert set(examples) == set(run.labels)
    assert len(of_type(at, "audio")) == len(run.labels)
    markdown = texts(at.markdown)
    assert all(f"**{label}**" in markdown for label in run.labels)
    assert [t.label for t in at.tabs] == ["Upload a clip", "Record a clip", "Live microphone"]
    # No training controls on the presentation.
    assert not at.button and not at.get("form")
    # The microphone needs a browser; a simulated run says so instead of failing.
    assert "served to a browser" in texts(at.info)


def test_live_page_renders(home, demo_run):
    at = new_app("live")
    clean(at)
    assert texts(at.title) == "Live"
    assert at.selectbox(key="live_run").value == demo_run
    assert "served to a browser" in texts(at.info)


def test_read_only_pages_offer_no_training_or_destructive_action(home, demo_run, monkeypatch):
    monkeypatch.setenv("AUDIOCLF_READONLY", "1")
    at = new_app()
    clean(at)
    assert "demo yamnet" in texts(at.caption)  # read-only opens on the presentation
    for page in ("train", "tune"):  # not in the navigation at all
        with pytest.raises(ValueError, match="navigation page"):
            at.switch_page(f"app_pages/{page}.py")
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        clean(at)
        labels = [b.label for b in at.button]
        assert not [x for x in labels if x in FORBIDDEN or x.startswith("Add ")], (page, labels)
        assert not [s for s in at.selectbox if s.label == "Move to"], page  # relabelling
        if page == "data":
            assert not of_type(at, "file_uploader") and not of_type(at, "audio_input")
            assert [t.label for t in at.tabs] == ["Overview", "Browse"]
        if page in ("predict", "present"):  # a shared demo's smaller uploads, stated (issue 21)
            uploaders = [u.proto.label for u in of_type(at, "file_uploader")]
            assert uploaders and all("up to 20 MB" in x for x in uploaders), uploaders
            if page == "predict":
                assert any("at most 20 files or 100 MB at a time" in x for x in uploaders), uploaders


def test_the_same_pages_offer_them_when_writable(home, demo_run):
    """The check above can fail: without read-only mode these controls are there."""
    at = new_app("runs")
    clean(at)
    assert "Delete for good" in [b.label for b in at.button]
    at.switch_page("app_pages/data.py").run()
    assert any(b.label.startswith("Add ") for b in at.button)
    at.switch_page("app_pages/train.py").run()
    assert "Start training" in [b.label for b in at.button]


def test_with_a_password_a_session_that_did_not_sign_in_at_the_server_sees_nothing(home):
    """The sign-in is the server's (app_server.guard; tests/test_server_guard.py): a session
    without its cookie (here AppTest, which has no server) gets no password field that
    would guard only the page, and nothing of the app."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets["password"] = "open sesame"
    at.run()
    assert not at.exception
    assert texts(at.title) == "audioclf" and "server checks it" in texts(at.error)
    assert not at.text_input and not at.selectbox and not at.button  # nothing else is shown