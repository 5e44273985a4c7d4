"""Data sets: load (folder, train/val/test folders, zip, CSV manifest, ESC-50), summarise,
split (stratified, by group, fixed, k folds) and edit (for the app's Data page).

A data set is a list of `Item(path, label, split, group)`. Loading only lists
files; `summarize_dataset()` reads headers; nothing here decodes audio except
`add_clip()`, which checks an upload before writing it::

    from audioclf.datasets import SplitConfig, load_dataset, split_dataset

    ds = load_dataset("fsdd/")                        # one sub-folder per class
    split = split_dataset(ds, SplitConfig(val=0.15, test=0.15))
    len(split.train), split.counts()["test"]

The parts: `base` (Item, Dataset, DatasetError), `loading`, `splitting`,
`editing`, `archive` (the one safe unzip), `demo` (the synthesised demo data set)
and `download` (ESC-50). Every public name is
importable from `audioclf.datasets` itself.
"""
from __future__ import annotations

from audioclf.datasets.archive import (
    ArchiveError,
    safe_extract,
    unpack_audio,
)
from audioclf.datasets.base import (
    AUDIO_EXTENSIONS,
    ESC50_META,
    IGNORED_NAMES,
    MAX_NAME,
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
from audioclf.datasets.demo import ensure_demo_dataset, make_demo_dataset, synth_clip
from audioclf.datasets.download import DownloadError, download_esc50
from audioclf.datasets.editing import (
    BACKGROUND_LABEL,
    FORMAT_EXTENSIONS,
    add_background,
    add_clip,
    create_dataset,
    delete_clip,
    has_background,
    list_datasets,
    relabel_clip,
)
from audioclf.datasets.loading import (
    COLUMN_ALIASES,
    DATASET_SETTINGS,
    ZIP_MARKER,
    DatasetSummary,
    load_dataset,
    split_folders,
    summarize_dataset,
)
from audioclf.datasets.splitting import (
    FSDD_SPEAKER_PATTERN,
    MAX_FOLDS,
    METHODS,
    MIN_FOLDS,
    Fold,
    Split,
    SplitConfig,
    apply_group_pattern,
    check_trainable,
    compile_group_pattern,
    cv_folds,
    fold_split,
    kfold_splits,
    natural_key,
    split_dataset,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "COLUMN_ALIASES",
    "ESC50_META",
    "FORMAT_EXTENSIONS",
    "FSDD_SPEAKER_PATTERN",
    "Fold",
    "MAX_FOLDS",
    "MIN_FOLDS",
    "IGNORED_NAMES",
    "MAX_NAME",
    "METHODS",
    "SPLITS",
    "SPLIT_DIRS",
    "ZIP_MARKER",
    "DATASET_SETTINGS",
    "ArchiveError",
    "Dataset",
    "DatasetError",
    "DatasetSummary",
    "DownloadError",
    "Item",
    "Split",
    "SplitConfig",
    "add_clip",
    "add_background",
    "BACKGROUND_LABEL",
    "has_background",
    "apply_group_pattern",
    "check_trainable",
    "compile_group_pattern",
    "create_dataset",
    "cv_folds",
    "delete_clip",
    "download_esc50",
    "ensure_demo_dataset",
    "is_audio",
    "is_hidden",
    "fold_split",
    "kfold_splits",
    "list_datasets",
    "load_dataset",
    "make_demo_dataset",
    "natural_key",
    "relabel_clip",
    "safe_extract",
    "safe_name",
    "split_dataset",
    "split_folders",
    "summarize_dataset",
    "synth_clip",
    "unpack_audio",
    "visible_entries",
]
