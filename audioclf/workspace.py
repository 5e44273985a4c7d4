"""Where audioclf keeps things: one workspace folder, ``$AUDIOCLF_HOME`` or ``./workspace``.

Every function reads the environment on each call, so a test (or a user) can
point the library at another workspace at any time. Nothing in the library
writes outside ``home()``.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "AUDIOCLF_HOME"
DEFAULT_HOME = "workspace"

DATASETS = "datasets"
CACHE = "cache"
RUNS = "runs"
MODELS = "models"


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
