"""Health check of a data set: the clips that will hurt a model, found before training one.

::

    from audioclf.datasets import load_dataset
    from audioclf.features import YAMNetConfig
    from audioclf.insight.health import check_dataset

    report = check_dataset(load_dataset("my_sounds"), YAMNetConfig())
    for f in report.findings:
        print(f.severity, f.kind, f.message, "->", f.fix)

What is checked, and how:

* **duplicate / leakage**: the same audio twice, by a hash of the decoded
  samples (a renamed or re-encoded lossless copy counts); copies in different
  folders of a fixed train/val/test split are leakage.
* **near_duplicate**: clip vectors (:mod:`audioclf.insight.mapping`) much closer than
  clips usually are to their nearest neighbour (a fraction of the median
  nearest-neighbour distance, so the rule adapts to the feature kind).
* **mislabelled**: out-of-fold probabilities of a fast classifier (PCA +
  logistic regression on clip vectors) and cleanlab's confident learning: a
  clip is suspect when the classifier prefers another class and gives its own
  label less than the average confidence of that class's clips; "high" when it
  is confidently another class (above that class's own threshold, the
  confident-joint rule).
* **silent**, **clipped**, **too_short**, **too_long**, **unreadable** clips.
* **sample_rates**, **channels** (mixed formats; worse when one class alone has
  its own format, which a model can learn instead of the sound) and
  **imbalance** / **one_class** / **few_clips**.

Every :class:`Finding` carries a fix; those with an ``action`` ("delete",
"relabel") are applied by :func:`apply_fix` through the data set editing
functions (workspace data sets only).
"""
from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audioclf import audio
from audioclf.audio import AudioError
from audioclf.errors import AudioclfError
from audioclf.features import FeatureConfig, MFCCConfig
from audioclf.progress import Stages  # stages "reading", "features", "checking"
from audioclf.insight.clipstats import CLIPPED_MIN, CLIPPED_SHARE, ClipStats, clip_stats

SEVERITIES = ("high", "medium", "low")
FINDING_KINDS = ("unreadable", "one_class", "leakage", "duplicate", "mislabelled", "silent", "near_duplicate",
         "too_short", "too_long", "clipped", "few_clips", "imbalance", "sample_rates", "channels")
FIX_ACTIONS = ("delete", "relabel", "")
MIN_CLIP_SECONDS = 0.1  # shorter is too short to hold a sound whatever the data set
SHORT_FRACTION = 0.2  # shorter than this share of the median duration
LONG_FACTOR = 8.0  # longer than this many times the median duration...
LONG_MIN_SECONDS = 5.0  # ...and than this
NEAR_FRACTION = 0.1  # near duplicate: closer than this share of the median nearest-neighbour distance
MAX_NEAR_GROUPS = 50
MISLABEL_FOLDS = 5
MISLABEL_PCA_DIMS = 64  # the same ranking as all 1024 YAMNet dimensions, much sooner (docs/RESULTS.md)
LOGREG_C = 0.1
TOP_SUSPECTS = 20
FEW_CLIPS = 5
IMBALANCE_LOW, IMBALANCE_MEDIUM, IMBALANCE_HIGH = 1.5, 3.0, 10.0
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2, None: 3}



class HealthError(AudioclfError):
    """A health check or a fix cannot be carried out; the message is for people."""


@dataclass(frozen=True)
class Finding:
    """One problem: what, how bad, which files, and what to do about it.

    ``action`` ("delete", "relabel" or "" for advice only) applies to ``targets``;
    a relabel moves ``targets[0]`` to class ``label``.
    """

    kind: str
    severity: str
    paths: tuple[str, ...]
    message: str
    fix: str
    action: str = ""
    targets: tuple[str, ...] = ()
    label: str = ""
    score: float = 0.0  # within a kind, higher = more certain / worse

    def to_dict(self) -> dict:
        return {**asdict(self), "paths": list(self.paths), "targets": list(self.targets)}


@dataclass
class HealthReport:
    """All findings of a check, worst first, and what the check could not do."""

    dataset: str
    n_clips: int
    n_classes: int
    features: str
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)  # checks skipped, and why
    n_suspects: int = 0  # mislabel suspects before the `top` cut

    def of_kind(self, *kinds: str) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]

    @property
    def counts(self) -> dict[str, int]:
        """Findings per kind."""
        return dict(Counter(f.kind for f in self.findings))

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "clips": self.n_clips, "classes": self.n_classes,
                "features": self.features, "suspects": self.n_suspects, "notes": list(self.notes),
                "findings": [f.to_dict() for f in self.findings]}


