"""Run folders: ``<workspace>/runs/<run_id>/`` with config, status, history, model, metrics.

Layout of one run (see docs/ARCHITECTURE.md)::

    config.json      the RunConfig (data set, split, features, model, training)
    status.json      state, phase progress, pid; the final write is state "done"
    history.jsonl    one JSON line per finished epoch
    labels.json      class names, in the model's output order
    model.keras      the trained Keras model (takes raw padded features)
    metrics.json     evaluation on the validation and test splits
    predictions.csv  per clip: path, split, true, predicted, one probability per class

Every file is written atomically (temporary file + ``os.replace``) and
``status.json`` says "done" only after everything else is on disk, so an
interrupted or killed run never looks complete. A run whose process is gone
while its state is not final reads as "failed" (interrupted).
"""
from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import jobs, workspace
from ..jobs import FINAL_STATES, STATUS, read_json, write_json
from ..errors import AudioclfError

CONFIG = "config.json"
HISTORY = "history.jsonl"
LABELS = "labels.json"
MODEL = "model.keras"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"

RUN_STATES = ("queued", "extracting", "training", "done", "failed", "cancelled")
# What a run is doing (status.json "phase", and the "phase" of its progress events).
CHOOSING, EXTRACTING, TRAINING, EVALUATING = "choosing", "extracting", "training", "evaluating"
RUN_PHASES = (CHOOSING, EXTRACTING, TRAINING, EVALUATING)
RUN_INTERRUPTED = "Interrupted: the training process ended without finishing (killed or crashed)."


class RunError(AudioclfError):
    """A run that does not exist or cannot be read; message is for people."""


class ModelLoadError(RunError):
    """A file that is not a model trained by audioclf (or a damaged one)."""


@dataclass(frozen=True)
class RunStatus:
    """Where a run is: state, phase progress, epochs and the history so far."""

    run_id: str
    state: str
    phase: str = ""  # one of RUN_PHASES ("" while queued)
    phase_done: int = 0
    phase_total: int = 0
    phase_copies: int = 0  # of phase_total while extracting: warped copies of training clips, not clips
    epoch: int = 0
    epochs: int = 0
    history: tuple[dict, ...] = ()
    message: str = ""
    elapsed: float = 0.0
    eta: float | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class RunInfo:
    """One line of the runs table: identity, state, key settings and scores."""

    id: str
    name: str
    created: float
    state: str
    dataset: str = ""
    features: str = ""  # the feature type; "efficientat+yamnet" when EfficientAT also hears through YAMNet
    model: str = ""
    val_macro_f1: float | None = None
    val_accuracy: float | None = None
    test_macro_f1: float | None = None
    test_accuracy: float | None = None
    message: str = ""
    skipped: int = 0  # clips that could not be read and were left out
    n_clips: int = 0  # clips of the data set the run was to use


@dataclass
class Run:
    """Everything stored for a run (the model itself is loaded with `load_model`)."""

    info: RunInfo
    path: Path
    config: dict
    status: dict
    labels: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- low-level I/O

def disk_full_message(where: Path) -> str:
    """What a person reads when a run could not be written for lack of space."""
    try:
        free = f"{shutil.disk_usage(where).free / (1 << 20):.1f} MB free"
    except OSError:
        free = "no room"
    return (f"The disk is full: there was no room to write the run in {where} ({free}). "
            "Free some space (old runs, the feature cache) and train again.")


def write_csv(path: Path, header: list[str], rows: Iterable[list]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- run folders

def new_run_id() -> str:
    """Time-ordered and unique across processes: 20250131-142501-3f9a1c."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def run_dir(run_id: str) -> Path:
    """The folder of an existing run; RunError if there is none."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunError(f"{run_id!r} is not a run id.")
    path = workspace.runs_dir() / run_id
    if not (path / CONFIG).is_file():
        raise RunError(f"No run {run_id!r} in {workspace.runs_dir()}.")
    return path


def create_run(config: dict) -> str:
    """Make a new run folder holding `config`; returns its id (state "queued")."""
    while True:
        run_id = new_run_id()
        path = workspace.runs_dir() / run_id
        try:
            path.mkdir()
            break
        except FileExistsError:  # same second, same suffix: try another id
            continue
    write_json(path / CONFIG, config)
    write_json(path / STATUS, {"state": "queued", "created": time.time(), "updated": time.time()})
    return run_id


def update_status(run_id: str, **fields: Any) -> dict:
    """Merge `fields` into status.json (only the run's own process writes it); a final state is
    recorded even on a full disk (see :func:`audioclf.jobs.update_status`)."""
    return jobs.update_status(run_dir(run_id), **fields)


def append_history(run_id: str, row: dict) -> None:
    """Append one epoch to history.jsonl (one short write, so lines stay whole)."""
    with open(run_dir(run_id) / HISTORY, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=jobs.json_default) + "\n")


def read_history(run_id: str) -> list[dict]:
    """The epochs written so far (a half-written last line is skipped)."""
    path = run_dir(run_id) / HISTORY
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def read_status(run_id: str) -> dict:
    """status.json, with a not-final run whose process is gone reported as failed."""
    return jobs.read_status(run_dir(run_id), RUN_INTERRUPTED)


