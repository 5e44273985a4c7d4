"""Choose a data set's feature type by a quick cross-validation of each candidate.

    choice = choose_features(split.train + split.val, labels, AutoFeatures())
    choice.winner            # "efficientat" on environmental sounds, "mfcc" on spoken digits
    choice.to_dict()         # every candidate's score, for the run's record

Each candidate's clip summaries (per-dimension mean and std of its frames, from
the feature cache) feed a standardised ridge classifier, scored by stratified
k-fold macro F1 on the clips given (the caller passes training clips only, never
test clips). A later candidate replaces an earlier one only when it is clearly
better fold by fold (the list starts with the pretrained networks, EfficientAT
then YAMNet, the safer bets when a few dozen clips cannot tell them apart).
A ridge fit is closed-form, so the whole comparison costs little
more than extracting the features, which training needs anyway for the winner.
The proxy ranks feature types, it does not predict the final score: clip
summaries lose the order of frames, yet the type whose summaries separate the
classes better also trains the better sequence model on every data set measured
(docs/RESULTS.md).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import AudioclfError
from .defaults import PRETRAINED_KINDS, AutoFeatures

QUICK_CHECK_FOLDS = 3
MAX_CLIPS = 1000  # a stratified sample this large ranks feature types as well as all clips
RIDGE_ALPHA_PER_DIM = 1 / 40  # penalty grows with the summary's width (40 for MFCC, 2048 for YAMNet, 768 for mn04)
TIE = 0.005  # scores closer than this count as equal; the earlier candidate wins
SMALL = 300  # below this many clips the folds are repeated (REPEATS times) to steady the scores
REPEATS = 3


class FeatureChoiceError(AudioclfError):
    """No candidate feature type can be used; message is for people."""


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's quick cross-validation: mean and std of macro F1 over folds."""

    kind: str
    macro_f1: float | None
    macro_f1_std: float | None
    seconds: float
    note: str = ""  # why it was skipped or not scored


@dataclass(frozen=True)
class FeatureChoice:
    """The chosen feature type, every candidate's score and how many clips decided it."""

    winner: str
    scores: tuple[CandidateScore, ...]
    n_clips: int
    reason: str

    def to_dict(self) -> dict:
        return {"winner": self.winner, "n_clips": self.n_clips, "reason": self.reason,
                "scores": [asdict(s) for s in self.scores]}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureChoice":
        return cls(d["winner"], tuple(CandidateScore(**s) for s in d.get("scores", ())),
                   int(d.get("n_clips", 0)), d.get("reason", ""))


def config_for_kind(kind: str, auto: AutoFeatures | None = None):
    """The default feature config of `kind` ("mfcc", "spectral", "yamnet", "efficientat")."""
    from ..features import EfficientATConfig, MFCCConfig, SpectralConfig, YAMNetConfig

    if kind == "yamnet":
        return YAMNetConfig(model=auto.yamnet_model if auto is not None else "")
    if kind == "efficientat":
        return EfficientATConfig(model=auto.efficientat_model if auto is not None else "")
    return {"mfcc": MFCCConfig, "spectral": SpectralConfig}[kind]()


def usable_candidates(auto: AutoFeatures) -> tuple[list[str], dict[str, str]]:
    """Candidates that can run here, and {kind: reason} for those that cannot."""
    usable, skipped = [], {}
    for kind in auto.candidates:
        reason = feature_availability(kind, auto)
        if reason:
            skipped[kind] = reason
        else:
            usable.append(kind)
    if not usable:
        raise FeatureChoiceError("Auto cannot try any feature type here: " + " ".join(skipped.values()))
    return usable, skipped


def feature_availability(kind: str, auto: AutoFeatures | None = None) -> str | None:
    """None if feature type `kind` can run here without a download, else why not (cheap: nothing is loaded)."""
    if kind == "yamnet":
        from ..features import yamnet

        return yamnet.availability(auto.yamnet_model if auto is not None else "")
    if kind == "efficientat":
        from ..features import efficientat

        return efficientat.availability(auto.efficientat_model if auto is not None else "")
    return None


def pretrained_available(auto: AutoFeatures | None = None) -> bool:
    """Whether any pretrained feature type (YAMNet, EfficientAT) can run here: Auto is then the default."""
    return any(feature_availability(k, auto) is None for k in PRETRAINED_KINDS)


