"""How long work says how far it is: one vocabulary for every long job.

Three shapes, each with one name:

* :data:`Progress` ``(done, total)``: one counted phase (clips extracted, files read).
  ``total`` may be 0 when it is not known yet.
* :data:`OnEvent` ``(event)``: a multi-phase job (a training run, a cross-validation,
  a search) reports typed :class:`Event` dicts; ``event["phase"]`` says which phase,
  one of :data:`PHASES`, and the other keys depend on it (see :class:`Event`).
* :data:`Stages` ``(stage, done, total)``: a check that runs named stages in turn
  (the data set health check, a labelling session).

    >>> from audioclf.progress import Event
    >>> Event(phase="extracting", done=3, total=10)["phase"]
    'extracting'
"""
from __future__ import annotations

from typing import Callable, TypedDict

# The phases an Event names. A training run: choosing (Auto), extracting, training (one event per
# epoch), chosen (Auto's result). A cross-validation adds fold. A search: extracting, searching,
# training (its final run; that run's own events come as final-<phase>).
PHASES = ("choosing", "chosen", "extracting", "training", "evaluating", "fold", "searching")


class Event(TypedDict, total=False):
    """One progress report of a multi-phase job; ``phase`` is always there."""

    phase: str
    done: int  # extracting, choosing: clips so far ...
    total: int  # ... of this many (warped copies included)
    epoch: int  # training: this epoch ...
    epochs: int  # ... of at most this many
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    elapsed: float  # s since training started
    eta: float  # s still to go at this pace
    fold: int  # cross-validation: this fold ...
    folds: int  # ... of this many
    groups: list  # the groups the fold holds out
    macro_f1: float  # fold: its score on the held-out clips
    trials: int  # searching: trials so far ...
    target: int | None  # ... of this many (None: until the time runs out)
    best_value: float | None
    trial: int  # training (a search's final run): the best trial's number


Progress = Callable[[int, int], None]
OnEvent = Callable[[Event], None]
Stages = Callable[[str, int, int], None]
