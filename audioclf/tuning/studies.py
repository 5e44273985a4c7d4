"""Study folders in the workspace and the Optuna study inside each: create, read, list, delete.

A study lives in ``<workspace>/tuning/<study>/``: ``tune.json`` (the TuneConfig),
``status.json`` (state and progress, like a run's), ``optuna.sqlite`` (Optuna's
RDB storage: every trial, its parameters, per-epoch scores and state),
``log.txt`` and, while it is asked to stop, ``cancel``.
"""
from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import jobs, workspace
from ..jobs import FINAL_STATES
from ..training import runs
from .config import TuneConfig, TuneResult
from .space import TuningError

TUNE_CONFIG = "tune.json"
STUDY_DB = "optuna.sqlite"
JOURNAL = "journal"  # TuneConfig.storage for an Optuna journal file (shared disk)
JOURNAL_NAME = "optuna.journal"
HEARTBEAT = 10  # seconds; a trial silent for GRACE is failed (its worker was killed)
GRACE = 30
STOPPED_ATTR = "stopped_trials"  # study attribute: trials failed because the search was cancelled
CANCELLED_ATTR = "cancelled"  # trial attribute: the trial stopped itself because the search was cancelled
STOPPED_NOTE = "stopped: the search was cancelled"
# Optuna has no cancelled state: a trial a cancel stopped is stored FAIL and shown as this.
CANCELLED = "cancelled"
SEARCH_INTERRUPTED = "Interrupted: the search process ended without finishing (killed or crashed)."
# status.json field: the search has opened (created) the study's database, so readers may open it too.
STORAGE_READY = "storage_ready"
PRUNE_WARMUP_SHARE = 0.2  # the median pruner leaves the first fifth of the epochs alone


def tuning_dir() -> Path:
    path = workspace.home() / workspace.TUNING
    path.mkdir(parents=True, exist_ok=True)
    return path


def study_dir(study: str) -> Path:
    """The folder of an existing study; TuningError if there is none."""
    if not study or "/" in study or "\\" in study or study.startswith("."):
        raise TuningError(f"{study!r} is not a study name.")
    path = tuning_dir() / study
    if not (path / TUNE_CONFIG).is_file():
        raise TuningError(f"No study {study!r} in {tuning_dir()}.")
    return path


def list_studies() -> list[dict]:
    """Every study in the workspace, newest first: name, state, trials, best value, data set."""
    out = []
    for path in tuning_dir().iterdir():
        if (path / TUNE_CONFIG).is_file():
            st = read_status(path.name)
            cfg = jobs.read_json(path / TUNE_CONFIG, {}) or {}
            out.append({"study": path.name, "state": st.get("state", "failed"),
                        "created": st.get("created", path.stat().st_mtime),
                        "dataset": (cfg.get("base") or {}).get("dataset", ""),
                        "trials": st.get("n_trials", 0), "best_value": st.get("best_value"),
                        "run_id": st.get("run_id")})
    return sorted(out, key=lambda s: (s["created"], s["study"]), reverse=True)


def create_study(cfg: TuneConfig, name: str = "") -> str:
    """A new study folder holding `cfg`; returns its name (state "queued")."""
    from ..datasets import safe_name

    workspace.require_writable("start a hyperparameter search")
    base = safe_name(name) if name else "study-" + runs.new_run_id()
    if not base:
        raise TuningError(f"{name!r} is not usable as a study name.")
    path = tuning_dir() / base
    try:
        path.mkdir()
    except FileExistsError:
        raise TuningError(f"A study named {base!r} exists already; resume it or choose another name.") from None
    jobs.write_json(path / TUNE_CONFIG, cfg.to_dict())
    jobs.write_json(path / jobs.STATUS, {"state": "queued", "created": time.time(), "updated": time.time()})
    return base


def load_config(study: str) -> TuneConfig:
    return TuneConfig.from_dict(jobs.read_json(study_dir(study) / TUNE_CONFIG, {}) or {})


def update_status(study: str, **values: Any) -> dict:
    return jobs.update_status(study_dir(study), **values)


def read_status(study: str) -> dict:
    """status.json; a not-final study whose process is gone reads as failed (interrupted)."""
    return jobs.read_status(study_dir(study), SEARCH_INTERRUPTED)


