"""'Not sure' answers: a run's confidence threshold, below which a prediction is "unknown".

A classifier always names one of its classes, even for a sound it has never
heard of (a beep for a digit model). A threshold on the top probability lets it
say "none of the classes" instead::

    from audioclf.confidence import run_threshold
    t = run_threshold(run_id)                 # suggested at the end of training
    pred = predictor.predict_clip(clip, threshold=t)
    pred.label                                # "unknown" when pred.confidence < t

The suggestion comes from the run's validation predictions (see
:func:`suggest_threshold`) and is stored in ``metrics.json`` under
``"threshold"``; runs trained before it existed get it from their
``predictions.csv``.
"""
from __future__ import annotations

import csv
import math
from typing import Sequence

import numpy as np

from . import runs

UNKNOWN = "unknown"  # the label of a prediction below the threshold
UNKNOWN_TEXT = "unknown: none of the classes"  # how pages say it
KEEP_CORRECT = 0.95  # share of correct validation predictions the suggestion keeps
MIN_CORRECT = 5  # fewer correct validation clips than this make no suggestion
THRESHOLD_KEY = "threshold"  # its entry in metrics.json
SPLITS = ("val", "test")  # where the suggestion comes from: validation, else test


def suggest_threshold(probs: np.ndarray, y_true: Sequence[int], keep: float = KEEP_CORRECT) -> float | None:
    """The confidence below which a prediction should read "unknown".

    Rule: take the clips the model classified correctly and their confidence (top
    probability); the threshold is the highest value, rounded down to 0.01, that
    at least ``keep`` (95%) of them reach. So on data like the validation split
    the threshold turns at most ~5% of right answers into "unknown", while wrong
    answers, which are usually less confident, and sounds of no class at all are
    more likely to fall below it.

    Parameters
    ----------
    probs : np.ndarray, shape (clips, classes)
        Class probabilities of labelled clips the model did not train on.
    y_true : sequence of int
        The true class index of each clip.
    keep : float
        Share of correct predictions to keep above the threshold, in (0, 1].

    Returns
    -------
    float or None
        The threshold in [0, 1), or None with fewer than ``MIN_CORRECT`` correct clips.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(y) or not 0.0 < keep <= 1.0:
        raise ValueError("suggest_threshold needs (clips, classes) probabilities, one label per clip "
                         "and a share in (0, 1].")
    correct = probs.argmax(1) == y
    conf = probs.max(1)[correct]
    if len(conf) < MIN_CORRECT:
        return None
    # The k-th smallest confidence with k = ceil((1 - keep) * n) clips below it at most.
    value = np.sort(conf)[int(math.floor((1.0 - keep) * len(conf)))]
    return float(min(math.floor(value * 100) / 100, 0.99))


def threshold_record(probs: np.ndarray, y_true: Sequence[int], split: str,
                     keep: float = KEEP_CORRECT) -> dict | None:
    """What ``metrics.json`` stores: the value, the rule's inputs and what it rejects there."""
    value = suggest_threshold(probs, y_true, keep)
    if value is None:
        return None
    probs = np.asarray(probs, dtype=np.float64)
    correct = probs.argmax(1) == np.asarray(y_true)
    below = probs.max(1) < value
    return {"value": value, "keep": keep, "split": split, "n_correct": int(correct.sum()),
            "correct_below": _share(below & correct, correct),
            "wrong_below": _share(below & ~correct, ~correct)}


def _share(part: np.ndarray, whole: np.ndarray) -> float | None:
    n = int(whole.sum())
    return round(float(part.sum()) / n, 4) if n else None


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
