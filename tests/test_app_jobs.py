"""One background job at a time, in every tab (issue 21, majors 8 and 10), driven through the real pages.

The job in progress is a real folder whose status names a live process (a
sleeping child), as a training run or a search would write it; what the pages
would start is real (a background run, a search), so a test that fails here
cancels what it started.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from test_app_defects import APP, TIMEOUT, start_from_form, texts, wav_bytes


@pytest.fixture(autouse=True)
def home(tmp_path, yamnet_tflite, monkeypatch):
    """A workspace of its own (each test's jobs are its own), and YAMNet from ../shared."""
    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path))
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    root = tmp_path / "datasets" / "tones"
    for label, base in (("low", 200), ("high", 1800)):
        (root / label).mkdir(parents=True)
        for i in range(10):
            (root / label / f"{label}{i}.wav").write_bytes(wav_bytes(base + 25 * i, seconds=0.5))
    yield tmp_path
    from audioclf import jobs, tuning
    from audioclf.training import cancel_run

    for job in jobs.active_jobs():  # what a failing test may have started
        cancel_run(job.name, wait=1) if job.kind == "run" else tuning.cancel_tuning(job.name, wait=1)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc
    proc.kill()
    proc.wait()


def live(proc) -> dict:
    from audioclf import jobs

    return {"pid": proc.pid, "pid_started": jobs.process_start_time(proc.pid), "started": time.time()}


def training_run(proc) -> str:
    from audioclf.training import runs

    run_id = runs.create_run({"dataset": "tones", "name": "first", "train": {"epochs": 200}})
    runs.update_status(run_id, state="training", epoch=2, epochs=200, **live(proc))
    return run_id


def search(proc, state: str = "extracting", **status) -> str:
    from audioclf import tuning
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf.training import RunConfig

    study = tuning.create_study(tuning.TuneConfig(
        base=RunConfig(dataset="tones", split=SplitConfig(), features=MFCCConfig()), trials=5))
    tuning.update_status(study, state=state, **live(proc), **status)
    return study


def new_app(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "tones"})
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def run_ids() -> list[str]:
    from audioclf.training import runs

    return [r.id for r in runs.list_runs()]


def test_a_refused_run_never_starts_on_its_own_and_can_be_dropped(sleeper):
    """Major 8: "still in progress ... the new one has not started", then, once the first run
    ended, the refused config started as a new run with no notice. Now it waits, shown, for a click."""
    first = training_run(sleeper)
    at = new_app("train")
    start_from_form(at)
    assert f"`{first}` is still in progress" in texts(at.warning)
    assert run_ids() == [first]

    sleeper.kill()  # the first run ends (its process is gone: it reads as failed)
    sleeper.wait()
    at.run()  # the page's next rerun, as its progress poll makes when a run ends
    assert not at.exception, at.exception
    assert run_ids() == [first], "the refused run started on its own"
    assert "has not started" in texts(at.info)
    assert at.button(key="pending_replace").label == "Start it now"

    at.button(key="pending_drop").click().run()
    assert not at.exception, at.exception
    assert "pending_run" not in at.session_state
    at.run()
    assert run_ids() == [first] and "pending_replace" not in [b.key for b in at.button]


def test_a_search_in_progress_holds_the_slot_for_training_and_for_a_second_search(sleeper):
    """Majors 8 and 10: training and tuning share one slot, whichever tab or page asks."""
    from audioclf import tuning

    study = search(sleeper)
    at = new_app("train")
    start_from_form(at)
    assert f"search `{study}`" in texts(at.warning) and "has not started" in texts(at.warning)
    assert run_ids() == []

    tune = new_app("tune")
    assert f"Search `{study}` is still extracting" in texts(tune.info)
    tune.button(key="FormSubmitter:tune_form-Start search").click().run()
    assert not tune.exception, tune.exception
    assert f"Search `{study}` is still extracting" in texts(tune.error)
    assert [s["study"] for s in tuning.list_studies()] == [study]


def test_a_training_run_in_progress_refuses_a_search(sleeper):
    from audioclf import tuning

    first = training_run(sleeper)
    tune = new_app("tune")
    tune.button(key="FormSubmitter:tune_form-Start search").click().run()
    assert not tune.exception, tune.exception
    assert f"Run `{first}` is still training" in texts(tune.error)
    assert tuning.list_studies() == []


def test_the_tune_page_reads_no_database_before_the_search_made_it_and_keeps_its_cancel(sleeper):
    """Major 10: sqlite 'table trial_user_attributes already exists' (the page's reads created
    Optuna's tables while the search process did); Cancel came back only after a reload."""
    from audioclf import tuning

    study = search(sleeper)
    tune = new_app("tune")
    assert not (tuning.study_dir(study) / "optuna.sqlite").exists()
    assert tune.button(key=f"tu_cancel_{study}").label == "Cancel search"
    assert "Starting" in " ".join(p.proto.text for p in tune.get("progress"))


