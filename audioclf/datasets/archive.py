"""Safe unzipping: the one place audioclf unpacks a zip it did not make.

`safe_extract()` serves data-set zips (`load_dataset`), the ESC-50 download,
and zips of clips uploaded to the app or given to the command line. Before it
writes anything it refuses an archive whose members

* would land outside the target folder (absolute paths, drive letters, ``..``),
* are symbolic links, devices or pipes, or are encrypted,
* add up to a zip bomb: more than `MAX_MEMBERS` files, more than
  `MAX_TOTAL_BYTES` unpacked, or, past `RATIO_FREE_BYTES`, an expansion ratio
  above `MAX_RATIO`, or more than the disk has free.

While copying it counts bytes against the sizes the archive declares, so a
member that inflates beyond its declared size is stopped too. Whatever fails
half-way is removed again: the target holds all of the archive or nothing new.
"""
from __future__ import annotations

import shutil
import stat
import zipfile
from os import PathLike
from pathlib import Path, PurePosixPath

from audioclf.datasets.base import DatasetError

# ESC-50 unpacks to ~0.9 GB: this stops zip bombs, not real data sets.
MAX_TOTAL_BYTES = 8 << 30
MAX_MEMBERS = 200_000
# Audio compresses to between 1x and 3x; deflate tops out near 1030x (all zeros).
MAX_RATIO = 100
# Below this much unpacked, any ratio is fine: a zip of a few silent clips compresses ~1000x.
RATIO_FREE_BYTES = 64 << 20
CHUNK_BYTES = 1 << 16


class ArchiveError(DatasetError):
    """An archive is unsafe or unusable; nothing of it was kept. The message is for people."""


def _gb(n: int) -> str:
    return f"{n / (1 << 30):.1f} GB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MB"


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this archive member is unsafe to extract, or None when it is fine."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "climbs out of the folder with '..'"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver stored no file type
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is not a regular file or folder (a device or pipe)"
    if info.flag_bits & 0x1:
        return "is encrypted (password-protected zips are not supported)"
    return None


def _check_archive(zip_path: Path, members: list[zipfile.ZipInfo], dest: Path) -> None:
    """Raise ArchiveError if any member is unsafe or the whole would be a zip bomb."""
    refuse = f"Refusing to unpack {zip_path.name}:"
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise ArchiveError(f"{refuse} member '{info.filename}' {problem}.")
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"{refuse} it holds {len(members):,} files, more than the {MAX_MEMBERS:,} allowed.")
    total = sum(info.file_size for info in members)
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"{refuse} it would expand to {_gb(total)}, more than {_gb(MAX_TOTAL_BYTES)}.")
    packed = max(1, zip_path.stat().st_size)
    if total > RATIO_FREE_BYTES and total / packed > MAX_RATIO:
        raise ArchiveError(
            f"{refuse} it would expand {total / packed:.0f}-fold ({_gb(packed)} to {_gb(total)}), "
            f"more than the {MAX_RATIO}-fold of any real audio: it looks like a zip bomb."
        )
    existing = next((p for p in (dest, *dest.parents) if p.exists()), None)
    if existing is not None:
        free = shutil.disk_usage(existing).free
        if total > free:
            raise ArchiveError(f"{refuse} it needs {_gb(total)} but only {_gb(free)} is free on that disk.")


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Copy one member by hand (zf.extract() silently rewrites bad names), at most its declared size."""
    left = info.file_size
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            left -= len(chunk)
            if left < 0:
                raise ArchiveError(f"Refusing to unpack member '{info.filename}': it is larger than the archive says.")
            out.write(chunk)


def _extract_members(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], root: Path) -> None:
    for info in members:
        target = (root / info.filename.replace("\\", "/")).resolve()
        # Belt and braces: _member_problem() should make this impossible.
        if not target.is_relative_to(root):
            raise ArchiveError(f"Refusing to unpack member '{info.filename}': it would land outside {root}.")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_member(zf, info, target)


def _remove_new(dest: Path, existed: bool, before: set[Path]) -> None:
    """Undo a half-done extraction: remove what it added to `dest` (or `dest` itself)."""
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for entry in dest.iterdir():
        if entry not in before:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def safe_extract(zip_path: str | PathLike, dest: str | PathLike) -> Path:
    """Extract `zip_path` into `dest` (created if needed) and return `dest`.

    Raises ArchiveError, with a message for people, if the file is not a usable zip,
    if any member is unsafe or the archive is a zip bomb (then nothing is written),
    or if unpacking fails half-way (then what was written is removed again).
    """
    zip_path, dest = Path(zip_path), Path(dest)
    existed = dest.is_dir()
    before = set(dest.iterdir()) if existed else set()
    started = False
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            _check_archive(zip_path, members, dest)
            started = True
            dest.mkdir(parents=True, exist_ok=True)
            _extract_members(zf, members, dest.resolve())
    except zipfile.BadZipFile as exc:
        error = ArchiveError(f"{zip_path.name} is not a valid zip archive ({exc}).")
    except FileNotFoundError as exc:
        error = ArchiveError(f"Archive not found: {zip_path}" if not zip_path.exists()
                             else f"Could not unpack {zip_path.name}: {exc.filename} not found.")
    except NotImplementedError as exc:  # a compression method Python cannot read
        error = ArchiveError(f"Could not unpack {zip_path.name}: {exc}.")
    except OSError as exc:  # disk full, permissions, a member both file and folder...
        error = ArchiveError(f"Could not unpack {zip_path.name} into {dest}: {exc.strerror or exc}.")
    except ArchiveError as exc:
        error = exc
    else:
        return dest
    if started:
        _remove_new(dest, existed, before)
    raise error from None
