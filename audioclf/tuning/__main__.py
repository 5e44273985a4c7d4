"""Entry point of background searches and their trial workers: ``python -m audioclf.tuning``
(started by :func:`audioclf.tuning.search.start_tuning` and by a search for its workers)."""
from __future__ import annotations

import sys

from .. import jobs
from .search import optimize, run_study


def main(argv: list[str]) -> int:
    """`python -m audioclf.tuning <study folder> [--trials N] [--timeout S]` (a whole search), or
    `python -m audioclf.tuning --worker <study folder> [--target N] [--deadline T]` (trials only)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m audioclf.tuning")
    p.add_argument("folder")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--target", type=int)
    p.add_argument("--deadline", type=float)
    p.add_argument("--trials", type=int)
    p.add_argument("--timeout", type=float)
    args = p.parse_args(argv)
    path, should_stop = jobs.enter(args.folder)
    if args.worker:
        from ..model.building import configure_tensorflow

        configure_tensorflow()
        try:
            optimize(path.name, worker=args.index, stop=should_stop, target=args.target,
                     deadline=args.deadline)
        except jobs.Cancelled:
            return 0
        return 0
    try:
        run_study(study=path.name, trials=args.trials, timeout=args.timeout, should_stop=should_stop)
    except Exception as e:  # recorded in status.json; one line for the log
        print(f"search failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
