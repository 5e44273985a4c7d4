"""A safe reader of PyTorch ``.pt`` state dicts, without PyTorch: NumPy arrays by parameter name.

``torch.save`` writes a zip: ``<folder>/data.pkl`` pickles the state dict, each tensor
as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``, and each
storage is a persistent id ``("storage", torch.FloatStorage, key, device, numel)``
whose bytes are the zip member ``<folder>/data/<key>`` (little-endian unless
``<folder>/byteorder`` says otherwise).

Unpickling runs whatever callables a file names, so a hostile ``.pt`` could run
code on load. :class:`_ArrayUnpickler` resolves only the globals needed to rebuild
arrays (a dict type and the tensor/storage names above, mapped to NumPy code of
ours) and refuses every other global before anything is called::

    state = read_state_dict("mn04_as_mAP_432.pt")
    state["features.0.0.weight"].shape      # (8, 1, 3, 3), float32
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from os import PathLike
from pathlib import Path, PurePosixPath

import numpy as np

from audioclf.errors import AudioclfError

MAX_PICKLE_BYTES = 64 << 20  # the tensor index, not the tensors: real ones are well under 1 MB
MAX_TOTAL_BYTES = 4 << 30  # the largest official checkpoint (mn40_as) holds about 0.3 GB

# PyTorch's legacy typed-storage names (still what torch.save writes) -> element type.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,  # NumPy has no bfloat16: widened to float32 after reading
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class CheckpointError(AudioclfError):
    """A file that is not a readable PyTorch state dict, or that asks for more than arrays."""


class _StorageType:
    """What ``torch.FloatStorage`` & co. unpickle to: only a dtype, nothing callable.

    Slotted and made afresh for each lookup, so a pickle's BUILD opcode can neither
    give it new attributes nor change one that a later file would see."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> np.ndarray:
    """A NumPy copy of the tensor viewing ``storage`` at ``storage_offset`` with ``size`` and ``stride``."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise CheckpointError("A tensor in the checkpoint does not point at a storage.")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    offset = _int_tuple((storage_offset,), "offset")[0]
    if len(size) != len(stride):
        raise CheckpointError(f"A tensor has {len(size)} sizes but {len(stride)} strides.")
    if any(s < 0 for s in size + stride) or offset < 0:
        raise CheckpointError("A tensor has a negative size, stride or offset.")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise CheckpointError(f"A tensor reaches element {last} of a storage of {storage.size} elements.")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=tuple(s * item for s in stride),
                                           writeable=False)
    return np.array(view)  # own, contiguous memory: nothing keeps the zip's bytes alive


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CheckpointError(f"A tensor's {what} is not a tuple of integers.")
    return value


class _Rebuild:
    """What ``torch._utils._rebuild_tensor_v2`` unpickles to: slotted, so BUILD can't give it state."""

    __slots__ = ()

    def __call__(self, *args) -> np.ndarray:
        return _rebuild_tensor_v2(*args)


def _allowed(module: str, name: str):
    """What the global ``module.name`` unpickles to, or None. Nothing else resolves, so nothing else runs."""
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
        return _Rebuild()
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(name)
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles a state dict's index, rebuilding tensors as arrays over the zip's storages."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, folder: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._folder, self._byteorder = archive, folder, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        found = _allowed(module, name)
        if found is None:
            raise CheckpointError(
                f"The checkpoint asks to load {module}.{name}, which a file of weights never needs; "
                "it was refused and nothing in it was run. Use the official file or one saved with "
                "torch.save(model.state_dict(), path).")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise CheckpointError(f"The checkpoint refers to something other than a tensor storage: {pid!r:.80}.")
        _, kind, key, _device, numel = pid
        if key not in self._storages:
            self._storages[key] = self._read_storage(kind, key, numel)
        return self._storages[key]

    def _read_storage(self, kind: _StorageType, key: str, numel: int) -> np.ndarray:
        member = f"{self._folder}/data/{key}"
        try:
            raw = self._archive.read(member)
        except KeyError:
            raise CheckpointError(f"The checkpoint has no storage {member}.") from None
        dtype = kind.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
        if numel < 0 or len(raw) < numel * dtype.itemsize:
            raise CheckpointError(f"Storage {member} holds {len(raw)} bytes, fewer than {numel} x {kind}.")
        array = np.frombuffer(raw, dtype=dtype, count=numel).astype(dtype.newbyteorder("="), copy=False)
        if kind.name == "BFloat16Storage":  # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def read_state_dict(path: str | PathLike) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save``-d state dict at ``path``, as NumPy arrays by name.

    Raises :class:`CheckpointError` for a file that is not a zip (including the
    pre-1.6 legacy format), has members outside one folder or with path tricks,
    lacks ``data.pkl``, pickles any global other than the array-rebuilding ones, or
    holds something other than a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {path}.")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint (torch.save writes a zip archive).")
    try:
        with zipfile.ZipFile(path) as archive:
            folder = _check_members(archive, path.name)
            data = archive.read(f"{folder}/data.pkl")
            order = f"{folder}/byteorder"
            byteorder = archive.read(order).decode("ascii", "replace").strip() if order in archive.namelist() \
                else "little"
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{path.name} names an unknown byte order {byteorder!r:.20}.")
            state = _unpickle(data, archive, folder, byteorder, path.name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, NotImplementedError) as exc:
        raise CheckpointError(f"{path.name} could not be read as a zip archive ({exc}).") from None
    return _check_state(state, path.name)


def _unpickle(data: bytes, archive: zipfile.ZipFile, folder: str, byteorder: str, label: str):
    try:
        return _ArrayUnpickler(data, archive, folder, byteorder).load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, NotImplementedError):
        raise  # a storage member could not be read: reported as a zip problem
    except Exception as exc:  # a malformed pickle raises anything from UnpicklingError to TypeError
        raise CheckpointError(f"{label} is not a readable state dict ({type(exc).__name__}: {exc}).") from None


def _check_members(archive: zipfile.ZipFile, label: str) -> str:
    """The one top-level folder holding data.pkl; refuses absolute, parent or odd member paths and zip bombs."""
    infos = archive.infolist()
    folders = set()
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if (not parts or name.startswith(("/", "\\")) or "\\" in name or ":" in parts[0]
                or any(p in ("", ".", "..") for p in parts) or "\x00" in name):
            raise CheckpointError(f"{label} holds a member with an unsafe path ({name!r:.80}); refused.")
        folders.add(parts[0])
    if len(folders) != 1:
        raise CheckpointError(f"{label} is not laid out as torch.save writes (one folder, found {len(folders)}).")
    folder = folders.pop()
    names = {i.filename for i in infos}
    if f"{folder}/data.pkl" not in names:
        raise CheckpointError(f"{label} has no {folder}/data.pkl; it is not a PyTorch checkpoint.")
    if archive.getinfo(f"{folder}/data.pkl").file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{label}'s tensor index is implausibly large; refused.")
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        raise CheckpointError(f"{label} unpacks to more than {MAX_TOTAL_BYTES >> 30} GB; refused.")
    return folder


def _check_state(state, label: str) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{label} holds a {type(state).__name__}, not a state dict of tensors.")
    out = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(f"{label} holds {key!r:.60}: {type(value).__name__}, not a named tensor.")
        out[key] = value
    if not out:
        raise CheckpointError(f"{label} holds no tensors.")
    return out