def run_status(run_id: str) -> RunStatus:
    """The current state of a run, readable from any process (finished children of this one reaped first)."""
    jobs.reap()
    s = read_status(run_id)
    history = tuple(read_history(run_id))
    started = s.get("started")
    end = s.get("finished") or (time.time() if s.get("state") not in FINAL_STATES else s.get("updated"))
    return RunStatus(
        run_id=run_id, state=s.get("state", "failed"), phase=s.get("phase", ""),
        phase_done=int(s.get("done", 0)), phase_total=int(s.get("total", 0)), phase_copies=int(s.get("copies", 0)),
        epoch=int(s.get("epoch", 0)), epochs=int(s.get("epochs", 0)), history=history,
        message=s.get("message", ""),
        elapsed=float(end - started) if started and end else 0.0,
        eta=s.get("eta") if s.get("state") not in FINAL_STATES else None)


# ---------------------------------------------------------------- listing

def _info(run_id: str) -> RunInfo:
    path = run_dir(run_id)
    cfg = read_json(path / CONFIG, {}) or {}
    status = read_status(run_id)
    metrics = read_json(path / METRICS, {}) or {}
    val, test = metrics.get("val") or {}, metrics.get("test") or {}
    feats, model = cfg.get("features") or {}, cfg.get("model") or {}
    return RunInfo(
        id=run_id, name=cfg.get("name", ""), created=float(status.get("created", path.stat().st_mtime)),
        state=status.get("state", "failed"), dataset=str(cfg.get("dataset", "")),
        features=str(feats.get("kind", "")) + ("+yamnet" if feats.get("yamnet") is not None else ""),
        model=str(model.get("kind", "")),
        val_macro_f1=val.get("macro_f1"), val_accuracy=val.get("accuracy"),
        test_macro_f1=test.get("macro_f1"), test_accuracy=test.get("accuracy"),
        message=status.get("message", ""), skipped=int(metrics.get("skipped") or 0),
        n_clips=int(metrics.get("n_clips") or 0))


def list_runs() -> list[RunInfo]:
    """All runs in the workspace, newest first."""
    out = []
    for path in workspace.runs_dir().iterdir():
        if (path / CONFIG).is_file():
            try:
                out.append(_info(path.name))
            except RunError:  # deleted while listing
                continue
    return sorted(out, key=lambda r: (r.created, r.id), reverse=True)


def active_runs() -> list[RunInfo]:
    """The runs of this workspace still in progress, newest first.

    In progress means a state that is not final and a training process that is
    alive (a run whose process died reads as failed), or a run queued moments ago
    whose process is being started.
    """
    # A run deleted meanwhile has no status left and is not in progress.
    return [info for info in list_runs()
            if info.state not in FINAL_STATES and jobs.in_progress(workspace.runs_dir() / info.id, RUN_INTERRUPTED)]


def load_run(run_id: str) -> Run:
    """Config, status, labels, metrics and history of a run."""
    path = run_dir(run_id)
    config = read_json(path / CONFIG, {}) or {}
    return Run(info=_info(run_id), path=path, config=config,
               status=read_status(run_id), labels=read_json(path / LABELS, []) or [],
               metrics=clip_counts(read_json(path / METRICS, {}) or {}, config), history=read_history(run_id))


