"""The real app served for browser tests and benchmarks: one way to start it, wait for it and stop it.

    server = start_app(["streamlit", "run", "app.py", ...], home=home, env=env)
    ...
    server.stop()

`start_app` runs the command (`python -m ...`) in a process group of its own, with
its output in HOME/server.log, and returns once /_stcore/health answers; a server
that exits or stays silent raises ServerDidNotStart with the log's tail. `stop`
ends the whole process group: the server and anything it started (a feature
forkserver, a training), so nothing outlives the test. `launch_chromium` starts
Debian's chromium through Playwright with the flags every test uses. For WebRTC
tests, `NetNamespace` gives server and browser a network of their own (see
tests/test_live_e2e.py for why).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# A microphone without a person: chromium grants it and plays a file (it loops the file).
FAKE_MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
START_TIMEOUT = 90  # s from the command to a healthy server
STREAMLIT_FLAGS = ["--server.headless", "true", "--browser.gatherUsageStats", "false"]


class ServerDidNotStart(RuntimeError):
    """The app exited or did not answer its health check in time; the message has its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NetNamespace:
    """A process holding a new network namespace with lo up and a veth pair addressed inside it.

    Needs root, unshare, nsenter and ip; `NetNamespace.problem()` says why not ("" when it can).
    """

    ADDRESS = "10.213.0.1/24"  # exists only inside the namespace

    @staticmethod
    def problem() -> str:
        if not shutil.which("unshare") or not shutil.which("nsenter") or not shutil.which("ip"):
            return "needs unshare, nsenter and ip (util-linux, iproute2)"
        return ""

    def __init__(self) -> None:
        script = ("set -e; ip link set lo up; ip link add v0 type veth peer name v1; "
                  f"ip addr add {self.ADDRESS} dev v0; ip link set v0 up; ip link set v1 up; "
                  "echo ready; exec sleep 3600")
        self.proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise OSError(f"cannot make a network namespace here (root needed): {self.proc.stderr.read().strip()}")

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside the namespace (nsenter execs it)."""
        return ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class AppServer:
    """A started app: its URL, workspace, process and log."""

    def __init__(self, proc: subprocess.Popen, url: str, home: Path, log: Path, started: float) -> None:
        self.proc, self.url, self.home, self.log = proc, url, home, log
        self.started = started  # time.perf_counter() before the command ran
        self.healthy = 0.0  # time.perf_counter() when the health check first answered

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 5000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the server's process group, SIGKILL after `timeout` s."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # and whatever it left in its group
        except ProcessLookupError:
            pass
        self.proc.wait()


def _healthy(url: str, netns: NetNamespace | None) -> bool:
    if netns is not None:  # the URL exists only inside the namespace: ask from there
        probe = [*netns.enter(), sys.executable, "-c",
                 f"import urllib.request; urllib.request.urlopen('{url}/_stcore/health', timeout=2)"]
        return subprocess.run(probe, capture_output=True).returncode == 0
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_app(args: list[str], *, home: Path, port: int | None = None, env: dict | None = None,
              netns: NetNamespace | None = None, timeout: float = START_TIMEOUT,
              poll: float = 0.3) -> AppServer:
    """Run `python -m <args>` from the repository with `{port}` in args filled in; wait for health.

    Parameters
    ----------
    args : list of str
        After `python -m`, e.g. ["streamlit", "run", "app.py", "--server.port", "{port}"].
    home : Path
        Where server.log goes (and, unless `env` says otherwise, AUDIOCLF_HOME).
    port : int or None
        None picks a free one.
    env : dict or None
        The server's environment (default: this process's with AUDIOCLF_HOME=home).
    netns : NetNamespace or None
        Run the server inside this network namespace.
    """
    port = port or free_port()
    env = env if env is not None else {**os.environ, "AUDIOCLF_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    cmd = [*(netns.enter() if netns else []), sys.executable, "-m",
           *[a.replace("{port}", str(port)) for a in args]]
    started = time.perf_counter()
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = AppServer(proc, f"http://127.0.0.1:{port}", home, log_path, started)
    deadline = time.time() + timeout
    while not _healthy(server.url, netns):
        if proc.poll() is not None or time.time() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"no answer in {timeout:.0f} s"
            server.stop()
            raise ServerDidNotStart(f"the app did not start ({why}):\n{server.log_tail(3000)}")
        time.sleep(poll)
    server.healthy = time.perf_counter()
    return server


def streamlit_app(*extra: str, address: bool = True) -> list[str]:
    """`streamlit run app.py` headless on {port} (and 127.0.0.1 unless address=False), then `extra`."""
    return ["streamlit", "run", "app.py", *STREAMLIT_FLAGS, "--server.port", "{port}",
            *(["--server.address", "127.0.0.1"] if address else []), *extra]


def launch_chromium(playwright, *, extra_args: tuple[str, ...] = (), netns: NetNamespace | None = None,
                    wrapper_dir: Path | None = None):
    """Debian's chromium (inside `netns` when given, through a wrapper script in `wrapper_dir`)."""
    executable = CHROMIUM
    if netns is not None:
        wrapper = Path(wrapper_dir) / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec {" ".join(netns.enter())} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        executable = str(wrapper)
    return playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args])


def have_chromium() -> bool:
    return Path(CHROMIUM).exists()
