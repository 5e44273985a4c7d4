"""`runs`: list, show, compare, delete or cancel the training runs of the workspace."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (EXIT_OK, CLIError, Command, add_format_argument, epoch_line, err, format_table, metrics_rows,
                     print_fields, write_rows)

RUN_ACTIONS = ("list", "show", "compare", "delete", "cancel")
CONFIG_PARTS = ("dataset", "split", "features", "model", "train")  # what `runs show` lists under config


def runs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=RUN_ACTIONS, default="list")
    p.add_argument("ids", nargs="*", metavar="ID")
    add_format_argument(p)


def run_runs(args: argparse.Namespace) -> int:
    from ..training import runs

    action, ids = args.action or "list", args.ids
    if action != "list" and not ids:
        raise CLIError(f"`runs {action}` needs at least one run id (see `audioclf runs list`).")
    if action == "list":
        rows = [{"id": r.id, "name": r.name, "state": r.state, "data set": Path(r.dataset).name,
                 "features": r.features, "model": r.model, "val_f1": r.val_macro_f1,
                 "test_f1": r.test_macro_f1, "test_acc": r.test_accuracy,
                 "skipped": f"{r.skipped}/{r.n_clips}" if r.skipped else ""} for r in runs.list_runs()]
        if not rows and args.format == "table":
            err("no runs yet; train one with `audioclf train DATA`")
        write_rows(rows, args.format)
    elif action == "show":
        for run_id in ids:
            _show_run(run_id, args.format)
    elif action == "compare":
        rows = runs.compare_runs(ids)
        write_rows(_side_by_side(rows) if args.format == "table" else rows, args.format)
    elif action == "delete":
        for run_id in ids:
            runs.delete_run(run_id)
            err(f"deleted run {run_id}")
    else:
        from ..training.background import cancel_run

        for run_id in ids:
            print(f"{run_id}: {cancel_run(run_id)}")
    return EXIT_OK


def _side_by_side(rows: list[dict]) -> list[dict]:
    """Runs side by side: one row per setting, one column per run; differing settings marked."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "id"))
    out = []
    for k in keys:
        vals = [r.get(k) for r in rows]
        differs = len({json.dumps(v, default=str) for v in vals}) > 1
        out.append({"setting": ("* " if differs else "  ") + k, **{r["id"]: v for r, v in zip(rows, vals)}})
    return out


def _show_run(run_id: str, format: str) -> None:
    from ..training import runs

    run = runs.load_run(run_id)
    status = runs.run_status(run_id)
    if format == "json":
        write_rows([{"id": run_id, "state": status.state, "message": status.message,
                     "epoch": status.epoch, "epochs": status.epochs, "config": run.config,
                     "labels": run.labels, "metrics": run.metrics, "history": run.history}], "json")
        return
    print(f"run {run_id} {('(' + run.info.name + ')') if run.info.name else ''}".rstrip())
    print(f"state      {status.state}{': ' + status.message if status.message else ''}")
    if status.epochs:
        print(f"epoch      {status.epoch}/{status.epochs}, {status.elapsed:.0f} s"
              + (f", about {status.eta:.0f} s left" if status.eta else ""))
    elif status.phase_total and not status.final:
        print(f"progress   {status.phase_done}/{status.phase_total}")
    print("\nconfig")
    print_fields({k: v for k, v in runs.compare_runs([run_id])[0].items() if k.split(".")[0] in CONFIG_PARTS},
                 indent="  ")
    if run.labels:
        print(f"\nclasses    {', '.join(run.labels)}")
    if run.history:
        print("\nlast epoch " + epoch_line(run.history[-1]))
    if run.metrics:
        print()
        print(format_table(metrics_rows(run.metrics)))


COMMANDS = (Command("runs", "list, show, compare, delete or cancel training runs",
                    "list: all runs, newest first; show ID...: config, progress and metrics; compare ID ID...: "
                    "settings and scores side by side (* marks differences); delete ID...: remove runs; "
                    "cancel ID...: stop background runs.", runs_arguments, run_runs),)