def check_idle(study: str) -> None:
    """Refuse to run a study that another process is running (a queued one is ours to start)."""
    st = read_status(study)
    if st.get("state") not in (*FINAL_STATES, "queued", None) and st.get("pid") != os.getpid():
        raise TuningError(f"Study {study} is still {st.get('state')} in another process; wait for it, or "
                          f"cancel it (`audioclf studies cancel {study}`) first.")


def storage_ready(study: str) -> bool:
    """Whether the study's database may be opened to read it.

    Opening an Optuna storage creates its tables when they are missing; a reader doing so
    while the search process creates them makes one of the two fail ("table
    trial_user_attributes already exists"). So the search alone creates it, and readers
    wait until it has (a study without the mark: once it is searching or has ended with one).
    """
    st = read_status(study)
    if st.get(STORAGE_READY) or st.get("state") in ("searching", "training"):
        return True
    url = storage_url(study)
    on_file = not url.startswith("sqlite:///") or Path(url[len("sqlite:///"):]).is_file()
    return st.get("state") in FINAL_STATES and "n_before" in st and on_file


def storage_url(study: str, cfg: TuneConfig | None = None) -> str:
    """Where the study's trials live: `cfg.storage`, else SQLite in the study folder.

    ``journal`` means an Optuna journal file in the study folder, ``journal:PATH`` one at
    PATH: the storage for a workspace on shared disk (NFS), where SQLite's locks are not
    safe; anything else is an RDB URL (``postgresql://...``, ``sqlite:///...``).
    """
    cfg = cfg or load_config(study)
    if cfg.storage == JOURNAL:
        return f"{JOURNAL}:{study_dir(study) / JOURNAL_NAME}"
    return cfg.storage or f"sqlite:///{study_dir(study) / STUDY_DB}"


def open_storage(url: str):
    """The Optuna storage behind `url` (see `storage_url`)."""
    import warnings

    import optuna

    if url.startswith(f"{JOURNAL}:"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = url[len(JOURNAL) + 1:]
        # The open lock (O_CREAT | O_EXCL) holds on NFS, where the default symlink lock may not.
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT,
                                          grace_period=GRACE)


def _sampler(cfg: TuneConfig, worker: int = 0):
    import optuna

    seed = cfg.seed * 1000 + worker  # workers must not draw the same random points
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid() for p in cfg.space.params if not p.fixed},
                                           seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, (cfg.trials or 30) // 3)))


def _pruner(cfg: TuneConfig):
    import optuna

    steps = _max_steps(cfg)
    if cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, int(steps * PRUNE_WARMUP_SHARE)))


def _max_steps(cfg: TuneConfig) -> int:
    if cfg.objective == "cv":
        return int(cfg.folds)
    epochs = [int(cfg.base.train.epochs)]
    p = cfg.space.get("train.epochs")
    if p is not None:
        epochs += [int(v) for v in (p.choices or [p.high])]
    return max(epochs)


def open_study(study: str, cfg: TuneConfig | None = None, worker: int = 0):
    """The Optuna study (created on first use), for optimising or reading."""
    import optuna

    cfg = cfg or load_config(study)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed and pruned trials are in the leaderboard
    return optuna.create_study(study_name=study, storage=open_storage(storage_url(study, cfg)),
                               sampler=_sampler(cfg, worker), pruner=_pruner(cfg),
                               direction="maximize", load_if_exists=True)


def summarize_study(study: str, seconds: float = 0.0) -> TuneResult:
    """Counts and the best trial so far, read from the study's database (none before it exists)."""
    import optuna
    from optuna.trial import TrialState

    trials, stopped = [], set()
    if storage_ready(study):
        try:
            s = optuna.load_study(study_name=study, storage=open_storage(storage_url(study)))
            trials, stopped = s.get_trials(deepcopy=False), set(s.user_attrs.get(STOPPED_ATTR, []))
        except KeyError:
            pass
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    st = read_status(study)
    states = [trial_state(t, stopped) for t in trials] if trials else []
    return TuneResult(study=study, state=st.get("state", "failed"), n_trials=len(trials), n_complete=len(complete),
                      n_pruned=states.count("pruned"), n_failed=states.count("fail"),
                      n_cancelled=states.count(CANCELLED),
                      best_value=best.value if best else None, best_params=dict(best.params) if best else {},
                      best_trial=best.number if best else None,
                      best_config=best.user_attrs.get("config") if best else None,
                      run_id=st.get("run_id"), seconds=round(seconds or float(st.get("search_seconds", 0)), 1),
                      message=st.get("message", ""))


