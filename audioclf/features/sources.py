"""Which model a config may name: a run's ``config.json``, a study or any settings file can
name a feature model, and a model from elsewhere can run code on this machine (a SavedModel's
graph can write files) or make it read what it should not (issue 21).

A config may name only:

- a file or folder in the workspace's models folder (``<workspace>/models``);
- the file or folder the owner named in the environment (``$AUDIOCLF_YAMNET``,
  ``$AUDIOCLF_EFFICIENTAT``), or something inside that folder;
- a known source the feature type lists (TF Hub's YAMNet URL; EfficientAT's official
  names, whose downloads are checked by SHA-256).

Everything else is refused before it is opened, with :func:`refusal`'s message.
"""
from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from audioclf import workspace

URL_SCHEMES = ("http://", "https://", "gs://")


def is_url(spec: str) -> bool:
    return spec.startswith(URL_SCHEMES)


def absolute(spec: str) -> Path:
    """``spec`` as an absolute path, ``~`` expanded and ``..`` removed as written (links not followed)."""
    return Path(os.path.abspath(os.path.expanduser(spec)))


def trusted(spec: str, env_var: str, known: Collection[str] = ()) -> bool:
    """True if a config may name ``spec`` (see the module doc); "" (the default resolution) always may.

    A path counts as in the models folder with links followed, or as written without
    ``..``: a link the owner put in the models folder is theirs to put there.
    """
    spec = spec.strip()
    if not spec or spec in known:
        return True
    env = os.environ.get(env_var, "").strip()
    if is_url(spec) or is_url(env):
        return spec == env
    path, models = absolute(spec), workspace.models_dir()
    real = path.resolve()
    if env and (real == absolute(env).resolve() or real.is_relative_to(absolute(env).resolve())
                and absolute(env).is_dir()):
        return True
    if real.is_relative_to(models):
        return True
    # As written: "models/link/../x" reads as inside but opens beside the link's target.
    return ".." not in Path(spec).parts and path.is_relative_to(models)


def missing(spec: str) -> bool:
    """True for a local path where nothing is: nothing to load, so "no model there" is the better answer."""
    spec = spec.strip()
    return bool(spec) and not is_url(spec) and not os.path.lexists(absolute(spec))


RUNS_CODE = "a model from elsewhere can run code on this machine"


def refusal(what: str, spec: str, env_var: str, known: str = "", risk: str = RUNS_CODE) -> str:
    """The message for a refused ``spec``: why, where models may come from, how to use it anyway."""
    models = workspace.models_dir()
    also = f", or {known}" if known else ""
    return (f"Refusing to load the {what} model {spec.strip()}: its settings (such as a run's config.json) name "
            f"a model outside {models}, and {risk}. audioclf "
            f"loads {what} only from {models}, from what {env_var} names{also}. If you trust it, copy it into "
            f"{models} or set {env_var} to it.")
