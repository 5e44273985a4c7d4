"""What every part of `audioclf.datasets` shares: `Item`, `Dataset`, `DatasetError`,
the split names, which files count as audio, and `safe_name` for names people type.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

from audioclf import audio
from audioclf.errors import AudioclfError

AUDIO_EXTENSIONS = audio.SUPPORTED_EXTENSIONS
SPLITS = ("train", "val", "test")
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
ESC50_META = Path("meta") / "esc50.csv"
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
MAX_NAME = 100


class DatasetError(AudioclfError):
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


def is_hidden(path: Path) -> bool:
    """Dot files and the litter of archivers and file browsers (__MACOSX, Thumbs.db...)."""
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def is_audio(path: Path) -> bool:
    """Whether the file name has an audio extension the loader reads."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


def visible_entries(folder: Path) -> list[Path]:
    """The entries of `folder` that are not hidden, sorted."""
    return sorted(p for p in folder.iterdir() if not is_hidden(p))


def safe_name(text: str) -> str:
    """A folder/file name from user text: letters, digits, space, - _ . only; no leading dot."""
    text = unicodedata.normalize("NFKC", str(text)).strip()
    text = re.sub(r"[^\w\-. ]+", "_", text)
    text = re.sub(r"_+", "_", text).strip(" ._")
    return text[:MAX_NAME]
