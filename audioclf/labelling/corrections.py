""""Wrong? This is ...": a corrected clip joins the run's data set, and a retrain learns from it.

::

    from audioclf.labelling.corrections import add_correction, retrain

    add_correction(run_id, "siren", wav_bytes, predicted="rain")          # a whole clip
    add_correction(run_id, "siren", "long.wav", start=12.0, end=14.0)    # a stretch of a file
    result = retrain(run_id)             # same settings on the grown data set
    result.run_id, result.warm, result.why, result.before, result.after

A correction is written with ``datasets.add_clip`` into the data set the run
trained on, so it is refused in read-only mode like every other edit, unless
the owner allows corrections there (``AUDIOCLF_READONLY_ALLOW=corrections``,
see ``workspace.allowing``): then a shared demo can learn from its visitors,
and nothing else becomes writable. Its file
name, ``correction-<time>--<start ms>-<end ms>.wav``, makes it a group of its
own under :data:`audioclf.labelling.saving.GROUP_PATTERN`.

A retrain must be judged on the clips the first model was judged on, and must
not train on them. So the retrain pins the original run's validation and test
clips in a manifest (``split`` column, a fixed split) and trains on every other
clip of the data set as it is now, corrections included; before and after are
both models' scores on exactly the original test clips (validation clips when
the run had no test split), plus how each does on the corrections themselves.
"""
from __future__ import annotations

import csv
import io
import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from .. import jobs
from audioclf import audio, workspace
from audioclf.datasets import add_clip, load_dataset, split_folders
from audioclf.errors import AudioclfError
from audioclf.labelling.segmenting import Cut, clip_name, read_segment
from audioclf.labelling.session import sessions_dir
from audioclf.training import runs
from ..progress import OnEvent

RETRAINS = "retrains"  # <workspace>/labelling/retrains/<stamp>/<data set>.csv: the pinned splits
CORRECTIONS_LOG = "corrections.jsonl"
RETRAIN_RECORD = "retrain.json"  # in the new run's folder
CORRECTION_PREFIX = "correction"
ALLOWANCE = "corrections"  # AUDIOCLF_READONLY_ALLOW=corrections lets these two through in read-only mode
WARM_SHARE = 0.25  # a warm start trains at most this share of the first run's epochs...
WARM_MIN_EPOCHS = 5  # ... and at least this many


class CorrectionError(AudioclfError):
    """A correction or retrain that cannot be made; the message says why."""


# ---------------------------------------------------------------- where a run's clips live


def dataset_folder(run_id: str) -> Path:
    """The data set folder a run's clips came from (for a retrain: its parent's folder)."""
    record = jobs.read_json(runs.run_dir(run_id) / RETRAIN_RECORD, None)
    if record and record.get("dataset"):
        return Path(record["dataset"])
    config = runs.load_run(run_id).config
    source = Path(str(config.get("dataset", ""))).expanduser()
    if not source.exists():
        source = workspace.datasets_dir() / str(config.get("dataset", ""))
    if not source.is_dir():
        raise CorrectionError(f"Run {run_id} trained on {config.get('dataset')!r}, which is not a data set "
                              "folder here; corrections need a folder to add clips to.")
    return source


# ---------------------------------------------------------------- adding a correction


@dataclass(frozen=True)
class Correction:
    path: Path
    label: str
    run_id: str
    predicted: str = ""


def _wav_bytes(clip: audio.Clip) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(clip.samples, -1.0, 1.0), clip.sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def correction_audio(source, *, start: float | None = None, end: float | None = None,
                     sr: int | None = None) -> tuple[bytes | Path, float, float]:
    """WAV bytes of the corrected stretch (or the original file or bytes) and its start/end in seconds.

    ``source`` is a file path, the bytes of an audio file, an :class:`audio.Clip` or a
    float array of samples at ``sr``; ``start``/``end`` (s) pick a stretch of it.
    """
    if isinstance(source, np.ndarray):
        if not sr:
            raise CorrectionError("Samples need their sample rate (sr).")
        source = audio.Clip(samples=np.asarray(source, np.float32), sr=int(sr))
    if isinstance(source, audio.Clip):
        a = int(round((start or 0.0) * source.sr))
        b = len(source.samples) if end is None else int(round(end * source.sr))
        if b - a < 1:
            raise CorrectionError("The corrected stretch is empty.")
        piece = audio.Clip(samples=source.samples[a:b], sr=source.sr)
        return _wav_bytes(piece), a / source.sr, b / source.sr
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if start is None and end is None:
            return data, 0.0, audio.probe(data).duration
        return correction_audio(audio.load_audio(data), start=start, end=end)
    path = Path(source)
    info = audio.probe(path)  # AudioError for anything unreadable
    if start is None and end is None:
        return path, 0.0, info.duration  # add_clip copies the file itself
    a, b = float(start or 0.0), float(info.duration if end is None else end)
    if not 0 <= a < b:
        raise CorrectionError(f"Start {a:g} s and end {b:g} s do not make a stretch of {path.name}.")
    return _wav_bytes(read_segment(Cut(str(path), a, min(b, info.duration)))), a, min(b, info.duration)


