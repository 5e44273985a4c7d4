"""The Ray engine: join a Ray cluster (``ray.init(address=...)``) or start a local Ray instance.

    engine = RayEngine("10.0.0.5:6379")    # a cluster's GCS address, "ray://host:10001", or "auto"
    engine = RayEngine(None, num_cpus=2)    # a local instance: real worker processes on this machine

An address is checked with a plain TCP connection first (``CONNECT_TIMEOUT`` s),
so a wrong or unreachable one is a one-line EngineError at once rather than
Ray's own minute-long retries. The nodes need audioclf installed (``pip install``
in the cluster's setup commands); ``ship_code=True`` sends this copy instead
(``runtime_env`` ``py_modules``; the nodes still need its dependencies).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
import sys
from typing import Any, Callable, Iterable

from audioclf import workspace
from audioclf.engines.base import ClusterInfo, EngineError, ExtractResult, NodeInfo, R, T, model_settings, quiet
from audioclf.progress import Progress
from audioclf.engines.manifest import is_uri, read_manifest
from audioclf.features import FeatureConfig, config_key

CONNECT_TIMEOUT = 5.0  # seconds for the TCP check of an address
CANCEL_GRACE = 10.0  # seconds an interrupted task has to end before it is killed
DEFAULT_PORT = 6379  # a GCS address without a port
CLIENT_PORT = 10001  # a ray:// address without a port
BATCH_SIZE = 64  # clips per block: one decode task, one actor call, one store shard
OBJECT_STORE_MB = 256  # a local instance's object store: blocks of decoded audio pass through it
STORE_FOLDER = "store"  # the default store: <workspace>/cache/store (one machine only)
# Ray reads this when it is imported: "0" makes a local instance use 127.0.0.1 for every
# service (else it picks the machine's outward address). Only for instances we start.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address, for the reachability check."""
    text = address.strip()
    default = CLIENT_PORT if text.startswith("ray://") else DEFAULT_PORT
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.rstrip("/")
    if text.startswith("["):  # [::1]:6379
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        raise EngineError(f"{address!r} is not a Ray address; give host:port (e.g. 127.0.0.1:6379).")
    try:
        return host, int(port) if port else default
    except ValueError:
        raise EngineError(f"{address!r} is not a Ray address: the port {port!r} is not a number.") from None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """EngineError (one line) unless something listens at the address's host and port."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.timeout:
        raise EngineError(f"No Ray cluster answers at {address} (no reply within {timeout:g} s); "
                          "check the address and that the head node is running (`ray start --head`).") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EngineError(f"No Ray cluster at {address} ({reason}); check the address and that the head "
                          "node is running (`ray start --head`).") from None


class RayEngine:
    """Work spread over a Ray cluster's nodes; see :mod:`audioclf.engines`."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 object_store_mb: int | None = None, batch_size: int = BATCH_SIZE,
                 cpus_per_actor: float = 1.0, ship_code: bool = False):
        self.address = address
        self.batch_size = int(batch_size)
        self.cpus_per_actor = float(cpus_per_actor)
        self._owns = False
        if address is None and "ray" not in sys.modules:
            os.environ.setdefault(LOOPBACK_ENV, "0")
        import ray

        quiet()
        if address and address != "auto":
            check_reachable(address)
        if ray.is_initialized():
            return  # this process is already a driver (a test's cluster, an earlier engine): use it
        # No runtime_env by default: workers Ray has prestarted can then take the first tasks
        # (a job-level runtime_env makes every worker a new process, seconds each).
        runtime_env: dict[str, Any] = {}
        if address and ship_code:
            runtime_env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
        try:
            if address:
                ray.init(address=address, runtime_env=runtime_env or None, log_to_driver=False,
                         logging_level="error", configure_logging=True)
            else:
                mb = object_store_mb or OBJECT_STORE_MB
                ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=mb * 1024 * 1024,
                         log_to_driver=False, logging_level="error")
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001  (ConnectionError, RuntimeError, ValueError from ray.init)
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise EngineError(f"Cannot connect to {where}: {str(exc).strip().splitlines()[0]}") from None
        self._owns = True

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (and stop a local instance this engine started); a joined cluster keeps running."""
        import ray

        if self._owns and ray.is_initialized():
            if "audioclf.engines.ray_extract" in sys.modules:  # warm actors end with this session
                sys.modules["audioclf.engines.ray_extract"].shutdown_pools()
            ray.shutdown()
        self._owns = False

    # ------------------------------------------------------------ describe

    def describe(self) -> ClusterInfo:
        import ray

        nodes = []
        head = _head_node_id()
        for n in ray.nodes():
            res = n.get("Resources", {}) or {}
            nodes.append(NodeInfo(node_id=n["NodeID"], host=n.get("NodeManagerAddress", "?"),
                                  cpus=float(res.get("CPU", 0.0)), alive=bool(n.get("Alive")),
                                  memory_gb=round(res.get("memory", 0.0) / 1e9, 1) or None,
                                  is_head=n["NodeID"] == head))
        total = ray.cluster_resources().get("CPU", 0.0)
        free = ray.available_resources().get("CPU", 0.0)
        return ClusterInfo(engine=self.name, address=self.address or _gcs_address(), nodes=nodes,
                           busy_cpus=max(0.0, total - free), running=_running_tasks())

    # ------------------------------------------------------------ work

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, num_cpus: float = 1.0,
            env: dict[str, str] | None = None) -> list[R]:
        """`fn(item)` for each item as Ray tasks across the cluster; results in order.

        `fn` must be importable on the nodes (a module-level function). A task's exception is
        raised here as itself (Ray's error is also an instance of the original class).
        """
        import ray

        options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": 2}
        if env:
            options["runtime_env"] = {"env_vars": dict(env)}
        task = ray.remote(fn).options(**options)
        refs = [task.remote(item) for item in items]
        return ray.get(refs)

    def launch(self, fn: Callable[..., Any], calls: Iterable[tuple], *, num_cpus: float = 1.0,
               env: dict[str, str] | None = None) -> "Tasks":
        """Start `fn(*args)` for each tuple of `calls` as a Ray task, without waiting (search workers).

        `env` is set in the task's worker process (Ray's runtime_env env_vars).
        """
        import ray

        options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": 0}
        if env:
            options["runtime_env"] = {"env_vars": dict(env)}
        task = ray.remote(fn).options(**options)
        return Tasks([task.remote(*args) for args in calls])

    def cpus(self) -> int:
        import ray

        return int(ray.cluster_resources().get("CPU", 1))

    def extract(self, source: Any, config: FeatureConfig, *, store: str | os.PathLike | None = None,
                progress: Progress | None = None, skip_existing: bool = True,
                actors: int | None = None, on_summary: Callable[[list[dict]], None] | None = None
                ) -> ExtractResult:
        """Extract every clip of `source` into the feature store `store` (default: the workspace's,
        fine on one machine only: a cluster needs a root all nodes reach, e.g. s3:// or NFS)."""
        from audioclf.engines import ray_extract
        from audioclf.features.store import FeatureStore

        t0 = time.perf_counter()
        config, settings = _portable(config)
        key = config_key(config)
        root = os.fspath(store) if store is not None else str(workspace.cache_dir() / STORE_FOLDER)
        if not is_uri(root):
            root = os.path.abspath(root)
        fstore = FeatureStore(root)
        table = read_manifest(source)
        total = table.num_rows
        skipped = 0
        if skip_existing and total:
            from audioclf.engines.local import not_stored_mask

            mask = not_stored_mask(fstore, config, table.column("path").to_pylist())
            skipped = total - sum(mask)
            table = table.filter(mask)

        def report(done: int, _total: int) -> None:
            if progress:
                progress(skipped + done, total)

        result = ray_extract.run(table, config, key=key, store_root=root, progress=report,
                                 batch_size=self.batch_size, actors=actors, cpus_per_actor=self.cpus_per_actor,
                                 on_summary=on_summary, settings=settings)
        result.total, result.skipped = total, skipped
        result.seconds = time.perf_counter() - t0
        return result


class Tasks:
    """Ray tasks started by :meth:`RayEngine.launch`: poll, wait, cancel, read their errors."""

    def __init__(self, refs: list):
        self.refs = refs

    def pending(self) -> int:
        import ray

        _, waiting = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        return len(waiting)

    def wait(self, timeout: float) -> None:
        """Return when every task has finished, or after `timeout` seconds."""
        import ray

        ray.wait(self.refs, num_returns=len(self.refs), timeout=timeout)

    def cancel(self, grace: float = CANCEL_GRACE) -> None:
        """Stop the tasks still running: interrupted first (a KeyboardInterrupt in the task), killed
        only if one still runs `grace` seconds later.

        Not killed at once: Ray's force-cancel fails the task in the driver straight away, and if
        the task's reply is already on its way, the driver's core worker aborts this whole process
        (task_manager.cc, "Tried to complete task that was not pending"). A search cancelled as a
        trial finished did that: the CLI's or a test's process ended with no message.
        """
        import ray

        _, running = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        for force in (False, True):
            for ref in running:
                try:
                    ray.cancel(ref, force=force)
                except Exception:  # noqa: BLE001  (finished meanwhile)
                    continue
            if not running or force:
                return
            _, running = ray.wait(running, num_returns=len(running), timeout=grace)

    def errors(self) -> list[str]:
        """One line per finished task that raised (its exception's message)."""
        import ray

        done, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        out = []
        for ref in done:
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001
                cause = getattr(exc, "cause", None) or exc
                out.append(f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}")
        return out


def _portable(config: FeatureConfig) -> tuple[FeatureConfig, dict[str, str]]:
    """The config as every node must read it, and the settings its actors load the model with.

    Whether a config may name its model is decided here, by this process's workspace and
    settings (:mod:`audioclf.features.sources`): a refused model is an error before the job
    starts. A node has its own environment and workspace, so the model is resolved here (YAMNet's
    "" and links; EfficientAT's name to the file found here) and the actors are given that file
    as their owner's setting (:func:`~audioclf.engines.base.model_settings`), which their own
    check then trusts: the file this check allowed, not whatever the node's settings say.
    """
    from dataclasses import replace

    settings = model_settings()
    if config.kind == "yamnet":
        from audioclf.features import sources
        from audioclf.features.yamnet import ENV_MODEL, check_source, resolve_spec

        check_source(config.model)
        config = replace(config, model=resolve_spec(config.model))
        if not sources.is_url(config.model):
            settings[ENV_MODEL] = config.model
    elif config.kind == "efficientat" and config.sequence != "mel":
        from audioclf.features.efficientat.weights import ENV_WEIGHTS, check_source, is_path, local_checkpoint

        check_source(config.model)
        local = local_checkpoint(config.model)
        if local is not None:
            settings[ENV_WEIGHTS] = str(local)
            if is_path(config.model):
                config = replace(config, model=str(local))
    return config, settings


def _head_node_id() -> str | None:
    import ray

    try:
        ctx = ray.get_runtime_context()
        return ctx.get_node_id()  # the driver runs on the head node, or on the node it joined from
    except Exception:  # noqa: BLE001
        return None


def _gcs_address() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001
        return None


def _running_tasks() -> list[str]:
    """Names of running tasks and actors, from Ray's state API (needs the dashboard; [] without it)."""
    try:
        from ray.util.state import list_tasks

        tasks = list_tasks(filters=[("state", "=", "RUNNING")], limit=100, timeout=2, raise_on_missing_output=False)
        return sorted({t.name for t in tasks})
    except Exception:  # noqa: BLE001  (no dashboard on a bare local instance)
        return []
