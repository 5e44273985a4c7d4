"""Saving a labelling session as a data set: one class folder per group, recordings as groups.

::

    from audioclf.labelling.saving import GROUP_PATTERN, save_dataset

    saved = save_dataset(session, "night_sounds")
    saved.path, saved.counts            # workspace/datasets/night_sounds, {"siren": 21, ...}
    load_dataset(saved.path, group_pattern=GROUP_PATTERN).groups   # the recordings

A saved clip's file name starts with its recording (``<recording>--<start
ms>-<end ms>.wav``), and :data:`GROUP_PATTERN` takes it back out, so a group
split (``SplitConfig(method="group", group_pattern=GROUP_PATTERN)``) never puts
pieces of one recording on both sides: neighbouring clips of one recording
sound alike, and a random split would flatter the model. The pattern is also
written into the data set's own settings (``datasets.DATASET_SETTINGS``), so
``load_dataset(folder)`` gives every clip its recording as group by itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audioclf import workspace
from audioclf.datasets import DATASET_SETTINGS, DatasetError, add_clip, create_dataset, safe_name
from audioclf.labelling.segmenting import Cut, clip_name
from audioclf.jobs import write_json
from audioclf.labelling.session import LabellingError, Session, save

GROUP_PATTERN = r"^(.+)--\d+-\d+"  # the recording in "<recording>--<start ms>-<end ms>.wav"


@dataclass(frozen=True)
class SavedDataset:
    path: Path
    counts: dict[str, int]  # clips per class
    group_pattern: str = GROUP_PATTERN
    skipped: int = 0  # clips of discarded groups
    missing: tuple[str, ...] = ()  # clips whose file is gone (a recording kept whole, moved since)


def save_dataset(session: Session, dataset: str, *, into_existing: bool = False) -> SavedDataset:
    """Write the session's groups as class folders of a workspace data set (new unless
    ``into_existing``); discarded groups stay out. Each file name carries its recording
    (:data:`GROUP_PATTERN`). Two groups with one name become one class."""
    workspace.require_writable("save a data set")
    groups = session.active_groups
    if len({g.label for g in groups}) < 1:
        raise LabellingError("Every group is discarded; there is nothing to save.")
    if into_existing:
        root = workspace.datasets_dir() / safe_name(dataset)
        if not root.is_dir():
            raise DatasetError(f"No data set named {dataset!r} to add to.")
    else:
        root = create_dataset(dataset)
    counts: dict[str, int] = {}
    missing = []
    by_id = {g.id: g for g in groups}
    for clip in session.clips:
        group = by_id.get(clip.group)
        if group is None:
            continue
        src = session.clip_path(clip)
        if not src.is_file():
            missing.append(str(src))
            continue
        seg = Cut(clip.source, clip.start, clip.end)
        filename = Path(clip_name(clip.recording, seg)).with_suffix(src.suffix or ".wav").name
        add_clip(root, group.label, filename, src)  # copied a block at a time
        counts[group.label] = counts.get(group.label, 0) + 1
    write_json(root / DATASET_SETTINGS, {"group_pattern": GROUP_PATTERN, "labelling_session": session.name})
    session.saved.append(root.name)
    save(session)
    skipped = sum(1 for c in session.clips if c.group is not None and c.group not in by_id)
    return SavedDataset(path=root, counts=dict(sorted(counts.items())), skipped=skipped, missing=tuple(missing))
