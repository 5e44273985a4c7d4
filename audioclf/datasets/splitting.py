"""Splits: train/validation/test (stratified, by group, or the data set's own fixed split),
k folds for cross-validation, the checks that a data set or split can train a model,
and group patterns that take a group (speaker, fold...) from each file name.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from audioclf.datasets.base import SPLITS, Dataset, DatasetError, Item

METHODS = ("stratified", "group", "fixed")
MIN_FOLDS, MAX_FOLDS = 2, 20  # cross-validation folds, wherever they are asked for
# The speaker in FSDD's "7_jackson_32.wav"; offered as a preset by the app.
FSDD_SPEAKER_PATTERN = r"^\d+_([A-Za-z]+)_"


# ---------------------------------------------------------------- group patterns


def apply_group_pattern(items: list[Item], pattern: str) -> tuple[list[Item], list[tuple[str, str]]]:
    """Items with their group taken from the file name (the capture group, else the whole
    match), and (path, why) for each name the pattern does not match (its group is None)."""
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
        items, _ = apply_group_pattern(items, pattern)
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


def natural_key(text: str) -> tuple:
    """Sort key that puts "fold2" before "fold10" and "1" before "10"."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", str(text)) if t)


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: clips to train on, clips to score, and the groups it holds out."""

    number: int  # 1-based
    train: list
    test: list
    groups: tuple[str, ...] = ()  # held-out groups (by-group folds), in natural order


def cv_folds(ds: Dataset, cfg: SplitConfig, k: int) -> list[Fold]:
    """k cross-validation folds of `ds`, by group when `cfg.method` is "group".

    By-group folds honour `cfg.group_pattern` and are numbered in the natural
    order of the groups they hold out: with ESC-10's five official folds, fold 1
    holds out group "1".
    """
    if not MIN_FOLDS <= int(k) <= MAX_FOLDS:
        raise DatasetError(f"Cross-validation needs between {MIN_FOLDS} and {MAX_FOLDS} folds, got {k}.")
    by_group = getattr(cfg, "method", "") == "group"
    pattern = getattr(cfg, "group_pattern", None) if by_group else None
    out = []
    for train, test in kfold_splits(ds, int(k), seed=cfg.seed, by_group=by_group, group_pattern=pattern):
        groups = tuple(sorted({it.group for it in test}, key=natural_key)) if by_group else ()
        out.append((train, test, groups))
    if by_group:
        out.sort(key=lambda f: natural_key(f[2][0]) if f[2] else ())
    return [Fold(i + 1, list(tr), list(te), g) for i, (tr, te, g) in enumerate(out)]


def fold_split(fold: Fold, cfg: SplitConfig, seed_offset: int = 0) -> Split:
    """The fold's training clips split into train and validation as `split_dataset` would split a data set.

    The validation share `cfg.val` of the fold's training clips is held out (by
    group for a group split, so no group is in both), for early stopping; the
    fold's test clips are scored. Returns a Split with `test` = fold.test.
    """
    val = float(getattr(cfg, "val", 0.0))
    method = "group" if getattr(cfg, "method", "") == "group" else "stratified"
    if val <= 0:
        return Split(list(fold.train), [], list(fold.test), config=SplitConfig(method, 0.0, 0.0))
    # Items of a by-group fold carry their group already: no pattern needed again.
    sub = Dataset(name=f"fold {fold.number}", root=Path("."), items=list(fold.train))
    inner = split_dataset(sub, SplitConfig(method=method, val=val, test=0.0, seed=int(cfg.seed) + seed_offset))
    return Split(inner.train, inner.val, list(fold.test), config=inner.config)


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
            # Every share above 0 takes at least one clip of each class, so only a share of 0
            # needs fewer: "lower the shares" was no help, and was offered at the sliders' minimum.
            parts = "/".join(name for name, share in (("validation", cfg.val), ("test", cfg.test)) if share > 0)
            more = needed - n
            fewer = (f", or set the validation share to 0 (no validation clips; then {needed - 1} "
                     f"per class are enough)" if cfg.val > 0 and n >= needed - 1 else "")
            raise DatasetError(
                f"Class '{label}' has {n} clip{'s' * (n != 1)}; a split into training and {parts} clips needs "
                f"at least {needed} per class (one for each, whatever the shares). Add {more} more{fewer}."
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
