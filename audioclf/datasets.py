"""Data sets: load (folder, train/val/test folders, zip, CSV manifest, ESC-50), summarise,
split (stratified, by group, fixed, k folds) and edit (for the app's Data page).

A data set is a list of `Item(path, label, split, group)`. Loading only lists
files; `summarize_dataset()` reads headers; nothing here decodes audio except
`add_clip()`, which checks an upload before writing it.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

import numpy as np

from audioclf import audio, workspace

AUDIO_EXTENSIONS = audio.SUPPORTED_EXTENSIONS
SPLITS = ("train", "val", "test")
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
METHODS = ("stratified", "group", "fixed")
ESC50_META = Path("meta") / "esc50.csv"
# Column names people use in manifests, mapped to ours.
COLUMN_ALIASES = {
    "path": "path", "file": "path", "filename": "path", "filepath": "path",
    "label": "label", "class": "label", "category": "label",
    "split": "split", "subset": "split",
    "group": "group", "speaker": "group", "fold": "group",
}
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
ZIP_MARKER = ".audioclf-source.json"
# The speaker in FSDD's "7_jackson_32.wav"; offered as a preset by the app.
FSDD_SPEAKER_PATTERN = r"^\d+_([A-Za-z]+)_"
MAX_NAME = 100
FORMAT_EXTENSIONS = {"wav": "wav", "wavex": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3"}


class DatasetError(ValueError):
    """A data set cannot be loaded, split or edited as asked; the message is for people."""


@dataclass(frozen=True)
class Item:
    """One clip: its file, its class, and optionally a fixed split and a group (speaker, fold...)."""

    path: Path
    label: str
    split: str | None = None
    group: str | None = None


@dataclass
class Dataset:
    """A named list of clips plus the files that were skipped while loading, with why."""

    name: str
    root: Path
    items: list[Item]
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Class names, sorted."""
        return sorted({item.label for item in self.items})

    @property
    def counts(self) -> dict[str, int]:
        """Clips per class, in label order."""
        counts = Counter(item.label for item in self.items)
        return {label: counts[label] for label in self.labels}

    @property
    def groups(self) -> list[str]:
        """Distinct groups (speakers, folds...), sorted; empty when there are none."""
        return sorted({item.group for item in self.items if item.group is not None})

    @property
    def has_fixed_split(self) -> bool:
        return any(item.split is not None for item in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def without(self, paths: Iterable[str | PathLike]) -> Dataset:
        """A copy without the given files (e.g. the unreadable ones from the summary)."""
        drop = {Path(p) for p in paths}
        return replace(self, items=[i for i in self.items if i.path not in drop])


# ---------------------------------------------------------------- loading


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not _hidden(p))


def _class_folder_items(
    root: Path, split: str | None, problems: list[tuple[str, str]]
) -> list[Item]:
    """Items of a folder with one sub-folder per class (files in nested folders count too)."""
    items = []
    for entry in _visible(root):
        if entry.is_file():
            reason = "not in a class folder" if _is_audio(entry) else "not an audio file"
            problems.append((str(entry), f"{reason}, skipped"))
            continue
        found = 0
        for dirpath, dirnames, filenames in os.walk(entry):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(Path(d)))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if _hidden(path):
                    continue
                if _is_audio(path):
                    items.append(Item(path, entry.name, split))
                    found += 1
                else:
                    problems.append((str(path), f"not an audio file ({path.suffix or 'no extension'}), skipped"))
        if not found:
            problems.append((str(entry), "class folder has no audio files, skipped"))
    return items


def _split_dirs(root: Path) -> dict[str, Path]:
    """{split: folder} when `root` has train/ and test/ (and maybe val/) above class folders."""
    found = {}
    for entry in _visible(root):
        key = SPLIT_DIRS.get(entry.name.lower())
        if key and entry.is_dir():
            found[key] = entry
    return found if {"train", "test"} <= found.keys() else {}


