"""Live classification of an audio stream (a microphone): a label every hop over the last window.

Feed PCM blocks of any size, rate and channel count as they arrive; every
``hop`` seconds of new audio the classifier labels the last ``window`` seconds
with a saved run's model::

    live = LiveClassifier(Predictor.load(run_id), window=1.5, hop=0.5)
    for block in microphone_blocks():          # e.g. 20 ms of 48 kHz stereo int16
        for p in live.feed(block, sr=48000):
            print(f"{p.time:6.2f} s  {p.label}  {p.confidence:.0%}")
    live.events                                 # [LiveEvent("siren", 1.5, 4.0, 0.97), ...]

The stream is resampled once, as it arrives, to the rate the run's features
need, into a ring buffer. Windows end on a fixed grid of stream time (not on
block boundaries), so the same audio gives the same labels however it was cut
into blocks. YAMNet runs compute each 0.975 s YAMNet frame of the stream once
and reuse it in every window that holds it (the hop snaps to YAMNet's 0.48 s
frame hop for that); MFCC, spectral and EfficientAT runs extract the short
window afresh, which costs a few milliseconds (EfficientAT's squeeze-excitation
blocks average over their whole input, so no step of one window can be reused in
the next; its window is a whole number of the network's 0.32 s steps).

The stream's audio itself (format, resampling, the last seconds held) is
:mod:`~audioclf.inference.stream`; the event log :mod:`~audioclf.inference.events`;
:class:`~audioclf.inference.session.LiveSession` runs a classifier on a thread of its own.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np

from ..audio import AudioError, Clip, SILENCE_DB, is_silent
from ..model.sequences import PAD_MULTIPLE  # window lengths round up as in training and predict_proba
from ..evaluation.threshold import LIVE_HOP_SECONDS, LIVE_WINDOW_SECONDS
from .confidence import UNKNOWN
from .events import LiveEvent, extend_events
from .predict import WINDOW_SECONDS
from .stream import LiveError, RecentAudio, StreamResampler, to_mono_float

MIN_WINDOW = 0.5
MAX_WINDOW = WINDOW_SECONDS  # the longest clip predict answers from one window
MIN_HOP, MAX_HOP = 0.1, 2.0
CHART_LABELS = 240  # labels kept for the rolling chart (2 min at the default hop)
SILENCE = "silence"  # a window with no sound in it: no class is claimed
WARM_UP_RATE = 48000  # browsers send 48 kHz; runs with a fixed feature rate ignore it
KEEP_SECONDS = 30.0  # recent stream audio held in memory (never stored) so a wrong label can be corrected
# The label shown is the one most of the last STEADY_WINDOWS windows gave: a short window of a
# steady sound is now and then heard as another class with high confidence (docs/RESULTS.md), and
# one odd window must not flip a demo's answer. A real change of sound shows one hop later.
STEADY_WINDOWS = 3


@dataclass(frozen=True)
class LivePrediction:
    """The label of one window of the stream.

    ``time`` is the stream time (s) of the window's end; ``latency`` the seconds
    from the :meth:`LiveClassifier.feed` call that delivered the window's last
    sample to this result.
    """

    time: float
    labels: tuple[str, ...]
    probs: np.ndarray
    label: str  # a class, UNKNOWN (below the threshold) or SILENCE: most of the last windows' `heard`
    confidence: float  # top probability (also for UNKNOWN) of the newest window that heard `label`
    top_label: str  # the likeliest class of this window, whatever the threshold
    latency: float
    heard: str  # this window's own label, before steadying
    # The likeliest class of the window `confidence` comes from: what an UNKNOWN label was
    # closest to, from the same window as the percentage shown beside it.
    likeliest: str = ""

    @property
    def is_class(self) -> bool:
        """True when the label names one of the run's classes."""
        return self.label not in (UNKNOWN, SILENCE)


def efficientat_window(window: float, sr: int) -> int:
    """Samples of an EfficientAT window: whole 0.32 s steps of the network (at least one), so that
    each step of the sequence sees 32 mel frames of audio and none is mostly padding."""
    from ..features.efficientat import params

    step = params.TIME_REDUCTION * params.HOP_LENGTH * sr // params.SAMPLE_RATE
    return max(1, int(round(window * sr / step))) * step - params.HOP_LENGTH * sr // params.SAMPLE_RATE


