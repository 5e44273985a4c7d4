"""'Not sure' answers: a run's confidence threshold, below which a prediction is "unknown".

A classifier always names one of its classes, even for a sound it has never
heard of (a beep for a digit model). A threshold on the top probability lets it
say "none of the classes" instead::

    from audioclf.inference.confidence import run_threshold
    t = run_threshold(run_id)                 # suggested at the end of training
    pred = predictor.predict_clip(clip, threshold=t)
    pred.label                                # "unknown" when pred.confidence < t

The suggestion comes from the run's validation predictions (see
:func:`audioclf.evaluation.threshold.suggest_threshold`) and is stored in ``metrics.json``:
``"threshold"`` on whole clips (Predict), ``"window_threshold"`` on windows of the
live length (Live), each with the share of right answers it turns into "unknown"
(``correct_below``). Runs trained before the clip one existed get it from their
``predictions.csv``; runs without a window one use the clip one, capped like every
suggestion (``MAX_THRESHOLD``)::

    run_threshold(run_id, live=True)          # for LiveClassifier
    threshold_info(run_id, live=True)["correct_below"]   # e.g. 0.01
"""
from __future__ import annotations

import csv

import numpy as np

from ..evaluation.threshold import MAX_THRESHOLD, THRESHOLD_KEY, WINDOW_THRESHOLD_KEY, threshold_record
from ..training import runs

UNKNOWN = "unknown"  # the label of a prediction below the threshold
UNKNOWN_TEXT = "unknown: none of the classes"  # how pages say it
THRESHOLD_SPLITS = ("val", "test")  # where the suggestion comes from: validation, else test


def run_threshold(run_id: str, live: bool = False) -> float | None:
    """A run's suggested threshold for whole clips, or (``live``) for live windows; None if none."""
    record = threshold_info(run_id, live)
    return record["value"] if record else None


def threshold_info(run_id: str, live: bool = False) -> dict | None:
    """The record behind :func:`run_threshold` (value, ``correct_below``, ``split``, ...).

    ``source`` says where it came from: "clips", "windows", or "clips (no window
    threshold)" for a live threshold of a run trained before window thresholds.
    """
    metrics = runs.load_run(run_id).metrics or {}
    if live:
        stored = _valid(metrics.get(WINDOW_THRESHOLD_KEY))
        if stored:
            return {**stored, "source": "windows"}
    record = _valid(metrics.get(THRESHOLD_KEY)) or record_from_predictions(run_id)
    if not record:
        return None
    # Older runs stored uncapped values (up to 0.99), which made good models say "unknown".
    record = {**record, "value": min(float(record["value"]), MAX_THRESHOLD)}
    return {**record, "source": "clips (no window threshold)" if live else "clips"}


def threshold_text(record: dict | None) -> str:
    """What a page says about a suggestion: its value, where it was set and what it costs there."""
    if not record:
        return "This run suggests no threshold (too few correct validation predictions)."
    where = (f"validation windows of {record.get('window_seconds', 1.5):g} s"
             if record.get("source") == "windows" else "whole validation clips")
    if record.get("source", "").startswith("clips ("):
        where += " (this run predates live-window thresholds)"
    below = record.get("correct_below")
    cost = ("" if below is None else
            f": {below:.0%} of the correct answers there fall under it" if below else
            ": no correct answer there falls under it")
    return f"Suggested for this run: {record['value']:.2f}, set on {where}{cost}."


def _valid(stored) -> dict | None:
    if isinstance(stored, dict) and isinstance(stored.get("value"), (int, float)):
        return {**stored, "value": float(stored["value"])}
    return None


def record_from_predictions(run_id: str) -> dict | None:
    """:func:`threshold_record` from a run's predictions.csv (validation rows, else test rows)."""
    path = runs.run_dir(run_id) / runs.PREDICTIONS
    labels = runs.load_run(run_id).labels
    if not path.is_file() or not labels:
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    index = {lab: i for i, lab in enumerate(labels)}
    for split in THRESHOLD_SPLITS:
        part = [r for r in rows if r.get("split") == split and r.get("true") in index]
        try:
            probs = np.array([[float(r[f"p_{lab}"]) for lab in labels] for r in part], np.float64)
        except (KeyError, ValueError):
            return None  # not a predictions file this version wrote
        if len(part):
            record = threshold_record(probs, [index[r["true"]] for r in part], split)
            if record:
                return record
    return None
