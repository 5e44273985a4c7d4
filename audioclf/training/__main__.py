"""Entry point of a background training run: ``python -m audioclf.training RUN_DIR``
(started by :func:`audioclf.training.background.start_training`)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .. import workspace
from . import runs
from .config import RunConfig
from .run import train


def main(argv: list[str]) -> int:
    """Entry point of a background run: `python -m audioclf.training <run_dir>`."""
    path = Path(argv[0]).resolve()
    os.environ[workspace.ENV_HOME] = str(path.parent.parent)
    cancel = path / runs.CANCEL
    try:
        cfg = RunConfig.from_dict(runs.read_json(path / runs.CONFIG, {}))
    except (ValueError, KeyError) as e:
        runs.update_status(path.name, state="failed", message=str(e), finished=time.time())
        return 1
    try:
        train(cfg, run_id=path.name, should_stop=cancel.exists)
    except Exception as e:  # already recorded in status.json; one line for the log
        print(f"training failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
