"""Where audioclf keeps things: one workspace folder, ``$AUDIOCLF_HOME`` or ``./workspace``.

Every function reads the environment on each call, so a test (or a user) can
point the library at another workspace at any time. Nothing in the library
writes outside ``home()``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from audioclf.errors import AudioclfError

ENV_HOME = "AUDIOCLF_HOME"
ENV_READONLY = "AUDIOCLF_READONLY"
ENV_ALLOW = "AUDIOCLF_READONLY_ALLOW"  # what the owner still allows in read-only mode, e.g. "corrections"
ALLOWANCES = ("corrections",)  # "wrong? this is ..." and its retrain (audioclf.labelling.corrections)
DEFAULT_HOME = "workspace"
TRUE_WORDS = ("1", "true", "yes", "on")

DATASETS = "datasets"
CACHE = "cache"
RUNS = "runs"
TUNING = "tuning"  # hyperparameter studies
MODELS = "models"


class ReadOnlyError(AudioclfError):
    """A training, deleting or data-set-editing action refused in read-only mode."""


def read_only() -> bool:
    """True when ``$AUDIOCLF_READONLY`` is set to 1/true/yes/on (a shared demo)."""
    return os.environ.get(ENV_READONLY, "").strip().lower() in TRUE_WORDS


# The allowances the current call is working under (see `allowing`); per thread and task.
_ALLOWED: ContextVar[frozenset] = ContextVar("audioclf_allowed", default=frozenset())


def owner_allows(what: str) -> bool:
    """True when ``$AUDIOCLF_READONLY_ALLOW`` (comma-separated) names ``what``, one of :data:`ALLOWANCES`."""
    names = {n.strip().lower() for n in os.environ.get(ENV_ALLOW, "").split(",")}
    return what in ALLOWANCES and what in names


@contextmanager
def allowing(what: str, action: str = ""):
    """Run a block that may write in read-only mode if the owner allows ``what``.

    Outside read-only mode it changes nothing. In read-only mode it raises
    :class:`ReadOnlyError` at once unless :func:`owner_allows` ``what``; if allowed,
    :func:`require_writable` lets this block (this thread, this task) through, and
    only it: other visitors' calls stay refused.
    """
    if read_only() and not owner_allows(what):
        raise ReadOnlyError(f"Cannot {action or what}: audioclf is in read-only mode ({ENV_READONLY} is set). "
                            f"The owner can allow it with {ENV_ALLOW}={what}.")
    token = _ALLOWED.set(_ALLOWED.get() | {what})
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def require_writable(action: str) -> None:
    """Refuse ``action`` (e.g. "delete a run") with :class:`ReadOnlyError` in read-only mode.

    Called by every library function that trains, deletes, or adds to or edits a
    data set, so a read-only demo stays read-only whichever page or script calls
    them. Reading, predicting, the feature cache and the synthesised demo data
    set stay allowed: they change nothing a user made.
    """
    if read_only() and not _ALLOWED.get():
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
