"""`engines`: where work runs (this machine, or a Ray cluster): its nodes, CPUs and running tasks."""
from __future__ import annotations

import argparse
import json

from .common import EXIT_OK, Command, add_engine_arguments, add_format_argument


def engines_arguments(p: argparse.ArgumentParser) -> None:
    add_engine_arguments(p)
    add_format_argument(p)


def run_engines(args: argparse.Namespace) -> int:
    from ..engines import get_engine

    with get_engine(args.engine, args.address) as engine:
        info = engine.describe()
    if args.format == "json":
        print(json.dumps(info.to_dict(), indent=1))
        return EXIT_OK
    print(f"engine {info.engine}" + (f" at {info.address}" if info.address else "")
          + f": {len([n for n in info.nodes if n.alive])} node(s), {info.cpus:g} CPUs"
          + (f", {info.busy_cpus:g} busy" if info.busy_cpus is not None else ""))
    for n in info.nodes:
        print(f"  {'head ' if n.is_head else 'node '}{n.host} {n.node_id[:12]}  {n.cpus:g} CPUs"
              + ("" if n.alive else "  (dead)"))
    for name in info.running:
        print(f"  running: {name}")
    return EXIT_OK


COMMANDS = (Command("engines", "where work runs: the engine's nodes, CPUs and what is running",
                    "Describe the engine: this machine (local), or the Ray cluster at --address "
                    "($AUDIOCLF_RAY_ADDRESS) with its nodes, CPUs and running tasks.", engines_arguments, run_engines),)
