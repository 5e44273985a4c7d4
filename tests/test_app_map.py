"""The Map page (map, clip player, class profiles) and the Data page's Health tab, through AppTest.

Real library underneath: the synthesised demo data set, real feature
extraction and the real health check; plus a data set with one class and one
with an unreadable file and a duplicate.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from test_app import APP, TIMEOUT, texts, wav_bytes


@pytest.fixture(scope="module", autouse=True)
def app_home(tmp_path_factory, yamnet_tflite):
    home = tmp_path_factory.mktemp("map_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOCLF_HOME", str(home))
        mp.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
        yield home


def new_app(dataset: str | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if dataset:
        at.sidebar.selectbox(key="dataset").set_value(dataset).run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def table_with(at: AppTest, column: str):
    """The (last) data frame on the page that has `column`."""
    return [d.value for d in at.dataframe if column in d.value.columns][-1]


def audio_count(at: AppTest) -> int:
    return len(at.get("audio"))


@pytest.fixture(scope="module")
def oneclass(app_home):
    root = app_home / "datasets" / "oneclass" / "only"
    root.mkdir(parents=True)
    for i in range(5):
        (root / f"c{i}.wav").write_bytes(wav_bytes(300 + 70 * i))
    return root.parent


@pytest.fixture(scope="module")
def broken(app_home):
    """Two classes, a byte-identical copy under another name, a silent clip and two unreadable files."""
    root = app_home / "datasets" / "broken"
    for label, base in (("low", 250), ("high", 1800)):
        (root / label).mkdir(parents=True)
        for i in range(5):
            (root / label / f"{label}_{i}.wav").write_bytes(wav_bytes(base + 40 * i))
    shutil.copy(root / "low" / "low_0.wav", root / "low" / "again.wav")
    sf.write(root / "high" / "quiet.wav", np.zeros(16000, np.float32), 16000)
    (root / "high" / "notes.wav").write_bytes(b"this is not audio at all")
    (root / "low" / "cut.wav").write_bytes(wav_bytes(400)[:30])
    return root


def test_map_draws_the_demo_and_plays_a_chosen_clip():
    at = new_app(page="dataset_map")
    assert at.title[0].value == "Map"
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    assert audio_count(at) == 0 and "Click a point" in texts(at.info)
    assert len(at.selectbox(key="map_find").options) == 121  # "-" and the demo's 120 clips
    row = 5
    at.selectbox(key="map_find").set_value(row).run()
    assert not at.exception
    assert audio_count(at) == 1
    assert len(at.get("plotly_chart")) == 2  # + the clip's mel spectrogram


def test_class_profiles_of_the_demo():
    at = new_app(page="dataset_map")
    at.segmented_control(key="map_view").set_value("Class profiles").run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 3  # class mel profiles, feature means, ranking
    # The feature ranking table: F scores, best first.
    table = table_with(at, "ANOVA F")
    assert list(table.columns) == ["feature", "ANOVA F", "mutual information"]
    assert table["ANOVA F"].is_monotonic_decreasing


def test_map_and_profiles_of_a_one_class_data_set(oneclass):
    at = new_app("oneclass", "dataset_map")
    assert not at.error
    assert "Only one class" in texts(at.info)
    at.segmented_control(key="map_view").set_value("Class profiles").run()
    assert not at.exception and not at.error
    assert "Ranking features needs at least two classes" in texts(at.info)


def test_map_of_a_data_set_with_unreadable_files(broken):
    at = new_app("broken", "dataset_map")
    assert not at.error, texts(at.error)
    assert any("could not be read" in e.label for e in at.expander)
    assert at.get("plotly_chart")
    at.segmented_control(key="map_view").set_value("Class profiles").run()
    assert not at.exception and not at.error
    assert "2 unreadable clip(s) left out" in texts(at.caption)


def test_health_panel_lists_findings_and_fixes_them(broken):
    at = new_app("broken")
    at.button(key="hc_run").click().run()
    assert not at.exception and not at.error, texts(at.error)
    table = table_with(at, "kind")
    kinds = set(table["kind"])
    assert {"unreadable", "duplicate", "silent"} <= kinds
    assert at.metric[-3].label == "High" and int(at.metric[-3].value) >= 3
    # One click deletes the duplicate copy and the finding goes away.
    dup = next(i for i, k in enumerate(table["kind"]) if k == "duplicate")
    buttons = [b for b in at.button if b.key and b.key.startswith("hc_fix_")]
    assert buttons[dup].label == "Delete the copy"
    buttons[dup].click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert not (broken / "low" / "again.wav").exists() and (broken / "low" / "low_0.wav").exists()
    assert "duplicate" not in set(table_with(at, "kind")["kind"])
    # ... and the silent clip.
    table = table_with(at, "kind")
    silent = next(i for i, k in enumerate(table["kind"]) if k == "silent")
    [b for b in at.button if b.key and b.key.startswith("hc_fix_")][silent].click().run()
    assert not (broken / "high" / "quiet.wav").exists()


def test_health_panel_on_a_one_class_data_set(oneclass):
    at = new_app("oneclass")
    at.button(key="hc_run").click().run()
    assert not at.exception and not at.error
    assert "one_class" in set(table_with(at, "kind")["kind"])
    assert "two classes" in texts(at.info)
