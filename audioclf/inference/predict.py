"""Prediction with a trained run: one clip, many files, probabilities and classes over time.

    p = Predictor.load(run_id)
    pred = p.predict_clip(load_audio("dog.wav"), threshold=p.suggested_threshold or 0.0)
    pred.top_k(3)            # [("dog", 0.91), ("cat", 0.05), ...]
    pred.label               # "dog", or "unknown" when the confidence is below the threshold
    pred.window_probs        # (windows, classes) for clips longer than WINDOW_SECONDS
                             # (past limits.PREDICT_WHOLE_MAX_SECONDS the clip's answer is their mean)
    pred.segments()          # [Segment(0.0, 2.5, "dog", 0.9), Segment(2.5, 4.0, "unknown", 0.4), ...]

The model refuses features made with another feature config than the one it
was trained on (`FeatureMismatchError`), so a silently wrong answer is impossible.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import limits
from ..errors import AudioclfError
from ..training import runs
from .confidence import UNKNOWN, run_threshold

WINDOW_SECONDS = 2.0  # long clips also get probabilities per window of this length
WINDOW_HOP = 0.5  # as a share of the window


class PredictError(AudioclfError):
    """A prediction that cannot be made; message is for people."""


class FeatureMismatchError(PredictError):
    """Features made with a different config than the model was trained on."""


@dataclass(frozen=True)
class Segment:
    """A stretch of a clip given one answer: the top class of its windows, or UNKNOWN."""

    start: float  # s
    end: float  # s
    label: str
    confidence: float  # mean top probability of its windows

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "label": self.label,
                "confidence": round(self.confidence, 4)}


@dataclass(frozen=True)
class Prediction:
    """Whole-clip class probabilities, plus per-window probabilities for long clips.

    Below ``threshold`` (0 = off) the answer is "not sure": ``label`` is
    ``confidence.UNKNOWN`` while ``top_label`` still names the likeliest class.
    """

    labels: tuple[str, ...]
    probs: np.ndarray  # (classes,)
    window_times: np.ndarray  # (windows,) window start times, s (empty for short clips)
    window_probs: np.ndarray  # (windows, classes)
    silent: bool = False  # the clip is (near) silence: the answer means little
    name: str = ""
    threshold: float = 0.0
    duration: float = 0.0  # s, of the audio the features cover
    window_seconds: float = WINDOW_SECONDS  # length of one window, s

    @property
    def top_label(self) -> str:
        """The likeliest class, whatever the threshold."""
        return self.labels[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    @property
    def unsure(self) -> bool:
        """True when the confidence is below the threshold: none of the classes fits well."""
        return self.confidence < self.threshold

    @property
    def label(self) -> str:
        """The answer: the likeliest class, or UNKNOWN below the threshold."""
        return UNKNOWN if self.unsure else self.top_label

    def with_threshold(self, threshold: float) -> "Prediction":
        """The same prediction judged against another threshold (no model call)."""
        return dataclasses.replace(self, threshold=float(threshold))

    def top_k(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most likely classes with their probabilities, most likely first."""
        order = np.argsort(-self.probs, kind="stable")[:max(1, int(k))]
        return [(self.labels[i], float(self.probs[i])) for i in order]

    def window_labels(self) -> list[str]:
        """The answer of each window: its top class, or UNKNOWN below the threshold."""
        top = self.window_probs.argmax(1) if len(self.window_probs) else np.zeros(0, int)
        conf = self.window_probs.max(1) if len(self.window_probs) else np.zeros(0)
        return [UNKNOWN if c < self.threshold else self.labels[int(k)] for k, c in zip(top, conf)]

    def segments(self) -> list[Segment]:
        """Which class when: windows -> non-overlapping segments, equal neighbours merged.

        Windows overlap (hop WINDOW_HOP of a window), so each window answers for
        the time nearer its centre than any other window's centre; the first
        segment starts at 0 and the last ends at ``duration``. Neighbouring
        windows with the same answer (UNKNOWN included) become one segment whose
        confidence is their mean top probability. A clip without windows (no
        longer than one window) is one segment with the whole-clip answer.
        """
        end_of_clip = max(self.duration, float(self.window_times[-1]) + self.window_seconds
                          if len(self.window_times) else 0.0)
        if not len(self.window_times):
            return [Segment(0.0, end_of_clip, self.label, self.confidence)]
        centres = np.asarray(self.window_times, np.float64) + self.window_seconds / 2
        edges = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [end_of_clip]])
        conf = self.window_probs.max(1)
        out: list[Segment] = []
        run_start, run_conf = 0, [float(conf[0])]
        labels = self.window_labels()
        for i in range(1, len(labels) + 1):
            if i < len(labels) and labels[i] == labels[run_start]:
                run_conf.append(float(conf[i]))
                continue
            out.append(Segment(float(edges[run_start]), float(edges[i]), labels[run_start],
                               float(np.mean(run_conf))))
            if i < len(labels):
                run_start, run_conf = i, [float(conf[i])]
        return out

    def classes_over_time(self) -> list[str]:
        """The distinct classes (not UNKNOWN) the segments name, in order of first appearance."""
        seen: dict[str, None] = {}
        for seg in self.segments():
            if seg.label != UNKNOWN:
                seen.setdefault(seg.label, None)
        return list(seen)


