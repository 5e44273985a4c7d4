"""One background-job protocol: training runs and tuning studies are both jobs.

A job is a folder with ``status.json`` (its state, progress, and the pid and
kernel start time of the process working on it), ``log.txt`` (that process's
output) and, while it is asked to stop, a ``cancel`` file::

    proc = start(folder, "audioclf.training")      # python -m audioclf.training FOLDER, own process group
    read_status(folder, INTERRUPTED)["state"]       # "training"; "failed" once its process is gone unfinished
    cancel(folder)                                  # ask, wait, then kill what is still running

One slot: a workspace runs one background job (a training run or a search) at a
time when started through :func:`one_at_a_time`, as the app does in every tab::

    with one_at_a_time():        # SlotTaken (saying which job holds it) if one is in progress
        start_training(cfg)

The child's process group is its own, so killing it ends its feature workers
too; a thread per child reaps it the moment it exits, so a long-lived server
collects no ``<defunct>`` processes. A process is only ever killed when it is
the one the job started: its pid, its kernel start time and its command line
(which names the job folder) must all match, so a stale or forged
``status.json`` cannot make a cancel kill another process group.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import workspace
from .errors import AudioclfError

STATUS = "status.json"
LOG = "log.txt"
CANCEL = "cancel"  # its presence asks the job's process to stop
FINAL_STATES = ("done", "failed", "cancelled")
CANCEL_WAIT = 5.0  # seconds a cancel waits for a graceful stop before killing
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL, and after it
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # what a full disk (or quota) raises
INTERRUPTED = "Interrupted: the process ended without finishing (killed or crashed)."
# A job created this long ago with no process yet still counts as starting (its process is being started).
START_GRACE = 120.0
# Workspace folders holding jobs, and what a job in each is called.
JOB_FOLDERS = {"run": workspace.RUNS, "search": workspace.TUNING}
# The `python -m` entry point of each kind of job (training/__main__.py, tuning/__main__.py;
# a search's trial workers run the same one).
ENTRY_MODULES = {"run": "audioclf.training", "search": "audioclf.tuning"}
SLOT_LOCK = ".jobs.lock"  # in the workspace: held while a job is checked for and started

_children: dict[str, subprocess.Popen] = {}
_children_lock = threading.Lock()


class Cancelled(Exception):
    """Raised inside a job when its `should_stop()` said so (not an error: the job ends "cancelled")."""


@dataclass(frozen=True)
class Job:
    """A job of this workspace in progress: ``kind`` "run" or "search", its run id or study name."""
    kind: str
    name: str
    state: str
    created: float


class SlotTaken(AudioclfError):
    """A job was asked to start while another is in progress (:func:`one_at_a_time`)."""

    def __init__(self, holders: Sequence[Job]):
        self.holders = list(holders)
        super().__init__(slot_message(self.holders[0]))


# ---------------------------------------------------------------- files

def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` so readers see either the old or the new file, never half of one.

    On failure (a full disk) the temporary file is removed again and the error raised.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def overwrite_in_place(path: Path, text: str) -> bool:
    """Rewrite an existing file in its own blocks (no new file: works on a full disk when
    `text` is no longer than the file). False if it is longer or the write fails."""
    data = text.encode("utf-8")
    try:
        if len(data) > path.stat().st_size:
            return False
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
        return True
    except OSError:
        return False


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=json_default))


def json_default(o: Any) -> Any:
    """JSON for numpy values and paths (``json.dumps(..., default=json_default)``)."""
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


# ---------------------------------------------------------------- status

def update_status(folder: Path, **fields: Any) -> dict:
    """Merge `fields` into the job's status.json (written atomically).

    On a full disk a final state is still recorded, rewriting the file in place (the
    whole status compactly, or just the final fields), so the job does not read as
    killed; otherwise the error is raised.
    """
    path = Path(folder) / STATUS
    status = read_json(path, {}) or {}
    status.update(fields, updated=time.time())
    try:
        write_json(path, status)
    except OSError as exc:
        if not (is_disk_full(exc) and fields.get("state") in FINAL_STATES):
            raise
        brief = {k: status[k] for k in ("state", "message", "finished", "started", "pid", "pid_started",
                                        "updated") if k in status}
        for text in (json.dumps(status, default=json_default), json.dumps(brief, default=json_default)):
            if overwrite_in_place(path, text):
                return status
        raise
    return status


def read_status(folder: Path, interrupted: str = INTERRUPTED) -> dict:
    """status.json; a job not in a final state whose process is gone reads as "failed" (`interrupted`)."""
    path = Path(folder) / STATUS
    status = read_json(path, {}) or {}
    if status.get("state") not in FINAL_STATES and status.get("pid") \
            and not pid_alive(status["pid"], status.get("pid_started")):
        # Re-read: the process may have written its final state just before exiting.
        status = read_json(path, {}) or status
        if status.get("state") not in FINAL_STATES:
            status = {**status, "state": "failed", "message": interrupted, "interrupted": True}
    return status


def process_start_time(pid: int) -> str | None:
    """Kernel start time of `pid` (tells a reused pid apart); None off Linux or for no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int | None, started: str | None = None) -> bool:
    """True if process `pid` still runs (zombies, and a reused pid when `started` is given, count as gone)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:  # 0 and -1 would name groups
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own finished child: reap it
            return False
    except OSError:  # not our child
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except OSError:
        pass
    if started is not None:
        now = process_start_time(pid)
        if now is not None and now != started:
            return False
    return True


def owns(folder: Path, pid: int | None, started: str | None) -> bool:
    """Whether `pid` is a live process this job started: same start time, and its command line names `folder`."""
    if not pid or pid == os.getpid() or not pid_alive(pid, started):
        return False
    if not Path("/proc").is_dir():  # no way to tell a reused pid apart: trust the pid alone
        return True
    if started is None or process_start_time(pid) != started:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(str(Path(folder).resolve())) in argv


# ---------------------------------------------------------------- start, reap, kill

def child_env(**extra: str) -> dict:
    """The environment of a job's process: this workspace, and this copy of audioclf first on the path."""
    here = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, workspace.ENV_HOME: str(workspace.home()), "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONUNBUFFERED": "1", "PYTHONPATH": here + (os.pathsep + path if path else ""), **extra}


