"""The event log of a live stream: consecutive windows given one class make one event.

    >>> log = []
    >>> extend_events(log, "siren", 0.0, 1.5, 0.9)
    >>> extend_events(log, "siren", 0.5, 2.0, 0.97)
    >>> log
    [LiveEvent(label='siren', start=0.0, end=2.0, peak=0.97, windows=2)]
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_EVENTS = 200  # events kept in the log


@dataclass
class LiveEvent:
    """A stretch of the stream given one class: consecutive windows with that label."""

    label: str
    start: float  # s, stream time of the first window's start
    end: float  # s, stream time of the last window's end
    peak: float  # highest confidence
    windows: int = 1

    def to_dict(self) -> dict:
        return {"label": self.label, "start": round(self.start, 2), "end": round(self.end, 2),
                "peak": round(self.peak, 4), "windows": self.windows}


def extend_events(events: list[LiveEvent], label: str, start: float, end: float, confidence: float) -> None:
    """Extend the last event with a window (``start``..``end`` s) labelled ``label``, or open a new one.

    A window of the same class that starts no later than the last event's end
    (one hop apart at most) continues that event. Only the newest MAX_EVENTS stay.
    """
    last = events[-1] if events else None
    if last is not None and last.label == label and start <= last.end + 1e-6:
        last.end = end
        last.peak = max(last.peak, confidence)
        last.windows += 1
        return
    events.append(LiveEvent(label, max(0.0, start), end, confidence))
    del events[:-MAX_EVENTS]