def add_correction(run_id: str, label: str, source, *, start: float | None = None, end: float | None = None,
                   sr: int | None = None, predicted: str = "") -> Correction:
    """Add the clip (or stretch) ``source`` to run ``run_id``'s data set as class ``label``.

    Refused in read-only mode unless the owner allows corrections (:data:`ALLOWANCE`);
    AudioError if it is not audio, DatasetError if the run's data set is not a workspace
    data set.
    """
    with workspace.allowing(ALLOWANCE, "add a correction to a data set"):
        return _add_correction(run_id, label, source, start=start, end=end, sr=sr, predicted=predicted)


def _add_correction(run_id, label, source, *, start, end, sr, predicted) -> Correction:
    label = str(label).strip()
    if not label:
        raise CorrectionError("Say which class the clip is.")
    root = dataset_folder(run_id)
    data, a, b = correction_audio(source, start=start, end=end, sr=sr)
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    name = clip_name(f"{CORRECTION_PREFIX}-{stamp}", Cut("", a, b))
    if start is None and end is None and isinstance(source, (str, PathLike, bytes, bytearray, memoryview)):
        # The original file's bytes: its own extension, or none (add_clip reads the format from the header).
        suffix = Path(source).suffix if isinstance(source, (str, PathLike)) else ""
        name = Path(name).stem + suffix
    split = "train" if split_folders(root) else None  # a fixed-split data set: corrections train
    path = add_clip(root, label, name, data, split=split)
    with open(sessions_dir() / CORRECTIONS_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.time(), "run": run_id, "dataset": str(root), "path": str(path),
                             "label": label, "predicted": predicted}) + "\n")
    return Correction(path=path, label=label, run_id=run_id, predicted=predicted)


def corrections_since(run_id: str) -> list[dict]:
    """Corrections added to run ``run_id``'s data set after the run started, still on disk."""
    root = str(dataset_folder(run_id))
    created = float(runs.read_status(run_id).get("created", 0.0) or 0.0)
    path = sessions_dir() / CORRECTIONS_LOG
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("dataset") == root and row.get("time", 0) >= created and Path(row["path"]).is_file():
                out.append(row)
    return out


# ---------------------------------------------------------------- retraining


@dataclass(frozen=True)
class Score:
    """A model's scores on a fixed list of clips."""

    n: int
    macro_f1: float | None
    accuracy: float | None
    corrected: tuple[int, int] = (0, 0)  # (right, of) on the corrections

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RetrainResult:
    run_id: str
    parent: str
    warm: bool
    why: str  # why warm or from scratch
    before: Score
    after: Score
    split: str  # "test" or "val": which of the parent's clips both were scored on
    seconds: float
    corrections: int
    dropped: list[str] = field(default_factory=list)  # parent's held-out clips no longer in the data set


def _held_out(run_id: str) -> dict[str, str]:
    """path -> "val"/"test" of the clips a run was validated and tested on (predictions.csv)."""
    out = {}
    path = runs.run_dir(run_id) / runs.PREDICTIONS
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("split") in ("val", "test"):
                    out[str(Path(row["path"]).resolve())] = row["split"]
    return out


def pinned_manifest(run_id: str, folder: Path, group_pattern: str | None = None) -> tuple[Path, list[str]]:
    """A manifest of the data set as it is now with the run's validation and test clips pinned
    (split column) and every other clip training; returns it and the pinned clips now gone."""
    held = _held_out(run_id)
    ds = load_dataset(folder, group_pattern=group_pattern)
    out_dir = sessions_dir() / RETRAINS / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    out_dir.mkdir(parents=True)
    manifest = out_dir / f"{Path(folder).name}.csv"
    present = set()
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split", "group"])
        for item in ds.items:
            key = str(item.path.resolve())
            present.add(key)
            w.writerow([key, item.label, held.get(key, "train"), item.group or ""])
    return manifest, sorted(p for p in held if p not in present)


def warm_start_check(run_id: str, labels: list[str]) -> tuple[bool, str]:
    """Whether the run's weights can start the retrain: same classes in the same order
    (the model's output), and a model file that loads; else why not."""
    old = runs.load_run(run_id).labels
    if list(old) != list(labels):
        added = sorted(set(labels) - set(old))
        return False, ("from scratch: the classes changed" + (f" (new: {', '.join(added)})" if added else ""))
    try:
        runs.load_model(run_id)
    except AudioclfError as exc:
        return False, f"from scratch: the current model does not load ({exc})"
    return True, f"warm start from run {run_id}'s weights (same classes and architecture)"


