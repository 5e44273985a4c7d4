"""Safe unzipping: the one place audioclf unpacks a zip it did not make.

`safe_extract()` serves data-set zips (`load_dataset`), the ESC-50 download,
and zips of clips uploaded to the app or given to the command line. Before it
writes anything it refuses an archive whose members

* would land outside the target folder (absolute paths, drive letters, ``..``),
* are symbolic links, devices or pipes, or are encrypted,
* are too large one by one (more than `limits.ZIP_MAX_MEMBER_BYTES` unpacked, or,
  past `limits.ZIP_MEMBER_RATIO_FREE_BYTES`, an expansion ratio above
  `limits.ZIP_MAX_RATIO`: one silent 50 MB WAV among incompressible padding),
* or add up to a zip bomb: more than `limits.ZIP_MAX_MEMBERS` files, more than
  `limits.ZIP_MAX_TOTAL_BYTES` unpacked, or, past `limits.ZIP_RATIO_FREE_BYTES`,
  the whole archive's ratio above `limits.ZIP_MAX_RATIO`, or more than the disk has free.

Members are streamed to disk a chunk at a time, never held whole in memory.
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

from audioclf import limits
from audioclf.datasets.base import DatasetError, is_audio, is_hidden



class ArchiveError(DatasetError):
    """An archive is unsafe or unusable; nothing of it was kept. The message is for people."""


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
        problem = _member_problem(info) or limits.zip_member_problem(info.file_size, info.compress_size)
        if problem:
            raise ArchiveError(f"{refuse} member '{info.filename}' {problem}.")
    total = sum(info.file_size for info in members)
    problem = limits.zip_total_problem(len(members), total, zip_path.stat().st_size)
    if problem:
        raise ArchiveError(f"{refuse} {problem}.")
    existing = next((p for p in (dest, *dest.parents) if p.exists()), None)
    if existing is not None:
        free = shutil.disk_usage(existing).free
        if total > free:
            raise ArchiveError(f"{refuse} it needs {limits.mb(total)} but only {limits.mb(free)} is free on that disk.")


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Copy one member by hand (zf.extract() silently rewrites bad names), at most its declared size."""
    left = info.file_size
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(limits.COPY_CHUNK_BYTES):
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


def unpack_audio(zip_path: str | PathLike, dest: str | PathLike, label: str = "") -> list[tuple[str, Path]]:
    """`safe_extract` a zip of clips into `dest`, then list its audio files as (label, path).

    A file inside a folder takes the folder's name as its label (a zip of class
    folders), a loose file `label`; hidden files and archivers' litter (`__MACOSX`) are skipped.
    The one way the app and the command line open an uploaded zip: the clips stay on
    disk, and callers read them from there.
    """
    root = safe_extract(zip_path, dest)
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if not is_audio(path) or any(is_hidden(Path(part)) for part in rel.parts):
            continue
        out.append((path.parent.name if len(rel.parts) > 1 else label, path))
    return out
