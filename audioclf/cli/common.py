"""What every command shares: the Command record, exit codes, errors, tables, progress, Ctrl-C.

    from audioclf.cli.common import format_table

    print(format_table([{"run": "a1", "macro_f1": 0.9375}, {"run": "b2", "macro_f1": None}]))
    # run  macro_f1
    # ---  --------
    # a1   0.938
    # b2   -

Output goes to stdout (tables, CSV or JSON, which scripts read); everything for people
(progress, notes, errors) goes to stderr. At import this needs only the standard library.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import AudioclfError

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130
FORMATS = ("table", "csv", "json")
ENGINE_CHOICES = ("local", "ray")
PROGRESS_STEPS = 10  # lines per phase when stderr is not a terminal
DATA_HELP = ("a data set: a folder with one sub-folder per class (optionally under train/ val/ test/), a .zip "
             "of one, a CSV manifest (path,label[,split][,group]), ESC-50, or the name of a workspace data set")


class CLIError(AudioclfError):
    """A command line that cannot be carried out; message is for people."""


@dataclass(frozen=True)
class Command:
    """One subcommand: `arguments(parser)` adds its options, `run(args)` returns the exit status."""

    name: str
    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------- arguments every group uses

def add_data_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help=DATA_HELP)


def add_format_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def add_engine_arguments(p) -> None:
    """--engine and --address: where the work runs (see audioclf.engines)."""
    p.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                   help="where the work runs: this machine's process pool (default) or a Ray cluster")
    p.add_argument("--address", default=None, help="the Ray cluster to join (host:port, ray://host:10001; "
                   "default $AUDIOCLF_RAY_ADDRESS, else a Ray instance on this machine)")


# ---------------------------------------------------------------- output

def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        # Scores read best as 0.937; tiny settings (l2 1e-4) must not print as 0.000.
        return f"{v:.{digits}f}" if v == 0 or abs(v) >= 10 ** -(digits - 1) else f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as an aligned plain-text table (columns: the first row's keys)."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def write_rows(rows: list[dict], format: str, out=None) -> None:
    """Rows on stdout as an aligned table, CSV (header from the first row) or a JSON list."""
    out = out or sys.stdout
    if format == "json":
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
    elif format == "csv":
        if rows:
            w = csv.DictWriter(out, fieldnames=list(rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    elif rows:
        print(format_table(rows), file=out)


def print_fields(fields: dict[str, Any], indent: str = "") -> None:
    """`name  value` lines with the values aligned."""
    width = max(map(len, fields), default=0)
    for k, v in fields.items():
        print(f"{indent}{k.ljust(width)}  {fmt(v)}")


def epoch_line(e: dict) -> str:
    """One training epoch (a history entry or a progress event) as a line."""
    parts = [f"epoch {e['epoch']}/{e['epochs']}", f"loss {e.get('loss', float('nan')):.4f}",
             f"acc {e.get('accuracy', float('nan')):.3f}"]
    if "val_loss" in e:
        parts += [f"val_loss {e['val_loss']:.4f}", f"val_acc {e.get('val_accuracy', float('nan')):.3f}"]
    return "  ".join(parts + [f"{e.get('elapsed', 0):.1f}s"])


def metrics_rows(metrics: dict) -> list[dict]:
    """A run's validation and test scores, one row per split it has."""
    return [{"split": s, "clips": (metrics.get(s) or {}).get("n"),
             "accuracy": (metrics.get(s) or {}).get("accuracy"),
             "macro_f1": (metrics.get(s) or {}).get("macro_f1")} for s in ("val", "test") if metrics.get(s)]


# ---------------------------------------------------------------- progress and interruption

class ProgressBar:
    """`done/total` on stderr: one rewritten line on a terminal, a few lines otherwise."""

    def __init__(self, label: str, quiet: bool = False):
        self.label, self.quiet = label, quiet
        self.tty = sys.stderr.isatty()
        self.last_step = -1
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or total <= 0:
            return
        elapsed = time.perf_counter() - self.t0
        text = f"{self.label}: {done}/{total} ({100 * done / total:.0f}%, {elapsed:.1f}s)"
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if done >= total else ""))
            sys.stderr.flush()
            return
        step = done * PROGRESS_STEPS // total
        if step > self.last_step:
            self.last_step = step
            err(text)


def extraction_events(quiet: bool) -> Callable[[dict], bool]:
    """A handler of the library's progress events that draws their "extracting" phase and
    says (True) that it took the event, so a command's own handler only sees the rest."""
    bar = ProgressBar("extracting features", quiet)

    def on_event(e: dict) -> bool:
        if e.get("phase") != "extracting":
            return False
        bar(int(e.get("done", 0)), int(e.get("total", 0)))
        return True
    return on_event


class StopFlag:
    """First Ctrl-C asks training to stop cleanly (run marked cancelled); the second aborts."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True
            err("\nstopping after this batch (Ctrl-C again to abort)...")
        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread (e.g. called from a test runner thread)
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False

    def __call__(self) -> bool:
        return self.stop


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with fd 2 muted: its C++ runtime logs CUDA probing there at import,
    before TF_CPP_MIN_LOG_LEVEL applies. Python errors still surface after the import."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def find_dataset(source: str):
    """A data set the way a training run finds it: a path, or the name of a workspace data set."""
    from ..training.prepare import resolve_dataset

    return resolve_dataset(source)
