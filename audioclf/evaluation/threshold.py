"""The suggested confidence threshold of a run, from its validation predictions.

Below the threshold a prediction reads "unknown" (see :mod:`audioclf.inference.confidence`)::

    import numpy as np
    from audioclf.evaluation.threshold import suggest_threshold

    probs = np.array([[0.9, 0.1]] * 19 + [[0.6, 0.4]])
    suggest_threshold(probs, [0] * 20)   # 0.9: 95% of the correct answers reach it
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

KEEP_CORRECT = 0.95  # share of correct validation predictions the suggestion keeps
MIN_CORRECT = 5  # fewer correct validation clips than this make no suggestion
THRESHOLD_KEY = "threshold"  # its entry in metrics.json


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
