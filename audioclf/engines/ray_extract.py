"""Extraction on a Ray cluster as Ray Data batch inference.

The manifest becomes a Ray Dataset of blocks of ``batch_size`` clips. Each block
is read and decoded (``decode_batch``), then featurised by a pool of actors
(``FeatureActor``) that each hold the feature model once (YAMNet's interpreter;
EfficientAT's network) and write their block as one shard of the
feature store. Only a small summary per clip (hash, error, node) comes back to
the driver, which reports progress as blocks finish; a clip that cannot be read
is a row with its reason, never a failed job. A killed worker's block is retried
(Ray Data restarts pool actors and retries their tasks); its half-written shard
has a temp name no reader sees.

Imports Ray: only :mod:`audioclf.engines.ray_engine` imports this module.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import ray

from audioclf.audio import AudioError, Clip
from audioclf.engines.base import ExtractResult, quiet
from audioclf.progress import Progress
from audioclf.engines.work import decode, extract_clips
from audioclf.features import FeatureConfig, Features, config_from_dict, config_to_dict

SUMMARY = pa.schema([("row", pa.int64()), ("path", pa.string()), ("hash", pa.string()), ("error", pa.string()),
                     ("node", pa.string()), ("pid", pa.int64()), ("shard", pa.string())])


def decode_batch(batch: pa.Table, config: dict) -> pa.Table:
    """Read and decode a block of manifest rows: samples at the config's rate, or the error."""
    cfg = config_from_dict(config)
    rows = batch.to_pylist()
    out: dict[str, list] = {k: [] for k in ("row", "path", "label", "group", "hash", "size", "mtime_ns", "sr",
                                           "samples", "error")}
    for row in rows:
        d = decode(row["path"], cfg)
        ok = isinstance(d.clip, Clip)
        for k in ("row", "path", "label", "group"):
            out[k].append(row.get(k))
        out["hash"].append(d.hash)
        out["size"].append(d.size)
        out["mtime_ns"].append(d.mtime_ns)
        out["sr"].append(d.clip.sr if ok else None)
        out["samples"].append(d.clip.samples if ok else None)
        out["error"].append(None if ok else str(d.clip))
    return pa.table({
        "row": pa.array(out["row"], pa.int64()), "path": pa.array(out["path"], pa.string()), "label": pa.array(out["label"], pa.string()),
        "group": pa.array(out["group"], pa.string()), "hash": pa.array(out["hash"], pa.string()),
        "size": pa.array(out["size"], pa.int64()), "mtime_ns": pa.array(out["mtime_ns"], pa.int64()),
        "sr": pa.array(out["sr"], pa.int32()),
        "samples": pa.array(out["samples"], pa.large_list(pa.float32())),
        "error": pa.array(out["error"], pa.string()),
    })


