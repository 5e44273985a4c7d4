"""Training runs in the background: start and cancel them (the job protocol of :mod:`audioclf.jobs`).

    run_id = start_training(cfg)   # returns at once; the run trains in its own process
    cancel_run(run_id)             # stops it within seconds
    runs.run_status(run_id)        # progress, from any process

The child runs `python -m audioclf.training RUN_DIR` (`audioclf/training/__main__.py`)
in its own process group, so a cancel also ends its feature workers.
"""
from __future__ import annotations

from .. import jobs, workspace
from . import runs


def start_training(cfg) -> str:
    """Start `training.train(cfg)` (a RunConfig) in a new process and return its run id at once."""
    workspace.require_writable("train a model")
    jobs.reap()
    run_id = runs.create_run(cfg.to_dict())
    jobs.start(runs.run_dir(run_id), jobs.ENTRY_MODULES["run"])
    return run_id


def cancel_run(run_id: str, wait: float = jobs.CANCEL_WAIT) -> str:
    """Ask a run to stop; kill it if it has not stopped after `wait` s. Returns its final state."""
    workspace.require_writable("cancel a training run")
    return jobs.cancel(runs.run_dir(run_id), wait, runs.RUN_INTERRUPTED)
