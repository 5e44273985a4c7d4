"""Training commands: `train` (one run, here or in the background) and `evaluate` (a run's report,
another labelled data set through a run's model, or k-fold cross-validation of a config)."""
from __future__ import annotations

import argparse
from typing import Callable

from .common import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, CLIError, Command, ProgressBar, StopFlag,
                     add_data_argument, add_format_argument, epoch_line, err, extraction_events, format_table,
                     import_tensorflow_quietly, find_dataset, metrics_rows, write_rows)
from .options import add_run_arguments, run_config, stored_run_config


# ---------------------------------------------------------------- train

def train_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    p.add_argument("--name", default="", help="a name for the run")
    p.add_argument("--background", action="store_true",
                   help="train in a separate process; print the run id and return at once")
    p.add_argument("--store", help="train from this feature store (a folder, NFS, s3://...) in batches, "
                   "filling it first with the clips it lacks")
    p.add_argument("--memory-budget", metavar="SIZE", help="with --store: feature bytes held in memory at once "
                   "(e.g. 200MB; default 200MB)")
    add_format_argument(p)
    add_run_arguments(p)


def _train_progress(quiet: bool) -> Callable[[dict], None]:
    extracting = extraction_events(quiet)

    def on_event(e: dict) -> None:
        if not extracting(e) and e.get("phase") == "training" and not quiet:
            err(epoch_line(e))
    return on_event


def run_train(args: argparse.Namespace) -> int:
    from ..training import runs
    from ..training.background import start_training
    from ..training.prepare import prepare_run
    from ..training.run import train

    cfg = run_config(args)
    prepare_run(cfg)  # every check the run makes, before a background process or a long extraction
    if args.memory_budget and not args.store:
        raise CLIError("--memory-budget bounds training from a feature store: give --store DIR too.")
    if args.store and (args.background or cfg.is_auto):
        raise CLIError("--store trains in this process with one feature type: drop --background, and give "
                       "--features (e.g. mfcc or yamnet) rather than auto.")
    if args.memory_budget:
        from ..training.streaming import parse_bytes

        parse_bytes(args.memory_budget)  # a bad size fails before anything is extracted
    if args.background:
        run_id = start_training(cfg)
        print(run_id)
        err(f"training in the background; follow it with `audioclf runs show {run_id}`, "
            f"stop it with `audioclf runs cancel {run_id}`")
        return EXIT_OK
    import_tensorflow_quietly()
    with StopFlag() as stop:
        run_id = train(cfg, progress=_train_progress(args.quiet), should_stop=stop, store=args.store,
                       memory_budget=args.memory_budget)
    run = runs.load_run(run_id)
    if run.info.state != "done":
        err(f"run {run_id} {run.info.state}: {run.info.message}")
        return EXIT_INTERRUPTED if run.info.state == "cancelled" else EXIT_ERROR
    m = run.metrics
    summary = (f"run {run_id}: {m.get('epochs_trained')} epochs (best {m.get('best_epoch')}), "
               f"{m.get('train_seconds')} s training, {m.get('n_train')} training clips"
               + (f" (and {m['n_train_copies']} warped copies)" if m.get("n_train_copies") else ""))
    if args.format == "table":
        print(summary)
        write_rows(metrics_rows(m), args.format)
    else:  # machine-readable stdout: only the rows (each names its run); people read stderr
        err(summary)
        write_rows([{"run": run_id, **row} for row in metrics_rows(m)], args.format)
    return EXIT_OK


TRAIN = Command("train", "train a model on a data set",
                "Split a data set, extract features, train a model with early stopping and evaluate it on "
                "the validation and test splits. Prints each epoch on stderr and the final metrics; the run "
                "(model, config, history, metrics) is saved in the workspace. Ctrl-C cancels cleanly.",
                train_arguments, run_train)


# ---------------------------------------------------------------- evaluate

def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN_ID|DATA", help="a run id (see `audioclf runs`), or a data set with --cv")
    p.add_argument("--split", choices=("val", "test"), default="test", help="which split of the run")
    p.add_argument("--data", help="evaluate the run's model on this labelled data set instead")
    p.add_argument("--cv", type=int, metavar="K", help="k-fold cross-validation with K folds (2-20)")
    p.add_argument("--name", default="", help=argparse.SUPPRESS)
    add_format_argument(p)
    add_run_arguments(p, "--split-method")


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.metrics import Metrics
    from ..training import runs

    if args.cv:
        return _cross_validate(args)
    run = runs.load_run(args.target)
    if args.data:
        return _evaluate_on(run, args)
    if run.info.state != "done":
        raise CLIError(f"Run {run.info.id} is {run.info.state}, not done: it has no metrics yet.")
    stored = run.metrics.get(args.split)
    if not stored:
        raise CLIError(f"Run {run.info.id} has no {args.split} split to report (its split share was 0).")
    _report(Metrics.from_dict(stored), args.format, f"run {run.info.id}, {args.split} split")
    return EXIT_OK