# ---------------------------------------------------------------- individual checks


def _name(path: str) -> str:
    return Path(path).name


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("inf")


def _keep_first(group: list, splits: dict[str, str | None]) -> list[str]:
    # Keep the training copy (deleting it would shrink training data), then the oldest file:
    # a copy is made after its original.
    return sorted(group, key=lambda p: (SPLIT_ORDER.get(splits.get(p), 3), _mtime(p), p))


def exact_duplicates(paths: list[str], digests: list[str], labels: dict[str, str],
                     splits: dict[str, str | None]) -> list[Finding]:
    """Groups of clips with the same decoded audio; across splits they are leakage."""
    groups: dict[str, list[str]] = defaultdict(list)
    for p, d in zip(paths, digests):
        groups[d].append(p)
    out = []
    for group in groups.values():
        if len(group) < 2:
            continue
        group = _keep_first(group, splits)
        keep, copies = group[0], tuple(group[1:])
        in_splits = sorted({splits.get(p) or "-" for p in group})
        classes = sorted({labels[p] for p in group})
        names = ", ".join(_name(p) for p in copies)
        if len(in_splits) > 1:
            kind, severity = "leakage", "high"
            msg = (f"The same audio is in {' and '.join(in_splits)}: {_name(keep)} = {names}. "
                   "A test clip the model has heard in training inflates the score.")
        else:
            kind = "duplicate"
            severity = "high" if len(classes) > 1 else "medium"
            msg = f"{len(group)} copies of the same audio: {_name(keep)} = {names}"
            msg += f", labelled {' and '.join(classes)}." if len(classes) > 1 else "."
        out.append(Finding(kind, severity, tuple(group), msg,
                           f"Delete the {len(copies)} cop{'y' if len(copies) == 1 else 'ies'}, keep {_name(keep)}.",
                           "delete", copies, score=float(len(group))))
    return out


