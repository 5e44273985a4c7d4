"""From a run config to training data: validate, load and split the data set, gather features.

    prepared = prepare_run(cfg)             # every check, before any slow work
    gathered = gather_features({"train": prepared.split.train, ...}, cfg.features, prepared.labels,
                               warps=warp_factors(cfg), progress=...)
    train_data = gathered.training_set()    # training clips plus their warped copies

`prepare_run` is the one pre-flight path: the Train page, the CLI, `train()`
and `cross_validate` all call it, so they refuse the same configs with the
same messages. `gather_features` extracts (cached) features of every part in
one progress sequence whose total includes the warped training copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import workspace
from ..jobs import Cancelled
from ..model.configs import ModelConfig
from ..model.sequences import SplitData
from .config import RunConfig, TrainingError
from .defaults import AUTO
from .feature_choice import usable_candidates

MIN_TRAIN_PER_CLASS = 2


@dataclass
class Prepared:
    """A validated run config with its data set, class names and split (or cross-validation folds)."""

    cfg: RunConfig
    dataset: object  # datasets.Dataset
    labels: list[str]
    split: object | None = None  # datasets.Split (None when cross-validating)
    folds: list = field(default_factory=list)  # datasets.Fold


def resolve_dataset(name: str, group_pattern: str | None = None):
    """Load a data set by path, or by the name of a data set in the workspace."""
    from ..datasets import load_dataset

    path = Path(str(name)).expanduser()
    if not path.exists() and (workspace.datasets_dir() / str(name)).exists():
        path = workspace.datasets_dir() / str(name)
    return load_dataset(path if path.exists() else name, group_pattern=group_pattern)


def check_features(features_cfg) -> None:
    """Refuse feature configs that cannot run on this machine (YAMNet without a model, also beside
    EfficientAT) up front.

    EfficientAT's official weights are downloaded here, once, if they are not on this machine
    (a few MB, checksum verified); without them (offline) the error says how to provide them.
    """
    if getattr(features_cfg, "kind", "") == AUTO:
        usable_candidates(features_cfg)  # raises when none can run here
    elif getattr(features_cfg, "kind", "") == "yamnet":
        from ..features import yamnet

        yamnet.require_available(features_cfg.model)
    elif getattr(features_cfg, "kind", "") == "efficientat":
        from ..features import efficientat

        efficientat.check_source(features_cfg.model)
        efficientat.resolve_checkpoint(features_cfg.model, download=True)
        if features_cfg.yamnet is not None:  # it also hears through YAMNet
            from ..features import yamnet

            yamnet.require_available(features_cfg.yamnet)


def check_split(split, labels: Sequence[str]) -> None:
    """Raise DatasetError/TrainingError saying what to fix if `split` cannot train a model."""
    from ..datasets import check_trainable

    check_trainable(split)
    if len(labels) < 2:
        raise TrainingError(f"Training needs at least two classes; the data set has "
                            f"{len(labels)} ({', '.join(labels) or 'none'}).")
    check_training_part(split.train, labels)


def check_training_part(items: Sequence, labels: Sequence[str]) -> None:
    """Every class needs MIN_TRAIN_PER_CLASS clips among the training `items`."""
    if not items:
        raise TrainingError("The training split is empty; add clips or lower the val/test shares.")
    counts = {lab: 0 for lab in labels}
    for it in items:
        counts[it.label] = counts.get(it.label, 0) + 1
    few = [f"{lab} ({n})" for lab, n in counts.items() if n < MIN_TRAIN_PER_CLASS]
    if few:
        raise TrainingError(f"Too few training clips for class(es) {', '.join(few)}: each class "
                            f"needs at least {MIN_TRAIN_PER_CLASS} in the training split. "
                            "Add clips or lower the val/test shares.")


def prepare_run(cfg: RunConfig, *, folds: int | None = None, dataset=None) -> Prepared:
    """Validate `cfg` and load and split its data set; raise a library error saying what to fix.

    With `folds=k`, make k cross-validation folds instead of one split (by group
    when `cfg.split.method` is "group"). `dataset`: an already loaded Dataset of
    `cfg.dataset` (a page's cached copy), else it is loaded here. Cheap next to
    feature extraction: no features, no TensorFlow.
    """
    from ..datasets import check_trainable, cv_folds, split_dataset

    if not isinstance(cfg, RunConfig):
        raise TrainingError("A run needs a RunConfig.")
    if not cfg.is_auto and not isinstance(cfg.model, ModelConfig):
        raise TrainingError("cfg.model must be a ModelConfig.")
    check_features(cfg.features)
    ds = dataset if dataset is not None else resolve_dataset(cfg.dataset)
    labels = list(ds.labels)
    if folds is not None:
        check_trainable(ds)
        return Prepared(cfg, ds, labels, folds=cv_folds(ds, cfg.split, folds))
    check_trainable(ds, cfg.split)
    split = split_dataset(ds, cfg.split)
    check_split(split, labels)
    return Prepared(cfg, ds, labels, split=split)


# ---------------------------------------------------------------- features

def warp_factors(cfg: RunConfig) -> tuple[float, ...]:
    """Warp factors of the extra training copies for this run's features (only configs with a `warp` field)."""
    if not any(f.name == "warp" for f in fields(cfg.features)):
        return ()
    base = float(cfg.features.warp)
    return tuple(base * w for w in cfg.train.warp_augment if w != 1.0)


def extract_parts(items: Sequence, features_cfg, labels: Sequence[str],
                  progress: Callable[[int, int], None] | None = None, problems: list[str] | None = None,
                  parts: Sequence[int] | None = None) -> list[SplitData]:
    """Features of `items` in one extract_many call (one process pool), cut into
    consecutive parts of the given sizes; unreadable clips go to `problems`."""
    from ..features import extract_many

    parts = list(parts) if parts is not None else [len(items)]
    index = {lab: i for i, lab in enumerate(labels)}
    paths = [str(it.path) for it in items]
    feats = extract_many(paths, features_cfg, progress=progress) if paths else []
    out, start = [], 0
    for size in parts:
        x, y, kept = [], [], []
        for it, p, f in zip(items[start:start + size], paths[start:start + size], feats[start:start + size]):
            if isinstance(f, Exception):
                if problems is not None:
                    problems.append(f"{Path(p).name}: {f}")
                continue
            x.append(f.values.astype(np.float32))
            y.append(index[it.label])
            kept.append(p)
        out.append(SplitData(x, np.array(y, dtype=np.int64), kept))
        start += size
    return out


@dataclass
class Gathered:
    """Features of every part, the warped copies of one part, and the clips that could not be read."""

    data: dict[str, SplitData]
    warped: list[SplitData]  # one per warp factor, same clips as data[warp_part]
    problems: list[str]
    warp_part: str = "train"

    def training_set(self) -> SplitData:
        """The warp part's clips followed by their warped copies (what `fit` trains on)."""
        return SplitData.concat([self.data[self.warp_part], *self.warped])


def gather_features(parts: dict[str, Sequence], features_cfg, labels: Sequence[str], *,
                    warps: Sequence[float] = (), warp_part: str = "train",
                    progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Gathered:
    """Features (cached) of every part of `parts`, then warped copies of `parts[warp_part]`.

    `progress(done, total)` runs through both stages with one total that counts
    the warped copies from the first call, so a bar never sits at "N/N" while the
    copies are computed. `should_stop()` is polled with it: True raises Cancelled.
    """
    names = list(parts)
    items = [it for name in names for it in parts[name]]
    n_warp = len(parts[warp_part]) if warps else 0
    total = len(items) + len(warps) * n_warp
    offset = [0]

    def report(done: int, _total: int) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled()
        if progress is not None:
            progress(offset[0] + done, total)

    if progress is not None:
        progress(0, total)
    problems: list[str] = []
    data = dict(zip(names, extract_parts(items, features_cfg, labels, report, problems,
                                         [len(parts[n]) for n in names])))
    warped = []
    for i, w in enumerate(warps):
        offset[0] = len(items) + i * n_warp  # the copies of factor i follow the plain features
        warped.append(extract_parts(list(parts[warp_part]), replace(features_cfg, warp=w), labels,
                                    report, [])[0])
    if should_stop is not None and should_stop():
        raise Cancelled()
    return Gathered(data, warped, problems, warp_part)