@dataclass(frozen=True)
class FileResult:
    """Result for one file of `predict_files`: a prediction or the reason there is none."""

    path: str
    prediction: Prediction | None = None
    error: str = ""


def check_model_source(features_cfg) -> None:
    """Refuse a feature model a run's config may not name (:mod:`audioclf.features.sources`)."""
    if features_cfg.kind == "yamnet":
        from ..features.yamnet import check_source

        check_source(features_cfg.model)
    elif features_cfg.kind == "efficientat":
        from ..features.efficientat import check_source

        check_source(features_cfg.model)


class Predictor:
    """A run's model, labels and feature config, ready to predict."""

    def __init__(self, model, labels: Sequence[str], features_cfg, run_id: str = ""):
        self.model = model
        self.labels = tuple(labels)
        self.features_cfg = features_cfg
        self.run_id = run_id
        # The run's suggested "not sure" threshold (confidence.run_threshold); None if it has none.
        self.suggested_threshold: float | None = None
        # The same for live windows (confidence.run_threshold(live=True)): what LiveClassifier uses.
        self.suggested_live_threshold: float | None = None
        if model.output_shape[-1] != len(self.labels):
            raise PredictError(f"The model has {model.output_shape[-1]} outputs but the run lists "
                               f"{len(self.labels)} labels.")

    @classmethod
    def load(cls, run_id: str) -> "Predictor":
        """Load a finished run (RunError/ModelLoadError if it is missing or not done)."""
        from ..features import config_from_dict

        run = runs.load_run(run_id)
        if run.info.state != "done":
            raise PredictError(f"Run {run_id} is {run.info.state}, not done: it has no model to use.")
        if not run.labels:
            raise PredictError(f"Run {run_id} has no labels.json.")
        features_cfg = config_from_dict(run.config["features"])
        check_model_source(features_cfg)  # before anything is loaded: the config may name foreign code
        model = runs.load_model(run_id)
        predictor = cls(model, run.labels, features_cfg, run_id)
        predictor.suggested_threshold = run_threshold(run_id)
        predictor.suggested_live_threshold = run_threshold(run_id, live=True)
        return predictor

    # -- core

    def _probs(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        from ..model.building import predict_proba

        return predict_proba(self.model, list(seqs))

    def _check(self, features) -> None:
        from ..features import config_to_dict

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

    def predict_features(self, features, *, silent: bool = False, name: str = "",
                         threshold: float = 0.0) -> Prediction:
        """Predict from a `Features` made with this run's feature config."""
        return self.predict_many_features([features], silent=[silent], names=[name], threshold=threshold)[0]

    def predict_many_features(self, feats: Sequence, *, silent: Sequence[bool] | None = None,
                              names: Sequence[str] | None = None, threshold: float = 0.0) -> list[Prediction]:
        """Batched `predict_features`: whole clips and all their windows in few model calls."""
        for f in feats:
            self._check(f)
        seqs, spans, times, durations = [], [], [], []
        for f in feats:
            wins = _windows(f)
            duration = _duration(f)
            # A clip too long for one pass is answered from its windows: the model never runs
            # over more than limits.PREDICT_WHOLE_MAX_SECONDS at once (time and memory).
            whole = not wins or duration <= limits.PREDICT_WHOLE_MAX_SECONDS
            spans.append((len(seqs), whole, len(seqs) + whole + len(wins)))  # rows: [whole], windows
            if whole:
                seqs.append(f.values)
            seqs.extend(w for _, w in wins)
            times.append(np.array([t for t, _ in wins], np.float32))
            durations.append(duration)
        probs = self._probs(seqs)
        out = []
        for i, (a, whole, b) in enumerate(spans):
            window_probs = probs[a + whole:b]
            out.append(Prediction(
                labels=self.labels, probs=probs[a] if whole else window_probs.mean(axis=0),
                window_times=times[i], window_probs=window_probs,
                silent=bool(silent[i]) if silent is not None else False,
                name=names[i] if names is not None else "", threshold=float(threshold),
                duration=durations[i]))
        return out

    def predict_audio(self, source, *, name: str | None = None, threshold: float = 0.0) -> Prediction:
        """Predict a file or bytes, decoded straight at the rate this run's features need
        (a long 44.1 kHz upload is never held at 44.1 kHz). Past limits.PREDICT_WHOLE_MAX_SECONDS
        the clip is streamed: see :meth:`predict_long_audio`."""
        from ..audio import load_audio, probe
        from ..features import target_rate

        if probe(source, name=name).duration > limits.PREDICT_WHOLE_MAX_SECONDS:
            return self.predict_long_audio(source, name=name, threshold=threshold)
        clip = load_audio(source, sr=target_rate(self.features_cfg), name=name)
        return self.predict_clip(clip, threshold=threshold)

    def predict_long_audio(self, source, *, name: str | None = None, threshold: float = 0.0) -> Prediction:
        """Predict a long file or bytes from its windows, a piece at a time.

        The clip is decoded, and its features made, in pieces of limits.PREDICT_PIECE_SECONDS
        overlapping by one window; each window is cut from the features of one piece, and the
        clip's answer is the mean of its windows' probabilities. Memory is that of one piece,
        whatever the clip's length (a feature network run over a whole 10-minute clip held
        most of a GB). A clip of one piece gets the windows :meth:`predict_clip` gives it.
        """
        from ..audio import probe, stream_pieces
        from ..features import extract, target_rate

        sr = target_rate(self.features_cfg) or probe(source, name=name).sr
        # Pieces start on the window grid (a whole number of window hops apart), so each
        # window is the one a pass over the whole clip would cut, from the piece it starts in.
        hop = _window_hop_seconds(self._frame_step(sr))
        advance = hop * max(1, int((limits.PREDICT_PIECE_SECONDS - WINDOW_SECONDS) // hop))
        times, probs, silent, end, short = [], [], True, 0.0, ""
        for start, piece, last in stream_pieces(source, sr, advance + WINDOW_SECONDS, WINDOW_SECONDS,
                                                name=name):
            features = extract(piece, self.features_cfg)
            self._check(features)
            wins = _windows(features) or [(0.0, features.values)]
            if not last:  # windows from `advance` on are the next piece's
                wins = [(t, w) for t, w in wins if t < advance - hop / 2] or wins[:1]
            times.extend(start + t for t, _ in wins)
            probs.append(self._probs([w for _, w in wins]))
            silent, end, short = silent and piece.silent, start + piece.duration, piece.name
            del features, wins, piece  # before the next piece is decoded
        window_probs = np.concatenate(probs)
        return Prediction(labels=self.labels, probs=window_probs.mean(axis=0),
                          window_times=np.array(times, np.float32), window_probs=window_probs,
                          silent=silent, name=short, threshold=float(threshold), duration=end)

    def predict_clip(self, clip, *, threshold: float = 0.0) -> Prediction:
        """Predict one `audio.Clip` (resampled as the run's features need)."""
        from ..features import extract

        return self.predict_features(extract(clip, self.features_cfg), silent=clip.silent,
                                     name=clip.name, threshold=threshold)

    def _frame_step(self, sr: int) -> float:
        """Seconds between this run's feature frames, from the features of a few seconds of noise."""
        from ..audio import Clip
        from ..features import extract

        noise = np.random.default_rng(0).standard_normal(int(2 * WINDOW_SECONDS * sr)).astype(np.float32)
        return _step(extract(Clip(0.01 * noise, sr), self.features_cfg))

    def predict_files(self, paths: Sequence[str | Path],
                      progress: Callable[[int, int], None] | None = None, *,
                      threshold: float = 0.0) -> list[FileResult]:
        """Predict many files (features from the cache when possible); errors per file.

        Each file is decoded at most once, and not at all when its features are
        cached: features record whether their clip was silent.
        """
        from ..audio import AudioError, check_audio
        from ..features import extract_many

        paths = [str(p) for p in paths]
        long = {p for p in paths if _is_long(p)}  # streamed, never whole (nor cached)
        short = [p for p in paths if p not in long]
        feats = dict(zip(short, extract_many(short, self.features_cfg, progress=progress))) if short else {}
        ok, results = [], []
        for p in paths:
            if p in long:
                try:
                    results.append(FileResult(p, prediction=self.predict_long_audio(p, threshold=threshold)))
                except AudioclfError as e:
                    results.append(FileResult(p, error=str(e)))
                continue
            f = feats[p]
            if isinstance(f, Exception):
                results.append(FileResult(p, error=str(f)))
                continue
            silent = f.silent
            if silent is None:  # cached by a version that did not record silence
                try:
                    silent = check_audio(p).silent
                except AudioError:
                    silent = False
            ok.append((len(results), f, silent, Path(p).name))
            results.append(None)
        if ok:
            preds = self.predict_many_features([f for _, f, _, _ in ok], silent=[s for *_, s, _ in ok],
                                               names=[n for *_, n in ok], threshold=threshold)
            for (k, *_), pred in zip(ok, preds):
                results[k] = FileResult(paths[k], prediction=pred)
        return results


def _is_long(path: str) -> bool:
    """Longer than limits.PREDICT_WHOLE_MAX_SECONDS by its header (a bad file is not: its error
    comes from the usual path)."""
    from ..audio import AudioError, probe

    try:
        return probe(path).duration > limits.PREDICT_WHOLE_MAX_SECONDS
    except AudioError:
        return False


def _step(features) -> float:
    """Seconds between frames (0 for a clip of one frame)."""
    times = np.asarray(features.times, dtype=np.float64)
    return float(np.median(np.diff(times))) if len(times) > 1 else 0.0


def _duration(features) -> float:
    """Seconds of audio the frames cover (frame times are centres: half a step each side)."""
    times = np.asarray(features.times, dtype=np.float64)
    if not len(times):
        return 0.0
    step = _step(features)
    return float(max(0.0, times[0] - step / 2) + times[-1] - times[0] + step)


def _window_frames(step: float) -> tuple[int, int]:
    """(frames per window, frames between window starts) for frames ``step`` s apart."""
    size = max(1, int(round(WINDOW_SECONDS / step)))
    return size, max(1, int(round(size * WINDOW_HOP)))


def _window_hop_seconds(step: float) -> float:
    """Seconds between the starts of consecutive windows (as :func:`_windows` cuts them)."""
    return _window_frames(step)[1] * step if step > 0 else WINDOW_SECONDS * WINDOW_HOP


def _windows(features):
    """(start time, frames) windows of WINDOW_SECONDS over a long clip; none for short clips."""
    times = np.asarray(features.times, dtype=np.float64)
    n = len(times)
    if n < 2:
        return []
    step = _step(features)
    duration = times[-1] - times[0] + step
    if step <= 0 or duration <= WINDOW_SECONDS:
        return []
    size, hop = _window_frames(step)
    starts = list(range(0, n - size + 1, hop))
    if starts[-1] + size < n:  # cover the end of the clip too
        starts.append(n - size)
    return [(float(max(0.0, times[s] - step / 2)), features.values[s:s + size]) for s in starts]


def _describe(d: dict) -> str:
    kind = d.get("kind", "?")
    rest = ", ".join(f"{k}={v}" for k, v in d.items() if k != "kind")
    return f"{kind} features ({rest})" if rest else f"{kind} features"

