"""A feature store many machines can share: sharded Parquet under one root.

    store = FeatureStore("s3://bucket/features")      # or a local / NFS folder
    store.write(config, [StoreRow(hash, path, label, group, feats), ...])   # one shard
    feats = store.read(config, hashes)                # {hash: Features}, for a few clips
    for batch in store.iter_batches(config, seed=0):  # row groups, for training from disk
        ...

Layout: ``<root>/<config key>/config.json`` (the feature config and dimension
names) and ``<root>/<config key>/part-<uuid>.parquet``, one file per shard with
one row per clip: content hash, where it came from (path, size, mtime), label,
group, ``frames``/``dims`` (the shape) and ``values`` (the flattened float32
frames), frame ``times``, YAMNet's ``scores`` (null otherwise) and ``silent``.

A shard is written under a name readers skip (``_tmp-...``) and renamed once
complete, so a worker killed half-way leaves nothing a reader sees (object
stores publish an object only when its upload completes, so there it is written
under its final name). Re-extracted clips may appear in two shards: readers
keep the first row of each content hash. The SQLite cache
(:mod:`audioclf.features.cache`) stays the single-machine default; this is for
work spread over machines, or data sets larger than memory.

Filesystems come from ``pyarrow.fs`` (local, ``s3://``, ``gs://``, ``hdfs://``).
"""
from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from audioclf.errors import AudioclfError
from audioclf.features import FeatureConfig, Features, config_from_dict, config_key, config_to_dict

CONFIG_FILE = "config.json"
SHARD_PREFIX = "part-"
TMP_PREFIX = "_tmp-"  # pyarrow's dataset discovery ignores names starting with "_" or "."
ROW_GROUP_ROWS = 64  # clips per row group: the unit a streaming reader loads
OBJECT_STORES = ("s3", "gcs")  # filesystems where a finished upload is already atomic

STORE_COLUMNS = ("hash", "path", "size", "mtime_ns", "label", "group", "frames", "dims",
           "values", "times", "scores", "score_dims", "silent")
INDEX_COLUMNS = ("hash", "path", "size", "mtime_ns", "label", "group", "frames", "dims")

__all__ = ["FeatureStore", "StoreError", "StoreRow", "row_bytes"]


class StoreError(AudioclfError):
    """A feature store that cannot be opened, read or written; the message is for people."""


@dataclass(frozen=True)
class StoreRow:
    """One clip's features as the store keeps them."""

    hash: str
    path: str
    features: Features
    label: str | None = None
    group: str | None = None
    size: int | None = None
    mtime_ns: int | None = None


def schema():
    import pyarrow as pa

    return pa.schema([
        ("hash", pa.string()), ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
        ("label", pa.string()), ("group", pa.string()), ("frames", pa.int32()), ("dims", pa.int32()),
        ("values", pa.large_list(pa.float32())), ("times", pa.list_(pa.float32())),
        ("scores", pa.large_list(pa.float32())), ("score_dims", pa.int32()), ("silent", pa.bool_()),
    ])


def row_bytes(frames: int, dims: int) -> int:
    """Bytes one clip's feature values take in memory."""
    return int(frames) * int(dims) * 4


def rows_to_table(rows: Sequence[StoreRow]):
    """An Arrow table of `rows` in the store's schema."""
    import pyarrow as pa

    def flat(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a, dtype=np.float32).reshape(-1)

    cols = {
        "hash": [r.hash for r in rows], "path": [r.path for r in rows], "size": [r.size for r in rows],
        "mtime_ns": [r.mtime_ns for r in rows], "label": [r.label for r in rows],
        "group": [r.group for r in rows],
        "frames": [r.features.n_frames for r in rows], "dims": [r.features.dims for r in rows],
        "values": [flat(r.features.values) for r in rows], "times": [flat(r.features.times) for r in rows],
        "scores": [flat(r.features.scores) for r in rows],
        "score_dims": [None if r.features.scores is None else int(r.features.scores.shape[1]) for r in rows],
        "silent": [r.features.silent for r in rows],
    }
    return pa.table(cols, schema=schema())


def table_to_features(table, config: FeatureConfig, names: tuple[str, ...]) -> list[Features]:
    """Features of each row of a table (or record batch) read from the store."""
    frames = table.column("frames").to_numpy()
    dims = table.column("dims").to_numpy()
    values = _flat_lists(table.column("values"))
    times = _flat_lists(table.column("times"))
    has_scores = "scores" in table.column_names
    scores = _flat_lists(table.column("scores")) if has_scores else [None] * len(frames)
    score_dims = table.column("score_dims").to_pylist() if has_scores else [None] * len(frames)
    silent = table.column("silent").to_pylist() if "silent" in table.column_names else [None] * len(frames)
    out = []
    for i in range(len(frames)):
        out.append(Features(
            values=values[i].reshape(int(frames[i]), int(dims[i])), times=times[i], names=names, config=config,
            scores=None if scores[i] is None or score_dims[i] is None else scores[i].reshape(int(frames[i]), -1),
            silent=silent[i]))
    return out


