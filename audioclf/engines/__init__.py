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

import json
import os
import re
import subprocess
import sys

from audioclf.engines.base import ClusterInfo, EngineError, ExtractResult, NodeInfo, task_env
from audioclf.engines.local import LocalEngine
from audioclf.engines.manifest import ManifestError, read_manifest

ENGINES = ("local", "ray")
ENV_ENGINE = "AUDIOCLF_ENGINE"
ENV_RAY_ADDRESS = "AUDIOCLF_RAY_ADDRESS"
DESCRIBE_TIMEOUT = 60.0  # seconds for `describe_engine`'s child process (joining, asking, leaving)

__all__ = ["ENGINES", "ENV_ENGINE", "ENV_RAY_ADDRESS", "ClusterInfo", "EngineError", "ExtractResult",
           "LocalEngine", "ManifestError", "NodeInfo", "describe_engine", "get_engine", "read_manifest",
           "ray_address", "task_env"]


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


def describe_engine(name: str | None = None, address: str | None = None,
                    timeout: float = DESCRIBE_TIMEOUT) -> ClusterInfo:
    """`get_engine(name, address).describe()` in a child process (`audioclf engines --format json`).

    For the app: its server never becomes a Ray driver (a Ray connection belongs to a process,
    and the server's threads come and go), and a hung cluster cannot block a page.
    """
    cmd = [sys.executable, "-m", "audioclf", "engines", "--format", "json"]
    if name:
        cmd += ["--engine", name]
    if address:
        cmd += ["--address", address]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EngineError(f"The {name or 'local'} engine did not answer within {timeout:g} s.") from None
    if out.returncode != 0:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        last = re.sub(r"^audioclf \w+: error: ", "", lines[-1]) if lines else f"`{' '.join(cmd[2:])}` failed."
        raise EngineError(last)
    d = json.loads(out.stdout)
    return ClusterInfo(engine=d["engine"], address=d.get("address"),
                       nodes=[NodeInfo(**n) for n in d.get("nodes", [])], busy_cpus=d.get("busy_cpus"),
                       running=list(d.get("running", [])))
