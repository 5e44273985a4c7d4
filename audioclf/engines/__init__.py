"""Where work runs: ``local`` (this machine's process pool; the default, never imports Ray)
or ``ray`` (a Ray cluster: joined at an address, or a local Ray instance).

    from audioclf.engines import get_engine
    with get_engine("ray", address="head:6379") as engine:   # or $AUDIOCLF_RAY_ADDRESS
        result = engine.extract("clips.parquet", YAMNetConfig(), store="s3://bucket/features",
                                progress=lambda done, total: ...)
        scores = engine.map(score_fold, folds)                # CV folds, Auto's checks
        engine.describe()                                     # nodes, CPUs, what is running

Every engine has the same small API: ``extract(source, config, *, store=None,
progress=None)`` -> :class:`ExtractResult` (bad files listed with their reason,
never a failed job), ``map(fn, items)`` -> results in order, ``describe()`` ->
:class:`ClusterInfo`, ``close()``. Ray is imported only by :mod:`.ray_engine`,
and only when a ``ray`` engine is made.
"""
from __future__ import annotations

import os

from audioclf.engines.base import ClusterInfo, EngineError, ExtractResult, NodeInfo
from audioclf.engines.local import LocalEngine
from audioclf.engines.manifest import ManifestError, read_manifest

ENGINES = ("local", "ray")
ENV_ENGINE = "AUDIOCLF_ENGINE"
ENV_RAY_ADDRESS = "AUDIOCLF_RAY_ADDRESS"

__all__ = ["ENGINES", "ENV_ENGINE", "ENV_RAY_ADDRESS", "ClusterInfo", "EngineError", "ExtractResult",
           "LocalEngine", "ManifestError", "NodeInfo", "get_engine", "read_manifest", "ray_address"]


def ray_address(address: str | None = None) -> str | None:
    """The Ray cluster to join: `address`, else $AUDIOCLF_RAY_ADDRESS, else None (start one here)."""
    text = (address if address is not None else os.environ.get(ENV_RAY_ADDRESS, "")).strip()
    return text or None


def get_engine(name: str | None = None, address: str | None = None, **options):
    """The engine called `name` ("local" or "ray"; None: $AUDIOCLF_ENGINE, else "local").

    For "ray", `address` (or $AUDIOCLF_RAY_ADDRESS) joins an existing cluster; none starts
    a local Ray instance of real worker processes. An unreachable address is an EngineError
    within seconds. `options` go to the engine (local: n_jobs; ray: num_cpus, object_store_mb, ...).
    """
    name = (name or os.environ.get(ENV_ENGINE, "") or "local").strip().lower()
    if name == "local":
        if address:
            raise EngineError("The local engine runs on this machine and takes no address; use --engine ray.")
        return LocalEngine(**options)
    if name == "ray":
        from audioclf.engines.ray_engine import RayEngine

        return RayEngine(ray_address(address), **options)
    raise EngineError(f"Unknown engine {name!r}; use one of {', '.join(ENGINES)}.")