def _flat_lists(column) -> list[np.ndarray | None]:
    """Each list of a (chunked) list column as its own float32 array (copies: callers may edit)."""
    out: list[np.ndarray | None] = []
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        offsets = chunk.offsets.to_numpy()
        flat = chunk.values.to_numpy(zero_copy_only=False)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        for i in range(len(chunk)):
            out.append(flat[offsets[i]:offsets[i + 1]].astype(np.float32, copy=True) if valid[i] else None)
    return out


class FeatureStore:
    """Sharded Parquet features under `root` (a folder, or a ``s3://`` / ``gs://`` URI)."""

    def __init__(self, root: str | os.PathLike):
        from pyarrow import fs as pafs

        text = os.fspath(root)
        if not text:
            raise StoreError("A feature store needs a root: a folder, or a s3:// or gs:// location.")
        is_uri = "://" in text
        try:
            if is_uri:
                self.fs, self.base = pafs.FileSystem.from_uri(text)
            else:
                self.fs, self.base = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text))
        except Exception as exc:  # noqa: BLE001  (pyarrow raises ArrowInvalid, OSError, ...)
            raise StoreError(f"Cannot open the feature store {text!r}: {exc}") from None
        self.root = text if is_uri else self.base
        self.base = self.base.rstrip("/")

    def __repr__(self) -> str:
        return f"FeatureStore({self.root!r})"

    @property
    def atomic_uploads(self) -> bool:
        return self.fs.type_name in OBJECT_STORES

    def folder(self, config: FeatureConfig, key: str | None = None) -> str:
        """The config's folder; `key` is its config_key as the caller computed it (a cluster's
        driver passes its own: YAMNet's key holds the model path, which differs between machines)."""
        return f"{self.base}/{key or config_key(config)}"

    # ------------------------------------------------------------ writing

    def prepare(self, config: FeatureConfig, names: Sequence[str] | None = None, *, key: str | None = None) -> str:
        """Create the config's folder and its config.json (once); returns the folder."""
        key = key or config_key(config)
        folder = self.folder(config, key)
        meta_path = f"{folder}/{CONFIG_FILE}"
        try:
            self.fs.create_dir(folder, recursive=True)
            if names is not None and not self._exists(meta_path):
                payload = json.dumps({"config": config_to_dict(config), "key": key,
                                      "names": list(names)}, sort_keys=True).encode()
                self._write_bytes(meta_path, payload)
        except OSError as exc:
            raise StoreError(f"Cannot write to the feature store {self.root}: {exc}") from None
        return folder

    def write(self, config: FeatureConfig, rows: Sequence[StoreRow], *, key: str | None = None) -> str | None:
        """Write `rows` as one new shard; returns its file name (None for no rows)."""
        if not rows:
            return None
        import pyarrow.parquet as pq

        folder = self.prepare(config, rows[0].features.names, key=key)
        name = f"{SHARD_PREFIX}{uuid.uuid4().hex}.parquet"
        final = f"{folder}/{name}"
        target = final if self.atomic_uploads else f"{folder}/{TMP_PREFIX}{name}"
        table = rows_to_table(rows)
        try:
            with self.fs.open_output_stream(target) as out:
                pq.write_table(table, out, row_group_size=ROW_GROUP_ROWS, compression="zstd")
            if target != final:
                self.fs.move(target, final)  # a rename: readers see the whole shard or none of it
        except OSError as exc:
            try:
                self.fs.delete_file(target)
            except OSError:
                pass
            raise StoreError(f"Cannot write a shard to the feature store {self.root}: {exc}") from None
        return name

    def clean(self, config: FeatureConfig) -> int:
        """Delete temp files left by killed writers; returns how many. Only while nobody writes."""
        n = 0
        for info in self._listing(self.folder(config)):
            if info.base_name.startswith(TMP_PREFIX):
                self.fs.delete_file(info.path)
                n += 1
        return n

    # ------------------------------------------------------------ reading

    def configs(self) -> list[dict]:
        """Every feature config in the store: {"key", "config", "names", "shards"}."""
        out = []
        from pyarrow import fs as pafs

        for info in self._listing(self.base):
            if info.type != pafs.FileType.Directory:
                continue
            meta = self._meta(info.path)
            if meta is not None:
                meta["shards"] = len(self.shards_in(info.path))
                out.append(meta)
        return out

    def names(self, config: FeatureConfig) -> tuple[str, ...]:
        meta = self._meta(self.folder(config))
        return tuple(meta["names"]) if meta else ()

    def shards(self, config: FeatureConfig) -> list[str]:
        """Paths of the config's finished shards (temp files of running or killed writers left out)."""
        return self.shards_in(self.folder(config))

    def shards_in(self, folder: str) -> list[str]:
        return sorted(i.path for i in self._listing(folder)
                      if i.base_name.startswith(SHARD_PREFIX) and i.base_name.endswith(".parquet"))

    def index(self, config: FeatureConfig):
        """The store's rows without their arrays (an Arrow table of INDEX_COLUMNS), one per content hash."""
        import pyarrow as pa

        tables = [self._read(p, INDEX_COLUMNS) for p in self.shards(config)]
        if not tables:
            return pa.table({c: pa.array([], type=schema().field(c).type) for c in INDEX_COLUMNS})
        return _first_per_hash(pa.concat_tables(tables))

    def count(self, config: FeatureConfig) -> int:
        return self.index(config).num_rows

    def stored_files(self, config: FeatureConfig) -> dict[str, tuple[int | None, int | None, str]]:
        """path -> (size, mtime_ns, hash) of every stored clip: what a re-run may skip."""
        idx = self.index(config)
        return {p: (s, m, h) for p, s, m, h in zip(idx.column("path").to_pylist(), idx.column("size").to_pylist(),
                                                    idx.column("mtime_ns").to_pylist(), idx.column("hash").to_pylist())}

    def read(self, config: FeatureConfig, hashes: Iterable[str] | None = None) -> dict[str, Features]:
        """{hash: Features} for `hashes` (all when None); for a few clips, it reads whole shards."""
        import pyarrow.compute as pc

        wanted = None if hashes is None else set(hashes)
        names = self.names(config)
        out: dict[str, Features] = {}
        for path in self.shards(config):
            table = self._read(path)
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("hash"), value_set=_string_array(wanted)))
            for h, f in zip(table.column("hash").to_pylist(), table_to_features(table, config, names)):
                out.setdefault(h, f)
        return out

    def row_groups(self, config: FeatureConfig) -> list[tuple[str, int, int]]:
        """(shard, row group, rows) of every row group: the units :meth:`iter_batches` loads."""
        import pyarrow.parquet as pq

        out = []
        for path in self.shards(config):
            with self.fs.open_input_file(path) as f:
                meta = pq.ParquetFile(f).metadata
                out += [(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        return out

    def iter_batches(self, config: FeatureConfig, *, hashes: Iterable[str] | None = None,
                     seed: int | None = None, columns: Sequence[str] = STORE_COLUMNS,
                     units: Sequence[tuple[str, int, int]] | None = None):
        """Arrow tables, one row group at a time (shuffled order when `seed` is given).

        `hashes` keeps only those clips; each content hash comes once (the first
        row group holding it, in this call's order). Only one row group is in
        memory at a time, so a data set larger than memory can be streamed.
        """
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        units = list(units if units is not None else self.row_groups(config))
        if seed is not None:
            random.Random(seed).shuffle(units)
        wanted = None if hashes is None else _string_array(set(hashes))
        seen: set[str] = set()
        open_file: tuple[str, object] | None = None
        try:
            for path, group, _rows in units:
                if open_file is None or open_file[0] != path:
                    if open_file is not None:
                        open_file[1].close()
                    open_file = (path, self.fs.open_input_file(path))
                table = pq.ParquetFile(open_file[1]).read_row_group(group, columns=list(columns))
                if wanted is not None:
                    table = table.filter(pc.is_in(table.column("hash"), value_set=wanted))
                hs = table.column("hash").to_pylist()
                keep = [i for i, h in enumerate(hs) if h not in seen]
                seen.update(hs)
                if len(keep) < len(hs):
                    table = table.take(keep)
                if table.num_rows:
                    yield table
        finally:
            if open_file is not None:
                open_file[1].close()

    def verify(self, config: FeatureConfig) -> int:
        """Read every shard in full (StoreError naming a broken one); returns the rows read."""
        n = 0
        for path in self.shards(config):
            try:
                n += self._read(path).num_rows
            except Exception as exc:  # noqa: BLE001
                raise StoreError(f"Shard {path} of the feature store is unreadable: {exc}") from None
        return n

    # ------------------------------------------------------------ helpers

    def _read(self, path: str, columns: Sequence[str] | None = None):
        import pyarrow.parquet as pq

        with self.fs.open_input_file(path) as f:
            return pq.read_table(f, columns=list(columns) if columns else None)

    def _listing(self, folder: str):
        from pyarrow import fs as pafs

        try:
            return self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        except OSError as exc:
            raise StoreError(f"Cannot list the feature store {self.root}: {exc}") from None

    def _exists(self, path: str) -> bool:
        from pyarrow import fs as pafs

        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def _write_bytes(self, path: str, data: bytes) -> None:
        tmp = path if self.atomic_uploads else f"{path.rsplit('/', 1)[0]}/{TMP_PREFIX}{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        if tmp != path:
            self.fs.move(tmp, path)

    def _meta(self, folder: str) -> dict | None:
        try:
            with self.fs.open_input_stream(f"{folder}/{CONFIG_FILE}") as f:
                meta = json.loads(f.read().decode())
        except (OSError, ValueError):
            return None
        try:
            config_from_dict(meta["config"])
        except (KeyError, ValueError):
            return None
        return meta

    def config_of(self, key: str) -> FeatureConfig | None:
        meta = self._meta(f"{self.base}/{key}")
        return None if meta is None else config_from_dict(meta["config"])


def _string_array(values: set[str]):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def _first_per_hash(table):
    hashes = table.column("hash").to_pylist()
    seen: set[str] = set()
    keep = [i for i, h in enumerate(hashes) if not (h in seen or seen.add(h))]
    return table if len(keep) == len(hashes) else table.take(keep)
