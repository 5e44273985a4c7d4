"""`app`: become the Streamlit server of the app (for this machine unless --share)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .common import EXIT_ERROR, CLIError, Command

LOCAL_ADDRESS = "127.0.0.1"  # `audioclf app` (and .streamlit/config.toml): only this machine
SHARED_ADDRESS = "0.0.0.0"  # `audioclf app --share`: every network interface
PORT = 8501
APP_PATH = Path(__file__).resolve().parents[2] / "app.py"  # the source checkout's entry point


def app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--readonly", action="store_true", help="no training, deleting or data set editing")
    p.add_argument("--port", type=int, default=PORT, help=f"(default: {PORT})")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", default=LOCAL_ADDRESS,
                       help=f"address to listen on (default: {LOCAL_ADDRESS}: only this machine)")
    where.add_argument("--share", dest="address", action="store_const", const=SHARED_ADDRESS,
                       help=f"listen on every network interface ({SHARED_ADDRESS}): other machines can "
                            "open the app; give it a password (README: Read-only mode and a password)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")


def run_app(args: argparse.Namespace) -> int:
    """Become the Streamlit server of the app (optionally read-only); does not return."""
    from .. import workspace

    if not APP_PATH.is_file():
        raise CLIError(f"The app's entry point is not at {APP_PATH}: run `audioclf app` from a source "
                         "checkout installed with `pip install -e .`.")
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--server.port", str(args.port),
           "--server.address", args.address, "--browser.gatherUsageStats", "false"]
    if args.readonly:
        from .. import limits

        env[workspace.ENV_READONLY] = "1"
        # Streamlit's own upload route then checks the read-only size too (the app's guard does first).
        cmd += ["--server.maxUploadSize", str(max(1, limits.READONLY_UPLOAD_BYTES // limits.MB))]
    if args.headless:
        cmd += ["--server.headless", "true"]
    sys.stdout.flush()
    # exec, not a child process: signals (Ctrl-C, a service manager's TERM) reach the server itself.
    os.execve(sys.executable, cmd, env)
    return EXIT_ERROR  # not reached


APP = Command("app", "start the app in the browser",
                      "Start the Streamlit app (`streamlit run app.py`), for this machine only unless --share. "
                      "--readonly makes a shared demo: nothing can be trained, deleted or added to data sets "
                      "(same as AUDIOCLF_READONLY=1), and the Present page opens first.", app_arguments, run_app)

COMMANDS = (APP,)