def _load_folder(root: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    splits = _split_dirs(root)
    if not splits:
        return _class_folder_items(root, None, problems), problems
    items = []
    for entry in _visible(root):
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
                elif not _is_audio(path):
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
    entries = _visible(root)
    while (
        len(entries) == 1
        and entries[0].is_dir()
        and not (root / ESC50_META).is_file()
        and not any(_is_audio(p) for p in entries[0].iterdir())
    ):
        root = entries[0]
        entries = _visible(root)
    return root


def _zip_stamp(zip_path: Path) -> dict:
    st = zip_path.stat()
    return {"source": str(zip_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _extract_zip(zip_path: Path) -> Path:
    """Unpack into <workspace>/datasets/<zip name> once; reuse it while the zip is unchanged."""
    from audioclf.download import DownloadError, safe_extract

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
    except DownloadError as exc:
        raise DatasetError(str(exc)) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    raise DatasetError(f"Too many data sets named like '{base}' in {parent}.")


def _same_source(folder: Path, stamp: dict) -> bool:
    try:
        return json.loads((folder / ZIP_MARKER).read_text()) == stamp
    except (OSError, ValueError):
        return False


def _apply_group_pattern(items: list[Item], pattern: str) -> tuple[list[Item], list[tuple[str, str]]]:
    regex = compile_group_pattern(pattern)
    out, problems = [], []
    for item in items:
        match = regex.search(item.path.name)
        if match is None:
            problems.append((str(item.path), f"file name does not match the group pattern {pattern!r}"))
            out.append(replace(item, group=None))
        else:
            out.append(replace(item, group=match.group(1) if regex.groups else match.group(0)))
    return out, problems


def compile_group_pattern(pattern: str) -> re.Pattern:
    """Compile a group regex (at most one capture group), or raise DatasetError saying why not."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"The group pattern {pattern!r} is not a valid regular expression ({exc}).") from None
    if regex.groups > 1:
        raise DatasetError(
            f"The group pattern {pattern!r} has {regex.groups} capture groups; use one, "
            r"around the part of the file name that names the group, e.g. ^\d+_([a-z]+)_"
        )
    return regex


def load_dataset(source: str | PathLike, *, group_pattern: str | None = None) -> Dataset:
    """Load a data set from a class-folder tree, train/val/test folders, a .zip, a CSV manifest
    or ESC-50's layout (audio/ + meta/esc50.csv). `group_pattern` sets each item's group from
    its file name (first capture group), e.g. FSDD_SPEAKER_PATTERN.
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
    return _finish(name, root, items, problems, group_pattern, str(root))


def _finish(name, root, items, problems, group_pattern, where) -> Dataset:
    if not items:
        raise DatasetError(
            f"No audio clips found in {where}. Expected one sub-folder per class holding "
            f"{', '.join(AUDIO_EXTENSIONS)} files (or train/, val/, test/ above them)."
        )
    if group_pattern:
        items, more = _apply_group_pattern(items, group_pattern)
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


# ---------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitConfig:
    """How to split: "stratified" (per-class shares), "group" (no group in two splits), or
    "fixed" (the data set's own train/val/test). `val`/`test` are shares of all clips."""

    method: str = "stratified"
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    group_pattern: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise DatasetError(f"Unknown split method {self.method!r}; use one of {', '.join(METHODS)}.")
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise DatasetError(
                f"Validation ({self.val:g}) and test ({self.test:g}) shares must be between 0 and 1 "
                "and leave something for training."
            )


@dataclass(frozen=True)
class Split:
    """Items for training, validation and test (the config that made it, when known)."""

    train: list[Item]
    val: list[Item]
    test: list[Item]
    config: SplitConfig | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """split name -> class -> clips."""
        return {name: dict(sorted(Counter(i.label for i in getattr(self, name)).items())) for name in SPLITS}


def _n_holdout(n: int, share: float) -> int:
    return 0 if share <= 0 else max(1, round(n * share))


def _min_per_class(cfg: SplitConfig) -> int:
    return 1 + (cfg.val > 0) + (cfg.test > 0)


def _stratified(items: list[Item], val: float, test: float, seed: int) -> tuple[list, list, list]:
    # Per class by hand rather than sklearn's train_test_split(stratify=...): that one may
    # leave a small class out of a split entirely; here every class is in every split.
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Item]] = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    train, val_items, test_items = [], [], []
    for label in sorted(by_label):
        group = by_label[label]
        order = [group[i] for i in rng.permutation(len(group))]
        n_test, n_val = _n_holdout(len(order), test), _n_holdout(len(order), val)
        while len(order) - n_test - n_val < 1 and (n_test or n_val):  # tiny class
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        test_items += order[:n_test]
        val_items += order[n_test : n_test + n_val]
        train += order[n_test + n_val :]
    return train, val_items, test_items


def _with_groups(ds: Dataset, pattern: str | None) -> list[Item]:
    items = ds.items
    if pattern:
        items, _ = _apply_group_pattern(items, pattern)
    missing = [i for i in items if i.group is None]
    if missing:
        how = f"the pattern {pattern!r} does not match" if pattern else "they have no group"
        raise DatasetError(
            f"A group split needs a group for every clip, but {len(missing)} clips have none "
            f"({how}; e.g. {missing[0].path.name}). Give a group pattern with one capture group, "
            r"e.g. ^\d+_([a-z]+)_ for FSDD speakers, or a group column in the manifest."
        )
    return items


def _group_split(items: list[Item], cfg: SplitConfig) -> tuple[list, list, list]:
    from sklearn.model_selection import GroupShuffleSplit

    groups = sorted({i.group for i in items})
    needed = _min_per_class(cfg)
    if len(groups) < needed:
        raise DatasetError(
            f"A group split into {needed} parts needs at least {needed} groups (speakers, folds...); "
            f"found {len(groups)}: {', '.join(groups)}. Add recordings from more groups or use a "
            "stratified split."
        )

    def take(pool: list[Item], share: float, seed: int) -> tuple[list, list]:
        if share <= 0:
            return pool, []
        n_groups = len({i.group for i in pool})
        # At least one group held out, and at least one left for training.
        n_out = min(max(1, round(n_groups * share)), n_groups - 1)
        gss = GroupShuffleSplit(n_splits=1, test_size=n_out, random_state=seed)
        keep, out = next(gss.split(pool, groups=[i.group for i in pool]))
        return [pool[k] for k in keep], [pool[k] for k in out]

    rest, test_items = take(items, cfg.test, cfg.seed)
    train, val_items = take(rest, cfg.val / (1 - cfg.test), cfg.seed + 1)
    return train, val_items, test_items


def _fixed_split(items: list[Item], cfg: SplitConfig) -> tuple[list, list, list]:
    parts = {s: [i for i in items if i.split == s] for s in SPLITS}
    unassigned = [i for i in items if i.split is None]
    if unassigned or not parts["train"] or not parts["test"]:
        raise DatasetError(
            "A fixed split needs every clip in train/ or test/ (val/ optional) folders, or a split "
            f"column in the manifest; {len(unassigned)} clips have no split, "
            f"{len(parts['train'])} are in train and {len(parts['test'])} in test."
        )
    if not parts["val"] and cfg.val > 0:
        # No validation folder: hold out part of train, class by class.
        share = cfg.val / (1 - cfg.test) if cfg.test < 1 else cfg.val
        parts["train"], parts["val"], _ = _stratified(parts["train"], share, 0.0, cfg.seed)
    return parts["train"], parts["val"], parts["test"]


def split_dataset(ds: Dataset, cfg: SplitConfig = SplitConfig()) -> Split:
    """Split into train/val/test by `cfg`; same seed, same split. The result passes check_trainable."""
    check_trainable(ds, cfg)
    if cfg.method == "stratified":
        parts = _stratified(ds.items, cfg.val, cfg.test, cfg.seed)
    elif cfg.method == "group":
        parts = _group_split(_with_groups(ds, cfg.group_pattern), cfg)
    else:
        parts = _fixed_split(ds.items, cfg)
    split = Split(*parts, config=cfg)
    check_trainable(split)
    return split


def kfold_splits(
    ds: Dataset, k: int = 5, seed: int = 0, by_group: bool = False, group_pattern: str | None = None
) -> list[tuple[list[Item], list[Item]]]:
    """k (train, test) folds, stratified by class (and never sharing a group when `by_group`)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if k < 2:
        raise DatasetError(f"Cross-validation needs at least 2 folds, not {k}.")
    check_trainable(ds)
    labels = [i.label for i in ds.items]
    if by_group:
        items = _with_groups(ds, group_pattern)
        groups = [i.group for i in items]
        if len(set(groups)) < k:
            raise DatasetError(
                f"{k}-fold cross-validation by group needs at least {k} groups; found {len(set(groups))}. "
                "Use fewer folds."
            )
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(items, labels, groups)
    else:
        items = ds.items
        for label, n in ds.counts.items():
            if n < k:
                raise DatasetError(
                    f"Class '{label}' has {n} clips; {k}-fold cross-validation needs at least {k} per "
                    "class. Add clips or use fewer folds."
                )
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(items, labels)
    return [([items[i] for i in tr], [items[i] for i in te]) for tr, te in folds]


def check_trainable(obj: Dataset | Split, cfg: SplitConfig | None = None) -> None:
    """Raise DatasetError saying what to fix if a data set (for `cfg`) or a split cannot train a model."""
    if isinstance(obj, Split):
        return _check_split(obj)
    labels = obj.labels
    if len(labels) < 2:
        only = f" (only '{labels[0]}')" if labels else ""
        raise DatasetError(f"Training needs at least two classes{only}; add clips of another class.")
    if cfg is None or cfg.method != "stratified":
        return
    needed = _min_per_class(cfg)
    for label, n in obj.counts.items():
        if n < needed:
            raise DatasetError(
                f"Class '{label}' has {n} clip{'s' * (n != 1)}; a train/validation/test split needs "
                f"at least {needed} per class. Add {needed - n} more, or lower the validation/test shares."
            )


def _check_split(split: Split) -> None:
    cfg = split.config
    names = {"train": "training", "val": "validation", "test": "test"}
    for name in SPLITS:
        wanted = name == "train" or cfg is None or getattr(cfg, name) > 0
        if wanted and not getattr(split, name):
            raise DatasetError(f"The {names[name]} split is empty; add clips or change the split shares.")
    train_labels = {i.label for i in split.train}
    if len(train_labels) < 2:
        raise DatasetError("The training split needs at least two classes; add clips of another class.")
    for name in ("val", "test"):
        unseen = sorted({i.label for i in getattr(split, name)} - train_labels)
        if unseen:
            raise DatasetError(
                f"Class '{unseen[0]}' has no clips in the training split, only in {names[name]}: "
                "with a group split each class needs clips from at least two groups."
            )


# ---------------------------------------------------------------- editing


def safe_name(text: str) -> str:
    """A folder/file name from user text: letters, digits, space, - _ . only; no leading dot."""
    text = unicodedata.normalize("NFKC", str(text)).strip()
    text = re.sub(r"[^\w\-. ]+", "_", text)
    text = re.sub(r"_+", "_", text).strip(" ._")
    return text[:MAX_NAME]


def _check_name(name: str, what: str) -> str:
    clean = safe_name(name)
    if not clean:
        raise DatasetError(f"{name!r} is not usable as a {what} name; use letters, digits, - or _.")
    return clean


def list_datasets() -> list[Path]:
    """The data set folders in the workspace, by name."""
    return [p for p in _visible(workspace.datasets_dir()) if p.is_dir()]


def create_dataset(name: str) -> Path:
    """Create an empty data set folder in the workspace and return it."""
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


def _class_dir(ds_root: Path, label: str, split: str | None) -> Path:
    folder = ds_root
    if split is not None:
        if split not in SPLIT_DIRS:
            raise DatasetError(f"Unknown split {split!r}; use train, val or test.")
        folder = folder / SPLIT_DIRS[split]
    return folder / _check_name(label, "class")


def add_clip(
    ds_root: str | PathLike, label: str, filename: str, data: bytes, *, split: str | None = None
) -> Path:
    """Check that `data` is audio (AudioError if not), then write it to ds_root/[split/]label/
    under a sanitised `filename`, never overwriting (a -1, -2... suffix is added)."""
    root = _in_workspace(Path(ds_root))
    if not root.is_dir():
        raise DatasetError(f"No data set folder at {ds_root}; create it first.")
    folder = _class_dir(root, label, split)
    name = safe_name(Path(str(filename).replace("\\", "/")).name) or "clip"
    audio.load_audio(data, name=name)  # raises AudioError before anything is written
    if Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
        # e.g. a browser recording named "recording": take the extension from the header.
        fmt = audio.probe(data, name=name).format.lower()
        name = f"{Path(name).stem or 'clip'}.{FORMAT_EXTENSIONS.get(fmt, fmt)}"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return _claim(folder, name, Path(tmp))
    finally:
        Path(tmp).unlink(missing_ok=True)


def _dataset_root_and_split(path: Path) -> tuple[Path, str | None]:
    base = workspace.datasets_dir().resolve()
    parts = path.relative_to(base).parts
    root = base / parts[0]
    if len(parts) >= 4 and _split_dirs(root) and SPLIT_DIRS.get(parts[1].lower()):
        return root, parts[1]
    return root, None


def relabel_clip(path: str | PathLike, label: str) -> Path:
    """Move a clip to the class folder `label` of its data set; return its new path."""
    src = _in_workspace(Path(path))
    if not src.is_file():
        raise DatasetError(f"No clip at {path}.")
    root, split_dir = _dataset_root_and_split(src)
    folder = (root / split_dir if split_dir else root) / _check_name(label, "class")
    if folder == src.parent:
        return src
    folder.mkdir(parents=True, exist_ok=True)
    old_folder = src.parent
    target = _claim(folder, src.name, src)
    _remove_if_empty(old_folder, root)
    return target


def delete_clip(path: str | PathLike) -> None:
    """Delete a clip from a workspace data set (its class folder goes too when left empty)."""
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