def spawn(folder: Path, module: str, args: Sequence[str] = (), env: dict | None = None) -> subprocess.Popen:
    """``python -m module FOLDER *args`` in its own process group, output to the job's log; reaped when it exits."""
    folder = Path(folder).resolve()
    with open(folder / LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, str(folder), *args], env=env or child_env(),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    key = f"{folder}#{proc.pid}"
    with _children_lock:
        _children[key] = proc
    threading.Thread(target=_reap_when_done, args=(key, proc), name=f"reap-{folder.name}", daemon=True).start()
    return proc


def start(folder: Path, module: str, args: Sequence[str] = (), env: dict | None = None) -> subprocess.Popen:
    """Start the job's process (see :func:`spawn`) and record its pid and start time in status.json."""
    (Path(folder) / CANCEL).unlink(missing_ok=True)
    proc = spawn(folder, module, args, env)
    update_status(folder, pid=proc.pid, pid_started=process_start_time(proc.pid))
    return proc


def _reap_when_done(key: str, proc: subprocess.Popen) -> None:
    proc.wait()
    with _children_lock:
        if _children.get(key) is proc:
            _children.pop(key, None)


def reap() -> int:
    """Wait for every child started here that has exited; returns how many."""
    with _children_lock:
        done = [key for key, proc in _children.items() if proc.poll() is not None]
        for key in done:
            _children.pop(key, None)
    return len(done)


def kill_group(pid: int) -> None:
    """SIGTERM, then SIGKILL, the process group led by `pid` (its feature workers too), else `pid` alone."""
    try:
        group = os.getpgid(pid) == pid
    except OSError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig) if group else os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        end = time.time() + KILL_GRACE
        while time.time() < end:
            reap()  # our own child stays "alive" as a zombie until waited for
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def stop_processes(procs: Sequence[subprocess.Popen], grace: float = CANCEL_WAIT) -> None:
    """Give our own children `grace` seconds to exit, then kill the groups of those still running."""
    end = time.time() + grace
    while time.time() < end and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            kill_group(p.pid)
        p.poll()


# ---------------------------------------------------------------- cancel

def cancel_requested(folder: Path) -> bool:
    return (Path(folder) / CANCEL).exists()


def enter(folder: str) -> tuple[Path, Callable[[], bool]]:
    """In a job's own process: its folder (the workspace it lives in becomes this process's) and its
    `should_stop()`, true once a cancel is asked for."""
    path = Path(folder).resolve()
    os.environ[workspace.ENV_HOME] = str(path.parent.parent)
    return path, lambda: cancel_requested(path)


