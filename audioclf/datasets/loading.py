"""Loading: a class-folder tree, train/val/test folders above class folders, a .zip of
either (unpacked safely into the workspace once), a CSV manifest, or ESC-50's layout;
and `summarize_dataset()`, which reads every clip's header for the Data page.

Loading only lists files; the summary reads headers; nothing here decodes audio.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from audioclf import audio, workspace
from audioclf.datasets.archive import safe_extract
from audioclf.datasets.base import (
    AUDIO_EXTENSIONS,
    ESC50_META,
    SPLIT_DIRS,
    SPLITS,
    Dataset,
    DatasetError,
    Item,
    is_audio,
    is_hidden,
    safe_name,
    visible_entries,
)
from audioclf.datasets.splitting import apply_group_pattern

# Column names people use in manifests, mapped to ours.
COLUMN_ALIASES = {
    "path": "path", "file": "path", "filename": "path", "filepath": "path",
    "label": "label", "class": "label", "category": "label",
    "split": "split", "subset": "split",
    "group": "group", "speaker": "group", "fold": "group",
}
ZIP_MARKER = ".audioclf-source.json"
# A data set folder's own settings (hidden, so loading skips it as a file): {"group_pattern": ...}.
# The labelling loop writes it, so the recording of each clip is its group wherever the set is loaded.
DATASET_SETTINGS = ".audioclf-dataset.json"


def _class_folder_items(
    root: Path, split: str | None, problems: list[tuple[str, str]]
) -> list[Item]:
    """Items of a folder with one sub-folder per class (files in nested folders count too)."""
    items = []
    for entry in visible_entries(root):
        if entry.is_file():
            reason = "not in a class folder" if is_audio(entry) else "not an audio file"
            problems.append((str(entry), f"{reason}, skipped"))
            continue
        found = 0
        for dirpath, dirnames, filenames in os.walk(entry):
            dirnames[:] = sorted(d for d in dirnames if not is_hidden(Path(d)))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if is_hidden(path):
                    continue
                if is_audio(path):
                    items.append(Item(path, entry.name, split))
                    found += 1
                else:
                    problems.append((str(path), f"not an audio file ({path.suffix or 'no extension'}), skipped"))
        if not found:
            problems.append((str(entry), "class folder has no audio files, skipped"))
    return items


def split_folders(root: Path) -> dict[str, Path]:
    """{split: folder} when `root` has train/ and test/ (and maybe val/) above class folders."""
    found = {}
    for entry in visible_entries(root):
        key = SPLIT_DIRS.get(entry.name.lower())
        if key and entry.is_dir():
            found[key] = entry
    return found if {"train", "test"} <= found.keys() else {}


def _load_folder(root: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    splits = split_folders(root)
    if not splits:
        return _class_folder_items(root, None, problems), problems
    items = []
    for entry in visible_entries(root):
        key = SPLIT_DIRS.get(entry.name.lower())
        if key in splits and splits[key] == entry:
            items += _class_folder_items(entry, key, problems)
        else:
            problems.append((str(entry), "not a train/val/test folder, skipped"))
    return items, problems


def _load_esc50(root: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    """ESC-50: label = category, group = fold (so folds never straddle splits)."""
    items, problems = [], []
    with open(root / ESC50_META, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            try:
                path = root / "audio" / row["filename"]
                label, fold = row["category"].strip(), row["fold"].strip()
            except (KeyError, AttributeError):
                raise DatasetError(
                    f"{root / ESC50_META} is not ESC-50's meta file: it needs the columns "
                    "filename, fold and category."
                ) from None
            if not path.is_file():
                problems.append((str(path), "listed in meta/esc50.csv but missing, skipped"))
                continue
            items.append(Item(path, label, None, f"fold{fold}"))
    return items, problems


def _load_manifest(csv_path: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    """CSV `path,label[,split][,group]`; paths are relative to the CSV's folder."""
    items, problems = [], []
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"The manifest {csv_path.name} is empty.")
            columns = {COLUMN_ALIASES.get(h.strip().lower()): k for k, h in enumerate(header)}
            if "path" not in columns or "label" not in columns:
                raise DatasetError(
                    f"The manifest {csv_path.name} needs a header row with the columns path and "
                    f"label (and optionally split, group); found: {', '.join(header)}."
                )
            for line, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                cell = lambda key: (row[columns[key]].strip() if key in columns and columns[key] < len(row) else "")  # noqa: E731
                where = f"{csv_path.name} line {line}"
                rel, label = cell("path"), cell("label")
                if not rel or not label:
                    problems.append((where, "missing path or label, skipped"))
                    continue
                path = Path(rel) if Path(rel).is_absolute() else base / rel
                split_text = cell("split")
                split = SPLIT_DIRS.get(split_text.lower()) if split_text else None
                if split_text and split is None:
                    problems.append((str(path), f"{where}: unknown split '{split_text}' (use train, val or test), skipped"))
                elif not path.is_file():
                    problems.append((str(path), f"{where}: file not found, skipped"))
                elif not is_audio(path):
                    problems.append((str(path), f"{where}: not an audio file, skipped"))
                else:
                    items.append(Item(path, label, split, cell("group") or None))
    except UnicodeDecodeError:
        raise DatasetError(f"The manifest {csv_path.name} is not a UTF-8 text CSV file.") from None
    except csv.Error as exc:
        raise DatasetError(f"The manifest {csv_path.name} is not valid CSV ({exc}).") from None
    return items, problems


