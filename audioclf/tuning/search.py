"""Running a search: trials in this process or in worker processes, the final run, background searches.

    from audioclf.tuning import TuneConfig, default_space, run_study
    cfg = TuneConfig(base=RunConfig(...), space=default_space("mfcc"), trials=30)
    result = run_study(cfg)            # in this process; start_tuning(cfg) runs it in the background
    print(result.best_params, result.run_id)

When the search ends, the best trial's config is trained once more as an
ordinary run (training split, early stopping on validation) and scored once on
the test split.

Trials run in worker processes that only share the study's database: each is
``python -m audioclf.tuning --worker <study folder>``, i.e. ``optuna.load_study``
plus ``study.optimize``, so more workers (on other machines too, given a
shared database URL in ``TuneConfig.storage``) can join a study.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Callable

from .. import jobs, workspace
from ..jobs import Cancelled
from ..progress import OnEvent
from ..training import runs
from ..training.config import RunConfig
from .config import TuneConfig, TuneResult
from .objective import OutOfTime, TrialData, make_objective, prepare, search_items
from .space import TuningError, check_space
from .studies import (SEARCH_INTERRUPTED, JOURNAL, STORAGE_READY, check_idle, create_study, fail_running, leaderboard,
                      load_config, open_study, read_status, storage_url, study_dir, summarize_study, update_status)

WORKER_STOP_WAIT = 2.0  # a cancelled search waits this long for its workers, well within jobs.CANCEL_WAIT
WORKER_POLL = 0.2  # seconds between the coordinator's looks at its workers
SMALL_TRIAL_CLIPS = 3000  # up to this many training clips a trial is small: one core per trial
MIN_TRIALS_FOR_WORKERS = 4  # fewer trials run in the calling process
SEARCH_SECONDS_PER_TRIAL_MIN = 5.0  # a timeout below this per worker cannot finish a trial


def auto_workers(n_train: int, n_trials: int | None) -> int:
    """Trials at once: two single-threaded trials use two cores better than one two-threaded
    trial while models are small; big data sets get one trial with every core, and a search
    of a few trials runs in this process (a worker process costs a TensorFlow start)."""
    from ..features.cache import default_jobs

    cores = default_jobs()
    few = n_trials is not None and n_trials < MIN_TRIALS_FOR_WORKERS
    return 2 if cores >= 2 and n_train <= SMALL_TRIAL_CLIPS and not few else 1


def optimize(study: str, *, worker: int = 0, stop: Callable[[], bool] | None = None,
             target: int | None = None, deadline: float | None = None) -> None:
    """One worker: load the study from its database and run trials until the budget is used.

    `target` is the total number of trials the study should reach (all workers together);
    `deadline` a time.time() after which no trial starts and a running one stops.
    """
    import optuna

    # Every way into a search refuses in read-only mode, a worker started by hand too.
    workspace.require_writable("run a hyperparameter search")
    cfg = load_config(study)
    stop = stop or (lambda: False)
    study_obj = open_study(study, cfg, worker)
    labels, train, val = search_items(cfg)
    data = TrialData(labels, train, val)
    callbacks = []
    if target is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(target, states=None))

    def halt(study_, trial_) -> None:
        if stop() or (deadline is not None and time.time() >= deadline):
            study_.stop()
    callbacks.append(halt)
    timeout = None if deadline is None else max(0.0, deadline - time.time())
    remaining = None if target is None else max(0, target - len(study_obj.trials))
    if remaining == 0 or stop() or (timeout is not None and timeout <= 0):
        return
    study_obj.optimize(make_objective(cfg, data, stop, deadline), n_trials=remaining, timeout=timeout,
                       callbacks=callbacks, catch=(ValueError, OutOfTime), gc_after_trial=True)


def run_study(cfg: TuneConfig | None = None, study: str | None = None, *, trials: int | None = None,
              timeout: float | None = None, progress: OnEvent | None = None,
              should_stop: Callable[[], bool] | None = None, workers: int | None = None,
              final_run: bool | None = None) -> TuneResult:
    """Run a search in this process (its trials in worker processes when more than one) and
    train the best config as a run. Either a new `cfg` or an existing `study` to resume.

    Resuming adds `trials` more trials (default: the study's own count) within `timeout`.
    `progress(event)` gets {"phase": "extracting", "done", "total"}, then {"phase":
    "searching", "trials", "target", "best_value"}, then {"phase": "training"} for the
    final run. `should_stop()` is polled; when True the search ends as "cancelled".
    `final_run` overrides the config's choice of training the best config as a run.
    """
    workspace.require_writable("run a hyperparameter search")
    if study is None:
        if cfg is None:
            raise TuningError("Give a search config or the name of a study to resume.")
        study = create_study(cfg)
    else:
        check_idle(study)
    cfg = load_config(study) if cfg is None else cfg
    if final_run is not None:
        cfg = replace(cfg, final_run=bool(final_run))
    check_space(cfg.space, cfg.base, cfg.sampler)
    emit = progress or (lambda e: None)
    stop = should_stop or (lambda: False)
    path = study_dir(study)
    update_status(study, pid=os.getpid(), pid_started=jobs.process_start_time(os.getpid()),
                  started=time.time(), state="extracting", message="Extracting features", finished=None)
    t0 = time.time()
    try:
        result = _run(cfg, study, trials, timeout, emit, stop, workers, t0)
    except Cancelled:
        update_status(study, state="cancelled", message="Cancelled.", finished=time.time(),
                      search_seconds=round(time.time() - t0, 1))
        return summarize_study(study, time.time() - t0)
    except BaseException as e:
        msg = str(e) if isinstance(e, ValueError) else f"Unexpected error: {type(e).__name__}: {e}"
        update_status(study, state="failed", message=msg, finished=time.time())
        raise
    finally:
        (path / jobs.CANCEL).unlink(missing_ok=True)
    return result


def _run(cfg: TuneConfig, study: str, trials, timeout, emit, stop, workers, t0) -> TuneResult:
    import optuna

    timeout = timeout if timeout is not None else cfg.timeout
    if timeout is not None and timeout < SEARCH_SECONDS_PER_TRIAL_MIN:
        raise TuningError(f"A timeout of {timeout:g} s is too short to finish one trial; give at least "
                          f"{SEARCH_SECONDS_PER_TRIAL_MIN:g} s (most trials take tens of seconds).")

    def on_extract(done: int, total: int) -> None:
        if stop():
            raise Cancelled()
        emit({"phase": "extracting", "done": done, "total": total})
        update_status(study, done=done, total=total)

    labels, train, val = prepare(cfg, on_extract)
    if stop():
        raise Cancelled()
    study_obj = open_study(study, cfg)
    update_status(study, **{STORAGE_READY: True})  # readers may open the database now (studies.storage_ready)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study_obj)  # trials of a killed worker, when resuming
    if storage_url(study).startswith(f"{JOURNAL}:"):
        fail_running(study)  # a journal has no heartbeats; no worker runs this study yet
    before = len(study_obj.trials)
    add = trials if trials is not None else cfg.trials
    target = before + int(add) if add is not None else None
    engine = None
    if cfg.engine == "ray":
        from ..engines import get_engine

        engine = get_engine("ray", cfg.address or None)
        n_workers = int(workers or cfg.workers or engine.cpus())
    else:
        n_workers = int(workers or cfg.workers or auto_workers(len(train), None if target is None else target - before))
    if n_workers <= 1 and engine is None:
        from ..model.building import configure_tensorflow

        configure_tensorflow()  # TensorFlow's start is not part of the first trial's budget
    # The budget is for trials: extracting features (once, cached) comes before it.
    deadline = time.time() + float(timeout) if timeout is not None else None
    update_status(study, state="searching", message="Searching", n_before=before, target=target,
                  n_workers=n_workers, deadline=deadline, done=0, total=(target or 0) - before)
    t_search = time.time()
    if engine is not None:
        from .cluster import search_on_ray

        try:
            search_on_ray(engine, study, ray_worker, stop, target, deadline, n_workers,
                          report=lambda: _report(study, emit, target, before))
        finally:
            engine.close()
    elif n_workers <= 1:
        _search_here(study, cfg, emit, stop, target, deadline, before)
    else:
        _search_workers(study, emit, stop, target, deadline, before, n_workers)
    search_seconds = time.time() - t_search
    result = summarize_study(study, search_seconds)
    new = result.n_trials - before
    update_status(study, search_seconds=round(search_seconds, 1), n_trials=result.n_trials,
                  best_value=result.best_value)
    if stop():
        raise Cancelled()
    if result.best_config is None:
        if deadline is not None and time.time() >= deadline:
            raise TuningError(f"The budget of {timeout:g} s was too small to finish one trial "
                              f"({new} started, none finished). Give a longer timeout or fewer epochs.")
        raise TuningError(f"No trial finished ({result.n_pruned} pruned, {result.n_failed} failed): "
                          + _first_error(study))
    # A resumed search whose best trial is still the one trained last time keeps that run:
    # training the same config again gave a second, identical run.
    run_id = _trained_already(study, result.best_trial)
    message = f"Done: the best trial is still trial {result.best_trial}, trained before as run {run_id}" \
        if run_id else "Done"
    if run_id is None and cfg.final_run:
        run_id = _final_run(study, result, emit, stop)
    update_status(study, state="done", message=message, finished=time.time(), run_id=run_id,
                  run_trial=result.best_trial if run_id else None)
    result = summarize_study(study, search_seconds)
    return result


def ray_worker(home: str, study: str, index: int, target: int | None, deadline: float | None) -> None:
    """One trial worker as a Ray task: the study's workspace (shared with the driver), one thread."""
    os.environ[workspace.ENV_HOME] = home
    from ..model.building import configure_tensorflow

    configure_tensorflow(1)
    try:
        optimize(study, worker=index, stop=lambda: jobs.cancel_requested(study_dir(study)), target=target,
                 deadline=deadline)
    except Cancelled:
        pass


def _first_error(study: str) -> str:
    notes = [r["note"] for r in leaderboard(study) if r.get("note")]
    return notes[0] if notes else "see the log."


def _search_here(study, cfg, emit, stop, target, deadline, before) -> None:
    last = [0.0]

    def watched_stop() -> bool:
        if time.time() - last[0] > 1.0:
            last[0] = time.time()
            _report(study, emit, target, before)
        return stop()

    optimize(study, stop=watched_stop, target=target, deadline=deadline)
    _report(study, emit, target, before)


def _report(study: str, emit, target, before) -> None:
    r = summarize_study(study)
    update_status(study, done=r.n_trials - before, n_trials=r.n_trials, best_value=r.best_value,
                  n_pruned=r.n_pruned, n_complete=r.n_complete)
    emit({"phase": "searching", "trials": r.n_trials - before, "target": None if target is None else target - before,
          "best_value": r.best_value, "pruned": r.n_pruned, "complete": r.n_complete})


def _search_workers(study, emit, stop, target, deadline, before, n: int) -> None:
    path = study_dir(study)
    env = jobs.child_env(AUDIOCLF_TF_THREADS="1", OMP_NUM_THREADS="1")
    args = [*(["--target", str(target)] if target is not None else []),
            *(["--deadline", repr(deadline)] if deadline is not None else [])]
    entry = jobs.ENTRY_MODULES["search"]
    procs = [jobs.spawn(path, entry, ["--worker", "--index", str(w), *args], env) for w in range(n)]
    # Listed with their start times: a cancel from another process kills exactly these.
    update_status(study, workers=[[p.pid, jobs.process_start_time(p.pid)] for p in procs])
    last = 0.0
    try:
        while any(p.poll() is None for p in procs):
            if stop():
                (path / jobs.CANCEL).touch()
                jobs.stop_processes(procs, WORKER_STOP_WAIT)
                fail_running(study)
                raise Cancelled()
            if time.time() - last > 1.0:
                last = time.time()
                _report(study, emit, target, before)
            time.sleep(WORKER_POLL)
    finally:
        jobs.stop_processes(procs, grace=0.0 if all(p.poll() is not None for p in procs) else jobs.CANCEL_WAIT)
    _report(study, emit, target, before)
    bad = [p.returncode for p in procs if p.returncode not in (0, None)]
    if bad and summarize_study(study).n_complete == 0:
        tail = (path / jobs.LOG).read_text(errors="replace").strip().splitlines()[-3:]
        raise TuningError("The search's worker processes failed: " + " | ".join(tail))


def _trained_already(study: str, trial: int | None) -> str | None:
    """The finished run an earlier search of `study` trained from trial `trial`, if it is still there."""
    status = read_status(study)
    run_id = status.get("run_id")
    if trial is None or not run_id or status.get("run_trial") != trial:
        return None
    try:
        return run_id if runs.read_status(run_id).get("state") == "done" else None
    except (runs.RunError, OSError):  # deleted since
        return None


def _final_run(study: str, result: TuneResult, emit, stop) -> str:
    """Train the best trial's config as an ordinary run: scored once on the test split."""
    from ..training.run import train

    cfg = RunConfig.from_dict({**result.best_config, "name": f"{study} best (trial {result.best_trial})"})
    update_status(study, state="training", message=f"Training the best config (trial {result.best_trial})")
    emit({"phase": "training", "trial": result.best_trial})

    def on_progress(event: dict) -> None:
        emit({**event, "phase": "final-" + event.get("phase", "")})

    run_id = train(cfg, progress=on_progress, should_stop=stop)
    update_status(study, run_id=run_id, run_trial=result.best_trial)
    state = runs.read_status(run_id).get("state")
    if state == "cancelled":
        raise Cancelled()
    return run_id


def start_tuning(cfg: TuneConfig | None = None, study: str | None = None, *, trials: int | None = None,
                 timeout: float | None = None, name: str = "") -> str:
    """Start `run_study` in a new process (a new study from `cfg`, or resume `study`); returns its name."""
    workspace.require_writable("start a hyperparameter search")
    if study is None:
        if cfg is None:
            raise TuningError("Give a search config or the name of a study to resume.")
        check_space(cfg.space, cfg.base, cfg.sampler)
        search_items(cfg)  # fail now on a bad split or objective, not in the background
        study = create_study(cfg, name)
    else:
        check_idle(study)
        # run_id stays: the search keeps that run if its trial is still the best (see _trained_already).
        update_status(study, state="queued", message="Queued", finished=None, done=0, total=0)  # not the last search's
    args = [*(["--trials", str(int(trials))] if trials is not None else []),
            *(["--timeout", repr(float(timeout))] if timeout is not None else [])]
    jobs.start(study_dir(study), jobs.ENTRY_MODULES["search"], args)
    update_status(study, created=time.time())
    return study


def cancel_tuning(study: str, wait: float = jobs.CANCEL_WAIT) -> str:
    """Ask a search to stop; kill it (and its workers) if it has not after `wait` s. Returns its state."""
    workspace.require_writable("cancel a hyperparameter search")
    state = jobs.cancel(study_dir(study), wait, SEARCH_INTERRUPTED)
    fail_running(study)  # trials of killed workers
    return state
