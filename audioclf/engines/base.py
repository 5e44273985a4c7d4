"""What every engine returns and describes: the extraction result and the cluster's shape.

Ray-free, like everything in :mod:`audioclf.engines` but ``ray_*.py``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from audioclf.errors import AudioclfError

STORE_SHARD_ROWS = 256  # clips per shard when the local engine fills a store
QUIET_LOGGERS = ("ray", "ray.data")
# What an engine's map() takes and returns, for every engine's signature.
T = TypeVar("T")
R = TypeVar("R")


class EngineError(AudioclfError):
    """An engine that cannot start, connect or finish; the message is one line for people."""


@dataclass
class ExtractResult:
    """What one extraction did: counts, the files that could not be used (with why), where it went."""

    engine: str
    total: int = 0
    extracted: int = 0  # computed by this call
    skipped: int = 0  # already in the store (or the cache), not computed again
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    store: str | None = None  # the feature store's root; None: the single-machine SQLite cache
    config_key: str = ""
    seconds: float = 0.0
    by_node: dict[str, int] = field(default_factory=dict)  # node -> clips it computed
    workers: int = 0
    started: float = field(default_factory=time.time)

    @property
    def ok(self) -> int:
        return self.total - len(self.errors)

    @property
    def clips_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NodeInfo:
    node_id: str
    host: str
    cpus: float
    alive: bool = True
    memory_gb: float | None = None
    is_head: bool = False


@dataclass
class ClusterInfo:
    """The shape of where work runs, for the app's sidebar and `audioclf engines`."""

    engine: str
    address: str | None
    nodes: list[NodeInfo]
    busy_cpus: float | None = None  # CPUs taken by running tasks and actors (None: not known)
    running: list[str] = field(default_factory=list)  # names of running tasks, when the cluster says

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes if n.alive)

    def to_dict(self) -> dict:
        return {**asdict(self), "cpus": self.cpus}


def quiet() -> None:
    """Ray's INFO lines (dataset started/finished, progress bars off) are not for our users."""
    import logging

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def task_env() -> dict[str, str]:
    """Environment of a training task on a cluster (a search trial, a fold): this workspace (which its
    node must reach), the owner's model settings (:func:`model_settings`), one TensorFlow thread per
    task's CPU. One dict for both, so Ray can reuse the worker processes (with TensorFlow loaded)
    from one kind of task for the other."""
    from audioclf import workspace

    return {workspace.ENV_HOME: str(workspace.home()), "AUDIOCLF_TF_THREADS": "1", "OMP_NUM_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3", **model_settings()}


def model_settings() -> dict[str, str]:
    """The feature-model settings the owner gave this process ($AUDIOCLF_YAMNET, $AUDIOCLF_EFFICIENTAT
    and its download mirror), paths made absolute.

    A cluster's worker processes have their node's environment, not the driver's (a joined
    cluster's raylet was started elsewhere), so without these a worker refuses a model the
    owner trusted here (UntrustedModel) or resolves a default to another file."""
    from audioclf.features import sources
    from audioclf.features.efficientat.weights import ENV_RELEASE, ENV_WEIGHTS
    from audioclf.features.yamnet import ENV_MODEL

    out = {}
    for var in (ENV_MODEL, ENV_WEIGHTS):
        value = os.environ.get(var, "").strip()
        if value:
            out[var] = value if sources.is_url(value) else str(sources.absolute(value))
    if os.environ.get(ENV_RELEASE, "").strip():
        out[ENV_RELEASE] = os.environ[ENV_RELEASE].strip()
    return out