def sample_items(items: Sequence, limit: int = MAX_CLIPS, seed: int = 0) -> list:
    """At most `limit` items, the same share of every class (all of them when fewer)."""
    items = list(items)
    if len(items) <= limit:
        return items
    rng = np.random.default_rng(seed)
    by_class: dict[str, list] = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    share = limit / len(items)
    out = []
    for group in by_class.values():
        n = max(1, int(round(len(group) * share)))
        out += [group[i] for i in sorted(rng.choice(len(group), size=n, replace=False))]
    return out


def ridge_cv_f1(x: np.ndarray, y: np.ndarray, folds: int = QUICK_CHECK_FOLDS, seed: int = 0) -> np.ndarray:
    """Macro F1 per fold of a standardised ridge classifier over stratified folds (repeated on
    small data). The folds depend only on `y` and `seed`: candidates scored on the same clips
    get the same folds, so their scores can be compared fold by fold."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=x.shape[1] * RIDGE_ALPHA_PER_DIM))
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=REPEATS if len(y) < SMALL else 1, random_state=seed)
    return cross_val_score(clf, x, y, cv=cv, scoring="f1_macro")


def clearly_better(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether per-fold scores `a` beat `b` by more than TIE and more than the standard
    error of their paired differences: on a few dozen clips the folds disagree a lot, and
    the earlier candidate (the one with a pretrained front end) should not lose to luck."""
    diff = np.asarray(a) - np.asarray(b)
    stderr = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return diff.mean() > max(TIE, stderr)


def choose_features(items: Sequence, labels: Sequence[str], auto: AutoFeatures = AutoFeatures(), *,
                    progress: Callable[[int, int], None] | None = None, seed: int = 0) -> FeatureChoice:
    """Score each usable candidate of `auto` on `items` (datasets.Item) and pick the best.

    Pass training (and validation) clips only. `progress(done, total)` follows
    the feature extraction of all candidates. With one usable candidate, or too
    few clips per class for `QUICK_CHECK_FOLDS` folds, the first usable candidate is taken
    without scoring and `reason` says why.
    """
    from ..features import extract_many, summarize

    usable, skipped = usable_candidates(auto)
    notes = [CandidateScore(k, None, None, 0.0, f"not available: {r}") for k, r in skipped.items()]
    picked = sample_items(items, seed=seed)
    counts = {lab: 0 for lab in labels}
    for it in picked:
        counts[it.label] = counts.get(it.label, 0) + 1
    fewest = min((n for n in counts.values() if n), default=0)
    if len(usable) == 1 or fewest < QUICK_CHECK_FOLDS:
        why = ("the only feature type available" if len(usable) == 1
               else f"too few clips per class to compare ({fewest}; needs {QUICK_CHECK_FOLDS})")
        return FeatureChoice(usable[0], tuple(notes), len(picked), f"{usable[0]} ({why})")
    paths = [str(it.path) for it in picked]
    index = {lab: i for i, lab in enumerate(labels)}
    total, offset = len(paths) * len(usable), 0
    summaries: dict[str, list] = {}
    seconds: dict[str, float] = {}
    for kind in usable:
        t0 = time.perf_counter()
        feats = extract_many(paths, config_for_kind(kind, auto),
                             progress=(lambda d, _t, o=offset: progress(o + d, total)) if progress else None)
        summaries[kind] = [None if isinstance(f, Exception) or f.n_frames == 0 else summarize(f.values)
                           for f in feats]
        seconds[kind] = time.perf_counter() - t0
        offset += len(paths)
    # Compare on the same clips: those every candidate could read.
    keep = [i for i in range(len(paths)) if all(summaries[k][i] is not None for k in usable)]
    y = np.array([index[picked[i].label] for i in keep])
    scored, folds = [], {}
    for kind in usable:
        t0 = time.perf_counter()
        x = np.stack([summaries[kind][i] for i in keep]).astype(np.float64)
        folds[kind] = ridge_cv_f1(x, y, seed=seed)
        scored.append(CandidateScore(kind, round(float(folds[kind].mean()), 4), round(float(folds[kind].std()), 4),
                                     round(seconds[kind] + time.perf_counter() - t0, 2)))
    best = scored[0]
    for s in scored[1:]:
        if clearly_better(folds[s.kind], folds[best.kind]):
            best = s
    others = ", ".join(f"{s.kind} {s.macro_f1:.2f}" for s in scored if s is not best)
    reason = (f"{best.kind} (macro F1 {best.macro_f1:.2f} in a quick {QUICK_CHECK_FOLDS}-fold check of the training "
              f"clips; {others})")
    return FeatureChoice(best.kind, tuple(scored + notes), len(keep), reason)
