"""'Not sure' answers: a run's confidence threshold, below which a prediction is "unknown".

A classifier always names one of its classes, even for a sound it has never
heard of (a beep for a digit model). A threshold on the top probability lets it
say "none of the classes" instead::

    from audioclf.inference.confidence import run_threshold
    t = run_threshold(run_id)                 # suggested at the end of training
    pred = predictor.predict_clip(clip, threshold=t)
    pred.label                                # "unknown" when pred.confidence < t

The suggestion comes from the run's validation predictions (see
:func:`audioclf.evaluation.threshold.suggest_threshold`) and is stored in ``metrics.json`` under
``"threshold"``; runs trained before it existed get it from their
``predictions.csv``.
"""
from __future__ import annotations

import csv

import numpy as np

from ..evaluation.threshold import THRESHOLD_KEY, threshold_record
from ..training import runs

UNKNOWN = "unknown"  # the label of a prediction below the threshold
UNKNOWN_TEXT = "unknown: none of the classes"  # how pages say it
SPLITS = ("val", "test")  # where the suggestion comes from: validation, else test


def run_threshold(run_id: str) -> float | None:
    """A run's suggested threshold: from metrics.json, else from its predictions.csv (older runs)."""
    run = runs.load_run(run_id)
    stored = (run.metrics or {}).get(THRESHOLD_KEY)
    if isinstance(stored, dict) and isinstance(stored.get("value"), (int, float)):
        return float(stored["value"])
    record = record_from_predictions(run_id)
    return record["value"] if record else None


def record_from_predictions(run_id: str) -> dict | None:
    """:func:`threshold_record` from a run's predictions.csv (validation rows, else test rows)."""
    path = runs.run_dir(run_id) / runs.PREDICTIONS
    labels = runs.load_run(run_id).labels
    if not path.is_file() or not labels:
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    index = {lab: i for i, lab in enumerate(labels)}
    for split in SPLITS:
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
