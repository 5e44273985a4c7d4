"""Hyperparameter search: `tune` (an Optuna study, here or in the background) and `studies`."""
from __future__ import annotations

import argparse
import time
from typing import Callable

from .. import jobs
from .common import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, CLIError, Command, StopFlag, add_engine_arguments,
                     add_format_argument, err, extraction_events, fmt, format_table, import_tensorflow_quietly,
                     write_rows)
from .options import add_run_arguments, chosen, run_config

STUDY_ACTIONS = ("list", "show", "cancel", "delete")
TOP = 10  # leaderboard rows printed by default


# ---------------------------------------------------------------- tune

def tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", metavar="DATA", help="a data set, as for `train`")
    g = p.add_argument_group("search")
    g.add_argument("--trials", type=int, help="trials to run (default: 30 unless --timeout is given; "
                   "with --resume: the study's own number more)")
    g.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the search after this long")
    g.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe", help="(default: %(default)s)")
    g.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                   help="stop hopeless trials early (default: %(default)s)")
    g.add_argument("--objective", choices=("val", "cv"), default="val",
                   help="val: validation macro F1; cv: mean macro F1 of k folds of the non-test clips, "
                        "for small data sets (default: %(default)s)")
    g.add_argument("--folds", type=int, default=3, help="k for --objective cv (default: %(default)s)")
    g.add_argument("--space", choices=("default", "none"), default="default",
                   help="start from the feature type's default search space, or from nothing (default: "
                        "%(default)s)")
    g.add_argument("--vary", action="append", metavar="NAME=VALUES",
                   help="add or change a searched setting: a list (model.kind=gru,bilstm), a range "
                        "(model.dropout=0:0.5), a log range (train.learning_rate=1e-4:1e-2:log) or a stepped "
                        "range (model.dropout=0:0.5:0.1); one value fixes it. Repeatable. Settings: "
                        "features.*, model.* (model.rnn_layers, model.rnn_units, model.dense_layers, "
                        "model.dense_units), train.*")
    g.add_argument("--fix", action="append", metavar="NAME", help="do not search this setting of the "
                   "default space; the base config's value is used. Repeatable")
    add_engine_arguments(g)
    g.add_argument("--workers", type=int, help="trials at once (default: 2 on a multi-core machine for small "
                   "data sets, else 1)")
    g.add_argument("--storage", default="", metavar="URL",
                   help="where the trials live: an Optuna RDB URL (postgresql://...), 'journal' (a journal file "
                        "in the study folder: for a workspace on shared disk such as NFS) or journal:PATH "
                        "(default: SQLite in the study folder)")
    g.add_argument("--study", help="a name for the new study (default: study-<time>)")
    g.add_argument("--resume", metavar="STUDY", help="continue this study with more trials")
    g.add_argument("--no-run", action="store_true", help="do not train the best config as a run")
    g.add_argument("--background", action="store_true", help="search in a separate process; print the study name")
    _add_top(g, "leaderboard rows to print, 0 for all")
    p.add_argument("--name", default="", help=argparse.SUPPRESS)
    add_format_argument(p)
    add_run_arguments(p)


def _add_top(p, help_: str) -> None:
    p.add_argument("--top", type=int, default=TOP, help=f"{help_} (default: %(default)s)")


def _tune_config(args: argparse.Namespace):
    """The TuneConfig of the options: a base run config (Auto decided now) and the space to search."""
    from .. import tuning

    base = chosen(run_config(args))
    space = tuning.default_space(base.features.kind) if args.space == "default" else tuning.SearchSpace()
    for text in args.vary or []:
        space = space.with_param(tuning.parse_vary(text))
    for name in args.fix or []:
        space = space.without(name)
    trials = args.trials if args.trials is not None or args.timeout is not None else tuning.TuneConfig.trials
    cfg = tuning.TuneConfig(base=base, space=space, objective=args.objective, folds=args.folds,
                            trials=trials, timeout=args.timeout, sampler=args.sampler, pruner=args.pruner,
                            workers=args.workers, seed=base.train.seed, final_run=not args.no_run,
                            engine=args.engine or "local", address=args.address or "",
                            storage=args.storage)
    tuning.check_space(cfg.space, cfg.base, cfg.sampler)
    tuning.search_items(cfg)  # a bad split or objective fails before anything is written
    return cfg


def _tune_progress(quiet: bool) -> Callable[[dict], None]:
    extracting = extraction_events(quiet)
    last: list = [None]

    def on_event(e: dict) -> None:
        if extracting(e) or quiet:
            return
        if e.get("phase") == "searching":
            key = (e.get("trials"), e.get("complete"), e.get("pruned"), e.get("best_value"))
            if key != last[0]:
                last[0] = key
                target = e.get("target")
                err(f"trials {e.get('trials')}{'/' + str(target) if target else ''}: "
                    f"{e.get('complete')} finished, {e.get('pruned')} pruned, best val macro F1 "
                    f"{fmt(e.get('best_value'))}")
        elif e.get("phase") == "training":
            err(f"training the best config (trial {e.get('trial')}) as a run...")
    return on_event


