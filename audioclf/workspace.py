"""Where audioclf keeps things: one workspace folder, ``$AUDIOCLF_HOME`` or ``./workspace``.

Every function reads the environment on each call, so a test (or a user) can
point the library at another workspace at any time. Nothing in the library
writes outside ``home()``.
"""
from __future__ import annotations

import os
from pathlib import Path

from audioclf.errors import AudioclfError

ENV_HOME = "AUDIOCLF_HOME"
ENV_READONLY = "AUDIOCLF_READONLY"
DEFAULT_HOME = "workspace"
TRUE_WORDS = ("1", "true", "yes", "on")

DATASETS = "datasets"
CACHE = "cache"
RUNS = "runs"
MODELS = "models"


class ReadOnlyError(AudioclfError):
    """A training, deleting or data-set-editing action refused in read-only mode."""


def read_only() -> bool:
    """True when ``$AUDIOCLF_READONLY`` is set to 1/true/yes/on (a shared demo)."""
    return os.environ.get(ENV_READONLY, "").strip().lower() in TRUE_WORDS


def require_writable(action: str) -> None:
    """Refuse ``action`` (e.g. "delete a run") with :class:`ReadOnlyError` in read-only mode.

    Called by every library function that trains, deletes, or adds to or edits a
    data set, so a read-only demo stays read-only whichever page or script calls
    them. Reading, predicting, the feature cache and the synthesised demo data
    set stay allowed: they change nothing a user made.
    """
    if read_only():
        raise ReadOnlyError(f"Cannot {action}: audioclf is in read-only mode ({ENV_READONLY} is set). "
                            f"Unset {ENV_READONLY} to train, delete or edit data sets.")


def home() -> Path:
    """The workspace folder (``$AUDIOCLF_HOME`` or ``./workspace``), created on demand."""
    path = Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    """Folder holding the user's data sets."""
    return _sub(DATASETS)


def cache_dir() -> Path:
    """Folder holding the feature cache (safe to delete: it is rebuilt on demand)."""
    return _sub(CACHE)


def runs_dir() -> Path:
    """Folder holding training runs."""
    return _sub(RUNS)


def models_dir() -> Path:
    """Folder holding downloaded or exported models."""
    return _sub(MODELS)
