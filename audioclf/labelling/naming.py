"""Suggested group names from a pretrained tagger's AudioSet tags averaged over each group.

::

    names = suggest_names(emb.tags, emb.tag_names, groups.assignments, groups.k)
    names[0].name, names[0].tags       # "siren", [("Siren", 0.61), ("Civil defense siren", 0.4), ...]

A name is a class-folder name (``datasets.safe_name``, lower case, spaces as
underscores) of the group's strongest tag. Tags no one would call a class
("Silence", and the catch-alls listed in :data:`GENERIC`) are passed over, and
two groups never get the same suggestion: the weaker one takes its next tag,
or a number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from audioclf.datasets import safe_name

TOP_TAGS = 3
# AudioSet classes that describe a recording rather than a sound to sort by.
GENERIC = frozenset({"Silence", "Inside, small room", "Inside, large room or hall", "Inside, public space",
                     "Outside, urban or manmade", "Outside, rural or natural", "Sound effect",
                     "Environmental noise", "Noise", "Animal", "Wild animals", "Domestic animals, pets",
                     "Livestock, farm animals, working animals", "Vehicle", "Mechanisms"})


@dataclass(frozen=True)
class Suggestion:
    """A group's suggested name and its top tags with their mean scores."""

    name: str
    tags: list[tuple[str, float]] = field(default_factory=list)


def folder_name(tag: str) -> str:
    """An AudioSet tag as a class-folder name: "Civil defense siren" -> "civil_defense_siren"."""
    return safe_name(tag.replace(",", " ").replace(" ", "_").replace("__", "_")).lower().strip("_") or "group"


def group_tags(tags: np.ndarray, names: Sequence[str], members: np.ndarray,
               top: int = TOP_TAGS) -> list[tuple[str, float]]:
    """The group's ``top`` tags by mean score over its members, generic tags left out."""
    mean = np.asarray(tags, np.float32)[members].mean(axis=0)
    out = []
    for i in np.argsort(-mean, kind="stable"):
        if names[i] in GENERIC:
            continue
        out.append((str(names[i]), round(float(mean[i]), 4)))
        if len(out) == top:
            break
    return out


def suggest_names(tags: np.ndarray | None, names: Sequence[str] | None, assignments: np.ndarray,
                  k: int, *, top: int = TOP_TAGS) -> list[Suggestion]:
    """One suggestion per group 0..k-1; ``group_1``... when there are no tags."""
    assignments = np.asarray(assignments)
    if tags is None or names is None:
        return [Suggestion(f"group_{g + 1}") for g in range(k)]
    candidates = []
    for g in range(k):
        members = np.flatnonzero(assignments == g)
        candidates.append(group_tags(tags, names, members, top=max(top, 8)) if len(members) else [])
    # The most confident groups choose first, so a clear "siren" group keeps "siren".
    order = sorted(range(k), key=lambda g: -(candidates[g][0][1] if candidates[g] else 0.0))
    taken: set[str] = set()
    chosen: dict[int, str] = {}
    for g in order:
        name = next((folder_name(t) for t, _ in candidates[g] if folder_name(t) not in taken), None)
        if name is None:
            base = folder_name(candidates[g][0][0]) if candidates[g] else "group"
            name = next(f"{base}_{n}" for n in range(2, k + 3) if f"{base}_{n}" not in taken)
        taken.add(name)
        chosen[g] = name
    return [Suggestion(chosen[g], candidates[g][:top]) for g in range(k)]
