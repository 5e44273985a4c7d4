"""The one background-job protocol (audioclf.jobs): start, status, cancel and kill, with real processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audioclf import jobs
from audioclf.training import cancel_run, runs

ROOT = Path(__file__).resolve().parents[1]
SLEEPER = "import sys, time; time.sleep(60)\n"


@pytest.fixture()
def sleeper_env(tmp_path) -> dict:
    """A child environment in which `python -m sleeper FOLDER` sleeps (and ignores its folder)."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    env = jobs.child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    return env


def job_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    jobs.write_json(folder / jobs.STATUS, {"state": "queued", "created": time.time()})
    return folder


def test_children_get_this_copy_of_audioclf_first_on_their_path():
    assert jobs.child_env()["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


def test_a_job_started_here_is_owned_cancelled_killed_and_reaped(tmp_path, sleeper_env):
    folder = job_folder(tmp_path, "job")
    proc = jobs.start(folder, "sleeper", env=sleeper_env)
    status = jobs.read_status(folder)
    assert status["pid"] == proc.pid and status["state"] == "queued"
    deadline = time.time() + 30  # until the child has exec'd, its command line is still ours
    while not jobs.owns(folder, proc.pid, status["pid_started"]):
        assert time.time() < deadline
        time.sleep(0.05)
    assert not jobs.owns(job_folder(tmp_path, "other"), proc.pid, status["pid_started"])  # not that job's
    t0 = time.time()
    assert jobs.cancel(folder, wait=0.3) == "cancelled"
    assert time.time() - t0 < 10 and proc.poll() is not None  # killed, and reaped: no zombie
    assert not (folder / jobs.CANCEL).exists()


@pytest.mark.parametrize("workers", [2, "two", [[1]], [["x", "y"]], None])
def test_a_count_or_damaged_workers_entry_does_not_stop_a_cancel(tmp_path, sleeper_env, workers):
    """A search records how many workers it runs before it lists their pids; a cancel at that moment
    (or of a damaged status.json) still kills the job's own process."""
    folder = job_folder(tmp_path, "job")
    proc = jobs.start(folder, "sleeper", env=sleeper_env)
    jobs.update_status(folder, state="searching", workers=workers)
    assert jobs.cancel(folder, wait=0.3) == "cancelled"
    assert proc.poll() is not None


@pytest.mark.parametrize("pid", ["1", -1, 0, True, 2.5, [1]])
def test_a_pid_that_is_not_a_positive_integer_is_no_live_process(pid):
    assert not jobs.pid_alive(pid) and not jobs.owns(Path("/nowhere"), pid, None)


def test_a_forged_status_cannot_make_cancel_kill_another_process_group(sleeper_env):
    """status.json naming a live process (with its real start time) that the run did not start."""
    victim = subprocess.Popen([sys.executable, "-m", "sleeper", "/somewhere/else"], env=sleeper_env,
                              start_new_session=True)
    try:
        run_id = runs.create_run({"dataset": "forged"})
        runs.update_status(run_id, state="training", pid=victim.pid,
                           pid_started=jobs.process_start_time(victim.pid))
        assert runs.read_status(run_id)["state"] == "training"  # a live pid: it reads as running
        assert cancel_run(run_id, wait=0.3) == "cancelled"
        time.sleep(0.3)
        assert victim.poll() is None  # left alone
        # A reused pid (another start time) is not the run's process either.
        assert not jobs.owns(runs.run_dir(run_id), victim.pid, "1")
    finally:
        victim.kill()
        victim.wait()


def test_a_job_whose_process_died_reads_as_interrupted(tmp_path):
    folder = job_folder(tmp_path, "dead")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    jobs.update_status(folder, state="training", pid=proc.pid, pid_started="0")
    status = jobs.read_status(folder, "gone")
    assert status["state"] == "failed" and status["interrupted"] and status["message"] == "gone"


def test_one_job_at_a_time_across_runs_and_searches(tmp_path, monkeypatch):
    """Issue 21, majors 8 and 10: a run or a search in progress (or one just created, whose process
    is being started by another tab) holds the workspace's one slot; a finished one frees it."""
    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path))
    with jobs.one_at_a_time():
        pass  # nothing in progress
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    study = tmp_path / "tuning" / "s1"
    study.mkdir(parents=True)
    jobs.write_json(study / jobs.STATUS, {"state": "searching", "created": time.time(), "pid": proc.pid,
                                          "pid_started": jobs.process_start_time(proc.pid)})
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    jobs.write_json(run / jobs.STATUS, {"state": "queued", "created": time.time() + 1})
    try:
        assert [(j.kind, j.name) for j in jobs.active_jobs()] == [("run", "r1"), ("search", "s1")]
        with pytest.raises(jobs.SlotTaken, match="Run 'r1' is still queued, and one training run or search"):
            with jobs.one_at_a_time():
                pytest.fail("a job started while another was in progress")
        jobs.update_status(run, state="done")
        with pytest.raises(jobs.SlotTaken, match="Search 's1' is still searching"):
            with jobs.one_at_a_time():
                pytest.fail("a job started while a search was in progress")
    finally:
        proc.kill()
        proc.wait()
    assert jobs.active_jobs() == []  # the search's process is gone: it reads as interrupted
    with jobs.one_at_a_time():
        pass