def trial_state(trial, stopped: set[int] = frozenset()) -> str:
    """A trial's state as people read it: Optuna's ("complete", "pruned", "fail", ...), except
    "cancelled" for a trial the search's cancel stopped (Optuna stores those as failed).

    `stopped`: the study's STOPPED_ATTR, trials failed for a cancel after their worker was killed.
    """
    from optuna.trial import TrialState

    if trial.state != TrialState.FAIL:
        return trial.state.name.lower()
    return CANCELLED if trial.user_attrs.get(CANCELLED_ATTR) or trial.number in stopped else "fail"


def leaderboard(study: str) -> list[dict]:
    """One row per trial, best first (then running, pruned, failed and cancelled ones, newest first)."""
    import optuna
    from optuna.trial import TrialState

    if not storage_ready(study):
        return []
    try:
        s = optuna.load_study(study_name=study, storage=open_storage(storage_url(study)))
    except KeyError:
        return []
    rows = []
    rank = {TrialState.COMPLETE: 0, TrialState.RUNNING: 1, TrialState.PRUNED: 2, TrialState.FAIL: 3,
            TrialState.WAITING: 5}  # cancelled (stored FAIL): 4
    stopped = set(s.user_attrs.get(STOPPED_ATTR, []))
    for t in s.get_trials(deepcopy=False):
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.datetime_start is not None:
            end = t.datetime_complete or datetime.now()
            seconds = round((end - t.datetime_start).total_seconds(), 1)
        state = trial_state(t, stopped)
        rows.append({"trial": t.number, "state": state,
                     "macro_f1": t.value if t.state == TrialState.COMPLETE else None,
                     "last_reported": last, "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
                     "seconds": seconds, **{k: v for k, v in sorted(t.params.items())},
                     "note": t.user_attrs.get("error", "") or (STOPPED_NOTE if state == CANCELLED else ""),
                     "_rank": rank.get(t.state, 5) + (state == CANCELLED)})
    rows.sort(key=lambda r: (r["_rank"], -(r["macro_f1"] or 0), -r["trial"]))
    for r in rows:
        r.pop("_rank")
    return rows


def figures(study: str, importances: bool = True) -> dict[str, Any]:
    """Optuna's plotly figures of a study: history, parallel coordinates, importances, slices.

    A figure that needs more finished trials than there are is left out.
    `importances=False` skips the one that fits a model (fANOVA): for views that
    redraw every few seconds while trials still run.
    """
    import optuna
    from optuna.trial import TrialState

    if not storage_ready(study):
        return {}
    try:
        s = optuna.load_study(study_name=study, storage=open_storage(storage_url(study)))
    except KeyError:
        return {}
    complete = [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return {}
    vis = optuna.visualization
    makers = {"Optimisation history": vis.plot_optimization_history,
              "Parallel coordinates": vis.plot_parallel_coordinate,
              "Slices": vis.plot_slice}
    if importances and len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        makers["Parameter importances"] = vis.plot_param_importances
    out = {}
    import warnings

    for title, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make(s)
            fig.update_layout(title=title, template="plotly_white")
            if make is vis.plot_optimization_history:  # its x axis counts trials: whole ticks only
                n = max(t.number for t in complete) + 1  # (tuning comes before insight: not its helper)
                fig.update_xaxes(tick0=0, dtick=max(1, -(-n // 10)), tickformat="d")
            out[title] = fig
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
    return out


def fail_running(study: str) -> int:
    """Mark the study's running trials failed (their workers were stopped); returns how many."""
    import optuna
    from optuna.trial import TrialState

    if not storage_ready(study):  # stopped before its search began: no trials
        return 0
    storage = open_storage(storage_url(study))
    try:
        s = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return 0
    stopped = []
    for t in s.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            s.tell(t.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # finished meanwhile
            continue
        stopped.append(t.number)
    if stopped:  # the leaderboard's note for them (a finished trial's own attributes are read-only)
        s.set_user_attr(STOPPED_ATTR, sorted({*s.user_attrs.get(STOPPED_ATTR, []), *stopped}))
    return len(stopped)


def delete_study(study: str) -> None:
    """Remove a study folder (refused while it runs); its best run stays."""
    import shutil

    workspace.require_writable("delete a study")
    st = read_status(study)
    if st.get("state") not in FINAL_STATES:
        raise TuningError(f"Study {study} is still {st.get('state')}; cancel it first.")
    shutil.rmtree(study_dir(study))
