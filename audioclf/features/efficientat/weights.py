"""Where EfficientAT's weights come from, checked before use.

A *spec* names a checkpoint: a path to a ``.pt`` file, or one of the official
names in ``params.CHECKPOINTS`` ("mn04_as", ...; "" means ``params.DEFAULT_MODEL``).
A name is found, first match wins, at:

1. ``$AUDIOCLF_EFFICIENTAT``: a ``.pt`` file (used for the model its file name starts
   with, e.g. ``mn04_as_mAP_432.pt`` for "mn04_as", and for "") or a folder holding
   official file names;
2. ``<workspace>/models/efficientat/<official file name>``;
3. the official release (``$AUDIOCLF_EFFICIENTAT_URL`` overrides its base URL, e.g.
   a mirror), downloaded once into the workspace folder above. The download is
   kept only if its SHA-256 matches where one is recorded, and otherwise if it
   reads as a checkpoint whose tensors fit the network at the model's width.

:class:`EfficientATUnavailable` says how to get the weights when none can be had.
"""
from __future__ import annotations

import hashlib
import os
import threading
import urllib.request
from pathlib import Path

from audioclf import workspace
from audioclf.errors import AudioclfError
from audioclf import limits
from audioclf.features import sources
from audioclf.features.efficientat import architecture, params
from audioclf.features.efficientat.checkpoint import CheckpointError, read_state_dict

ENV_WEIGHTS = "AUDIOCLF_EFFICIENTAT"
ENV_RELEASE = "AUDIOCLF_EFFICIENTAT_URL"
FOLDER = "efficientat"


class EfficientATUnavailable(AudioclfError, RuntimeError):
    """No EfficientAT weights could be found or downloaded; the message says how to provide them."""


class UntrustedCheckpoint(EfficientATUnavailable):
    """A config names a checkpoint outside the models a config may name (see :func:`check_source`)."""


def models_folder() -> Path:
    """``<workspace>/models/efficientat``: where downloads go and where official files are looked for."""
    return workspace.models_dir() / FOLDER


def how_to_provide(name: str = params.DEFAULT_MODEL) -> str:
    """The instructions every :class:`EfficientATUnavailable` message ends with."""
    ckpt = params.CHECKPOINTS.get(name) or params.CHECKPOINTS[params.DEFAULT_MODEL]
    return (f"To use EfficientAT {ckpt.name}, do one of: set {ENV_WEIGHTS} to its .pt file (or a folder holding "
            f"{ckpt.filename}); put {ckpt.filename} in {models_folder()}; or connect to the internet so it can be "
            f"downloaded once from {release_url(ckpt)}.")


def release_url(ckpt: params.Checkpoint) -> str:
    """The download URL of ``ckpt``: the official release, or the mirror in ``$AUDIOCLF_EFFICIENTAT_URL``."""
    base = os.environ.get(ENV_RELEASE, "").strip() or params.RELEASE_URL
    return base.rstrip("/") + "/" + ckpt.filename


def is_path(spec: str) -> bool:
    """True if ``spec`` names a file rather than an official checkpoint."""
    return spec.endswith(".pt") or "/" in spec or os.sep in spec or spec.startswith("~")


def check_source(spec: str) -> None:
    """Raise :class:`UntrustedCheckpoint` for a path a config may not name (:mod:`audioclf.features.sources`).

    Official names are always allowed: their downloads are checked (:func:`verify`). Called
    wherever a config's checkpoint is used; ``load_model`` loads what the calling code names."""
    if is_path(spec) and not sources.trusted(spec, ENV_WEIGHTS):
        if sources.missing(spec):  # nothing there to read
            raise EfficientATUnavailable(f"No EfficientAT checkpoint at {sources.absolute(spec)}. {how_to_provide()}")
        raise UntrustedCheckpoint(sources.refusal(
            "EfficientAT", spec, ENV_WEIGHTS, f"the official release by name ({', '.join(params.CHECKPOINTS)})",
            risk="a config must not make audioclf read files from anywhere on this machine"))


def checkpoint_info(name: str) -> params.Checkpoint:
    """The official checkpoint called ``name`` ("" = the default); :class:`EfficientATUnavailable` if unknown."""
    name = name.strip() or params.DEFAULT_MODEL
    if name not in params.CHECKPOINTS:
        raise EfficientATUnavailable(f"There is no EfficientAT model called {name!r}; the official ones are "
                                     f"{', '.join(params.CHECKPOINTS)} (or give the path to a .pt file).")
    return params.CHECKPOINTS[name]


def local_checkpoint(spec: str = "") -> Path | None:
    """The file ``spec`` resolves to without downloading (steps 1-2 above, or a path), else None.

    Raises :class:`EfficientATUnavailable` for an unknown name or a ``$AUDIOCLF_EFFICIENTAT``
    that does not exist (a typo there should not turn into a silent download)."""
    spec = spec.strip()
    if is_path(spec):
        path = Path(spec).expanduser().resolve()
        return path if path.is_file() else None
    ckpt = checkpoint_info(spec)
    env = os.environ.get(ENV_WEIGHTS, "").strip()
    if env:
        path = Path(env).expanduser().resolve()
        if not path.exists():
            raise EfficientATUnavailable(f"{ENV_WEIGHTS} is set to {path}, which does not exist. "
                                         f"{how_to_provide(ckpt.name)}")
        if path.is_dir() and (path / ckpt.filename).is_file():
            return path / ckpt.filename
        if path.is_file() and (not spec or path.name.startswith(ckpt.name)):
            return path
    local = models_folder() / ckpt.filename
    return local if local.is_file() else None


