"""Editing workspace data sets (for the app's Data page): list and create data sets,
add a clip (checked to be audio before it is written), relabel and delete clips.

Only folders inside the workspace's data sets can be edited, never ESC-50's (its
labels live in meta/esc50.csv), and nothing is ever overwritten.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from os import PathLike
from pathlib import Path

from audioclf import audio, workspace
from audioclf.datasets.base import (
    AUDIO_EXTENSIONS,
    ESC50_META,
    SPLIT_DIRS,
    DatasetError,
    safe_name,
    visible_entries,
)
from audioclf.datasets.loading import split_folders

FORMAT_EXTENSIONS = {"wav": "wav", "wavex": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3"}
# A class of "none of the above" sounds (room tone, traffic, hum), as Teachable Machine's
# "Background Noise" class: with it a model can answer "nothing of interest".
BACKGROUND_LABEL = "background"
BACKGROUND_NAMES = ("background", "background_noise", "noise", "other", "silence", "unknown")
BACKGROUND_CLIP_SECONDS = 2.0  # a long background recording becomes clips of this length


CLIP_MODE = 0o644  # what an added clip is saved with (mkstemp alone gives 0600)

def _check_name(name: str, what: str) -> str:
    clean = safe_name(name)
    if not clean:
        raise DatasetError(f"{name!r} is not usable as a {what} name; use letters, digits, - or _.")
    return clean


def list_datasets() -> list[Path]:
    """The data set folders in the workspace, by name (not those whose name is not valid UTF-8:
    `load_dataset` refuses them and the app could not show their names)."""
    return [p for p in visible_entries(workspace.datasets_dir()) if p.is_dir() and audio.is_utf8_path(p)]


def create_dataset(name: str) -> Path:
    """Create an empty data set folder in the workspace and return it."""
    workspace.require_writable("create a data set")
    raw = str(name).strip()
    if not raw or set(raw) <= {"."} or "/" in raw or "\\" in raw or os.sep in raw or raw.startswith("."):
        raise DatasetError(f"{name!r} is not a valid data set name: no slashes, and not starting with a dot.")
    path = workspace.datasets_dir() / _check_name(raw, "data set")
    try:
        path.mkdir()
    except FileExistsError:
        raise DatasetError(f"A data set named '{path.name}' already exists; choose another name.") from None
    return path


def _in_workspace(path: Path) -> Path:
    """`path` resolved, if it lies inside a workspace data set; else DatasetError."""
    base = workspace.datasets_dir().resolve()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(base) or resolved == base:
        raise DatasetError(
            f"{path} is not inside the workspace's data sets ({base}); only those can be edited."
        )
    dataset_root = base / resolved.relative_to(base).parts[0]
    if (dataset_root / ESC50_META).exists():
        raise DatasetError(f"'{dataset_root.name}' is an ESC-50 data set; its labels come from "
                           "meta/esc50.csv and cannot be edited here.")
    return resolved


def _claim(folder: Path, filename: str, src: Path) -> Path:
    """Move `src` to folder/filename, adding -1, -2... instead of overwriting anything."""
    stem, suffix = Path(filename).stem, Path(filename).suffix
    for k in range(10_000):
        target = folder / (filename if k == 0 else f"{stem}-{k}{suffix}")
        try:
            os.link(src, target)  # fails if target exists: no overwrite, even in a race
        except FileExistsError:
            continue
        except OSError:  # file system without hard links
            if target.exists():
                continue
            os.replace(src, target)
            return target
        os.unlink(src)
        return target
    raise DatasetError(f"Too many files named like {filename} in {folder}.")


def _inside(folder: Path, root: Path) -> Path:
    """`folder`, if it (links followed) lies inside the data set `root`; else DatasetError.

    A class or split folder that is a link would let a write land outside the workspace."""
    real = folder.resolve()
    if not real.is_relative_to(root.resolve()):
        raise DatasetError(f"'{folder.relative_to(root)}' in data set '{root.name}' leads outside it (to {real}), "
                           "so nothing is written there. Replace the link with a real folder.")
    return folder


def _class_dir(ds_root: Path, label: str, split: str | None) -> Path:
    folder = ds_root
    if split is not None:
        if split not in SPLIT_DIRS:
            raise DatasetError(f"Unknown split {split!r}; use train, val or test.")
        folder = folder / SPLIT_DIRS[split]
    return folder / _check_name(label, "class")


def add_clip(
    ds_root: str | PathLike, label: str, filename: str, data: bytes | str | PathLike, *,
    split: str | None = None
) -> Path:
    """Check that `data` (bytes, or a file to copy) is audio (AudioError if not), then write it
    to ds_root/[split/]label/ under a sanitised `filename`, never overwriting (a -1, -2...
    suffix is added). A file is checked and copied a block at a time."""
    workspace.require_writable("add clips to a data set")
    root = _in_workspace(Path(ds_root))
    if not root.is_dir():
        raise DatasetError(f"No data set folder at {ds_root}; create it first.")
    folder = _class_dir(root, label, split)
    name = safe_name(Path(str(filename).replace("\\", "/")).name) or "clip"
    audio.check_audio(data, name=name)  # raises AudioError before anything is written
    if Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
        # e.g. a browser recording named "recording": take the extension from the header.
        fmt = audio.probe(data, name=name).format.lower()
        name = f"{Path(name).stem or 'clip'}.{FORMAT_EXTENSIONS.get(fmt, fmt)}"
    _inside(folder, root)
    folder.mkdir(parents=True, exist_ok=True)
    _inside(folder, root)  # again: a link may have appeared meanwhile
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        os.fchmod(fd, CLIP_MODE)  # mkstemp makes 0600; a clip is as readable as the demo's
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                with open(data, "rb") as src:
                    shutil.copyfileobj(src, fh)
        return _claim(folder, name, Path(tmp))
    finally:
        Path(tmp).unlink(missing_ok=True)


def has_background(labels) -> bool:
    """True if one of the class names reads as a background / other class."""
    return any(safe_name(str(lab)).lower().replace(" ", "_") in BACKGROUND_NAMES for lab in labels)


def add_background(
    ds_root: str | PathLike, data: bytes, filename: str = "background.wav", *,
    label: str = BACKGROUND_LABEL, seconds: float = BACKGROUND_CLIP_SECONDS, split: str | None = None
) -> list[Path]:
    """Add a recording of background noise to the class `label`, cut into clips of `seconds`.

    Teachable Machine asks for about 20 s of the room's own sound and cuts it into
    short samples; so does this: a 20 s recording gives ten 2 s clips (a last piece
    shorter than half a clip is dropped; a recording shorter than one clip is kept
    whole). Returns the written paths. AudioError if `data` is not audio.
    """
    workspace.require_writable("add clips to a data set")
    import io

    import numpy as np
    import soundfile as sf

    if not 0.25 <= float(seconds) <= 60.0:
        raise DatasetError(f"Background clips must be 0.25 to 60 s long, got {seconds}.")
    clip = audio.load_audio(data, name=filename)
    step = max(1, int(round(float(seconds) * clip.sr)))
    starts = [s for s in range(0, len(clip.samples), step) if len(clip.samples) - s >= step / 2] or [0]
    stem = Path(safe_name(Path(str(filename).replace("\\", "/")).stem) or "background").stem
    written = []
    for i, start in enumerate(starts, 1):
        buf = io.BytesIO()
        sf.write(buf, np.clip(clip.samples[start:start + step], -1.0, 1.0), clip.sr, format="WAV", subtype="PCM_16")
        written.append(add_clip(ds_root, label, f"{stem}_{i:03d}.wav", buf.getvalue(), split=split))
    return written


def _dataset_root_and_split(path: Path) -> tuple[Path, str | None]:
    base = workspace.datasets_dir().resolve()
    parts = path.relative_to(base).parts
    root = base / parts[0]
    if len(parts) >= 4 and split_folders(root) and SPLIT_DIRS.get(parts[1].lower()):
        return root, parts[1]
    return root, None


def relabel_clip(path: str | PathLike, label: str) -> Path:
    """Move a clip to the class folder `label` of its data set; return its new path."""
    workspace.require_writable("relabel a clip")
    src = _in_workspace(Path(path))
    if not src.is_file():
        raise DatasetError(f"No clip at {path}.")
    root, split_dir = _dataset_root_and_split(src)
    folder = (root / split_dir if split_dir else root) / _check_name(label, "class")
    if folder == src.parent:
        return src
    _inside(folder, root)
    folder.mkdir(parents=True, exist_ok=True)
    _inside(folder, root)
    old_folder = src.parent
    target = _claim(folder, src.name, src)
    _remove_if_empty(old_folder, root)
    return target


def delete_clip(path: str | PathLike) -> None:
    """Delete a clip from a workspace data set (its class folder goes too when left empty)."""
    workspace.require_writable("delete a clip")
    src = _in_workspace(Path(path))
    if not src.is_file():
        raise DatasetError(f"No clip at {path}.")
    root, _ = _dataset_root_and_split(src)
    src.unlink()
    _remove_if_empty(src.parent, root)


def _remove_if_empty(folder: Path, root: Path) -> None:
    # An empty class folder would otherwise show up as a class with no clips.
    if folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            pass