def run_tune(args: argparse.Namespace) -> int:
    from .. import tuning, workspace

    workspace.require_writable("run a hyperparameter search")  # before a word about the study
    if args.resume:
        if args.data:
            raise CLIError("--resume continues a study with its own data set and settings; drop DATA.")
        study, cfg = args.resume, None
        tuning.study_dir(study)
    elif not args.data:
        raise CLIError("give a data set (DATA), or --resume STUDY")
    else:
        study, cfg = None, _tune_config(args)
    if args.background:
        name = tuning.start_tuning(cfg, study, trials=args.trials if study else None,
                                   timeout=args.timeout if study else None, name=args.study or "")
        print(name)
        err(f"searching in the background; follow it with `audioclf studies show {name}`, "
            f"stop it with `audioclf studies cancel {name}`")
        return EXIT_OK
    if study is None:
        study = tuning.create_study(cfg, args.study or "")
    err(f"study {study} (in {tuning.study_dir(study)})")
    import_tensorflow_quietly()
    with StopFlag() as stop:
        result = tuning.run_study(study=study, trials=args.trials if cfg is None else None,
                                  timeout=args.timeout if cfg is None else None,
                                  progress=_tune_progress(args.quiet), should_stop=stop, workers=args.workers,
                                  final_run=False if args.no_run else None)
    _print_study(study, result, args.format, args.top)
    if result.state == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.state == "done" else EXIT_ERROR


def _print_study(study: str, result, format: str, top: int) -> None:
    from .. import tuning
    from ..training import runs

    board = tuning.leaderboard(study)
    test = None
    if result.run_id:
        test = (runs.load_run(result.run_id).metrics.get("test") or {}).get("macro_f1")
    if format == "json":
        write_rows([{**result.to_dict(), "test_macro_f1": test, "leaderboard": board}], "json")
        return
    if format == "csv":
        write_rows(board, "csv")
        return
    shown = board[:top] if top else board
    if shown:
        print(format_table(shown, [c for c in shown[0] if c != "note"]))
    note = f" ({result.message})" if result.message not in ("", "Done") else ""
    print(f"\nstudy      {study}: {result.state}{note}")
    print(f"trials     {result.n_trials} ({result.n_complete} finished, {result.n_pruned} pruned, "
          f"{result.n_failed} failed)" + (f"; the last search took {result.seconds:.0f} s"
                                          if result.state in jobs.FINAL_STATES else ""))
    if result.best_trial is not None:
        print(f"best       trial {result.best_trial}: val macro F1 {fmt(result.best_value)}")
        for k, v in sorted(result.best_params.items()):
            print(f"  {k}  {fmt(v, 4)}")
    if result.run_id:
        print(f"run        {result.run_id}: test macro F1 {fmt(test)} (see `audioclf runs show {result.run_id}`)")


TUNE = Command("tune", "search hyperparameters with Optuna",
               "Search for the settings that score best on the validation split (or in k-fold "
               "cross-validation of the non-test clips), with Optuna: TPE by default, hopeless trials pruned "
               "from their per-epoch validation macro F1. The test split is never seen by the search; the best "
               "config is then trained as a run and scored once on it. The study is kept in the workspace "
               "(tuning/STUDY/): --resume STUDY adds trials. The split, feature, model and training options "
               "set the base config that the search varies. Ctrl-C stops cleanly.", tune_arguments, run_tune)


# ---------------------------------------------------------------- studies

def studies_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=STUDY_ACTIONS, default="list")
    p.add_argument("ids", nargs="*", metavar="STUDY")
    _add_top(p, "leaderboard rows, 0 for all")
    add_format_argument(p)


def run_studies(args: argparse.Namespace) -> int:
    from .. import tuning

    if args.action == "list":
        if args.ids:
            raise CLIError("`studies list` takes no names; use `studies show STUDY`.")
        rows = tuning.list_studies()
        if args.format == "table":
            rows = [{**r, "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))} for r in rows]
        if rows:
            write_rows(rows, args.format)
        else:
            err("no studies yet")
        return EXIT_OK
    if not args.ids:
        raise CLIError(f"`studies {args.action}` needs at least one study name (see `audioclf studies`).")
    for study in args.ids:
        if args.action == "show":
            _print_study(study, tuning.summarize_study(study), args.format, args.top)
        elif args.action == "cancel":
            print(f"{study}: {tuning.cancel_tuning(study)}")
        else:
            tuning.delete_study(study)
            print(f"{study}: deleted")
    return EXIT_OK


STUDIES = Command("studies", "list, show, cancel or delete hyperparameter searches",
                  "list: every study in the workspace, newest first; show STUDY...: leaderboard and best trial; "
                  "cancel STUDY...: stop background searches; delete STUDY...: remove studies (their best runs "
                  "stay).", studies_arguments, run_studies)

COMMANDS = (TUNE, STUDIES)
