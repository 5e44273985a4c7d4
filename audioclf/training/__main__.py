"""Entry point of a background training run: ``python -m audioclf.training RUN_DIR``
(started by :func:`audioclf.training.background.start_training`)."""
from __future__ import annotations

import sys
import time

from .. import jobs
from . import runs
from .config import RunConfig
from .run import train


def main(argv: list[str]) -> int:
    """Entry point of a background run: `python -m audioclf.training <run_dir>`."""
    path, should_stop = jobs.enter(argv[0])
    try:
        cfg = RunConfig.from_dict(jobs.read_json(path / runs.CONFIG, {}))
    except (ValueError, KeyError) as e:
        runs.update_status(path.name, state="failed", message=str(e), finished=time.time())
        return 1
    try:
        train(cfg, run_id=path.name, should_stop=should_stop)
    except Exception as e:  # already recorded in status.json; one line for the log
        print(f"training failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