def availability(spec: str = "") -> str | None:
    """None if ``spec``'s weights are on this machine (no download needed), else why not and how to get them.

    Cheap (nothing is read), so a form can say why EfficientAT can't run before work starts.
    A path a config may not name (:func:`check_source`) is refused here too.
    """
    try:
        check_source(spec)
        if local_checkpoint(spec) is not None:
            return None
    except EfficientATUnavailable as exc:
        return str(exc)
    if is_path(spec):
        return f"No EfficientAT checkpoint at {Path(spec).expanduser()}. {how_to_provide()}"
    ckpt = checkpoint_info(spec)
    return f"EfficientAT {ckpt.name} is not downloaded yet. {how_to_provide(ckpt.name)}"


def checkpoint_identity(spec: str = "") -> str:
    """What ``spec`` names, for cache keys: the SHA-256 of the file it resolves to here.

    Without a local file: an official checkpoint's recorded SHA-256 (a download must
    match it), else ``name:<name>``; a path that does not exist gives ``path:<path>``.
    Nothing is downloaded; a file is hashed once per process (:func:`sha256`).
    """
    try:
        path = local_checkpoint(spec)
    except EfficientATUnavailable:
        path = None
    if path is not None:
        return "sha256:" + sha256(path)
    if is_path(spec):
        return "path:" + str(Path(spec).expanduser().resolve())
    ckpt = checkpoint_info(spec)
    return "sha256:" + ckpt.sha256 if ckpt.sha256 else "name:" + ckpt.name


def resolve_checkpoint(spec: str = "", *, download: bool = True, progress=None) -> Path:
    """The checkpoint file for ``spec``, downloading an official one once if needed (see the module doc)."""
    path = local_checkpoint(spec)
    if path is not None:
        return path
    if is_path(spec):
        raise EfficientATUnavailable(f"No EfficientAT checkpoint at {Path(spec).expanduser()}. {how_to_provide()}")
    ckpt = checkpoint_info(spec)
    if not download:
        raise EfficientATUnavailable(f"EfficientAT {ckpt.name} is not downloaded yet. {how_to_provide(ckpt.name)}")
    return download_checkpoint(ckpt.name, progress=progress)


_DOWNLOAD_LOCK = threading.Lock()


def download_checkpoint(name: str, *, url: str | None = None, progress=None) -> Path:
    """Download the official checkpoint ``name`` (from ``url``, default :func:`release_url`) into the workspace.

    Idempotent: an already downloaded file is returned as is. The file appears
    under its official name only after it passed :func:`verify`; a failed or
    corrupt download leaves nothing behind. ``progress(done_bytes, total_or_None)``
    is called as bytes arrive.
    """
    ckpt = checkpoint_info(name)
    dest = models_folder() / ckpt.filename
    url = url or release_url(ckpt)
    with _DOWNLOAD_LOCK:
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{os.getpid()}.download")  # processes may race: each its own
        try:
            _fetch(url, part, progress)
            verify(part, ckpt)
            os.replace(part, dest)
        except (OSError, ValueError, CheckpointError) as exc:
            reason = getattr(exc, "reason", None) or exc
            what = str(reason) if isinstance(exc, CheckpointError) else f"Could not download {url} ({reason})."
            raise EfficientATUnavailable(f"{what} {how_to_provide(ckpt.name)}") from None
        finally:
            part.unlink(missing_ok=True)
    return dest


def _fetch(url: str, dest: Path, progress=None) -> None:
    """``url`` (http(s):// or file://) to ``dest`` in chunks."""
    with urllib.request.urlopen(url, timeout=limits.DOWNLOAD_TIMEOUT_SECONDS) as resp, open(dest, "wb") as out:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        while chunk := resp.read(limits.COPY_CHUNK_BYTES):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)


def verify(path: Path, ckpt: params.Checkpoint) -> None:
    """Refuse (:class:`CheckpointError`) a file that is not ``ckpt``: by SHA-256 if recorded, else by its tensors."""
    if ckpt.sha256 is not None:
        digest = sha256(path)
        if digest != ckpt.sha256:
            raise CheckpointError(f"The download of {ckpt.filename} failed its SHA-256 check (got {digest[:12]}..., "
                                  f"expected {ckpt.sha256[:12]}...): it is incomplete or not the official file.")
        return
    found = architecture.infer_width(read_state_dict(path))
    if found is None or found[0] != ckpt.width:
        raise CheckpointError(f"The download of {ckpt.filename} does not hold EfficientAT weights of width "
                              f"{ckpt.width:g}.")


_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256(path: Path) -> str:
    """The file's SHA-256, remembered per (path, size, mtime) so each file is hashed once per process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