def efficientat_frames(samples: int, sequence: str) -> int:
    """Feature frames EfficientAT gives for a window of ``samples`` at 32 kHz."""
    from ..features.efficientat import frontend, params
    from ..features.efficientat.features import window_starts

    mel = frontend.num_frames(samples)
    if sequence == "mel":
        return mel
    return len(window_starts(mel)) if sequence == "windows" else -(-mel // params.TIME_REDUCTION)


class LiveClassifier:
    """Labels a stream every ``hop`` seconds from its last ``window`` seconds with a run's model.

    Parameters
    ----------
    predictor : audioclf.inference.predict.Predictor
        A loaded run (any feature kind).
    window : float
        Seconds of audio behind each label, MIN_WINDOW..MAX_WINDOW. YAMNet runs
        use the whole 0.975 s frames (0.48 s apart) that fit in it; EfficientAT
        runs the nearest whole number of its 0.32 s steps.
    hop : float
        Seconds between labels, MIN_HOP..MAX_HOP (a multiple of 0.48 s for YAMNet runs).
    threshold : float or None
        Below this confidence the label is UNKNOWN. None takes the run's
        suggested threshold for live windows when the predictor has one
        (``suggested_live_threshold``), else for clips (``suggested_threshold``), else 0.
    silence_db : float
        A window whose loudest block is quieter than this (dBFS) is SILENCE.
    keep_seconds : float
        Recent audio held in memory for :meth:`recent_audio` (a correction of an event).
    steady : int
        The label is the one most of the last ``steady`` windows heard (more than half of
        them; else the label stays); 1 labels each window on its own.
    """

    def __init__(self, predictor, *, window: float = LIVE_WINDOW_SECONDS, hop: float = LIVE_HOP_SECONDS,
                 threshold: float | None = None, silence_db: float = SILENCE_DB,
                 keep_seconds: float = KEEP_SECONDS, steady: int = STEADY_WINDOWS):
        if not MIN_WINDOW <= float(window) <= MAX_WINDOW:
            raise LiveError(f"The window must be {MIN_WINDOW}-{MAX_WINDOW} s, got {window}.")
        if not MIN_HOP <= float(hop) <= MAX_HOP:
            raise LiveError(f"The hop must be {MIN_HOP}-{MAX_HOP} s, got {hop}.")
        if threshold is None:  # the run's suggestion for live windows, else for clips
            threshold = (getattr(predictor, "suggested_live_threshold", None)
                         or getattr(predictor, "suggested_threshold", None) or 0.0)
        if not 0.0 <= float(threshold) <= 1.0:
            raise LiveError(f"The threshold must be between 0 and 1, got {threshold}.")
        if not 1 <= int(steady) <= CHART_LABELS:
            raise LiveError(f"Steadying must take 1-{CHART_LABELS} windows, got {steady}.")
        self.steady = int(steady)
        self.predictor = predictor
        self.labels = tuple(predictor.labels)
        self.threshold = float(threshold)
        self.silence_db = float(silence_db)
        self.keep_seconds = max(0.0, float(keep_seconds))
        self.kind = predictor.features_cfg.kind
        self._requested = (float(window), float(hop))
        self.history: collections.deque[LivePrediction] = collections.deque(maxlen=CHART_LABELS)
        self.events: list[LiveEvent] = []
        self.skipped = 0  # windows not labelled because the classifier fell behind the stream
        self._length = 0  # feature frames every window is padded to
        self._warm: int | None = None  # the rate warm_up traced the model for
        self.reset()

    # ---------------------------------------------------------------- set-up

    def reset(self) -> None:
        """Forget the stream (audio, labels and events); the next block starts at time 0."""
        window, hop = self._requested
        self._resample = StreamResampler(getattr(self.predictor.features_cfg, "sr", None))
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # stream index of self._buf[0]
        self._n = 0  # samples received, at the features' rate
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # YAMNet frame k -> (embedding, scores)
        self._recent = RecentAudio(self.keep_seconds)
        self._window_s, self._hop_s = window, hop
        self._win = self._hop = self._due = 0  # in samples, once the rate is known
        self.history.clear()
        self._heard: collections.deque[tuple[str, float, str]] = collections.deque(maxlen=self.steady)
        self._label: str | None = None  # the steadied label of the last window
        self._conf, self._top = 0.0, ""  # and its confidence and likeliest class
        self.events = []
        self.skipped = 0

    def _start(self, sr: int) -> None:
        """Lay the window grid once the stream's rate (after resampling) is known."""
        window, hop = self._requested
        if self.kind == "yamnet":
            from ..features import yamnet

            frames = 1 + max(0, int((window * sr - yamnet.WINDOW) // yamnet.HOP))
            self._win = yamnet.WINDOW + (frames - 1) * yamnet.HOP
            self._hop = max(1, round(hop * sr / yamnet.HOP)) * yamnet.HOP
        elif self.kind == "efficientat":
            self._win = efficientat_window(window, sr)
            self._hop = max(1, int(round(hop * sr)))
        else:
            self._win = int(round(window * sr))
            self._hop = max(1, int(round(hop * sr)))
        self._window_s, self._hop_s = self._win / sr, self._hop / sr
        self._due = self._win
        if self._warm != sr:
            self._length = self._frames_per_window(sr)

    @property
    def window_seconds(self) -> float:
        """The window actually used (YAMNet: whole frames), s."""
        return self._window_s

    @property
    def hop_seconds(self) -> float:
        """The hop actually used (YAMNet: whole frame hops), s."""
        return self._hop_s

    @property
    def sample_rate(self) -> int | None:
        """The rate the classifier works at (the features' rate, or the stream's)."""
        return self._resample.rate()

    @property
    def stream_seconds(self) -> float:
        """Stream time received so far, s."""
        sr = self.sample_rate
        return self._n / sr if sr else 0.0

    # ---------------------------------------------------------------- feeding

    def feed(self, samples: np.ndarray, sr: int, channels: int = 1) -> list[LivePrediction]:
        """Add a block of PCM audio; returns the labels of the windows it completed (oldest first).

        Parameters
        ----------
        samples : np.ndarray
            PCM samples (see :func:`to_mono_float`).
        sr : int
            Their sample rate; it must stay the same until :meth:`reset`.
        channels : int
            Interleaved channels of 1-D input.
        """
        arrived = time.perf_counter()
        if not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise LiveError(f"The sample rate must be a positive whole number, got {sr!r}.")
        y = to_mono_float(samples, channels)
        if not np.isfinite(y).all():
            raise AudioError("The audio stream contains NaN or infinite samples.")
        first = self._resample.source is None
        y = self._resample(y, int(sr))
        if first:
            self._start(self.sample_rate)
        self._append(y)
        if self._n < self._due:
            return []
        # Behind the stream (a slow model, a burst of blocks): label only the newest due
        # window; labelling stale audio would only delay the current label further.
        behind = (self._n - self._due) // self._hop
        self.skipped += int(behind)
        self._due += behind * self._hop
        out = []
        while self._due <= self._n:
            out.append(self._predict(self._due, arrived))
            self._due += self._hop
        self._trim()
        return out

    def _append(self, y: np.ndarray) -> None:
        if y.size:
            y = y.astype(np.float32, copy=False)
            self._buf = np.concatenate([self._buf, y])
            self._recent.append(self._n, y, self.sample_rate or 0)
            self._n += y.size

    def recent_audio(self, start: float, end: float) -> Clip | None:
        """The stream's audio from ``start`` to ``end`` s while it is still held (the last
        ``keep_seconds``), at the classifier's rate; None when none of it is."""
        return self._recent.clip(start, end, self.sample_rate)

    def _trim(self) -> None:
        # Keep what the next window needs: from (next due - window) on.
        keep_from = max(0, self._due - self._win - self._hop)
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = keep_from

    def _audio(self, start: int, end: int) -> np.ndarray:
        return self._buf[start - self._buf_start: end - self._buf_start]

    # ---------------------------------------------------------------- labelling

    def _predict(self, end: int, arrived: float) -> LivePrediction:
        sr = self.sample_rate
        audio = self._audio(end - self._win, end)
        silent = is_silent(audio, self.silence_db)
        feats = self._yamnet_features(end) if self.kind == "yamnet" else self._features(audio)
        probs = self._probs(feats.values)
        top = self.labels[int(np.argmax(probs))]
        conf = float(np.max(probs))
        heard = SILENCE if silent else UNKNOWN if conf < self.threshold else top
        label, shown, likeliest = self._steady(heard, conf, top)
        result = LivePrediction(time=end / sr, labels=self.labels, probs=probs, label=label,
                                confidence=shown, top_label=top, latency=time.perf_counter() - arrived,
                                heard=heard, likeliest=likeliest)
        self.history.append(result)
        self._log(result)
        return result

    def _steady(self, heard: str, confidence: float, top: str) -> tuple[str, float, str]:
        """(label, confidence, likeliest) to show: the label more than half of the last `steady`
        windows heard, else the one shown before (the window's own at a stream's start), with the
        confidence and likeliest class of the newest window that heard it."""
        self._heard.append((heard, confidence, top))
        best, n = collections.Counter(h for h, _, _ in self._heard).most_common(1)[0]
        if n * 2 > len(self._heard) or self._label is None:
            label = best if n * 2 > len(self._heard) else heard
            if label != self._label:
                self._label = label
                self._conf, self._top = next((c, t) for h, c, t in reversed(self._heard) if h == label)
        if heard == self._label:
            self._conf, self._top = confidence, top
        return self._label, self._conf, self._top

    def _probs(self, values: np.ndarray) -> np.ndarray:
        """Class probabilities of one window's features, padded to the session's one length.

        Padding (masked by the model) to a fixed length means one traced model
        function for the whole stream: a new length would cost a retrace of ~1 s.
        """
        from ..model.sequences import pad_sequences

        if values.ndim != 2 or values.shape[0] == 0:
            raise LiveError("A live window gave no feature frames.")
        length = max(self._length, -(-len(values) // PAD_MULTIPLE) * PAD_MULTIPLE)
        out = self.predictor.model.predict_on_batch(pad_sequences([values], length))
        return np.asarray(out, np.float32)[0]

    def warm_up(self, sr: int = WARM_UP_RATE) -> float:
        """Load the feature extractor and trace the model before the stream starts; returns s taken.

        Otherwise the first label waits for imports, model loading and tracing
        (seconds). ``sr`` is the stream's expected rate (used when the run's
        features take the file's own rate).
        """
        start = time.perf_counter()
        if self._resample.source is None:
            rate = self._resample.target or sr
            self._length = self._frames_per_window(rate)
            noise = np.random.default_rng(0).uniform(-0.1, 0.1, int(MAX_WINDOW * rate)).astype(np.float32)
            if self.kind == "yamnet":
                from ..features import yamnet

                yamnet.extract_yamnet_many([Clip(noise[:yamnet.WINDOW], rate)], self.predictor.features_cfg)
            else:
                self._features(noise, rate)
            dims = self.predictor.model.input_shape[-1]
            self._probs(np.zeros((self._length, dims), np.float32))
            self._warm = rate
        return time.perf_counter() - start

    def _frames_per_window(self, sr: int) -> int:
        """Feature frames of a full window (rounded up to PAD_MULTIPLE)."""
        window, _ = self._requested
        if self.kind == "yamnet":
            from ..features import yamnet

            n = 1 + max(0, int((window * sr - yamnet.WINDOW) // yamnet.HOP))
        elif self.kind == "efficientat":
            n = efficientat_frames(efficientat_window(window, sr), self.predictor.features_cfg.sequence)
        else:
            n = 1 + int(round(window * sr)) // self.predictor.features_cfg.hop_length
        return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE

    def _features(self, audio: np.ndarray, sr: int | None = None):
        from ..features import extract

        return extract(Clip(audio, sr or self.sample_rate, "live"), self.predictor.features_cfg)

    def _yamnet_features(self, end: int):
        """YAMNet features of the window ending at ``end``, each frame computed once per stream."""
        from ..features import Features, yamnet

        cfg = self.predictor.features_cfg
        last = (end - yamnet.WINDOW) // yamnet.HOP
        first = last - (self._win - yamnet.WINDOW) // yamnet.HOP
        ks = list(range(first, last + 1))
        todo = [k for k in ks if k not in self._frames]
        if todo:
            clips = [Clip(self._audio(k * yamnet.HOP, k * yamnet.HOP + yamnet.WINDOW), yamnet.SAMPLE_RATE)
                     for k in todo]
            for k, f in zip(todo, yamnet.extract_yamnet_many(clips, cfg)):
                self._frames[k] = (f.values[0], f.scores[0])
        for k in [k for k in self._frames if k < first]:
            del self._frames[k]
        values = np.stack([self._frames[k][0] for k in ks])
        scores = np.stack([self._frames[k][1] for k in ks])
        return Features(values=values, times=yamnet.frame_times(len(ks)), names=yamnet.NAMES,
                        config=cfg, scores=scores)

    def _log(self, p: LivePrediction) -> None:
        """Extend the current event, or open a new one when a class starts."""
        if not p.is_class:
            return
        extend_events(self.events, p.label, p.time - self._window_s, p.time, p.confidence)

