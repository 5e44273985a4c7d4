"""Extraction on a Ray cluster: a warm pool of model-holding actors, fed blocks by the driver.

The manifest is cut into blocks of ``batch_size`` clips (paths, labels, groups:
~100 bytes a clip). Each block goes to a ``FeatureActor``, which holds the
feature model once (YAMNet's interpreter; EfficientAT's network), reads and
decodes the block's files, featurises them and writes them as one shard of the
feature store. Only a small summary per clip (hash, error, node) comes back to
the driver, which reports progress as blocks finish; a clip that cannot be read
is a row with its reason, never a failed job. An actor that dies (its worker
killed, its node lost) is replaced and its blocks are sent again; its
half-written shard has a temp name no reader sees.

Why not Ray Data's ``map_batches(..., compute=ActorPoolStrategy(...))``: its
actor pool belongs to one execution of one dataset and is killed when that
execution ends, so every job started new actor processes and loaded the model
again, seconds of fixed cost per job (docs/SCALE.md, "Where a Ray job's fixed
cost goes"). Here the actors outlive the job, in this driver's Ray session:
the next job with the same feature config and model file (another extraction,
Auto's quick check, a retrain) finds them warm. A pool ends after
``IDLE_TIMEOUT`` seconds without a job, when a different model or config takes
its place beyond ``MAX_POOLS``, or with the driver (Ray ends the actors a driver
owns when it disconnects), so it never holds a cluster on its own.

Imports Ray: only :mod:`audioclf.engines.ray_engine` imports this module.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import ray

from audioclf.audio import AudioError, Clip
from audioclf.engines.base import ExtractResult, quiet
from audioclf.engines.work import decode, extract_clips
from audioclf.features import FeatureConfig, Features, config_from_dict, config_to_dict
from audioclf.progress import Progress

IDLE_TIMEOUT = 600.0  # seconds a pool waits for its next job before its actors end
MAX_POOLS = 2  # warm pools kept at once (each actor holds a model in its node's memory)
IN_FLIGHT = 2  # blocks queued at each actor, so the next one is there when a block finishes
BLOCK_TRIES = 3  # an actor dying this often on one block makes its clips errors, not a failed job
PING_TIMEOUT = 10.0  # seconds a warm actor has to answer before a job
DEAD = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.ActorUnschedulableError)
REAP_EVERY = 1.0  # seconds between the reaper's looks at the pools' idle times

# How often this process loaded a feature model into an actor (read through FeatureActor.info):
# a warm pool's second job must not add to it.
_warm_ups = 0


class FeatureActor:
    """Holds the feature model once; decodes, featurises and stores blocks of manifest rows."""

    def __init__(self, config: dict, key: str, threads: int = 1, settings: dict[str, str] | None = None):
        # The driver's model settings (the model file it checked and resolved): this worker has
        # its node's environment. An actor's process is its own, so setting them here touches
        # no other work, and keeps the worker Ray prestarted (a runtime_env would start a new one).
        os.environ.update(settings or {})
        # The actor's CPUs are its threads: TFLite's (YAMNet) and TensorFlow's (EfficientAT).
        os.environ["AUDIOCLF_YAMNET_THREADS"] = str(max(1, int(threads)))
        os.environ.setdefault("AUDIOCLF_TF_THREADS", str(max(1, int(threads))))
        self.config = config_from_dict(config)
        self.key = key
        self.node = ray.get_runtime_context().get_node_id()
        self.stores: dict[str, object] = {}
        self.blocks = 0
        # The model loads while the first block is read and decoded (both wait on I/O and
        # native code, which release the GIL), instead of before it.
        self._ready = threading.Event()
        self._error: BaseException | None = None
        threading.Thread(target=self._warm_up, daemon=True).start()

    def _warm_up(self) -> None:
        """Load the feature model (and librosa) once per actor, with one window of noise."""
        global _warm_ups
        from audioclf.features import extract

        sr = self.config.sr or 16000
        noise = np.random.default_rng(0).normal(0, 0.1, sr).astype(np.float32)
        try:
            extract(Clip(samples=noise, sr=sr, name="warm-up"), self.config)
        except AudioError:
            pass
        except BaseException as exc:  # noqa: BLE001  (a model that cannot load: raised by each block)
            self._error = exc
        finally:
            _warm_ups += 1
            self._ready.set()

    def info(self) -> dict:
        """Who this actor is: process, node, model loads in its process, blocks done (for tests and checks)."""
        self._ready.wait()
        return {"pid": os.getpid(), "node": self.node, "warm_ups": _warm_ups, "blocks": self.blocks}

    def run(self, rows: list[dict], store_root: str) -> list[dict]:
        """Read, decode and featurise `rows` (row, path, label, group); write one shard; one summary per row."""
        from audioclf.features.store import FeatureStore, StoreRow

        decoded = [decode(r["path"], self.config) for r in rows]
        self._ready.wait()
        if self._error is not None:
            raise self._error
        feats = extract_clips([d.clip for d in decoded], self.config)
        store = self.stores.get(store_root)
        if store is None:
            store = self.stores[store_root] = FeatureStore(store_root)
        stored = [StoreRow(hash=d.hash, path=d.path, features=f, label=r.get("label"), group=r.get("group"),
                           size=d.size, mtime_ns=d.mtime_ns)
                  for r, d, f in zip(rows, decoded, feats) if isinstance(f, Features)]
        shard = store.write(self.config, stored, key=self.key)
        self.blocks += 1
        pid = os.getpid()
        return [{"row": r["row"], "path": d.path, "hash": d.hash,
                 "error": None if isinstance(f, Features) else str(f), "node": self.node, "pid": pid,
                 "shard": shard if isinstance(f, Features) else None}
                for r, d, f in zip(rows, decoded, feats)]


RemoteFeatureActor = ray.remote(FeatureActor)


@dataclass
class Slot:
    """One place in a pool: a node, and the actor currently holding the model there."""

    node: str
    actor: object = None
    replaced: int = 0  # actors started here after the first (dead ones replaced)


@dataclass
class Pool:
    """Model-holding actors for one (session, feature config, model file, threads); see the module doc."""

    key: tuple
    config: dict
    config_key: str
    threads: int
    settings: dict[str, str]
    slots: list[Slot] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0
    closed: bool = False

    def start(self, slot: Slot) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # No logical CPUs: an idle warm actor must not keep a trial or a fold from being scheduled.
        # Its node's share of the work is set by how many actors are placed there (one per
        # cpus_per_actor of the node's CPUs), not by Ray's accounting. Hard affinity: a soft one let
        # Ray put both of a two-node cluster's actors on one node; a lost node's slots move (replace).
        slot.actor = RemoteFeatureActor.options(
            num_cpus=0, max_restarts=0, max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node, soft=False),
        ).remote(self.config, self.config_key, self.threads, self.settings)

    def replace(self, slot: Slot, dead: object) -> None:
        if slot.actor is dead:  # two failed blocks of one actor: replace it once
            try:
                ray.kill(dead)  # "unavailable" may still be alive: it must not hold its model on
            except Exception:  # noqa: BLE001  (already gone)
                pass
            slot.replaced += 1
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
            if slot.node not in alive and alive:  # its node is gone: the least used live node takes it
                used = {node: sum(s.node == node for s in self.slots) for node in alive}
                slot.node = min(sorted(alive), key=used.get)
            self.start(slot)

    def check(self) -> None:
        """Replace the actors that died since the last job (a killed worker, a lost node) before
        blocks are sent to them; one ping each, all at once. One that does not answer within
        PING_TIMEOUT is left to the job, which replaces it if its first block fails."""
        pings = {slot.actor.info.remote(): slot for slot in self.slots}
        ready, _ = ray.wait(list(pings), num_returns=len(pings), timeout=PING_TIMEOUT)
        for ref in ready:
            try:
                ray.get(ref)
            except DEAD:
                self.replace(pings[ref], pings[ref].actor)

    def close(self) -> None:
        self.closed = True
        for slot in self.slots:
            if slot.actor is not None:
                try:
                    ray.kill(slot.actor)
                except Exception:  # noqa: BLE001  (already gone, or the session ended)
                    pass
                slot.actor = None

    def actors(self) -> list:
        return [s.actor for s in self.slots if s.actor is not None]


_pools: dict[tuple, Pool] = {}
_lock = threading.Lock()
_reaper: threading.Thread | None = None
idle_timeout = IDLE_TIMEOUT  # module setting: tests and long-lived services may shorten or lengthen it


def _session() -> tuple[str, str]:
    """This driver's Ray session: a pool's actor handles are valid in it only."""
    ctx = ray.get_runtime_context()
    return ctx.gcs_address, ctx.get_job_id()


def _model_identity(config: FeatureConfig, settings: dict[str, str]) -> tuple:
    """The model files a pool's actors loaded, by path, size and mtime: a file replaced under the
    same name is a different model and gets new actors."""
    out = []
    for value in sorted({getattr(config, "model", "") or "", *settings.values()}):
        try:
            st = os.stat(value)
        except (OSError, ValueError):
            out.append((value,))
            continue
        out.append((value, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _node_slots(actors: int | None, cpus_per_actor: float) -> list[str]:
    """Node id per actor: each alive node gets one per `cpus_per_actor` of its CPUs (or, for an
    explicit count, the count dealt round-robin in that proportion)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_node = [(n["NodeID"], max(1, int((n.get("Resources", {}) or {}).get("CPU", 0) // cpus_per_actor)))
                for n in nodes if (n.get("Resources", {}) or {}).get("CPU", 0) > 0]
    if not per_node:
        per_node = [(ray.get_runtime_context().get_node_id(), 1)]
    order: list[str] = []
    for i in range(max(c for _, c in per_node)):
        order += [node for node, c in per_node if c > i]
    if actors is None:
        return order
    return [order[i % len(order)] for i in range(max(1, int(actors)))]


def get_pool(config: FeatureConfig, key: str, settings: dict[str, str], actors: int | None,
             cpus_per_actor: float) -> Pool:
    """The warm pool for this config and model (started now if there is none); marks it busy."""
    threads = max(1, int(cpus_per_actor))
    nodes = _node_slots(actors, cpus_per_actor)
    pool_key = (_session(), key, _model_identity(config, settings), tuple(sorted(settings.items())), threads,
                tuple(sorted(nodes)))
    stale = []
    with _lock:
        session = pool_key[0]
        for k, p in list(_pools.items()):
            if k[0] != session:  # an earlier Ray session's handles: nothing to kill, just forget
                _pools.pop(k)
        pool = _pools.get(pool_key)
        warm = pool is not None
        if pool is None:
            # Beyond MAX_POOLS, the least recently used idle pool makes room.
            idle = sorted((p for p in _pools.values() if p.busy == 0), key=lambda p: p.last_used)
            while len(_pools) >= MAX_POOLS and idle:
                stale.append(_pools.pop(idle.pop(0).key))
            pool = Pool(key=pool_key, config=config_to_dict(config), config_key=key, threads=threads,
                        settings=dict(settings), slots=[Slot(n) for n in nodes])
            for slot in pool.slots:
                pool.start(slot)
            _pools[pool_key] = pool
        pool.busy += 1
        pool.last_used = time.monotonic()
    for p in stale:
        p.close()
    _ensure_reaper()
    if warm:
        try:
            pool.check()
        except BaseException:
            release(pool)
            raise
    return pool


def release(pool: Pool) -> None:
    with _lock:
        pool.busy -= 1
        pool.last_used = time.monotonic()


def pools() -> list[Pool]:
    """The warm pools of this driver's current session."""
    with _lock:
        return list(_pools.values())


def shutdown_pools() -> None:
    """End every warm pool's actors now (before this driver leaves its Ray session)."""
    with _lock:
        gone = list(_pools.values())
        _pools.clear()
    for p in gone:
        p.close()


def discard(pool: Pool) -> None:
    """End one pool now and forget it."""
    with _lock:
        if _pools.get(pool.key) is pool:
            _pools.pop(pool.key)
    pool.close()


def end_idle_pools(now: float | None = None) -> int:
    """End the pools idle for `idle_timeout` seconds; returns how many."""
    now = time.monotonic() if now is None else now
    with _lock:
        gone = [p for p in _pools.values() if p.busy == 0 and now - p.last_used >= idle_timeout]
        for p in gone:
            _pools.pop(p.key)
    for p in gone:
        p.close()
    return len(gone)


def _ensure_reaper() -> None:
    global _reaper
    with _lock:
        if _reaper is not None and _reaper.is_alive():
            return

        def loop() -> None:
            while True:
                time.sleep(REAP_EVERY)
                try:
                    end_idle_pools()
                except Exception:  # noqa: BLE001  (the session ended under us: the next job starts afresh)
                    pass
                with _lock:
                    if not _pools:
                        global _reaper
                        _reaper = None
                        return

        _reaper = threading.Thread(target=loop, name="audioclf-ray-pool-reaper", daemon=True)
        _reaper.start()


def run(table: pa.Table, config: FeatureConfig, *, key: str, store_root: str, progress: Progress | None,
        batch_size: int, actors: int | None, cpus_per_actor: float, on_summary=None,
        settings: dict[str, str] | None = None) -> ExtractResult:
    """Extract every row of `table` (path, label, group) into the store; returns the counts.

    `settings` (environment variables: the model the driver checked) are set in each actor;
    `actors` None: one per `cpus_per_actor` of each node's CPUs."""
    quiet()
    t0 = time.perf_counter()
    total = table.num_rows
    result = ExtractResult(engine="ray", total=total, config_key=key, store=store_root)
    if progress:
        progress(0, total)
    if total == 0:
        return result
    table = table.append_column("row", pa.array(np.arange(total, dtype=np.int64)))
    columns = [c for c in ("row", "path", "label", "group") if c in table.column_names]
    blocks = deque((start, 0) for start in range(0, total, batch_size))  # (first row, tries so far)
    pool = get_pool(config, key, dict(settings or {}), actors, cpus_per_actor)
    result.workers = len(pool.slots)
    seen: dict[int, dict] = {}  # a block sent again may report its clips twice: the last report counts
    try:
        pending: dict = {}  # ref -> (slot, actor, block)
        load = {id(s): 0 for s in pool.slots}

        def feed() -> None:
            for slot in pool.slots:
                while blocks and load[id(slot)] < IN_FLIGHT:
                    start, tries = blocks.popleft()
                    rows = table.slice(start, batch_size).select(columns).to_pylist()
                    ref = slot.actor.run.remote(rows, store_root)
                    pending[ref] = (slot, slot.actor, (start, tries), rows)
                    load[id(slot)] += 1

        feed()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            slot, actor, (start, tries), rows = pending.pop(done[0])
            load[id(slot)] -= 1
            try:
                summary = ray.get(done[0])
            except DEAD:
                pool.replace(slot, actor)
                if tries + 1 < BLOCK_TRIES:
                    blocks.appendleft((start, tries + 1))
                    summary = None
                else:
                    summary = [{"row": r["row"], "path": r["path"], "hash": None, "node": None, "pid": None,
                                "shard": None, "error": f"'{r['path']}': the worker died {BLOCK_TRIES} times "
                                                        "on its block; skipping it."} for r in rows]
            except ray.exceptions.RayTaskError as exc:
                discard(pool)  # its actors could not load the model: the next job starts afresh
                raise (exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc) from None
            if summary is not None:
                for r in summary:
                    seen[r["row"]] = r
                if on_summary is not None:
                    on_summary(summary)
                if progress:
                    progress(min(len(seen), total), total)
            feed()
    finally:
        release(pool)
    hosts = _node_hosts()
    for r in seen.values():
        if r["error"] is not None:
            result.errors.append((r["path"], r["error"]))
        else:
            node = hosts.get(r["node"], r["node"][:8])
            result.by_node[node] = result.by_node.get(node, 0) + 1
    result.extracted = sum(result.by_node.values())
    result.seconds = time.perf_counter() - t0
    return result


def _node_hosts() -> dict[str, str]:
    """node id -> a short readable name (IP and the id's first characters: two nodes may share an IP)."""
    return {n["NodeID"]: f"{n.get('NodeManagerAddress', '?')}/{n['NodeID'][:6]}" for n in ray.nodes()}
