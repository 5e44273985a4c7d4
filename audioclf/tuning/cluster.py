"""A search's trials on a Ray cluster: one task per worker, each an Optuna worker on the shared study.

Every task runs ``search.ray_worker`` (load the study from its storage, optimise),
exactly what ``python -m audioclf.tuning --worker`` does on one machine, so the
leaderboard, pruning, resume (stale trials of a killed worker are failed) and the
final run are the same. Cancelling touches the study's ``cancel`` file, which the
workers poll between batches; tasks still running after the grace period are
cancelled by force and their trials marked failed.
"""
from __future__ import annotations

import time
from typing import Callable

from .. import jobs, workspace
from ..jobs import Cancelled
from .space import TuningError
from .studies import fail_running, study_dir, summarize_study, update_status

TASK_POLL = 0.5  # seconds between looks at the tasks
REPORT_EVERY = 1.0
STOP_GRACE = 5.0


def search_on_ray(engine, study: str, worker: Callable, stop: Callable[[], bool], target: int | None,
                  deadline: float | None, n: int, *, report: Callable[[], None]) -> None:
    """Run `n` trial workers as Ray tasks until the budget is spent or `stop()`; raises Cancelled."""
    from ..engines import task_env

    home = str(workspace.home())
    env = task_env()
    tasks = engine.launch(worker, [(home, study, i, target, deadline) for i in range(n)], env=env)
    update_status(study, engine="ray", ray_workers=n, cluster=engine.describe().to_dict())
    last = 0.0
    try:
        while tasks.pending():
            if stop():
                (study_dir(study) / jobs.CANCEL).touch()
                tasks.wait(STOP_GRACE)
                tasks.cancel()
                fail_running(study)
                raise Cancelled()
            if time.time() - last > REPORT_EVERY:
                last = time.time()
                report()
            tasks.wait(TASK_POLL)
    finally:
        if tasks.pending():
            tasks.cancel()
    report()
    errors = tasks.errors()
    if errors and summarize_study(study).n_complete == 0:
        raise TuningError("The search's Ray tasks failed: " + errors[0])