class FeatureActor:
    """Holds the feature model once; featurises decoded blocks and writes each as one store shard."""

    def __init__(self, config: dict, key: str, store_root: str, threads: int = 1,
                 settings: dict[str, str] | None = None):
        from audioclf.features.store import FeatureStore

        # The driver's model settings (the model file it checked and resolved): this worker has
        # its node's environment. An actor's process is its own, so setting them here touches
        # no other work, and keeps the worker Ray prestarted (a runtime_env would start a new one).
        os.environ.update(settings or {})
        self.config = config_from_dict(config)
        self.key = key
        self.store = FeatureStore(store_root)
        self.node = ray.get_runtime_context().get_node_id()
        # The actor's CPUs are its threads: TFLite's (YAMNet) and TensorFlow's (EfficientAT).
        os.environ["AUDIOCLF_YAMNET_THREADS"] = str(max(1, int(threads)))
        os.environ.setdefault("AUDIOCLF_TF_THREADS", str(max(1, int(threads))))
        self._warm_up()

    def _warm_up(self) -> None:
        """Load the feature model (and librosa) now, once per actor, not in the first block."""
        from audioclf.features import extract

        sr = self.config.sr or 16000
        noise = np.random.default_rng(0).normal(0, 0.1, sr).astype(np.float32)
        try:
            extract(Clip(samples=noise, sr=sr, name="warm-up"), self.config)
        except AudioError:
            pass

    def __call__(self, batch: pa.Table) -> pa.Table:
        from audioclf.features.store import StoreRow

        paths = batch.column("path").to_pylist()
        errors = batch.column("error").to_pylist()
        srs = batch.column("sr").to_pylist()
        samples = batch.column("samples")
        clips: list[Clip | AudioError] = []
        for i, (path, err) in enumerate(zip(paths, errors)):
            if err is not None:
                clips.append(AudioError(err))
            else:
                y = samples[i].values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
                clips.append(Clip(samples=y, sr=int(srs[i]), name=path))
        feats = extract_clips(clips, self.config)
        labels, groups = batch.column("label").to_pylist(), batch.column("group").to_pylist()
        hashes, sizes = batch.column("hash").to_pylist(), batch.column("size").to_pylist()
        mtimes = batch.column("mtime_ns").to_pylist()
        rows = [StoreRow(hash=hashes[i], path=paths[i], features=f, label=labels[i], group=groups[i],
                         size=sizes[i], mtime_ns=mtimes[i])
                for i, f in enumerate(feats) if isinstance(f, Features)]
        shard = self.store.write(self.config, rows, key=self.key)
        return pa.table({
            "row": batch.column("row"), "path": paths, "hash": hashes,
            "error": [None if isinstance(f, Features) else str(f) for f in feats],
            "node": [self.node] * len(paths), "pid": [os.getpid()] * len(paths),
            "shard": [shard if isinstance(f, Features) else None for f in feats],
        }, schema=SUMMARY)


def bound_actor(config: dict, key: str, store_root: str, threads: int, settings: dict[str, str]) -> type:
    """FeatureActor with its arguments bound in the class: Ray keeps constructor arguments in
    the object store, and a restarted actor (after its worker died) cannot start if they are gone."""

    class BoundFeatureActor(FeatureActor):
        def __init__(self):
            super().__init__(config, key, store_root, threads, settings)

    return BoundFeatureActor


def run(table: pa.Table, config: FeatureConfig, *, key: str, store_root: str, progress: Progress | None,
        batch_size: int, actors: int, cpus_per_actor: float, on_summary=None,
        settings: dict[str, str] | None = None) -> ExtractResult:
    """Extract every row of `table` (path, label, group) into the store; returns the counts.

    `settings` (environment variables: the model the driver checked) are set in each actor."""
    from ray.data import ActorPoolStrategy, DataContext

    quiet()
    t0 = time.perf_counter()
    total = table.num_rows
    result = ExtractResult(engine="ray", total=total, config_key=key, store=store_root, workers=actors)
    if progress:
        progress(0, total)
    if total == 0:
        return result
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # progress goes to our callback (the CLI's bar, the app)
    ctx.print_on_execution_start = False
    blocks = max(1, -(-total // batch_size))
    cfg = config_to_dict(config)
    table = table.append_column("row", pa.array(np.arange(total, dtype=np.int64)))
    ds = ray.data.from_arrow(table, override_num_blocks=blocks)
    ds = ds.map_batches(decode_batch, batch_size=None, batch_format="pyarrow", fn_kwargs={"config": cfg},
                        num_cpus=cpus_per_actor)
    ds = ds.map_batches(bound_actor(cfg, key, store_root, max(1, int(cpus_per_actor)), dict(settings or {})),
                        batch_size=None, batch_format="pyarrow", compute=ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors),
                        num_cpus=cpus_per_actor)
    hosts = _node_hosts()
    seen: dict[str, dict] = {}  # a retried block may report its clips twice: the last report counts
    for summary in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows = summary.to_pylist()
        for r in rows:
            seen[r["row"]] = r
        if on_summary is not None:
            on_summary(rows)
        if progress:
            progress(min(len(seen), total), total)
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
