"""The command line: ``python -m audioclf`` or ``audioclf``.

    audioclf demo                                   # synthesise the demo data set
    audioclf extract DATA --features mfcc           # features into the cache
    audioclf train DATA --model gru --epochs 30     # train, print epochs and test metrics
    audioclf evaluate RUN_ID                        # per-class report and confusion matrix
    audioclf evaluate DATA --cv 5                   # k-fold cross-validation of a config
    audioclf predict clip.wav folder/ clips.zip --run RUN_ID --format csv
    audioclf predict long.wav --segments --threshold 0.6  # which class when
    audioclf runs [list | show ID | compare ID ID... | delete ID... | cancel ID]
    audioclf check DATA --features yamnet           # duplicates, leakage, mislabelled clips...
    audioclf tune DATA --trials 30 --vary model.kind=gru,bilstm   # hyperparameter search
    audioclf studies [list | show STUDY | cancel STUDY | delete STUDY]
    audioclf export RUN_ID --out bundle/            # TFLite + standalone predict.py
    audioclf label recordings/ --k 5 --out sounds   # cut, group and name unlabelled audio; save a data set

A thin layer over the library, like the app: every command calls the same
functions the pages call. Errors people can fix print one line to stderr and
exit with status 1 (argparse's usage errors exit with 2).

One module per command group (``GROUPS``), each with its commands' parsers beside
their bodies and a ``COMMANDS`` tuple of :class:`~audioclf.cli.common.Command`; a new
group is one module and one line in ``GROUPS``. Options of config fields come from
:mod:`audioclf.cli.options`, output helpers from :mod:`audioclf.cli.common`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from ..errors import AudioclfError
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, CLIError, Command, err, format_table
from .options import feature_config, feature_kind, model_config, overrides, run_config, split_config, train_config

# The command groups, in the order `audioclf --help` lists them: cli/<name>.py, each with COMMANDS.
GROUPS = ("data", "engines", "train", "runs", "tune", "predict", "label", "app")
ENV_DEBUG = "AUDIOCLF_DEBUG"  # set to 1 to get tracebacks instead of one-line errors

__all__ = ["CLIError", "Command", "GROUPS", "build_parser", "commands", "feature_config", "feature_kind",
           "format_table", "main", "model_config", "overrides", "run_config", "split_config", "train_config"]


def commands() -> list[Command]:
    """Every command of every group, in help order."""
    return [c for group in GROUPS for c in importlib.import_module(f"{__name__}.{group}").COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(
        prog="audioclf", description="Classify sounds: extract features, train sequence models, "
        "evaluate and predict. Everything is stored in the workspace ($AUDIOCLF_HOME, default ./workspace).",
        epilog="Run `audioclf COMMAND --help` for the options of a command.")
    p.add_argument("--version", action="version", version=f"audioclf {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands():
        sp = sub.add_parser(command.name, help=command.help, description=command.description)
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
        command.arguments(sp)
        sp.set_defaults(func=command.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything may import TensorFlow
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `audioclf runs | head`
        sys.stderr.close()
        return EXIT_OK
    except (AudioclfError, OSError) as e:  # every library error has a message for people
        if os.environ.get(ENV_DEBUG):
            raise
        err(f"audioclf {args.command}: error: {_one_line(e)}")
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001  # a bug: still one line, with how to see more
        if os.environ.get(ENV_DEBUG):
            raise
        err(f"audioclf {args.command}: unexpected error: {type(e).__name__}: {_one_line(e)} "
            f"(set {ENV_DEBUG}=1 for the traceback)")
        return EXIT_ERROR


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    return " ".join(text.split())
