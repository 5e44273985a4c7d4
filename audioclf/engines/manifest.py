"""What to extract: a manifest of clips (path[, label][, group]) as one Arrow table.

    table = read_manifest("clips.csv")            # or .parquet, or s3://bucket/clips.parquet
    table = read_manifest("data/fsdd")            # a data set folder or zip (audioclf.datasets)
    table = read_manifest(["a.wav", "b.wav"])     # paths, datasets.Item objects, or a Dataset

Relative paths in a manifest are relative to the manifest's folder (or URI
prefix). Paths may be local or URIs that ``pyarrow.fs`` opens (``s3://``,
``gs://``, ``hdfs://``). Every engine reads clips with :func:`read_clip_bytes`.
"""
from __future__ import annotations

import os
import posixpath
from typing import Any, Iterable

from audioclf.errors import AudioclfError

MANIFEST_COLUMNS = ("path", "label", "group")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
ALIASES = {"file": "path", "filename": "path", "filepath": "path", "uri": "path", "url": "path",
           "class": "label", "category": "label", "target": "label", "speaker": "group", "fold": "group"}

__all__ = ["ManifestError", "is_uri", "read_clip_bytes", "read_manifest"]


class ManifestError(AudioclfError):
    """A manifest that cannot be read; the message says what to fix."""


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def read_manifest(source: Any):
    """An Arrow table with string columns path, label, group (label and group may be null)."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        return _normalise(source, base=None, where="the table")
    if isinstance(source, (list, tuple)):
        return _from_items(source)
    if hasattr(source, "items") and not isinstance(source, dict):  # a datasets.Dataset
        return _from_items(source.items)
    text = os.fspath(source)
    lower = text.lower()
    if lower.endswith(TABLE_SUFFIXES):
        return _read_table_file(text)
    if is_uri(text):
        raise ManifestError(f"{text} is not a manifest: give a .csv or .parquet file listing path[,label][,group].")
    from audioclf.datasets import DatasetError, load_dataset

    try:
        ds = load_dataset(text)
    except DatasetError as exc:
        raise ManifestError(str(exc)) from None
    return _from_items(ds.items)


def _from_items(items: Iterable[Any]):
    import pyarrow as pa

    paths, labels, groups = [], [], []
    for it in items:
        if hasattr(it, "path"):  # a datasets.Item
            paths.append(os.fspath(it.path))
            labels.append(getattr(it, "label", None))
            groups.append(getattr(it, "group", None))
        else:
            paths.append(os.fspath(it))
            labels.append(None)
            groups.append(None)
    paths = [p if is_uri(p) else os.path.abspath(p) for p in paths]
    return pa.table({"path": pa.array(paths, pa.string()), "label": pa.array(labels, pa.string()),
                     "group": pa.array(groups, pa.string())})


def _read_table_file(text: str):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    name = posixpath.basename(text)
    try:
        if is_uri(text):
            fs, path = pafs.FileSystem.from_uri(text)
            base = text.rsplit("/", 1)[0]
        else:
            fs, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text))
            base = os.path.dirname(path)
        with fs.open_input_file(path) as f:
            if text.lower().endswith((".parquet", ".pq")):
                table = pq.read_table(f)
            else:
                delimiter = "\t" if text.lower().endswith(".tsv") else ","
                # Every column as text: labels like "0" or "007" must not become numbers.
                table = pcsv.read_csv(f, parse_options=pcsv.ParseOptions(delimiter=delimiter),
                                      convert_options=pcsv.ConvertOptions(
                                          column_types={}, strings_can_be_null=True,
                                          auto_dict_encode=False),
                                      read_options=pcsv.ReadOptions(autogenerate_column_names=False))
    except FileNotFoundError:
        raise ManifestError(f"No manifest at {text}: the file does not exist.") from None
    except Exception as exc:  # noqa: BLE001  (ArrowInvalid for bad CSV/Parquet, OSError for storage)
        raise ManifestError(f"The manifest {name} cannot be read: {str(exc).splitlines()[0]}") from None
    return _normalise(table, base=base, where=f"the manifest {name}")


def _normalise(table, base: str | None, where: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    renamed = [ALIASES.get(c.strip().lower(), c.strip().lower()) for c in table.column_names]
    table = table.rename_columns(renamed)
    if "path" not in table.column_names:
        raise ManifestError(f"{where} needs a 'path' column (and optionally label and group); "
                            f"it has {', '.join(table.column_names) or 'no columns'}.")
    cols = {}
    for name in MANIFEST_COLUMNS:
        if name in table.column_names:
            col = table.column(name)
            cols[name] = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
        else:
            cols[name] = pa.nulls(table.num_rows, pa.string())
    paths = cols["path"].to_pylist()
    if any(not p or not str(p).strip() for p in paths):
        first = next(i for i, p in enumerate(paths) if not p or not str(p).strip())
        raise ManifestError(f"{where} has an empty path in row {first + 1}.")
    cols["path"] = pa.array([_resolve(str(p).strip(), base) for p in paths], pa.string())
    return pa.table(cols)


def _resolve(path: str, base: str | None) -> str:
    if is_uri(path):
        return path
    if path.startswith("file://"):
        path = path[len("file://"):]
    if base is None or os.path.isabs(path):
        return os.path.abspath(os.path.expanduser(path)) if base is None or not is_uri(base) else path
    if is_uri(base):
        return f"{base}/{path}"
    return os.path.abspath(os.path.join(base, path))


class FileTooLarge(OSError):
    """A file larger than any audio file audioclf accepts: not read at all."""


def read_clip_bytes(path: str, max_bytes: int | None = None) -> tuple[bytes, int, int | None]:
    """(the file's bytes, its size, its mtime in ns or None) for a local path or a URI.

    Raises OSError (FileNotFoundError for a missing file) like ``open`` does, and
    FileTooLarge, before reading, for a file above `max_bytes`.
    """
    if not is_uri(path):
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if max_bytes is not None and st.st_size > max_bytes:
                raise FileTooLarge(st.st_size)
            return f.read(), st.st_size, st.st_mtime_ns
    from pyarrow import fs as pafs

    fs, inner = pafs.FileSystem.from_uri(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"No such file: {path}")
    if max_bytes is not None and info.size is not None and info.size > max_bytes:
        raise FileTooLarge(info.size)
    with fs.open_input_stream(inner) as f:
        data = f.read()
    return data, len(data), info.mtime_ns