def cancel(folder: Path, wait: float = CANCEL_WAIT, interrupted: str = INTERRUPTED) -> str:
    """Ask the job to stop; kill its processes if it has not stopped after `wait` s. Returns its final state.

    The processes killed are the job's own (`pid` in status.json) and any it
    listed as `workers` ([pid, start time] pairs), each only if :func:`owns` says so.
    """
    folder = Path(folder)
    status = read_status(folder, interrupted)
    if status.get("state") in FINAL_STATES:
        reap()
        return status["state"]
    (folder / CANCEL).touch()
    deadline = time.time() + wait
    while time.time() < deadline:
        reap()
        status = read_status(folder, interrupted)
        if status.get("state") in FINAL_STATES:
            if status.get("interrupted"):
                break  # died while we waited: record it as the cancel it was
            _wait_for_children(folder, KILL_GRACE)
            (folder / CANCEL).unlink(missing_ok=True)
            return status["state"]
        time.sleep(0.1)
    status = read_json(folder / STATUS, {}) or {}  # workers are listed once the job has started them
    unknown = False
    for pid, started in [(status.get("pid"), status.get("pid_started")), *worker_pids(status)]:
        if owns(folder, pid, started):
            kill_group(pid)
        elif pid and pid != os.getpid() and pid_alive(pid, started):
            unknown = True  # alive but not provably the job's: left alone
    _wait_for_children(folder, KILL_GRACE)
    if (read_json(folder / STATUS, {}) or {}).get("state") not in FINAL_STATES:
        update_status(folder, state="cancelled", message="Cancelled.", finished=time.time())
    if not unknown:  # else the request stays, for a job process that may yet read it
        (folder / CANCEL).unlink(missing_ok=True)
    return read_status(folder, interrupted).get("state", "cancelled")


def worker_pids(status: dict) -> list[tuple[int, str | None]]:
    """The ``[pid, start time]`` pairs a job listed as its `workers`; anything else there is ignored
    (status.json is a file on disk: a count or a damaged entry must not stop a cancel)."""
    listed = status.get("workers")
    if not isinstance(listed, list):
        return []
    return [(pid, started) for pid, started in (w for w in listed if isinstance(w, (list, tuple)) and len(w) == 2)
            if isinstance(pid, int) and not isinstance(pid, bool)]


def _wait_for_children(folder: Path, timeout: float) -> None:
    """Reap our children working on `folder` once they exit (they write their final status just before)."""
    prefix = f"{Path(folder).resolve()}#"
    with _children_lock:
        procs = [p for key, p in _children.items() if key.startswith(prefix)]
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    reap()


# ---------------------------------------------------------------- one slot

def in_progress(folder: Path, interrupted: str = INTERRUPTED) -> bool:
    """Whether the job in `folder` is still working: not final with a live process, or created
    moments ago (`START_GRACE`) with its process still being started."""
    status = read_status(folder, interrupted)
    if not status or status.get("state") in FINAL_STATES:
        return False
    return bool(status.get("pid")) or time.time() - float(status.get("created", 0)) <= START_GRACE


def active_jobs() -> list[Job]:
    """Every job of this workspace in progress (training runs and searches), newest first."""
    out = []
    for kind, sub in JOB_FOLDERS.items():
        parent = workspace.home() / sub
        for folder in parent.iterdir() if parent.is_dir() else ():
            if (folder / STATUS).is_file() and in_progress(folder):
                status = read_json(folder / STATUS, {}) or {}
                out.append(Job(kind, folder.name, str(status.get("state", "queued")),
                               float(status.get("created") or 0)))
    return sorted(out, key=lambda j: (j.created, j.name), reverse=True)


def slot_message(job: Job) -> str:
    """Why nothing else starts while `job` is in progress."""
    return (f"{job.kind.capitalize()} {job.name!r} is still {job.state}, and one training run or search runs at "
            "a time (two would each go at half speed). Wait for it to end or cancel it, then start again.")


@contextmanager
def one_at_a_time() -> Iterator[None]:
    """Start a job in this block only if no other is in progress (:class:`SlotTaken` otherwise).

    The check and the start hold a lock on the workspace, so two tabs or processes
    clicking Start at once start one job: the second sees the first's (created, so
    in progress). The library's own start functions do not check: a script may run several.
    """
    with open(workspace.home() / SLOT_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            busy = active_jobs()
            if busy:
                raise SlotTaken(busy)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
