"""A live classifier on a thread of its own, so that a caller delivering audio (a WebRTC
callback) never waits for a model::

    session = LiveSession(LiveClassifier(Predictor.load(run_id)))
    session.push(block, sr=48000)        # from the audio thread; never blocks
    session.snapshot().events            # from the page, any time
    session.stop()
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..audio import Clip
from .events import LiveEvent
from .live import LiveClassifier, LivePrediction

QUEUE_BLOCKS = 500  # blocks a LiveSession buffers before dropping the oldest (10 s of 20 ms blocks)
# A label is stale (shown as the last one heard, not as what is heard now) when no newer one
# came for this many hops, or this many seconds if longer: the stream paused or stopped.
STALE_HOPS, STALE_MIN_SECONDS = 4, 3.0

log = logging.getLogger(__name__)


@dataclass
class LiveSnapshot:
    """What a page shows: the latest labels and events, copied under the session's lock."""

    history: list[LivePrediction]
    events: list[LiveEvent]
    stream_seconds: float
    window_seconds: float
    hop_seconds: float
    skipped: int
    error: str = ""
    # Seconds of microphone audio dropped unheard because the queue was full (the worker fell
    # more than QUEUE_BLOCKS behind): the stream's clock then runs behind the microphone's.
    dropped_seconds: float = 0.0
    running: bool = False
    latency: dict = field(default_factory=dict)
    # The newest label of the session, kept across streams: what stays on screen between
    # labels, after Stop and while a new stream fills its first window (None before any).
    last: LivePrediction | None = None
    last_age: float = 0.0  # s since `last` was made
    last_current: bool = False  # `last` belongs to the current stream

    @property
    def stale(self) -> bool:
        """True unless `last` is of the current stream and recent (see STALE_HOPS)."""
        limit = max(STALE_MIN_SECONDS, STALE_HOPS * self.hop_seconds)
        return self.last is None or not self.last_current or self.last_age > limit


def block_seconds(samples: np.ndarray, sr: int, channels: int = 1) -> float:
    """Seconds of audio in a PCM block of `channels` interleaved (or planar) channels at `sr`."""
    return float(np.asarray(samples).size) / max(1, int(channels)) / max(1, int(sr))


class LiveSession:
    """A :class:`~audioclf.inference.live.LiveClassifier` on a worker thread: :meth:`push` never waits for the model.

    ``push`` queues PCM blocks (dropping the oldest when the queue is full, counted in
    ``LiveSnapshot.dropped_seconds`` so a page can say so); the
    worker feeds them to the classifier in order. :meth:`snapshot` copies the
    current state for display from any thread. :meth:`reset` starts a new stream;
    the session's last label outlives it (``LiveSnapshot.last``), so a display never
    goes blank once something was heard.
    """

    def __init__(self, classifier: LiveClassifier):
        self.classifier = classifier
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._lock = threading.Lock()
        self._error = ""
        self._stop = threading.Event()
        self._last: LivePrediction | None = None
        self._last_at = 0.0  # time.monotonic() when _last was made
        self._stream = self._last_stream = 0  # streams started (resets); the one _last is of
        self._dropped = 0.0  # seconds of this stream's audio dropped from a full queue
        self._thread = threading.Thread(target=self._run, name="audioclf-live", daemon=True)
        self._thread.start()

    def push(self, samples: np.ndarray, sr: int, channels: int = 1) -> None:
        """Queue a PCM block (from any thread); never blocks."""
        while True:
            try:
                self._queue.put_nowait((samples, sr, channels))
                return
            except queue.Full:
                try:
                    old, old_sr, old_channels = self._queue.get_nowait()
                except queue.Empty:
                    continue
                with self._lock:
                    self._dropped += block_seconds(old, old_sr, old_channels)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                with self._lock:
                    made = self.classifier.feed(*item)
                    if made:
                        self._last, self._last_at, self._last_stream = made[-1], time.monotonic(), self._stream
            except ValueError as exc:  # AudioError, LiveError, PredictError: messages for people
                with self._lock:
                    self._error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug: keep the thread, say what happened
                log.exception("live classification failed")
                with self._lock:
                    self._error = f"unexpected error: {type(exc).__name__}: {exc}"

    def snapshot(self) -> LiveSnapshot:
        """A copy of the latest labels, events and timing."""
        with self._lock:
            c = self.classifier
            history = list(c.history)
            lat = np.array([p.latency for p in history]) if history else np.zeros(0)
            return LiveSnapshot(
                history=history, events=[LiveEvent(**vars(e)) for e in c.events],
                stream_seconds=c.stream_seconds, window_seconds=c.window_seconds,
                hop_seconds=c.hop_seconds, skipped=c.skipped, error=self._error,
                dropped_seconds=self._dropped,
                running=self._thread.is_alive(),
                latency={"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95))}
                if lat.size else {},
                last=self._last, last_age=time.monotonic() - self._last_at if self._last else 0.0,
                last_current=self._last is not None and self._last_stream == self._stream)

    def recent_audio(self, start: float, end: float) -> Clip | None:
        """:meth:`LiveClassifier.recent_audio`, under the session's lock."""
        with self._lock:
            return self.classifier.recent_audio(start, end)

    def reset(self) -> None:
        """Start a new stream: forget the last one's audio, labels and events (queued blocks are
        dropped); its last label stays as the session's ``last`` until the new stream labels."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with self._lock:
            self.classifier.reset()
            self._error = ""
            self._dropped = 0.0
            self._stream += 1

    def stop(self, timeout: float = 2.0) -> None:
        """End the worker thread."""
        self._stop.set()
        self._thread.join(timeout)