def test_the_tune_progress_never_goes_negative(sleeper):
    """Major 10: StreamlitValueOutOfRangeError (a negative value) in the search's progress bar when
    its counts came from two reads (or a status ahead of the database)."""
    from audioclf.tuning import studies

    study = search(sleeper, state="searching", n_before=3, target=5, workers=1)
    studies.open_study(study)  # the database, as the search makes it: no trial in it yet
    tune = new_app("tune")
    assert not tune.exception, tune.exception
    assert "0 of 2 trials finished" in " ".join(p.proto.text for p in tune.get("progress"))
    assert tune.button(key=f"tu_cancel_{study}").label == "Cancel search"


def test_the_tune_progress_counts_this_searchs_trials_only(sleeper):
    """Issue 21, minor: "0 of 6 trials finished" counted old trials: a trial of an earlier search
    still marked running (a worker killed less than Optuna's grace period ago) hid one of this
    search's finished trials, and read as running in this search."""
    from audioclf.tuning import studies

    study = search(sleeper, state="searching", n_before=3, target=5, workers=1)
    s = studies.open_study(study)
    for value in (0.5, 0.6):  # the earlier search: two finished trials...
        s.tell(s.ask(), value)
    s.ask()  # ...and one its killed worker left running
    s.tell(s.ask(), 0.7)  # this search: one finished
    tune = new_app("tune")
    assert not tune.exception, tune.exception
    text = " ".join(p.proto.text for p in tune.get("progress"))
    assert "1 of 2 trials finished, 0 running (and 3 trials of earlier searches)" in text, text


def two_datasets(home: Path) -> None:
    """`alpha` beside the fixture's `tones`: two small two-class data sets."""
    for label, base in (("a", 300), ("b", 2500)):
        (home / "datasets" / "alpha" / label).mkdir(parents=True)
        for i in range(6):
            (home / "datasets" / "alpha" / label / f"{label}{i}.wav").write_bytes(wav_bytes(base + 30 * i, 0.5))


def ended_run(dataset: str, name: str, state: str = "cancelled") -> str:
    from audioclf.training import runs

    run_id = runs.create_run({"dataset": dataset, "name": name, "train": {"epochs": 5}})
    runs.update_status(run_id, state=state, message="Cancelled.", finished=time.time(), started=time.time() - 5)
    time.sleep(1.1)  # run ids and their order go by the second
    return run_id


def test_train_shows_the_last_run_of_the_sidebar_data_set(home):
    """Issue 21, minor: Train's "Last run" was the workspace's newest, whatever the sidebar said."""
    two_datasets(home)
    tones_run = ended_run("tones", "on tones")
    alpha_run = ended_run(str(home / "datasets" / "alpha"), "on alpha (a path, as the CLI records it)")
    at = new_app("train")  # the sidebar: tones
    labels = [e.label for e in at.expander]
    assert any(tones_run in x and "Last run on tones" in x for x in labels), labels
    assert not any(alpha_run in x for x in labels)
    at.sidebar.selectbox(key="dataset").set_value("alpha").run()
    assert any(alpha_run in e.label for e in at.expander) and not any(tones_run in e.label for e in at.expander)


def test_a_run_in_progress_on_another_data_set_is_shown_and_says_so(sleeper, home):
    two_datasets(home)
    first = training_run(sleeper)  # on tones
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "alpha"})
    at.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    assert f"Run {first}" in texts(at.subheader)  # it holds the one job slot
    assert "trains on the data set `tones`, not on the sidebar's `alpha`" in texts(at.caption)


def test_tune_shows_the_sidebar_data_sets_studies_and_its_help_keeps_its_asterisks(home):
    """Issue 21: Tune's results ignored the sidebar's data set (minor); its help lost its
    asterisks to Markdown ("*model.*" became italics, cosmetic)."""
    from audioclf import tuning
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf.training import RunConfig

    two_datasets(home)
    made = {}
    for dataset in ("tones", str(home / "datasets" / "alpha")):
        made[Path(dataset).name] = tuning.create_study(tuning.TuneConfig(
            base=RunConfig(dataset=dataset, split=SplitConfig(), features=MFCCConfig()), trials=2))
        tuning.update_status(made[Path(dataset).name], state="cancelled", finished=time.time())
    tune = new_app("tune")  # the sidebar: tones
    assert tune.selectbox(key="tu_view").options == [made["tones"]]
    assert "1 finished study of other data sets" in texts(tune.caption)
    assert "(`features.*`, `model.*`, `train.*`)" in texts(tune.caption)
    tune.sidebar.selectbox(key="dataset").set_value("alpha").run()
    assert tune.selectbox(key="tu_view").options == [made["alpha"]]


def test_tune_says_before_start_that_yamnet_is_not_set_up(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(tmp_path / "no-yamnet.tflite"))
    tune = new_app("tune")
    assert "YAMNet embeddings · not set up here" in tune.selectbox(key="tu_feat").options
    tune.selectbox(key="tu_feat").set_value("yamnet").run()
    assert not tune.exception, tune.exception
    assert "no-yamnet.tflite" in texts(tune.warning).replace("\\_", "_")
    assert tune.button(key="FormSubmitter:tune_form-Start search").disabled
