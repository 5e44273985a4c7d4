"""Prediction with a trained run: one clip, many files, and probabilities over time.

    p = Predictor.load(run_id)
    pred = p.predict_clip(load_audio("dog.wav"))
    pred.top_k(3)            # [("dog", 0.91), ("cat", 0.05), ...]
    pred.window_probs        # (windows, classes) for clips longer than WINDOW_SECONDS

The model refuses features made with another feature config than the one it
was trained on (`FeatureMismatchError`), so a silently wrong answer is impossible.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import runs

WINDOW_SECONDS = 2.0  # long clips also get probabilities per window of this length
WINDOW_HOP = 0.5  # as a share of the window


class PredictError(ValueError):
    """A prediction that cannot be made; message is for people."""


class FeatureMismatchError(PredictError):
    """Features made with a different config than the model was trained on."""


@dataclass(frozen=True)
class Prediction:
    """Whole-clip class probabilities, plus per-window probabilities for long clips."""

    labels: tuple[str, ...]
    probs: np.ndarray  # (classes,)
    window_times: np.ndarray  # (windows,) window start times, s (empty for short clips)
    window_probs: np.ndarray  # (windows, classes)
    silent: bool = False  # the clip is (near) silence: the answer means little
    name: str = ""

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    def top_k(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most likely classes with their probabilities, most likely first."""
        order = np.argsort(-self.probs, kind="stable")[:max(1, int(k))]
        return [(self.labels[i], float(self.probs[i])) for i in order]


@dataclass(frozen=True)
class FileResult:
    """Result for one file of `predict_files`: a prediction or the reason there is none."""

    path: str
    prediction: Prediction | None = None
    error: str = ""


class Predictor:
    """A run's model, labels and feature config, ready to predict."""

    def __init__(self, model, labels: Sequence[str], features_cfg, run_id: str = ""):
        self.model = model
        self.labels = tuple(labels)
        self.features_cfg = features_cfg
        self.run_id = run_id
        if model.output_shape[-1] != len(self.labels):
            raise PredictError(f"The model has {model.output_shape[-1]} outputs but the run lists "
                               f"{len(self.labels)} labels.")

    @classmethod
    def load(cls, run_id: str) -> "Predictor":
        """Load a finished run (RunError/ModelLoadError if it is missing or not done)."""
        from .features import config_from_dict

        run = runs.load_run(run_id)
        if run.info.state != "done":
            raise PredictError(f"Run {run_id} is {run.info.state}, not done: it has no model to use.")
        if not run.labels:
            raise PredictError(f"Run {run_id} has no labels.json.")
        model = runs.load_model(run_id)
        return cls(model, run.labels, config_from_dict(run.config["features"]), run_id)

    # -- core

    def _probs(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        from .training import predict_proba

        return predict_proba(self.model, list(seqs))

    def _check(self, features) -> None:
        from .features import config_to_dict

        if features.config != self.features_cfg:
            raise FeatureMismatchError(
                f"These features were made with {_describe(config_to_dict(features.config))}, "
                f"but the model of run {self.run_id or '(unsaved)'} was trained on "
                f"{_describe(config_to_dict(self.features_cfg))}. Extract features with the run's "
                "config (Predictor.features_cfg).")
        if features.values.ndim != 2 or features.values.shape[0] == 0:
            raise PredictError("The clip has no feature frames (is it empty?).")
        expected = self.model.input_shape[-1]
        if features.values.shape[1] != expected:
            raise FeatureMismatchError(f"Features have {features.values.shape[1]} dimensions; "
                                       f"the model expects {expected}.")

    def predict_features(self, features, *, silent: bool = False, name: str = "") -> Prediction:
        """Predict from a `Features` made with this run's feature config."""
        return self.predict_many_features([features], silent=[silent], names=[name])[0]

    def predict_many_features(self, feats: Sequence, *, silent: Sequence[bool] | None = None,
                              names: Sequence[str] | None = None) -> list[Prediction]:
        """Batched `predict_features`: whole clips and all their windows in few model calls."""
        for f in feats:
            self._check(f)
        seqs, owners, starts = [], [], []
        for i, f in enumerate(feats):
            seqs.append(f.values)
            owners.append((i, None))
            for t, win in _windows(f):
                seqs.append(win)
                owners.append((i, t))
                starts.append(t)
        probs = self._probs(seqs)
        out = []
        for i, f in enumerate(feats):
            rows = [k for k, (j, t) in enumerate(owners) if j == i]
            whole = rows[0]
            wins = rows[1:]
            out.append(Prediction(
                labels=self.labels, probs=probs[whole],
                window_times=np.array([owners[k][1] for k in wins], np.float32),
                window_probs=probs[wins] if wins else np.zeros((0, len(self.labels)), np.float32),
                silent=bool(silent[i]) if silent is not None else False,
                name=names[i] if names is not None else ""))
        return out

    def predict_clip(self, clip) -> Prediction:
        """Predict one `audio.Clip` (resampled as the run's features need)."""
        from .features import extract

        return self.predict_features(extract(clip, self.features_cfg), silent=clip.silent,
                                     name=clip.name)

    def predict_files(self, paths: Sequence[str | Path],
                      progress: Callable[[int, int], None] | None = None) -> list[FileResult]:
        """Predict many files (features from the cache when possible); errors per file."""
        from .audio import AudioError, load_audio
        from .features import extract_many

        paths = [str(p) for p in paths]
        feats = extract_many(paths, self.features_cfg, progress=progress) if paths else []
        ok, results = [], []
        for p, f in zip(paths, feats):
            if isinstance(f, Exception):
                results.append(FileResult(p, error=str(f)))
                continue
            try:  # a cheap read to flag silence, which features do not record
                silent = load_audio(p).silent
            except AudioError:
                silent = False
            ok.append((len(results), f, silent, Path(p).name))
            results.append(None)
        if ok:
            preds = self.predict_many_features([f for _, f, _, _ in ok], silent=[s for *_, s, _ in ok],
                                               names=[n for *_, n in ok])
            for (k, *_), pred in zip(ok, preds):
                results[k] = FileResult(paths[k], prediction=pred)
        return results


def _windows(features):
    """(start time, frames) windows of WINDOW_SECONDS over a long clip; none for short clips."""
    times = np.asarray(features.times, dtype=np.float64)
    n = len(times)
    if n < 2:
        return []
    step = float(np.median(np.diff(times)))
    duration = times[-1] - times[0] + step
    if step <= 0 or duration <= WINDOW_SECONDS:
        return []
    size = max(1, int(round(WINDOW_SECONDS / step)))
    hop = max(1, int(round(size * WINDOW_HOP)))
    starts = list(range(0, n - size + 1, hop))
    if starts[-1] + size < n:  # cover the end of the clip too
        starts.append(n - size)
    return [(float(max(0.0, times[s] - step / 2)), features.values[s:s + size]) for s in starts]


def _describe(d: dict) -> str:
    kind = d.get("kind", "?")
    rest = ", ".join(f"{k}={v}" for k, v in d.items() if k != "kind")
    return f"{kind} features ({rest})" if rest else f"{kind} features"