def nearest_neighbours(x: np.ndarray, metric: str = "cosine", block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Index and distance of each row's nearest other row (cosine or euclidean), in blocks."""
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    sq = (x * x).sum(axis=1)
    idx, dist = np.zeros(n, dtype=int), np.full(n, np.inf, dtype=np.float32)
    for start in range(0, n, block):
        part = x[start:start + block]
        prod = part @ x.T
        d = 1.0 - prod if metric == "cosine" else np.maximum(sq[start:start + block, None] + sq[None] - 2 * prod, 0)
        d[np.arange(len(part)), np.arange(start, start + len(part))] = np.inf
        idx[start:start + len(part)] = d.argmin(axis=1)
        dist[start:start + len(part)] = d[np.arange(len(part)), idx[start:start + len(part)]]
    return idx, np.maximum(dist, 0.0)


def near_duplicates(paths: list[str], values: np.ndarray, labels: dict[str, str], splits: dict[str, str | None],
                    exact: set[frozenset], kind: str) -> list[Finding]:
    """Pairs of clips whose vectors are far closer than clips usually are to their nearest neighbour."""
    if len(paths) < 3:
        return []
    from audioclf.insight.mapping import standardize

    x = values if kind in ("yamnet", "efficientat") else standardize(values)  # embeddings keep their scale
    idx, dist = nearest_neighbours(x)
    typical = float(np.median(dist[np.isfinite(dist)]))
    if not typical > 0:
        return []
    limit = NEAR_FRACTION * typical
    pairs = {}
    for i, (j, d) in enumerate(zip(idx, dist)):
        pair = frozenset((paths[i], paths[j]))
        if d < limit and len(pair) == 2 and not any(pair <= g for g in exact):
            pairs[pair] = min(float(d), pairs.get(pair, np.inf))
    out = []
    for pair, d in sorted(pairs.items(), key=lambda kv: kv[1])[:MAX_NEAR_GROUPS]:
        a, b = _keep_first(list(pair), splits)
        closeness = 1.0 - d / limit
        across = (splits.get(a) or "-") != (splits.get(b) or "-")
        what = f"{_name(a)} and {_name(b)} sound almost the same (distance {d:.3g}, typical {typical:.3g})"
        if across:
            out.append(Finding("leakage", "high", (a, b),
                               f"{what} and sit in {splits.get(a) or '-'} and {splits.get(b) or '-'}.",
                               f"Listen to both; if they are one recording, delete {_name(b)}.",
                               "delete", (b,), score=closeness))
        else:
            same = labels[a] == labels[b]
            out.append(Finding("near_duplicate", "low" if same else "medium", (a, b),
                               what + ("." if same else f", yet are labelled {labels[a]} and {labels[b]}."),
                               f"Listen to both; if they are one recording, delete {_name(b)}.",
                               "delete", (b,), score=closeness))
    return out


def out_of_fold_probabilities(x: np.ndarray, y: np.ndarray, *, folds: int = MISLABEL_FOLDS,
                              seed: int = 0) -> np.ndarray:
    """Class probabilities of each clip from a model that never saw it (stratified k-fold).

    ``y`` holds class indices 0..k-1, each with at least 2 clips.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    folds = max(2, min(folds, int(np.bincount(y).min())))
    train_size = len(x) - -(-len(x) // folds)
    dims = max(1, min(MISLABEL_PCA_DIMS, x.shape[1], train_size - 1))
    model = make_pipeline(StandardScaler(), PCA(dims, random_state=seed),
                          LogisticRegression(C=LOGREG_C, max_iter=300))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    # One BLAS thread: more threads per small fit were slower on a busy machine (docs/RESULTS.md).
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 300 iterations rank as well as 3,000
        return cross_val_predict(model, x, y, cv=cv, method="predict_proba")


def confident_learning(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label issues from out-of-fold probabilities (Northcutt et al., cleanlab).

    Returns
    -------
    suspect : np.ndarray[bool]
        The classifier prefers another class and gives the label less than the
        class's threshold (the mean probability its own clips get).
    confident : np.ndarray[bool]
        The confident-joint rule: some other class reaches its own threshold.
    suggested : np.ndarray[int]
        The class the clip more likely belongs to.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    thresholds = np.array([probs[y == c, c].mean() if np.any(y == c) else 1.0 for c in range(k)])
    own = probs[np.arange(n), y]
    above = probs >= thresholds[None, :]
    # cleanlab's rule: among the classes a clip reaches the threshold of, the likeliest one.
    pick = np.where(above, probs, -1.0).argmax(axis=1)
    confident = above.any(axis=1) & (pick != y)
    others = probs.copy()
    others[np.arange(n), y] = -1.0
    suggested = np.where(confident, pick, others.argmax(axis=1))
    suspect = (probs.argmax(axis=1) != y) & (own < thresholds[y])
    return suspect | confident, confident, suggested


def mislabelled(paths: list[str], values: np.ndarray, labels: list[str], *, folds: int = MISLABEL_FOLDS,
                seed: int = 0) -> tuple[list[Finding], list[str]]:
    """Clips whose out-of-fold prediction confidently disagrees with their label; and notes."""
    counts = Counter(labels)
    usable = sorted(c for c, n in counts.items() if n >= 2)
    if len(usable) < 2:
        return [], ["Mislabelled clips were not looked for: that needs two classes with at least 2 clips each."]
    notes = []
    if len(usable) < len(counts):
        notes.append("Classes with a single clip were left out of the mislabel check: "
                     + ", ".join(sorted(c for c in counts if counts[c] < 2)) + ".")
    rows = [i for i, lab in enumerate(labels) if lab in usable]
    y = np.array([usable.index(labels[i]) for i in rows])
    probs = out_of_fold_probabilities(values[rows], y, folds=folds, seed=seed)
    suspect, confident, suggested = confident_learning(probs, y)
    out = []
    for r in np.flatnonzero(suspect):
        path, own, new = paths[rows[r]], usable[y[r]], usable[suggested[r]]
        p_own, p_new = float(probs[r, y[r]]), float(probs[r, suggested[r]])
        out.append(Finding(
            "mislabelled", "high" if confident[r] else "medium", (path,),
            f"{_name(path)} is labelled {own}, but a classifier that never saw it says {new} "
            f"({p_new:.0%}; {own} {p_own:.0%}).",
            f"Listen to it; relabel it as {new} if that is right (or delete it if it is neither).",
            "relabel", (path,), label=new, score=1.0 - p_own))
    out.sort(key=lambda f: -f.score)
    return out, notes


def level_findings(paths: list[str], stats: list[ClipStats]) -> list[Finding]:
    """Silent, clipped, too short and too long clips."""
    out = []
    durations = np.array([s.duration for s in stats])
    median = float(np.median(durations)) if len(durations) else 0.0
    short = max(MIN_CLIP_SECONDS, SHORT_FRACTION * median)
    long = max(LONG_MIN_SECONDS, LONG_FACTOR * median)
    for p, s in zip(paths, stats):
        name = _name(p)
        if s.silent:
            out.append(Finding("silent", "high", (p,), f"{name} is silent (nothing above {audio.SILENCE_DB:g} dBFS).",
                               f"Delete {name}: it teaches the model nothing about its class.", "delete", (p,),
                               score=1.0))
        if s.clipped >= CLIPPED_MIN and s.clipped > CLIPPED_SHARE * s.frames * s.channels:
            share = s.clipped / (s.frames * s.channels)
            out.append(Finding("clipped", "low", (p,), f"{name} is clipped: {share:.1%} of its samples sit at full scale.",
                               "Re-record it at a lower gain, or delete it if the distortion is not part of the sound.",
                               "delete", (p,), score=share))
        if s.duration < short:
            out.append(Finding("too_short", "medium", (p,),
                               f"{name} lasts {s.duration:.2f} s, the median clip {median:.2f} s.",
                               f"Delete {name} unless the sound really is that short.", "delete", (p,),
                               score=1.0 - s.duration / short))
        elif s.duration > long:
            out.append(Finding("too_long", "low", (p,),
                               f"{name} lasts {s.duration:.1f} s, the median clip {median:.2f} s.",
                               "Cut it into clips of the usual length (or delete it): a model sees one label for all of it.",
                               "delete", (p,), score=s.duration / long))
    return out


def format_findings(paths: list[str], stats: list[ClipStats], labels: dict[str, str]) -> list[Finding]:
    """Mixed sample rates or channel counts; worse when a format belongs to one class alone."""
    out = []
    for attr, kind, unit, fix in (
            ("sr", "sample_rates", "Hz", "Resample the odd ones out to the common rate (audioclf resamples "
                                         "anyway when it extracts features)."),
            ("channels", "channels", "channel(s)", "Nothing is needed (audioclf mixes to mono), but recording "
                                                   "every class the same way is safer.")):
        values = [getattr(s, attr) for s in stats]
        counts = Counter(values)
        if len(counts) < 2:
            continue
        common = counts.most_common(1)[0][0]
        odd = [p for p, v in zip(paths, values) if v != common]
        odd_classes = {labels[p] for p in odd}
        listing = ", ".join(f"{v} {unit} ({n} clips)" for v, n in counts.most_common())
        single = len(odd_classes) == 1 and len(set(labels.values())) > 1
        msg = f"Mixed {kind.replace('_', ' ')}: {listing}."
        if single:
            msg += f" All odd ones are {next(iter(odd_classes))}: a model can learn the format instead of the sound."
        out.append(Finding(kind, "medium" if single else "low", tuple(odd), msg, fix, score=len(odd) / len(paths)))
    return out


def class_findings(counts: dict[str, int]) -> list[Finding]:
    """One class only, classes with very few clips, and class imbalance."""
    if not counts:
        return []
    if len(counts) < 2:
        (label,) = counts
        return [Finding("one_class", "high", (), f"Only one class ({label}): a classifier needs at least two.",
                        "Add clips of another class on the Data page.")]
    out = []
    for label, n in counts.items():
        if n < FEW_CLIPS:
            out.append(Finding("few_clips", "medium", (), f"{label} has only {n} clip(s).",
                               f"Add clips to {label}: with fewer than {FEW_CLIPS} a model cannot learn it "
                               "or be tested on it.", score=1.0 / max(n, 1)))
    most, least = max(counts.values()), min(counts.values())
    ratio = most / max(least, 1)
    if ratio >= IMBALANCE_LOW:
        severity = "high" if ratio >= IMBALANCE_HIGH else "medium" if ratio >= IMBALANCE_MEDIUM else "low"
        small = sorted(c for c, n in counts.items() if n < most / IMBALANCE_LOW)
        out.append(Finding("imbalance", severity, (),
                           f"Classes are imbalanced: {most} clips in the largest, {least} in the smallest "
                           f"({ratio:.1f}x).",
                           f"Add clips to {', '.join(small[:5])}{'...' if len(small) > 5 else ''}, or turn on "
                           "class weights when training.", score=ratio))
    return out


# ---------------------------------------------------------------- the whole check


def check_dataset(ds, config: FeatureConfig | None = None, *, top: int | None = TOP_SUSPECTS,
                  folds: int = MISLABEL_FOLDS, seed: int = 0, progress: Stages | None = None) -> HealthReport:
    """Run every check on a data set.

    Parameters
    ----------
    ds : audioclf.datasets.Dataset
    config : FeatureConfig, optional
        Features for near duplicates and mislabel suspects (default :class:`MFCCConfig`;
        YAMNet and EfficientAT find mislabelled sound events far better).
    top : int or None
        Keep only the ``top`` most likely mislabelled clips (None keeps all).
    progress : callable, optional
        ``progress(stage, done, total)`` with stage "reading", "features" or "checking".

    Returns
    -------
    HealthReport
        Findings sorted by severity, then kind, then score.
    """
    from audioclf.insight.mapping import clip_vectors

    config = config or MFCCConfig()
    tell = progress or (lambda stage, done, total: None)
    items = list(ds.items)
    labels = {str(it.path): it.label for it in items}
    splits = {str(it.path): it.split for it in items}
    findings: list[Finding] = []
    notes: list[str] = []
    for where, why in getattr(ds, "problems", []):
        is_file = Path(where).is_file()
        findings.append(Finding("unreadable", "high", (where,), f"{_name(where)} was skipped: {why}",
                                "Delete it, or replace it with a readable copy.",
                                "delete" if is_file else "", (where,) if is_file else ()))

    stats = clip_stats([it.path for it in items], progress=lambda d, t: tell("reading", d, t))
    good_paths, good_stats = [], []
    for it, s in zip(items, stats):
        if isinstance(s, AudioError):
            findings.append(Finding("unreadable", "high", (str(it.path),), str(s),
                                    "Delete it, or replace it with a readable copy.", "delete", (str(it.path),)))
        else:
            good_paths.append(str(it.path))
            good_stats.append(s)
    counts = dict(sorted(Counter(labels[p] for p in good_paths).items()))
    findings += class_findings(counts)
    findings += exact_duplicates(good_paths, [s.digest for s in good_stats], labels, splits)
    findings += level_findings(good_paths, good_stats)
    findings += format_findings(good_paths, good_stats, labels)

    n_suspects = 0
    if len(good_paths) >= 3:
        good = ds.without(set(labels) - set(good_paths))
        vecs = clip_vectors(good, config, progress=lambda d, t: tell("features", d, t))
        tell("checking", 0, 1)
        paths = [str(p) for p in vecs.paths]
        exact = {frozenset(f.paths) for f in findings if f.kind in ("duplicate", "leakage")}
        findings += near_duplicates(paths, vecs.values, labels, splits, exact, config.kind)
        suspects, more = mislabelled(paths, vecs.values, vecs.labels, folds=folds, seed=seed)
        notes += more
        n_suspects = len(suspects)
        findings += suspects if top is None else suspects[:top]
        tell("checking", 1, 1)
    else:
        notes.append("Near duplicates and mislabelled clips need at least 3 readable clips.")
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), FINDING_KINDS.index(f.kind), -f.score))
    return HealthReport(dataset=ds.name, n_clips=len(items), n_classes=len(counts), features=config.kind,
                        findings=findings, notes=notes, n_suspects=n_suspects)


def apply_fix(finding: Finding) -> str:
    """Carry out a finding's action on a workspace data set; returns what was done.

    Raises
    ------
    HealthError
        For a finding without an action; :class:`audioclf.datasets.DatasetError` when
        a file is gone or outside the workspace.
    """
    from audioclf import datasets

    if finding.action == "delete":
        for path in finding.targets:
            datasets.delete_clip(path)
        names = ", ".join(_name(p) for p in finding.targets)
        return f"Deleted {names}."
    if finding.action == "relabel":
        old = _name(finding.targets[0])
        new = Path(datasets.relabel_clip(finding.targets[0], finding.label)).name
        # The new name only when it is one: "Moved x to speech (x)" repeated the old.
        renamed = f" as {new} (a clip named {old} is there already)" if new != old else ""
        return f"Moved {old} to {finding.label}{renamed}."
    raise HealthError(f"This finding ({finding.kind}) has no one-click fix: {finding.fix}")
