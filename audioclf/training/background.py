"""Training runs in the background: start, cancel, and reap finished processes.

    run_id = start_training(cfg)   # returns at once; the run trains in its own process
    cancel_run(run_id)             # stops it within seconds
    runs.run_status(run_id)        # progress, from any process

The child runs `python -m audioclf.training RUN_DIR` (`audioclf/training/__main__.py`), in its
own process group so a cancel also ends its feature workers. A thread per
child waits for it, so a finished or cancelled run is reaped at once and a
long-lived server (the app) collects no `<defunct>` processes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .. import workspace
from . import runs

CANCEL_WAIT = 5.0  # seconds cancel_run waits for a graceful stop before killing the process
ENTRY_MODULE = "audioclf.training"  # `python -m` entry point of a background run (training/__main__.py)

_children: dict[str, subprocess.Popen] = {}
_children_lock = threading.Lock()


def start_training(cfg) -> str:
    """Start `training.train(cfg)` (a RunConfig) in a new process and return its run id at once."""
    workspace.require_writable("train a model")
    reap_children()
    run_id = runs.create_run(cfg.to_dict())
    path = runs.run_dir(run_id)
    env = {**os.environ, workspace.ENV_HOME: str(workspace.home()), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONUNBUFFERED": "1"}
    with open(path / runs.LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", ENTRY_MODULE, str(path)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # own process group: cancel kills workers too
    with _children_lock:
        _children[run_id] = proc
    # A waiting thread per child reaps it the moment it exits, whoever reads its status.
    threading.Thread(target=_reap_when_done, args=(run_id, proc), name=f"reap-{run_id}", daemon=True).start()
    runs.update_status(run_id, pid=proc.pid, pid_started=runs.process_start_time(proc.pid))
    return run_id


def _reap_when_done(run_id: str, proc: subprocess.Popen) -> None:
    proc.wait()
    with _children_lock:
        if _children.get(run_id) is proc:
            _children.pop(run_id, None)


def reap_children() -> list[str]:
    """Wait for every background run started here that has exited; returns their run ids.

    Cheap (one non-blocking poll per live child); called by start_training,
    cancel_run and run_status so finished runs never linger as zombies.
    """
    with _children_lock:
        done = [run_id for run_id, proc in _children.items() if proc.poll() is not None]
        for run_id in done:
            _children.pop(run_id, None)
    return done


def running_children() -> list[str]:
    """Run ids of background runs started by this process that are still running."""
    reap_children()
    with _children_lock:
        return list(_children)


def run_status(run_id: str) -> "runs.RunStatus":
    """`runs.run_status`, after reaping finished children (the status of a run is read often)."""
    reap_children()
    return runs.run_status(run_id)


def cancel_run(run_id: str, wait: float = CANCEL_WAIT) -> str:
    """Ask a run to stop; kill it if it has not stopped after `wait` s. Returns its final state."""
    workspace.require_writable("cancel a training run")
    path = runs.run_dir(run_id)
    status = runs.read_status(run_id)
    if status.get("state") in runs.FINAL_STATES:
        reap_children()
        return status["state"]
    (path / runs.CANCEL).touch()
    deadline = time.time() + wait
    while time.time() < deadline:
        reap_children()
        state = runs.read_status(run_id).get("state")
        if state in runs.FINAL_STATES:
            if state == "failed" and runs.read_status(run_id).get("interrupted"):
                break  # died while we waited: record it as the cancel it was
            _wait_child(run_id, wait)
            return state
        time.sleep(0.1)
    pid = status.get("pid")
    if pid and pid != os.getpid() and runs.pid_alive(pid, status.get("pid_started")):
        kill_group(pid)
    _wait_child(run_id, 2.0)
    if runs.read_json(path / runs.STATUS, {}).get("state") not in runs.FINAL_STATES:
        runs.update_status(run_id, state="cancelled", message="Cancelled.", finished=time.time())
    return runs.read_status(run_id).get("state", "cancelled")


def _wait_child(run_id: str, timeout: float) -> None:
    """Reap our child of `run_id` once it exits (it writes its final status just before)."""
    with _children_lock:
        proc = _children.get(run_id)
    if proc is None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return
    reap_children()


def kill_group(pid: int) -> None:
    """SIGTERM, then SIGKILL, the process group of `pid` (its feature workers too)."""
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                return
        end = time.time() + grace
        while time.time() < end:
            reap_children()  # our own child stays "alive" as a zombie until waited for
            if not runs.pid_alive(pid):
                return
            time.sleep(0.05)
