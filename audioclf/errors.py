"""The one base class of every error the library raises for people to read.

    from audioclf.errors import AudioclfError
    try:
        ...
    except AudioclfError as exc:  # bad audio, data set, config, model file, run...
        print(exc)

Each module keeps its own subclass (AudioError, DatasetError, TrainingError...),
so callers can still tell them apart; a last-line handler (the app's `guard`,
the CLI's `main`) catches this one class instead of a list of names. It is a
ValueError, as the library's errors always were, so existing `except
ValueError` blocks keep working.
"""
from __future__ import annotations


class AudioclfError(ValueError):
    """An input or state the library cannot work with; the message says what to fix."""