def _unwrap(root: Path) -> Path:
    """A zip often wraps everything in one folder (e.g. ESC-50-master/): step into it."""
    entries = visible_entries(root)
    while (
        len(entries) == 1
        and entries[0].is_dir()
        and not (root / ESC50_META).is_file()
        and not any(is_audio(p) for p in entries[0].iterdir())
    ):
        root = entries[0]
        entries = visible_entries(root)
    return root


def _zip_stamp(zip_path: Path) -> dict:
    st = zip_path.stat()
    return {"source": str(zip_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _extract_zip(zip_path: Path) -> Path:
    """Unpack into <workspace>/datasets/<zip name> once; reuse it while the zip is unchanged."""
    parent = workspace.datasets_dir()
    stamp = _zip_stamp(zip_path)
    base = safe_name(zip_path.stem) or "dataset"
    tmp = None
    try:
        for k in range(1, 1000):
            target = parent / (base if k == 1 else f"{base}-{k}")
            # Read the marker only of a folder seen to exist: folders appear whole (atomic
            # rename), while a miss-then-exists check could race with another unpacker.
            if target.exists():
                if _same_source(target, stamp):
                    return target
                continue  # a different data set already has this name
            if tmp is None:
                tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{base}.tmp-"))
                safe_extract(zip_path, tmp)
                (tmp / ZIP_MARKER).write_text(json.dumps(stamp))
            try:
                os.replace(tmp, target)
                return target
            except OSError:
                # Someone else took the name meanwhile (maybe unpacking this very zip).
                if _same_source(target, stamp):
                    return target
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    raise DatasetError(f"Too many data sets named like '{base}' in {parent}.")


def _same_source(folder: Path, stamp: dict) -> bool:
    try:
        return json.loads((folder / ZIP_MARKER).read_text()) == stamp
    except (OSError, ValueError):
        return False


NOT_UTF8 = ("its name is not valid UTF-8 (shown with \\x escapes), skipped: rename it, e.g. "
            "`convmv -f latin1 -t utf8 -r --notest FOLDER`")


def load_dataset(source: str | PathLike, *, group_pattern: str | None = None) -> Dataset:
    """Load a data set from a class-folder tree, train/val/test folders, a .zip, a CSV manifest
    or ESC-50's layout (audio/ + meta/esc50.csv). `group_pattern` sets each item's group from
    its file name (first capture group), e.g. FSDD_SPEAKER_PATTERN; without it, a folder's
    own pattern (:data:`DATASET_SETTINGS`, written by the labelling loop) applies.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"No data set at {path}: the path does not exist.")
    name = path.stem if path.is_file() else path.name
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".zip":
            path = _extract_zip(path)
            name = path.name  # the folder in the workspace, which may carry a -2 suffix
        elif suffix in (".csv", ".tsv", ".txt"):
            items, problems = _load_manifest(path)
            return _finish(name, path.parent, items, problems, group_pattern, f"the manifest {path.name}")
        else:
            raise DatasetError(
                f"{path.name} is not a data set: give a folder (one sub-folder per class), "
                "a .zip of one, or a CSV manifest with path,label columns."
            )
    root = _unwrap(path)
    if (root / ESC50_META).is_file() and (root / "audio").is_dir():
        items, problems = _load_esc50(root)
    else:
        items, problems = _load_folder(root)
        group_pattern = group_pattern or folder_settings(root).get("group_pattern") or None
    return _finish(name, root, items, problems, group_pattern, str(root))


def folder_settings(root: str | PathLike) -> dict:
    """A data set folder's :data:`DATASET_SETTINGS` ({} when there are none or they are unreadable)."""
    try:
        settings = json.loads((Path(root) / DATASET_SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _finish(name, root, items, problems, group_pattern, where) -> Dataset:
    # A name that is not valid UTF-8 (an old zip, another system's encoding) cannot pass the
    # cache, CSV files or the browser: such clips are listed as problems, not loaded.
    if not audio.is_utf8_path(root):
        raise DatasetError(f"The data set folder {audio.printable_path(root)} has a name that is not valid "
                           "UTF-8; rename it (e.g. `convmv -f latin1 -t utf8 -r --notest FOLDER`).")
    bad = [it for it in items if not (audio.is_utf8_path(it.path) and audio.is_utf8_path(it.label))]
    if bad:
        items = [it for it in items if it not in bad]
        problems = problems + [(str(it.path), NOT_UTF8) for it in bad]
    problems = [(audio.printable_path(where_), why) for where_, why in problems]
    if not items:
        raise DatasetError(
            f"No audio clips found in {where}. Expected one sub-folder per class holding "
            f"{', '.join(AUDIO_EXTENSIONS)} files (or train/, val/, test/ above them)."
        )
    if group_pattern:
        items, more = apply_group_pattern(items, group_pattern)
        problems = problems + more
    return Dataset(name=name, root=Path(root), items=items, problems=problems)


# ---------------------------------------------------------------- summary


@dataclass(frozen=True)
class DatasetSummary:
    """What the Data page shows: counts, durations, formats and unreadable files."""

    name: str
    labels: list[str]
    counts: dict[str, int]  # readable clips per class
    durations: dict[str, list[float]]  # seconds per readable clip, by class (for histograms)
    sample_rates: dict[int, int]  # rate -> clips
    channels: dict[int, int]  # channel count -> clips
    formats: dict[str, int]  # container (WAV, FLAC...) -> clips
    total_duration: float
    unreadable: list[tuple[str, str]]  # (path, reason); these clips are not counted
    problems: list[tuple[str, str]]  # files skipped while loading
    split_counts: dict[str, dict[str, int]]  # fixed split -> class -> clips (empty if none)
    n_groups: int

    @property
    def n_clips(self) -> int:
        return sum(self.counts.values())

    @property
    def all_durations(self) -> list[float]:
        return [d for ds in self.durations.values() for d in ds]


def summarize_dataset(
    ds: Dataset, progress: Callable[[int, int], None] | None = None
) -> DatasetSummary:
    """Read every clip's header (no decoding): a few thousand files take about a second."""
    counts: Counter = Counter()
    durations: dict[str, list[float]] = {label: [] for label in ds.labels}
    rates: Counter = Counter()
    channels: Counter = Counter()
    formats: Counter = Counter()
    splits: dict[str, Counter] = {}
    unreadable = []
    total = len(ds.items)
    for k, item in enumerate(ds.items, start=1):
        try:
            info = audio.probe(item.path)
            if info.frames <= 0:
                raise audio.AudioError(f"'{item.path.name}' contains no audio samples.")
        except audio.AudioError as exc:
            unreadable.append((str(item.path), str(exc)))
        else:
            counts[item.label] += 1
            durations[item.label].append(info.duration)
            rates[info.sr] += 1
            channels[info.channels] += 1
            formats[info.format] += 1
            if item.split:
                splits.setdefault(item.split, Counter())[item.label] += 1
        if progress and (k % 100 == 0 or k == total):
            progress(k, total)
    return DatasetSummary(
        name=ds.name,
        labels=ds.labels,
        counts={label: counts[label] for label in ds.labels},
        durations=durations,
        sample_rates=dict(sorted(rates.items())),
        channels=dict(sorted(channels.items())),
        formats=dict(sorted(formats.items())),
        total_duration=float(sum(sum(d) for d in durations.values())),
        unreadable=unreadable,
        problems=list(ds.problems),
        split_counts={s: dict(sorted(splits[s].items())) for s in SPLITS if s in splits},
        n_groups=len(ds.groups),
    )