def clip_counts(metrics: dict, config: dict) -> dict:
    """`metrics` with `n_train` counting training clips and `n_train_copies` their warped copies.

    Runs trained before `n_train_copies` existed counted the copies in `n_train` ("Training
    clips 240" for 120 clips and two warp factors); only MFCC features are warped, every
    readable training clip once per factor other than 1, so the clips are n_train / (1 + factors).
    """
    if "n_train" not in metrics or "n_train_copies" in metrics:
        return metrics
    feats, train = config.get("features") or {}, config.get("train") or {}
    factors = sum(1 for w in train.get("warp_augment") or () if float(w) != 1.0)
    warped = feats.get("kind") == "mfcc" and factors and "store" not in metrics  # a store streams no copies
    n = int(metrics["n_train"])
    if not warped or n % (1 + factors):
        return {**metrics, "n_train_copies": 0}
    return {**metrics, "n_train": n // (1 + factors), "n_train_copies": n - n // (1 + factors)}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def compare_runs(run_ids: Iterable[str]) -> list[dict]:
    """One flat row per run: id, state, every config setting and the headline metrics."""
    rows = []
    for run_id in run_ids:
        run = load_run(run_id)
        row = {"id": run_id, "name": run.info.name, "state": run.info.state}
        row.update(_flatten({k: v for k, v in run.config.items() if k != "name"}))
        for split in ("val", "test"):
            m = run.metrics.get(split) or {}
            row[f"{split}.macro_f1"] = m.get("macro_f1")
            row[f"{split}.accuracy"] = m.get("accuracy")
        row["epochs_trained"] = run.metrics.get("epochs_trained")
        row["train_seconds"] = run.metrics.get("train_seconds")
        rows.append(row)
    return rows


def delete_run(run_id: str) -> None:
    """Remove a run folder (refused while its training process is still running)."""
    workspace.require_writable("delete a run")
    path = run_dir(run_id)
    status = read_status(run_id)
    if status.get("state") not in FINAL_STATES and status.get("state") != "queued":
        raise RunError(f"Run {run_id} is still {status.get('state')}; cancel it first.")
    shutil.rmtree(path)


def headline_score(info: RunInfo) -> tuple[str, float] | None:
    """("val" or "test", macro F1): the score a run is ranked by; None if it has neither.

    Validation first, as runs are chosen on it; a run trained without a validation
    split still has its test score.
    """
    if info.val_macro_f1 is not None:
        return "val", info.val_macro_f1
    if info.test_macro_f1 is not None:
        return "test", info.test_macro_f1
    return None


def same_dataset(info: RunInfo | str, dataset: str | os.PathLike) -> bool:
    """True if the run (or a config's recorded `dataset`, e.g. a study's) was trained on the data
    set folder `dataset`.

    The folders are compared resolved; a run whose recorded folder is gone (a workspace
    moved elsewhere) matches by the folder's name.
    """
    given = info if isinstance(info, str) else info.dataset
    recorded, wanted = Path(given or ""), Path(dataset)
    if not given:
        return False
    if recorded.exists():
        return recorded.resolve() == wanted.resolve()
    return recorded.name == wanted.name


def best_run(dataset: str | os.PathLike | None = None) -> RunInfo | None:
    """The finished run ranked first by `headline_score` (None if there is none).

    Runs with a validation score come before runs with only a test score. With
    `dataset` (a data set folder), only the runs trained on it count.
    """
    done = [r for r in list_runs() if r.state == "done" and headline_score(r) is not None
            and (dataset is None or same_dataset(r, dataset))]
    return max(done, key=lambda r: (r.val_macro_f1 is not None, headline_score(r)[1]), default=None)


# ---------------------------------------------------------------- models

# What a model file is, from its first bytes: a .keras file is a zip.
_MAGIC = ((b"PK\x03\x04", None), (b"\x89HDF\r\n\x1a\n", "it is an HDF5 (.h5) file, Keras's legacy format, "
          "which can carry code that safe mode does not stop"), (b"\x80", "it is a Python pickle, which runs "
          "code when it is opened"), (b"\x93NUMPY", "it is a NumPy array file, not a model"))


def _model_file_problem(path: Path) -> str | None:
    """Why `path` is not a file Keras may open (None for a zip, as a .keras file is)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    for magic, problem in _MAGIC:
        if head.startswith(magic):
            return problem if problem else (None if path.suffix == ".keras" else
                                            f"its name ends in {path.suffix or 'nothing'}, not .keras")
    if not head:
        return "it is empty"
    return "it is not a .keras file (those are zip files)"


def load_model(run_id_or_path: str | os.PathLike):
    """Load a run's model (or a `.keras` file) with Keras safe mode.

    Raises ModelLoadError for anything that is not a model audioclf trained.
    """
    from ..model import building

    path = Path(run_id_or_path)
    if not path.suffix == ".keras" and not path.is_file():
        path = run_dir(str(run_id_or_path)) / MODEL
    if not path.is_file():
        raise ModelLoadError(f"No model file at {path} (did the run finish?).")
    problem = _model_file_problem(path)
    if problem:
        raise ModelLoadError(f"{path.name} cannot be used as a model: {problem}. audioclf loads only the "
                             ".keras files its training saves (a zip, opened in Keras safe mode); retrain the "
                             "run, or put back the model.keras it saved.")
    objs = building.custom_objects()
    import keras

    try:
        model = keras.saving.load_model(path, custom_objects=objs, compile=False, safe_mode=True)
    except Exception as e:  # keras raises many types for foreign or damaged files
        raise ModelLoadError(f"{path.name} is not a model audioclf can load: "
                             f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from None
    if not isinstance(getattr(model, "name", None), str) or \
            not model.name.startswith(building.MODEL_PREFIX + "_"):
        raise ModelLoadError(f"{path.name} is a Keras model, but not one trained by audioclf "
                             "(it lacks audioclf's input masking and standardisation).")
    return model


def example_clips(run_id: str) -> dict[str, Path]:
    """One clip per class of a run to play to people: its most confident correct held-out prediction.

    From the run's ``predictions.csv`` (test split first, then validation), for each
    class the clip that was predicted right with the highest probability; a class
    with no such clip that still exists on disk is missing from the result.
    """
    path = run_dir(run_id) / PREDICTIONS
    best: dict[str, tuple[tuple[int, float], Path]] = {}
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = row.get("true", "")
            if not label or row.get("predicted") != label or not Path(row.get("path", "")).is_file():
                continue
            try:
                p = float(row.get(f"p_{label}", "nan"))
            except ValueError:
                continue
            rank = (1 if row.get("split") == "test" else 0, p if p == p else 0.0)
            if label not in best or rank > best[label][0]:
                best[label] = (rank, Path(row["path"]))
    labels = load_run(run_id).labels
    return {lab: best[lab][1] for lab in labels if lab in best}
