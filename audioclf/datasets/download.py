"""ESC-50 download.

`download_esc50()` fetches the public ESC-50 archive (or a local / file:// copy
of it), checks it, unpacks it into the workspace with the data sets' safe unzip
(`audioclf.datasets.safe_extract`) and returns the folder that holds `audio/` and
`meta/esc50.csv`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from os import PathLike
from pathlib import Path

from audioclf import limits
from audioclf.datasets.archive import ArchiveError, safe_extract
from audioclf.datasets.base import ESC50_META
from audioclf.errors import AudioclfError
from audioclf.progress import Progress

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"
ESC50_DIRNAME = "esc50"
NETWORK_SCHEMES = ("http", "https", "ftp")



class DownloadError(AudioclfError):
    """A download could not be used (network, checksum, not ESC-50); the message is for people."""


def _local_path(url: str) -> Path | None:
    """The file behind a plain path or a file:// URL, else None (a network URL)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in NETWORK_SCHEMES:
        return None
    return Path(url)  # includes Windows paths, whose drive letter parses as a scheme


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: str | PathLike, progress: Progress | None = None) -> Path:
    """Download `url` to `dest` in chunks, atomically; `progress(done, total)` (total 0: not known)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=limits.DOWNLOAD_TIMEOUT_SECONDS) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else 0
                done = 0
                if progress:
                    progress(done, total)
                while chunk := resp.read(limits.COPY_CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"Could not download {url}: {reason}. Check the internet connection, or download "
            "the zip yourself and give its path instead."
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def find_esc50_root(folder: str | PathLike) -> Path | None:
    """The folder under `folder` (itself or one level down) holding audio/ and meta/esc50.csv."""
    folder = Path(folder)
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if (candidate / ESC50_META).is_file() and (candidate / "audio").is_dir():
            return candidate
    return None


def _default_dest() -> Path:
    from audioclf import workspace

    return workspace.datasets_dir() / ESC50_DIRNAME


def download_esc50(
    dest: str | PathLike | None = None,
    url: str = ESC50_URL,
    progress: Progress | None = None,
    sha256: str | None = None,
) -> Path:
    """Download, verify and unpack ESC-50; return the folder with audio/ and meta/esc50.csv.

    `url` may be http(s)://, file:// or a local zip path. `dest` defaults to
    <workspace>/datasets/esc50; when it already holds ESC-50 it is returned as is.
    """
    dest = Path(dest) if dest is not None else _default_dest()
    if dest.is_dir() and find_esc50_root(dest) == dest:
        return dest
    from audioclf import workspace

    workspace.require_writable("download a data set")
    if dest.exists() and any(dest.iterdir()):
        raise DownloadError(f"{dest} exists and is not an ESC-50 folder; choose another place.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        local = _local_path(url)
        if local is not None and not local.is_file():
            raise DownloadError(f"No archive at {local}.")
        if local is not None and progress:
            size = local.stat().st_size
            progress(size, size)
        zip_path = local if local is not None else download_file(url, work / "esc50.zip", progress)
        if not zipfile.is_zipfile(zip_path):
            raise DownloadError(f"{url} is not a zip archive (the download may be incomplete).")
        if sha256 and _sha256(zip_path) != sha256.lower():
            raise DownloadError(f"{url} failed the SHA-256 check: the file is corrupt or has changed.")
        try:
            unpacked = safe_extract(zip_path, work / "unpacked")
        except ArchiveError as exc:
            raise DownloadError(str(exc)) from None
        root = find_esc50_root(unpacked)
        if root is None:
            raise DownloadError(
                f"{url} does not look like ESC-50: no folder with audio/ and {ESC50_META} inside."
            )
        try:
            if dest.is_dir() and not any(dest.iterdir()):
                dest.rmdir()
            os.replace(root, dest)
        except OSError as exc:
            # Another process finished first: use its copy if it is complete.
            if not dest.is_dir() or find_esc50_root(dest) != dest:
                raise DownloadError(f"Could not move ESC-50 into {dest}: {exc.strerror or exc}.") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
