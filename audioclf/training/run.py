"""Training runs: `train()` takes a RunConfig to a finished run folder.

    from audioclf.training import RunConfig, train
    run_id = train(RunConfig(dataset="fsdd", split=SplitConfig(), features=MFCCConfig(),
                             model=ModelConfig(), train=TrainConfig()))

`train()` is a thin orchestrator over one module per stage:
`prepare` (validate the config, load and split the data set, gather cached
features and the warped copies), `fit` (build and fit the model),
`evaluation` (score the validation and test splits) and `runs` (the run
folder). `background` runs the same `train()` in a separate process
(`python -m audioclf.training RUN_DIR`, see `audioclf/training/__main__.py`).
TensorFlow is imported lazily, inside the functions that train.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from .. import jobs
from .. import workspace
from ..jobs import Cancelled
from ..evaluation.metrics import evaluate
from ..evaluation.threshold import THRESHOLD_KEY, WINDOW_THRESHOLD_KEY, threshold_record, window_record
from ..model.building import predict_proba
from ..progress import OnEvent
from . import runs
from .config import RunConfig, TrainingError
from .feature_choice import choose_features, config_for_kind
from .fit import fit
from .prepare import gather_features, prepare_run, warp_factors

STATUS_EVERY = 0.5  # seconds between status.json rewrites while extracting
# A run that cannot read more than this share of its clips fails: what is left is not the data
# set the user chose (often it was changed or deleted while the run read it).
MAX_SKIPPED_SHARE = 0.10



def train(cfg: RunConfig, *, progress: OnEvent | None = None,
          should_stop: Callable[[], bool] | None = None, run_id: str | None = None,
          warm_start: str | None = None, store: str | None = None,
          memory_budget: int | str | None = None) -> str:
    """Train in this process and write a run folder; returns the run id.

    `progress(event)` gets dicts: {"phase": "extracting", "done", "total"} while
    features are extracted (the total counts the warped training copies too),
    then {"phase": "training", "epoch", "epochs", "loss", "accuracy",
    "val_loss", "val_accuracy", "elapsed", "eta"} after each epoch.
    `should_stop()` is polled every batch; when it returns True the run ends as
    "cancelled". Bad data raises a library error (an AudioclfError); the run is "failed".
    `warm_start`, a finished run's id, starts from that run's weights where they fit
    (metrics.json's "warm_start" says whether they did). `store`, a feature store's root,
    trains from it in batches of at most `memory_budget` bytes of features ("200MB" by
    default; see `training.from_store`); metrics.json's "store" records which.
    """
    workspace.require_writable("train a model")
    if not isinstance(cfg, RunConfig):
        raise TrainingError("train() needs a RunConfig.")
    run_id = run_id or runs.create_run(cfg.to_dict())
    t0 = time.time()
    runs.update_status(run_id, pid=os.getpid(), pid_started=jobs.process_start_time(os.getpid()),
                       started=t0)
    emit = progress or (lambda event: None)
    stop = should_stop or (lambda: False)
    try:
        _run(cfg, run_id, emit, stop, warm_start, store, memory_budget)
    except Cancelled:
        runs.update_status(run_id, state="cancelled", message="Cancelled.", finished=time.time())
    except BaseException as e:
        if jobs.is_disk_full(e):  # one sentence, not "[Errno 28]"; the temp files are gone already
            msg = runs.disk_full_message(runs.run_dir(run_id))
            runs.update_status(run_id, state="failed", message=msg, finished=time.time())
            raise TrainingError(msg) from None
        msg = str(e) if isinstance(e, ValueError) else f"Unexpected error: {type(e).__name__}: {e}"
        runs.update_status(run_id, state="failed", message=msg, finished=time.time())
        raise
    return run_id


def _run(cfg: RunConfig, run_id: str, emit: OnEvent, stop: Callable[[], bool],
         warm_start: str | None = None, store: str | None = None, memory_budget=None) -> None:
    if stop():  # cancelled while queued
        raise Cancelled()
    prepared = prepare_run(cfg)
    labels = prepared.labels
    choice = None
    if cfg.is_auto:
        cfg, choice = _choose_features(cfg, run_id, prepared, emit, stop)
    if store is not None:
        gathered = _gather_store(cfg, run_id, prepared, emit, stop, store, memory_budget)
        train_data = gathered.parts["train"]
    else:
        gathered = _gather(cfg, run_id, prepared, emit, stop)
        train_data = gathered.training_set()
    if not train_data or not len(train_data):
        raise TrainingError("No training clip could be read: " + "; ".join(gathered.problems[:3]))
    n_clips = sum(len(part) for part in (prepared.split.train, prepared.split.val, prepared.split.test))
    skipped = len(gathered.problems)
    check_skipped(skipped, n_clips, gathered.problems)
    path = runs.run_dir(run_id)
    jobs.write_json(path / runs.LABELS, labels)
    epochs = int(cfg.train.epochs)
    runs.update_status(run_id, state="training", phase=runs.TRAINING, epoch=0, epochs=epochs, done=0,
                       total=epochs, message="Training", problems=gathered.problems[:50])

    def on_epoch(row: dict) -> None:
        runs.append_history(run_id, row)
        runs.update_status(run_id, epoch=row["epoch"], done=row["epoch"], eta=row["eta"])
        emit({"phase": runs.TRAINING, **row})

    initial = runs.load_model(warm_start) if warm_start else None
    data = gathered.parts if store is not None else gathered.data
    model, info = fit(cfg.model, cfg.train, train_data, data["val"], len(labels),
                      on_epoch=on_epoch, should_stop=stop, initial=initial, features=cfg.features)
    if warm_start:
        info["warm_start"] = {"from": warm_start, **info["warm_start"]}
    if info["cancelled"]:
        raise Cancelled()
    runs.update_status(run_id, phase=runs.EVALUATING, message="Evaluating")
    metrics: dict[str, Any] = {k: v for k, v in info.items() if k != "cancelled"}
    # Clips, not examples: the voice-warped copies are counted apart ("240 training clips" for 120 read wrong).
    n_real = len(gathered.parts["train"]) if store is not None else len(gathered.data["train"])
    metrics.update(n_train=n_real, n_train_copies=len(train_data) - n_real, skipped=skipped, n_clips=n_clips)
    if store is not None:
        metrics["store"] = gathered.record()
    if choice is not None:
        metrics["feature_choice"] = choice.to_dict()
    header = ["path", "split", "true", "predicted"] + [f"p_{lab}" for lab in labels]
    rows = []
    for name in ("val", "test"):
        d = data[name]
        if d is None or not len(d):
            metrics[name] = None
            continue
        if store is not None:  # streamed, buffer by buffer
            probs, y, hashes = d.predict(model)
            paths = [gathered.path_of[h] for h in hashes]
        else:
            probs, y, paths = predict_proba(model, d.x), d.y, d.paths
        metrics[name] = evaluate(y, probs, labels, paths=paths).to_dict()
        if metrics.get(THRESHOLD_KEY) is None:  # from validation, else test (see evaluation.threshold)
            metrics[THRESHOLD_KEY] = threshold_record(probs, y, name)
        if store is None and metrics.get(WINDOW_THRESHOLD_KEY) is None:  # what Live applies it to
            metrics[WINDOW_THRESHOLD_KEY] = window_record(lambda xs: predict_proba(model, xs), d.x, d.y,
                                                          name, cfg.features)
        pred = probs.argmax(1)
        rows += [[p, name, labels[t], labels[k], *np.round(pr, 6).tolist()]
                 for p, t, k, pr in zip(paths, y, pred, probs)]
    tmp_model = path / f".model.{os.getpid()}.keras"
    try:
        model.save(tmp_model)
        os.replace(tmp_model, path / runs.MODEL)
    except BaseException:
        tmp_model.unlink(missing_ok=True)  # a full disk leaves no half-written model behind
        raise
    jobs.write_json(path / runs.METRICS, metrics)
    runs.write_csv(path / runs.PREDICTIONS, header, rows)
    # Last write: only now does the run look complete.
    runs.update_status(run_id, state="done", message=done_message(skipped, n_clips), finished=time.time(),
                       eta=0, skipped=skipped, n_clips=n_clips)


def check_skipped(skipped: int, n_clips: int, problems: list[str]) -> None:
    """TrainingError if more than MAX_SKIPPED_SHARE of the clips could not be read."""
    if n_clips and skipped > MAX_SKIPPED_SHARE * n_clips:
        raise TrainingError(
            f"{skipped} of {n_clips} clips ({skipped / n_clips:.0%}) could not be read, more than "
            f"{MAX_SKIPPED_SHARE:.0%}, so no model was trained on the rest. Was the data set changed or "
            f"deleted while the run read it? First problems: " + "; ".join(problems[:3]))


def done_message(skipped: int, n_clips: int) -> str:
    """The final status message: "Done", saying so when clips were skipped."""
    if not skipped:
        return "Done"
    return f"Done, but {skipped} of {n_clips} clips could not be read and were left out (see the log)"


def _choose_features(cfg: RunConfig, run_id: str, prepared, emit: OnEvent, stop: Callable[[], bool]):
    """Auto: pick the feature type on the training and validation clips (never test) and
    rewrite the run's config as what it will train, so the run reads like any other."""
    split = prepared.split
    runs.update_status(run_id, state="extracting", phase=runs.CHOOSING, done=0, total=0,
                       message="Choosing the feature type")

    def on_extract(done: int, total: int) -> None:
        if stop():
            raise Cancelled()
        emit({"phase": runs.CHOOSING, "done": done, "total": total})
        runs.update_status(run_id, done=done, total=total)

    choice = choose_features([*split.train, *split.val], prepared.labels, cfg.features,
                             progress=on_extract, seed=int(cfg.split.seed))
    resolved = cfg.resolved(config_for_kind(choice.winner, cfg.features))
    jobs.write_json(runs.run_dir(run_id) / runs.CONFIG, resolved.to_dict())
    runs.update_status(run_id, feature_choice=choice.to_dict(), message=f"Auto chose {choice.reason}")
    emit({"phase": "chosen", **choice.to_dict()})
    return resolved, choice


def _gather_store(cfg: RunConfig, run_id: str, prepared, emit: OnEvent, stop: Callable[[], bool],
                  store: str, memory_budget):
    """The split from a feature store (filled first with what it lacks), each part a StoreSplit."""
    from .from_store import gather_from_store

    def on_extract(done: int, total: int) -> None:
        emit({"phase": "extracting", "done": done, "total": total})
        runs.update_status(run_id, state="extracting", done=done, total=total,
                           message="Extracting features into the store")

    return gather_from_store(cfg, prepared, store, memory_budget, progress=on_extract, should_stop=stop)


def _gather(cfg: RunConfig, run_id: str, prepared, emit: OnEvent, stop: Callable[[], bool]):
    """Features of the split and the warped training copies, reported as one extraction phase."""
    split = prepared.split
    last = [0.0]

    warps = warp_factors(cfg)
    copies = len(warps) * len(split.train)  # of the total: the warped training copies, not clips

    def on_extract(done: int, total: int) -> None:
        emit({"phase": runs.EXTRACTING, "done": done, "total": total})
        if time.time() - last[0] > STATUS_EVERY or done == total:  # don't rewrite status per clip
            last[0] = time.time()
            runs.update_status(run_id, state="extracting", phase=runs.EXTRACTING, done=done, total=total,
                               copies=copies, message="Extracting features")

    return gather_features({"train": split.train, "val": split.val, "test": split.test}, cfg.features,
                           prepared.labels, warps=warps, progress=on_extract, should_stop=stop)