def _cross_validate(args: argparse.Namespace) -> int:
    """--cv K: k folds of a run's config (a run id) or of the options' config (a data set)."""
    from ..training.crossval import cross_validate
    from ..training import runs
    from ..training.prepare import prepare_run

    try:
        cfg = stored_run_config(runs.run_dir(args.target).name)
    except runs.RunError:
        args.data = args.target
        cfg = run_config(args)
    prepare_run(cfg, folds=args.cv)  # the same checks as a training run, before any extraction
    extracting = extraction_events(args.quiet)
    import_tensorflow_quietly()

    def on_event(e: dict) -> None:
        if not extracting(e) and e.get("phase") == "fold" and not args.quiet:
            held = f" (held out: {', '.join(e['groups'])})" if e.get("groups") else ""
            err(f"fold {e['fold']}/{e['folds']}{held}: macro F1 {e['macro_f1']:.3f}, accuracy {e['accuracy']:.3f}")
    res = cross_validate(cfg, k=args.cv, progress=on_event)
    if args.format == "json":
        write_rows([res.to_dict()], "json")
        return EXIT_OK
    write_rows([{"fold": i + 1, **({"held out": ",".join(res.groups[i])} if res.groups else {}),
                 "macro_f1": f, "accuracy": a, "epochs": e}
                for i, (f, a, e) in enumerate(zip(res.macro_f1, res.accuracy, res.epochs or [None] * res.k))],
               args.format)
    if args.format == "table":
        print(f"\n{res.k}-fold: macro F1 {res.macro_f1_mean:.3f} ± {res.macro_f1_std:.3f}, "
              f"accuracy {res.accuracy_mean:.3f} ± {res.accuracy_std:.3f}")
    return EXIT_OK


def _evaluate_on(run, args: argparse.Namespace) -> int:
    """--data: a new labelled data set, through the run's model."""
    import numpy as np

    from ..evaluation.metrics import evaluate
    from ..inference.predict import Predictor

    ds = find_dataset(args.data)
    import_tensorflow_quietly()
    pred = Predictor.load(run.info.id)
    results = pred.predict_files([it.path for it in ds.items], progress=ProgressBar("predicting", args.quiet))
    ok = [(it, r) for it, r in zip(ds.items, results) if r.prediction is not None]
    for r in results:
        if r.error:
            err(f"skipped: {r.error}")
    if not ok:
        raise CLIError(f"No clip of {args.data} could be read.")
    metrics = evaluate([it.label for it, _ in ok], np.stack([r.prediction.probs for _, r in ok]),
                       list(pred.labels), paths=[r.path for _, r in ok])
    _report(metrics, args.format, f"run {run.info.id} on {ds.name}")
    return EXIT_OK


def _report(metrics, format: str, title: str) -> None:
    """Per-class report and confusion matrix of one evaluation.Metrics."""
    per_class = [{"class": lab, **{k: (v if k != "support" else int(v)) for k, v in d.items()}}
                 for lab, d in metrics.per_class.items()]
    if format == "json":
        write_rows([{"accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1, "clips": metrics.n,
                     "per_class": per_class, "confusion": [list(r) for r in metrics.confusion],
                     "labels": list(metrics.labels), "misclassified": list(metrics.misclassified)}], "json")
        return
    if format == "csv":
        write_rows(per_class, "csv")
        return
    print(f"{title}: {metrics.n} clips, accuracy {metrics.accuracy:.3f}, macro F1 {metrics.macro_f1:.3f}\n")
    print(format_table(per_class) + "\n")
    labels = list(metrics.labels)
    print("confusion matrix (rows: true class)")
    print(format_table([{"true \\ predicted": lab, **dict(zip(labels, row))}
                        for lab, row in zip(labels, metrics.confusion)]))
    if metrics.misclassified:
        print(f"\nmost confident mistakes ({len(metrics.misclassified)} in all):")
        print(format_table(list(metrics.misclassified)[:10]))


EVALUATE = Command("evaluate", "report a run's metrics, or cross-validate a config",
                   "With a run id: accuracy, macro F1, per-class precision/recall/F1, confusion matrix and the "
                   "most confident mistakes on the run's validation or test split (or on another labelled data "
                   "set with --data). With --cv K: k-fold cross-validation of a config, given as a run id or as "
                   "a data set plus the same options as `train`.", evaluate_arguments, run_evaluate)

COMMANDS = (TRAIN, EVALUATE)