def warm_epochs(train_cfg, trained: int | None) -> int:
    """The epoch budget of a warm start: a share of what the first run trained, at least a few.

    The weights already fit every clip but the corrections, so a fraction of the first
    run's epochs finds the new optimum; early stopping watches from the first epoch
    (``min_epochs`` 0: its guard against a from-scratch model's misleading first epochs
    does not apply to trained weights).
    """
    trained = int(trained or train_cfg.epochs)
    return int(min(train_cfg.epochs, max(WARM_MIN_EPOCHS, np.ceil(trained * WARM_SHARE))))


def score(run_id: str, paths: list[str], truth: list[str], corrected: list[dict] = ()) -> Score:
    """A run's macro F1 and accuracy on ``paths`` with true classes ``truth``."""
    from sklearn.metrics import accuracy_score, f1_score

    from audioclf.inference.predict import Predictor

    predictor = Predictor.load(run_id)
    res = predictor.predict_files(paths) if paths else []
    pairs = [(t, r.prediction.top_label) for t, r in zip(truth, res) if r.prediction is not None]
    right = 0
    if corrected:
        cres = predictor.predict_files([c["path"] for c in corrected])
        right = sum(1 for c, r in zip(corrected, cres) if r.prediction is not None
                    and r.prediction.top_label == c["label"])
    if not pairs:
        return Score(0, None, None, (right, len(corrected)))
    y, p = [a for a, _ in pairs], [b for _, b in pairs]
    f1 = f1_score(y, p, labels=sorted(set(y)), average="macro", zero_division=0)
    return Score(len(pairs), round(float(f1), 4), round(float(accuracy_score(y, p)), 4),
                 (right, len(corrected)))


def retrain(run_id: str, *, warm: bool | None = None, progress: OnEvent | None = None,
            should_stop: Callable[[], bool] | None = None) -> RetrainResult:
    """Train run ``run_id``'s settings again on its data set as it is now, in this process.

    ``warm`` None starts from the run's weights when :func:`warm_start_check` allows it;
    False always starts from scratch. The result compares both models on the run's
    original test clips (its validation clips if it had no test split).
    """
    with workspace.allowing(ALLOWANCE, "retrain a model"):
        return _retrain(run_id, warm=warm, progress=progress, should_stop=should_stop)


def _retrain(run_id, *, warm, progress, should_stop) -> RetrainResult:
    from audioclf.training import RunConfig, train

    run = runs.load_run(run_id)
    if run.info.state != "done":
        raise CorrectionError(f"Run {run_id} is {run.info.state}; only a finished run can be retrained.")
    t0 = time.perf_counter()
    cfg = RunConfig.from_dict(run.config)
    folder = dataset_folder(run_id)
    pattern = (retrain_record(run_id) or {}).get("group_pattern", getattr(cfg.split, "group_pattern", None))
    manifest, dropped = pinned_manifest(run_id, folder, pattern)
    held = _held_out(run_id)
    split_name = "test" if "test" in held.values() else "val"
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    labels = sorted({r["label"] for r in rows})
    eval_rows = [r for r in rows if r["split"] == split_name]
    warm_ok, why = warm_start_check(run_id, labels)
    if warm is False:
        warm_ok, why = False, "from scratch (asked)"
    corrected = corrections_since(run_id)
    new_cfg = replace(cfg, dataset=str(manifest), name=f"{cfg.name or run_id} + corrections".strip(),
                      split=replace(cfg.split, method="fixed", group_pattern=None))
    if warm_ok:
        epochs = warm_epochs(cfg.train, run.metrics.get("epochs_trained"))
        new_cfg = replace(new_cfg, train=replace(cfg.train, epochs=epochs, min_epochs=0))
        why += f", fine-tuned for at most {epochs} epochs"
    new_id = train(new_cfg, progress=progress, should_stop=should_stop, warm_start=run_id if warm_ok else None)
    if runs.read_status(new_id).get("state") != "done":
        raise CorrectionError(f"The retrain {new_id} did not finish: {runs.read_status(new_id).get('message', '')}")
    metrics = jobs.read_json(runs.run_dir(new_id) / runs.METRICS, {}) or {}
    warm_used = bool((metrics.get("warm_start") or {}).get("used", False))
    if warm_ok and not warm_used:
        why = (metrics.get("warm_start") or {}).get("why") or "from scratch: the weights did not fit the model"
    paths, truth = [r["path"] for r in eval_rows], [r["label"] for r in eval_rows]
    before = score(run_id, paths, truth, corrected)
    after = score(new_id, paths, truth, corrected)
    result = RetrainResult(run_id=new_id, parent=run_id, warm=warm_used, why=why, before=before, after=after,
                           split=split_name, seconds=round(time.perf_counter() - t0, 2),
                           corrections=len(corrected), dropped=dropped)
    jobs.write_json(runs.run_dir(new_id) / RETRAIN_RECORD, {
        **asdict(result), "dataset": str(folder), "manifest": str(manifest), "group_pattern": pattern})
    return result


def retrain_record(run_id: str) -> dict | None:
    """What :func:`retrain` wrote for a run it made (None for other runs)."""
    return jobs.read_json(runs.run_dir(run_id) / RETRAIN_RECORD, None)
