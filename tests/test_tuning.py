"""Hyperparameter search: real Optuna studies with real (tiny) Keras trials on synthesised demo audio.

From the CLI (in this process, so what it reads can be watched), from the Tune page
(a background search, AppTest), resumed with more trials, cancelled; bad search
spaces fail with messages for people; the search never reads the test split.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from audioclf import jobs
from audioclf import tuning
from audioclf.datasets import SplitConfig, load_dataset, split_dataset
from audioclf.features import MFCCConfig
from audioclf.model import ModelConfig
from audioclf.training import RunConfig, TrainConfig, runs

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("siren", "rain", "bird_chirps")
SPLIT = SplitConfig(val=0.25, test=0.25, seed=0)
TINY_FLAGS = ["--rnn-units", "8", "--dense-units", "8", "--epochs", "2", "--patience", "none", "--min-epochs", "0",
              "--batch-size", "8", "--warp-augment", "none", "--reduce-lr", "none", "--val", "0.25", "--test", "0.25"]
SPACE_FLAGS = ["--space", "none", "--vary", "model.kind=gru,lstm", "--vary", "train.learning_rate=1e-3:1e-2:log"]
DEADLINE = 400  # seconds a background search may take on a busy machine


@pytest.fixture(scope="module")
def tiny(workspace_home) -> Path:
    """Three demo classes x 6 clips, as a workspace data set."""
    from audioclf import workspace
    from audioclf.datasets import make_demo_dataset

    src = make_demo_dataset(workspace_home / "tune_src", clips_per_class=6, seed=3)
    dest = workspace.datasets_dir() / "tune_tiny"
    if not dest.exists():
        for label in CLASSES:
            shutil.copytree(src / label, dest / label)
    return dest


def tiny_base(data: Path, **train) -> RunConfig:
    return RunConfig(dataset=str(data), split=SPLIT, features=MFCCConfig(),
                     model=ModelConfig(rnn_units=(8,), dense_units=(8,)),
                     train=TrainConfig(**{"epochs": 2, "patience": None, "min_epochs": 0, "batch_size": 8,
                                          "warp_augment": (), "reduce_lr": None, **train}))


def tiny_space() -> tuning.SearchSpace:
    return tuning.SearchSpace((tuning.parse_param("model.kind", "gru,lstm"),
                               tuning.parse_param("train.learning_rate", "1e-3:1e-2:log")))


def test_search_spaces_parse_and_apply():
    p = tuning.parse_vary("train.learning_rate=1e-4:1e-2:log")
    assert (p.low, p.high, p.log) == (1e-4, 1e-2, True) and p.describe() == "0.0001:0.01:log"
    assert tuning.parse_vary("train.patience=5,10,none").choices == (5, 10, None)
    assert tuning.parse_vary("model.dropout=0:0.5:0.1").grid() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    base = RunConfig(dataset="x", split=SPLIT, features=MFCCConfig())
    cfg = tuning.apply_params(base, {"model.kind": "bilstm", "model.rnn_layers": 2, "model.rnn_units": 32,
                                     "train.batch_size": 16, "features.deltas": True})
    assert cfg.model.kind == "bilstm" and cfg.model.rnn_units == (32, 32)
    assert cfg.train.batch_size == 16 and cfg.features.deltas is True
    # Untouched settings keep the base config's values (the library's defaults).
    assert cfg.model.dropout == ModelConfig().dropout and cfg.train.epochs == TrainConfig().epochs
    for kind in ("mfcc", "spectral", "yamnet"):
        from audioclf.features import CONFIG_TYPES

        tuning.check_space(tuning.default_space(kind), replace_features(base, CONFIG_TYPES[kind]()))


def replace_features(base, feats):
    from dataclasses import replace

    return replace(base, features=feats)


@pytest.mark.parametrize("space, sampler, message", [
    ([], "tpe", "nothing varies"),
    (["model.kind=gru"], "tpe", "nothing varies"),
    (["model.lr=1e-3:1e-2"], "tpe", "Unknown search setting 'model.lr'"),
    (["train.learning_rate=1e-2:1e-4:log"], "tpe", "is empty (low above high)"),
    (["model.l2=0:1e-2:log"], "tpe", "log range must be above 0"),
    (["model.kind=gru,transformer"], "tpe", "model.kind=transformer cannot be used: Unknown model kind"),
    (["model.dropout=0.1,1.5"], "tpe", "Dropout must be in [0, 1)"),
    (["model.kind=baseline", "model.rnn_units=8,16"], "tpe", "which has no recurrent layers"),
    (["features.kind=yamnet", "features.n_mfcc=13,20"], "tpe", "does not apply to yamnet features"),
    (["features.kind=mfcc:yamnet"], "tpe", "a range needs two numbers"),
    (["model.dropout=0:0.5:0.9"], "tpe", "larger than the range"),
])
def test_bad_search_spaces_give_clear_errors(space, sampler, message):
    base = RunConfig(dataset="x", split=SPLIT, features=MFCCConfig())
    with pytest.raises(tuning.TuningError, match=re.escape(message)):
        s = tuning.SearchSpace()
        for text in space:
            s = s.with_param(tuning.parse_vary(text))
        tuning.check_space(s, base, sampler)


def test_bad_budgets_objectives_and_data_give_clear_errors(tiny):
    base = tiny_base(tiny)
    with pytest.raises(tuning.TuningError, match="Give a budget"):
        tuning.TuneConfig(base=base, space=tiny_space(), trials=None, timeout=None)
    with pytest.raises(tuning.TuningError, match="Unknown sampler"):
        tuning.TuneConfig(base=base, space=tiny_space(), sampler="bayes")
    # 4 clips per class outside the test split cannot make 3 folds of 2 per class.
    with pytest.raises(tuning.TuningError, match="too small for 3-fold cross-validation"):
        tuning.search_items(tuning.TuneConfig(base=base, space=tiny_space(), objective="cv", folds=3))
    no_val = RunConfig(dataset=str(tiny), split=SplitConfig(val=0.0, test=0.25), features=MFCCConfig())
    with pytest.raises(tuning.TuningError, match="needs validation clips"):
        tuning.search_items(tuning.TuneConfig(base=no_val, space=tiny_space()))
    # A budget too small to finish one trial is said so, before TensorFlow is started.
    with pytest.raises(tuning.TuningError, match="too short to finish one trial"):
        tuning.run_study(tuning.TuneConfig(base=base, space=tiny_space(), trials=None, timeout=1, workers=1))


def test_cli_search_resumes_and_never_reads_the_test_split(tiny, monkeypatch, capsys):
    import audioclf.features as features
    import audioclf.training.run as training
    from audioclf.cli import main

    seen: list[tuple[str, set[str]]] = []
    phase = ["search"]
    real_extract, real_train = features.extract_many, training.train

    def watched_extract(paths, config, **kw):
        seen.append((phase[0], {str(Path(p).resolve()) for p in paths}))
        return real_extract(paths, config, **kw)

    def watched_train(cfg, **kw):
        phase[0] = "final run"
        return real_train(cfg, **kw)

    monkeypatch.setattr(features, "extract_many", watched_extract)
    monkeypatch.setattr(training, "train", watched_train)
    args = ["tune", str(tiny), *TINY_FLAGS, *SPACE_FLAGS, "--trials", "3", "--workers", "1", "--study", "cli",
            "--format", "json", "-q"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)[0]
    assert out["state"] == "done" and out["n_trials"] == 3 and out["n_complete"] + out["n_pruned"] == 3
    assert set(out["best_params"]) == {"model.kind", "train.learning_rate"}
    assert 0.0 <= out["best_value"] <= 1.0
    # Every trial reported its validation macro F1 per epoch (what the pruner reads).
    board = out["leaderboard"]
    assert len(board) == 3 and all(r["last_reported"] is not None for r in board)
    # The best config became a saved run, scored once on the test split.
    run = runs.load_run(out["run_id"])
    assert run.info.state == "done" and run.metrics["test"]["n"] > 0
    assert run.config["model"]["kind"] == out["best_params"]["model.kind"]
    # Nothing the search extracted belongs to the test split; the final run did read it.
    test_paths = {str(it.path.resolve()) for it in split_dataset(load_dataset(tiny), SPLIT).test}
    searched = set().union(*(p for ph, p in seen if ph == "search"))
    assert searched and not searched & test_paths
    assert test_paths <= set().union(*(p for ph, p in seen if ph == "final run"))

    # Resumed with one more trial: the study grows to four, in the same database.
    assert main(["tune", "--resume", "cli", "--trials", "1", "--workers", "1", "--no-run", "--format", "json",
                 "-q"]) == 0
    again = json.loads(capsys.readouterr().out)[0]
    assert again["n_trials"] == 4 and again["state"] == "done"
    assert (tuning.study_dir("cli") / tuning.studies.STUDY_DB).is_file()
    assert main(["studies", "show", "cli", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 4
    # Its history's trial axis ticks whole trials (Optuna's own read 0, 0.5, 1, ...; issue 21).
    axis = tuning.studies.figures("cli", importances=False)["Optimisation history"].layout.xaxis
    assert (axis.tick0, axis.dtick, axis.tickformat) == (0, 1, "d")


def test_cv_objective_never_trains_or_early_stops_on_the_fold_it_scores(workspace_home, monkeypatch):
    """Each fold fits with a validation part held out of its own training clips; the scored fold stays unseen."""
    from audioclf.datasets import make_demo_dataset
    from audioclf.tuning import objective

    data = make_demo_dataset(workspace_home / "tune_cv", clips_per_class=8, seed=5)
    base = replace_split(tiny_base(data, patience=1), SplitConfig(val=0.25, test=0.2, seed=0))
    cfg = tuning.TuneConfig(base=base, space=tiny_space(), objective="cv", folds=2, trials=1, workers=1,
                            final_run=False)
    fits, real_fit = [], objective.fit

    def watched_fit(model_cfg, train_cfg, train, val, n_classes, **kw):
        fits.append((set(train.paths), set(val.paths) if val is not None else set()))
        return real_fit(model_cfg, train_cfg, train, val, n_classes, **kw)

    monkeypatch.setattr(objective, "fit", watched_fit)
    result = tuning.run_study(cfg)
    assert result.n_complete == 1 and 0.0 <= result.best_value <= 1.0
    labels, train, val = tuning.search_items(cfg)
    folds = objective.search_folds(cfg, train + val)
    assert len(fits) == len(folds) == 2
    for (fit_train, fit_val), fold in zip(fits, folds):
        scored = {str(it.path) for it in fold.test}
        assert fit_val, "early stopping needs a validation part"
        assert not fit_val & scored and not fit_train & scored
        assert fit_val <= {str(it.path) for it in fold.train}


def replace_split(base, split):
    from dataclasses import replace

    return replace(base, split=split)


def test_cancel_stops_a_background_search_within_seconds(tiny):
    cfg = tuning.TuneConfig(base=tiny_base(tiny, epochs=500), space=tiny_space(), trials=40, workers=2)
    study = tuning.start_tuning(cfg)
    deadline = time.time() + DEADLINE
    while not any(r["state"] == "running" for r in tuning.leaderboard(study)):
        assert time.time() < deadline, tuning.read_status(study)
        assert tuning.read_status(study)["state"] not in jobs.FINAL_STATES, tuning.read_status(study)
        time.sleep(0.5)
    status = tuning.read_status(study)
    t0 = time.time()
    assert tuning.cancel_tuning(study) == "cancelled"
    assert time.time() - t0 < 10
    pids = [status["pid"], *(pid for pid, _ in tuning.read_status(study).get("workers", []))]
    assert len(pids) == 3  # the search and its two workers
    while any(jobs.pid_alive(pid) for pid in pids):  # exiting (TensorFlow's threads) takes a moment
        assert time.time() - t0 < 15, [pid for pid in pids if jobs.pid_alive(pid)]
        time.sleep(0.2)
    board = tuning.leaderboard(study)
    assert all(r["state"] != "running" for r in board)
    # The trials the cancel stopped say so (Optuna stores them failed; they read `fail` before).
    assert any(r["state"] == "cancelled" for r in board) and all(r["state"] != "fail" for r in board), board
    result = tuning.summarize_study(study)
    assert result.run_id is None and result.n_failed == 0 and result.n_cancelled >= 1


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_tune_page_runs_a_search_and_opens_the_best_config_in_the_train_form(tiny):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.selectbox(key="dataset").set_value(tiny.name).run()
    at.switch_page("app_pages/tune.py").run()
    assert not at.exception, at.exception
    at.number_input(key="tu_trials").set_value(3)
    at.number_input(key="tu_epochs").set_value(2)
    at.slider(key="tu_val").set_value(0.25)
    at.slider(key="tu_test").set_value(0.25)
    at.button(key="FormSubmitter:tune_form-Start search").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    study = at.session_state["active_study"]
    deadline = time.time() + DEADLINE
    while tuning.read_status(study).get("state") not in jobs.FINAL_STATES:
        assert time.time() < deadline, tuning.read_status(study)
        time.sleep(1)
    assert tuning.read_status(study)["state"] == "done", tuning.read_status(study)
    # A search that ended on its own is reaped: no <defunct> child left in the app's server.
    pid, end = tuning.read_status(study)["pid"], time.time() + 15
    while _is_zombie(pid) and time.time() < end:
        time.sleep(0.2)
    assert not _is_zombie(pid)
    # Coming back to the page shows the finished study: leaderboard, figures, the best run.
    at.run()
    assert not at.exception, at.exception
    result = tuning.summarize_study(study)
    assert result.n_trials == 3 and result.run_id
    assert any(result.run_id in s.value for s in at.success)
    assert at.get("plotly_chart") and at.dataframe
    at.button(key=f"tu_open_{study}").click().run()
    assert not at.exception, at.exception
    assert any("The form holds the configuration" in i.value for i in at.info)
    assert at.selectbox(key="tr_model").value == result.best_config["model"]["kind"]
    assert at.select_slider(key="tr_lr").value == pytest.approx(result.best_config["train"]["learning_rate"])
    assert at.number_input(key="tr_epochs").value == 2


def test_a_yamnet_search_from_the_tune_page_uses_yamnets_defaults(tiny, yamnet_tflite, monkeypatch):
    """The page's base run takes the feature type's defaults (as `audioclf tune --features yamnet` does)."""
    from streamlit.testing.v1 import AppTest

    from audioclf.features import YAMNetConfig
    from audioclf.training import resolve_settings

    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.selectbox(key="dataset").set_value(tiny.name).run()
    at.switch_page("app_pages/tune.py").run()
    at.selectbox(key="tu_feat").set_value("yamnet").run()
    model, train = resolve_settings("yamnet")
    assert at.number_input(key="tu_epochs").value == train.epochs
    at.number_input(key="tu_trials").set_value(1)
    at.number_input(key="tu_epochs").set_value(3)
    at.slider(key="tu_val").set_value(0.25)
    at.slider(key="tu_test").set_value(0.25)
    at.button(key="FormSubmitter:tune_form-Start search").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    study = at.session_state["active_study"]
    try:
        base = tuning.load_config(study).base
        assert isinstance(base.features, YAMNetConfig)
        assert base.model == model and base.train == resolve_settings("yamnet", {"train.epochs": 3})[1]
        mfcc_train = resolve_settings("mfcc")[1]
        assert (base.train.min_epochs, base.train.warp_augment) != (mfcc_train.min_epochs, mfcc_train.warp_augment)
    finally:
        tuning.cancel_tuning(study)


def test_a_timeout_that_cannot_finish_one_trial_is_a_clear_error(tiny):
    cfg = tuning.TuneConfig(base=tiny_base(tiny, epochs=5000), space=tiny_space(), trials=None, timeout=6,
                            workers=1)
    t0 = time.time()
    with pytest.raises(tuning.TuningError, match="too small to finish one trial"):
        tuning.run_study(cfg)
    assert time.time() - t0 < 60  # the running trial was stopped at the deadline, not after 5000 epochs
    study = tuning.list_studies()[0]["study"]
    assert tuning.read_status(study)["state"] == "failed"
    board = tuning.leaderboard(study)
    assert board and all(r["state"] == "fail" for r in board)
    assert "time budget" in board[0]["note"]


def test_a_study_running_elsewhere_is_not_run_twice(tiny):
    import os

    study = tuning.create_study(tuning.TuneConfig(base=tiny_base(tiny), space=tiny_space(), trials=3))
    tuning.update_status(study, state="searching", pid=os.getppid())  # a live process that is not us
    for start in (lambda: tuning.run_study(study=study), lambda: tuning.start_tuning(study=study)):
        with pytest.raises(tuning.TuningError, match="still searching in another process"):
            start()
    tuning.update_status(study, state="cancelled")
    assert tuning.delete_study(study) is None and study not in [s["study"] for s in tuning.list_studies()]


def test_a_study_on_a_journal_file_runs_resumes_and_lists(tiny, capsys):
    """`--storage journal` (shared disk, where SQLite's locks are unsafe): the same search, resumable."""
    from audioclf.cli import main

    args = ["tune", str(tiny), *TINY_FLAGS, *SPACE_FLAGS, "--trials", "2", "--workers", "2", "--study", "journal",
            "--storage", "journal", "--no-run", "--format", "json", "-q"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)[0]
    assert out["state"] == "done" and out["n_trials"] == 2
    folder = tuning.study_dir("journal")
    assert (folder / tuning.studies.JOURNAL_NAME).stat().st_size > 0
    assert not (folder / tuning.studies.STUDY_DB).exists()
    import optuna

    url = tuning.studies.storage_url("journal")
    left = optuna.load_study(study_name="journal", storage=tuning.studies.open_storage(url)).ask()  # a killed worker's
    assert main(["tune", "--resume", "journal", "--trials", "1", "--workers", "1", "--no-run", "--format", "json",
                 "-q"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n_trials"] == 4
    trials = optuna.load_study(study_name="journal", storage=tuning.studies.open_storage(url)).trials
    assert trials[left.number].state == optuna.trial.TrialState.FAIL  # no heartbeat: failed on resume
    assert sum(t.state.is_finished() for t in trials) == 4
    assert main(["studies", "show", "journal", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 4


def test_a_trial_stopped_by_a_cancel_in_this_process_reads_cancelled_not_fail(tiny):
    """Issue 21, minor: the search's own cancel showed its running trial as `fail`."""
    cfg = tuning.TuneConfig(base=tiny_base(tiny, epochs=500), space=tiny_space(), trials=3, workers=1,
                            final_run=False)
    study = tuning.create_study(cfg)

    def a_trial_runs() -> bool:  # polled every batch: cancel as soon as a trial trains
        return any(r["state"] == "running" for r in tuning.leaderboard(study))

    result = tuning.run_study(study=study, should_stop=a_trial_runs)
    assert result.state == "cancelled"
    board = tuning.leaderboard(study)
    assert [r["state"] for r in board] == ["cancelled"], board
    assert board[0]["note"] == tuning.studies.STOPPED_NOTE
    assert (result.n_cancelled, result.n_failed) == (1, 0)


def test_a_resumed_search_keeps_the_run_of_a_best_trial_it_did_not_beat(tiny, monkeypatch):
    """Issue 21, minor: resuming a study retrained the same best trial as a second, identical run."""
    from audioclf.tuning import search

    cfg = tuning.TuneConfig(base=tiny_base(tiny), space=tiny_space(), trials=2, workers=1)
    first = tuning.run_study(cfg)
    study, run_id = first.study, first.run_id
    assert run_id
    real = search.make_objective

    def scores_nothing(*args, **kw):  # the resumed trial trains for real, and is worse than any
        objective = real(*args, **kw)
        return lambda trial: objective(trial) * 0.0 - 1.0

    monkeypatch.setattr(search, "make_objective", scores_nothing)
    again = tuning.run_study(study=study, trials=1, workers=1)
    assert again.state == "done" and again.n_trials == 3 and again.best_trial == first.best_trial
    assert [r.id for r in runs.list_runs() if r.name.startswith(f"{study} best")] == [run_id]
    assert again.run_id == run_id
    assert f"still trial {first.best_trial}" in tuning.read_status(study)["message"]
    # A run deleted since is trained again.
    runs.delete_run(run_id)
    third = tuning.run_study(study=study, trials=1, workers=1)
    assert third.run_id and third.run_id != run_id and runs.read_status(third.run_id)["state"] == "done"
