"""The suggested confidence threshold of a run, from its validation predictions.

Below the threshold a prediction reads "unknown" (see :mod:`audioclf.inference.confidence`):

    >>> import numpy as np
    >>> from audioclf.evaluation.threshold import suggest_threshold
    >>> probs = np.array([[0.7, 0.3]] * 19 + [[0.6, 0.4]])
    >>> suggest_threshold(probs, [0] * 20)   # 95% of the correct answers reach it
    0.7
    >>> suggest_threshold(np.array([[0.99, 0.01]] * 20), [0] * 20)   # never above MAX_THRESHOLD
    0.8
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

KEEP_CORRECT = 0.95  # share of correct validation clips the clip suggestion keeps
KEEP_WINDOW = 0.99  # share of correct validation windows the live suggestion keeps
MAX_THRESHOLD = 0.8  # no suggestion above this: a confident right answer never reads "unknown"
MIN_CORRECT = 5  # fewer correct validation clips than this make no suggestion
THRESHOLD_KEY = "threshold"  # its entry in metrics.json: whole clips (Predict)
WINDOW_THRESHOLD_KEY = "window_threshold"  # windows of the live length (Live, Present's microphone)
# Live's window and hop (their one home: inference.live starts with them), so the window
# threshold is chosen on windows of the length Live classifies.
LIVE_WINDOW_SECONDS = 1.5  # s of audio behind each live label
LIVE_HOP_SECONDS = 0.5  # s between live labels


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
        The threshold in [0, MAX_THRESHOLD], or None with fewer than ``MIN_CORRECT`` correct clips.
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
    # Capped: on small validation sets nearly every right answer is ~100% sure, and a
    # quantile of those would turn the slightly less sure right answers of real use
    # (other recordings, live windows) into "unknown".
    return float(min(math.floor(value * 100) / 100, MAX_THRESHOLD))


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


def window_frames(features_cfg, seconds: float = LIVE_WINDOW_SECONDS) -> int | None:
    """Feature frames in ``seconds`` of audio, as the live classifier cuts them; None if unknown.

    None for MFCC at the clip's own rate (the frame rate depends on each file) and for
    feature types whose live windows are not a slice of the clip's frames.
    """
    kind = getattr(features_cfg, "kind", "")
    if kind == "yamnet":
        from ..features import yamnet

        return 1 + max(0, int((seconds * yamnet.SAMPLE_RATE - yamnet.WINDOW) // yamnet.HOP))
    sr, hop = getattr(features_cfg, "sr", None), getattr(features_cfg, "hop_length", None)
    if kind in ("mfcc", "spectral") and sr and hop:
        return 1 + int(round(seconds * sr)) // hop
    return None


def live_windows(seqs: Sequence[np.ndarray], y_true: Sequence[int], size: int,
                 hop: int) -> tuple[list[np.ndarray], list[int]]:
    """Every ``size``-frame window of each sequence, ``hop`` frames apart (a short clip is one window).

    What the live classifier sees of a clip: its threshold is set on these, not on
    whole clips, which hold more evidence and so are surer.
    """
    xs, ys = [], []
    for seq, label in zip(seqs, y_true):
        starts = range(0, max(1, len(seq) - size + 1), max(1, hop))
        xs += [seq[s:s + size] for s in starts]
        ys += [int(label)] * len(starts)
    return xs, ys


def window_record(model_proba, seqs: Sequence[np.ndarray], y_true: Sequence[int], split: str,
                  features_cfg) -> dict | None:
    """:func:`threshold_record` on live-length windows of labelled clips (``model_proba(seqs)``
    gives their probabilities), with the window's length; None when it cannot be cut."""
    size = window_frames(features_cfg)
    if not size or not len(seqs):
        return None
    hop = max(1, round(size * LIVE_HOP_SECONDS / LIVE_WINDOW_SECONDS))
    xs, ys = live_windows(seqs, y_true, size, hop)
    record = threshold_record(model_proba(xs), ys, split, keep=KEEP_WINDOW)
    if record:
        record.update(window_seconds=LIVE_WINDOW_SECONDS, windows=len(xs))
    return record
