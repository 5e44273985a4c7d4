"""A labelling session on disk: recordings cut into clips, grouped, named, saved as a data set.

::

    from audioclf.labelling import session as lab

    s = lab.create_session("night", ["recordings/"], cut=CutConfig("events"), k=None)
    s.groups[0].suggested                 # "siren"
    lab.name_group(s, 0, "siren"); lab.merge_groups(s, [3, 4]); lab.split_group(s, 1, 2)
    lab.discard_groups(s, [5]); lab.move_clips(s, ["c00012"], 2)
    lab.next_most_useful(s, run_id)       # unnamed clips the run is least sure about first
    saving.save_dataset(s, "night_sounds")  # class folders under the workspace's data sets

A session lives in ``<workspace>/labelling/<name>/``: ``session.json`` (clips,
groups, settings), ``clips/`` (the cut clips as WAV; a file kept whole is
referenced where it is) and ``embedding.npz`` (each clip's vector, tag scores
and its place in the space it was grouped in). Every change is written at
once, atomically, and refused in read-only mode.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Sequence

import numpy as np

from audioclf import workspace
from audioclf.jobs import write_json  # atomic: a reader never sees half a file
from audioclf.datasets import is_audio, is_hidden, safe_name
from audioclf.errors import AudioclfError
from audioclf.features import config_to_dict
from audioclf.labelling import grouping, naming
from audioclf.labelling.segmenting import Cut, CutConfig, clip_name, cut_all, write_segment
from ..progress import Stages

LABELLING = "labelling"
SESSION_FILE = "session.json"
EMBEDDING_FILE = "embedding.npz"
CLIPS = "clips"
SESSION_VERSION = 1



class LabellingError(AudioclfError):
    """A labelling session cannot do what was asked; the message says why."""


@dataclass
class ClipEntry:
    """One clip of a session: where it is, which recording and stretch it came from, its group."""

    id: str
    file: str  # relative to the session folder, or an absolute path for a file kept whole
    recording: str  # the recording's key: the clip's group in a saved data set
    source: str
    start: float
    end: float
    group: int | None  # None: the clip was left out (no usable features)


@dataclass
class Group:
    id: int
    name: str = ""  # given by the user; empty until then
    suggested: str = ""
    tags: list[list] = field(default_factory=list)  # [[tag, mean score], ...]
    spread: float = 0.0
    examples: list[str] = field(default_factory=list)  # clip ids, most typical first
    discarded: bool = False

    @property
    def label(self) -> str:
        """The class this group becomes: the user's name, else the suggestion."""
        return self.name or self.suggested


@dataclass
class Session:
    name: str
    path: Path
    clips: list[ClipEntry]
    groups: list[Group]
    settings: dict  # cut, embedder, features, method, k, k_reason, silhouettes, sources
    problems: list[list[str]] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    created: float = 0.0

    def group(self, gid: int) -> Group:
        for g in self.groups:
            if g.id == int(gid):
                return g
        raise LabellingError(f"Session {self.name} has no group {gid}.")

    def members(self, gid: int) -> list[ClipEntry]:
        return [c for c in self.clips if c.group == int(gid)]

    def clip(self, clip_id: str) -> ClipEntry:
        for c in self.clips:
            if c.id == clip_id:
                return c
        raise LabellingError(f"Session {self.name} has no clip {clip_id}.")

    def clip_path(self, clip: ClipEntry) -> Path:
        return Path(clip.file) if Path(clip.file).is_absolute() else self.path / clip.file

    @property
    def active_groups(self) -> list[Group]:
        return [g for g in self.groups if not g.discarded]


# ---------------------------------------------------------------- storage


def sessions_dir() -> Path:
    path = workspace.home() / LABELLING
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(session: Session) -> None:
    """Write ``session.json`` atomically (refused in read-only mode)."""
    workspace.require_writable("change a labelling session")
    write_json(session.path / SESSION_FILE, {
        "version": SESSION_VERSION, "name": session.name, "created": session.created,
        "settings": session.settings, "problems": session.problems, "saved": session.saved,
        "clips": [asdict(c) for c in session.clips], "groups": [asdict(g) for g in session.groups]})


def load_session(name: str) -> Session:
    """A session by name (LabellingError if there is none)."""
    path = sessions_dir() / safe_name(name)
    try:
        d = json.loads((path / SESSION_FILE).read_text())
    except FileNotFoundError:
        raise LabellingError(f"No labelling session named {name!r}.") from None
    except (OSError, ValueError) as exc:
        raise LabellingError(f"The labelling session {name!r} cannot be read ({exc}).") from None
    return Session(name=d["name"], path=path, clips=[ClipEntry(**c) for c in d["clips"]],
                   groups=[Group(**g) for g in d["groups"]], settings=d.get("settings", {}),
                   problems=d.get("problems", []), saved=d.get("saved", []), created=d.get("created", 0.0))


def list_sessions() -> list[str]:
    """Names of the sessions in the workspace, newest first."""
    found = [p for p in sessions_dir().iterdir() if (p / SESSION_FILE).is_file()]
    return [p.name for p in sorted(found, key=lambda p: -(p / SESSION_FILE).stat().st_mtime)]


RECORDINGS = ".recordings"  # <workspace>/labelling/.recordings/<session>/: uploaded recordings


def stage_recordings(name: str, files: Sequence[tuple[str, bytes | Path]]) -> tuple[Path, list[list[str]]]:
    """Keep uploaded recordings ``(filename, bytes or a file)`` for session ``name`` (a file kept
    whole is read from here later); returns the folder and ``[filename, why]`` of those refused."""
    from audioclf import audio

    workspace.require_writable("start a labelling session")
    clean = safe_name(name).replace(" ", "_") or "session"
    folder = sessions_dir() / RECORDINGS / clean
    if folder.exists() and not (sessions_dir() / clean / SESSION_FILE).is_file():
        shutil.rmtree(folder)  # left by an attempt that made no session: start afresh
    folder.mkdir(parents=True, exist_ok=True)
    refused = []
    for filename, data in files:
        base = safe_name(Path(str(filename).replace("\\", "/")).name) or "recording.wav"
        try:
            audio.probe(data, name=base)
        except audio.AudioError as exc:
            refused.append([str(filename), str(exc)])
            continue
        target, n = folder / base, 2
        while target.exists():
            target, n = folder / f"{Path(base).stem}-{n}{Path(base).suffix}", n + 1
        if isinstance(data, (bytes, bytearray, memoryview)):
            target.write_bytes(bytes(data))
        else:
            shutil.copyfile(data, target)
    return folder, refused


def unique_name(base: str) -> str:
    """``base`` as a session name, or ``base-2``, ``base-3``... when that one is taken."""
    clean = safe_name(base).replace(" ", "_") or "session"
    name, n = clean, 2
    while (sessions_dir() / name).exists():
        name, n = f"{clean}-{n}", n + 1
    return name


def delete_session(name: str) -> None:
    """Remove a session and its cut clips (data sets saved from it stay)."""
    workspace.require_writable("delete a labelling session")
    path = sessions_dir() / safe_name(name)
    if not (path / SESSION_FILE).is_file():
        raise LabellingError(f"No labelling session named {name!r}.")
    shutil.rmtree(path)
    shutil.rmtree(sessions_dir() / RECORDINGS / path.name, ignore_errors=True)


def _embedding(session: Session) -> dict[str, np.ndarray]:
    with np.load(session.path / EMBEDDING_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- creating


def find_recordings(sources: Sequence[str | PathLike]) -> list[Path]:
    """Audio files among ``sources`` (files, or folders searched recursively), sorted per folder."""
    out = []
    for src in sources:
        src = Path(src).expanduser()
        if src.is_dir():
            out += sorted(p for p in src.rglob("*") if p.is_file() and is_audio(p)
                          and not any(is_hidden(Path(part)) for part in p.relative_to(src).parts))
        elif src.is_file():
            out.append(src)
        else:
            raise LabellingError(f"{src} does not exist; give a folder of recordings or audio files.")
    if not out:
        raise LabellingError("No audio files found in " + ", ".join(str(s) for s in sources) + ".")
    return out


def recording_keys(paths: Sequence[Path]) -> dict[Path, str]:
    """A short unique name per recording (its file stem; -2, -3... for repeats)."""
    keys, used = {}, set()
    for p in paths:
        base = safe_name(p.stem).replace(" ", "_") or "recording"
        key, n = base, 2
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
        keys[p] = key
    return keys


def create_session(name: str, sources: Sequence[str | PathLike], *, cut: CutConfig = CutConfig(),
                   embedder: str = "auto", features=None, k: int | None = None,
                   method: str = "spectral", k_range: tuple[int, int] = grouping.K_RANGE, seed: int = 0,
                   progress: Stages | None = None) -> Session:
    """Cut the recordings in ``sources``, embed and group the clips, and keep it all as a session.

    ``features`` overrides the embedder's feature config (e.g. a YAMNet model path);
    ``k`` None estimates the number of groups (see :func:`grouping.estimate_k`).
    """
    workspace.require_writable("start a labelling session")
    clean = safe_name(name).replace(" ", "_")
    if not clean:
        raise LabellingError(f"{name!r} is not usable as a session name; use letters, digits, - or _.")
    final = sessions_dir() / clean
    if final.exists():
        raise LabellingError(f"A labelling session named {clean!r} already exists; choose another name.")
    emit = progress or (lambda stage, done, total: None)
    recordings = find_recordings(sources)
    keys = recording_keys(recordings)
    segments, problems = cut_all(recordings, cut, progress=lambda d, t: emit("cutting", d, t))
    if not segments:
        raise LabellingError("No clips could be cut: " + "; ".join(f"{Path(p).name}: {w}" for p, w in problems[:3]))
    tmp = Path(tempfile.mkdtemp(dir=sessions_dir(), prefix=f".{clean}.tmp-"))
    try:
        clips = _write_clips(tmp, segments, keys, cut, emit)
        paths = [str(Path(c.file) if Path(c.file).is_absolute() else tmp / c.file) for c in clips]
        emb = grouping.embed_clips(paths, embedder, config=features, progress=lambda d, t: emit("embedding", d, t))
        problems += [[p, w] for p, w in emb.errors]
        row = {p: i for i, p in enumerate(emb.paths)}
        kept = [c for c, p in zip(clips, paths) if p in row]
        if len(kept) < grouping.MIN_GROUP_CLIPS:
            raise LabellingError(f"Only {len(kept)} clips have usable features; grouping needs at least "
                                 f"{grouping.MIN_GROUP_CLIPS}.")
        emit("grouping", 0, 1)
        groups = grouping.group_vectors(emb.values, k, method=method, k_range=k_range, seed=seed)
        emit("grouping", 1, 1)
        for c, a in zip(kept, groups.assignments):
            c.group = int(a)
        arrays = {"ids": np.array([c.id for c in kept]), "values": emb.values, "coords": groups.coords}
        if emb.tags is not None:
            arrays["tags"] = emb.tags
        np.savez(tmp / EMBEDDING_FILE, **arrays)
        settings = {"cut": cut.to_dict(), "embedder": emb.kind, "features": config_to_dict(
            features if features is not None else grouping.embedder_config(emb.kind)),
            "tag_names": emb.tag_names, "method": method, "k": groups.k, "k_reason": groups.k_reason,
            "silhouettes": {str(kk): v for kk, v in groups.silhouettes.items()}, "seed": seed,
            "sources": [str(Path(s).expanduser().resolve()) for s in sources]}
        session = Session(name=clean, path=tmp, clips=clips, groups=[Group(id=g) for g in range(groups.k)],
                          settings=settings, problems=problems, created=time.time())
        _refresh(session)
        save(session)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_session(clean)


def _write_clips(folder: Path, segments: list[Cut], keys: dict[Path, str], cut: CutConfig,
                 emit: Stages) -> list[ClipEntry]:
    (folder / CLIPS).mkdir()
    clips = []
    for i, seg in enumerate(segments):
        key = keys[Path(seg.source)]
        if cut.method == "whole":
            file = str(Path(seg.source).resolve())
        else:
            file = f"{CLIPS}/{clip_name(key, seg)}"
            write_segment(seg, folder / file)
        clips.append(ClipEntry(id=f"c{i:05d}", file=file, recording=key, source=str(Path(seg.source).resolve()),
                               start=round(seg.start, 3), end=round(seg.end, 3), group=None))
        emit("writing", i + 1, len(segments))
    return clips


# ---------------------------------------------------------------- group statistics


def _refresh(session: Session, n_examples: int = grouping.N_EXAMPLES) -> None:
    """Recompute every group's spread, examples and suggested name from its current members."""
    emb = _embedding(session)
    row = {str(i): k for k, i in enumerate(emb["ids"])}
    ids = [g.id for g in session.groups]
    index = {gid: k for k, gid in enumerate(ids)}
    # Clips without features (group None) have no row and take no part.
    members = [c for c in session.clips if c.group is not None and c.id in row]
    rows = np.array([row[c.id] for c in members], np.int64)
    assign = np.array([index[c.group] for c in members], np.int64)
    spread, examples = grouping.describe(emb["coords"][rows], assign, len(ids), n_examples)
    tags = emb.get("tags")
    names = session.settings.get("tag_names")
    suggestions = naming.suggest_names(tags[rows] if tags is not None else None, names, assign, len(ids))
    for g, s, e, sug in zip(session.groups, spread, examples, suggestions):
        g.spread, g.examples = s, [members[k].id for k in e]
        g.suggested, g.tags = sug.name, [[t, v] for t, v in sug.tags]


def _next_id(session: Session) -> int:
    return max((g.id for g in session.groups), default=-1) + 1


def _drop_empty(session: Session) -> None:
    used = {c.group for c in session.clips}
    session.groups = [g for g in session.groups if g.id in used]


def _commit(session: Session) -> Session:
    _drop_empty(session)
    _refresh(session)
    save(session)
    return session


# ---------------------------------------------------------------- operations


def name_group(session: Session, gid: int, name: str) -> Session:
    """Give a group its class name (a folder name: letters, digits, - _)."""
    workspace.require_writable("change a labelling session")
    clean = safe_name(name).replace(" ", "_")
    if not clean:
        raise LabellingError(f"{name!r} is not usable as a class name; use letters, digits, - or _.")
    session.group(gid).name = clean
    save(session)
    return session


def merge_groups(session: Session, gids: Sequence[int]) -> Session:
    """Merge groups into the first one given (it keeps its name)."""
    workspace.require_writable("change a labelling session")
    gids = [int(g) for g in gids]
    if len(set(gids)) < 2:
        raise LabellingError("Choose at least two groups to merge.")
    into = session.group(gids[0])
    for gid in gids[1:]:
        other = session.group(gid)
        into.name = into.name or other.name
        for c in session.members(gid):
            c.group = into.id
    return _commit(session)


def split_group(session: Session, gid: int, k: int | None = 2, *, method: str | None = None) -> Session:
    """Re-group one group's clips into ``k`` groups (None: estimated); the largest keeps its id."""
    workspace.require_writable("change a labelling session")
    members = session.members(gid)
    if k is not None and (int(k) < 2 or int(k) > len(members)):
        raise LabellingError(f"Group {gid} has {len(members)} clips; it can be split into 2 to {len(members)}.")
    if len(members) < 2:
        raise LabellingError(f"Group {gid} has {len(members)} clip(s); there is nothing to split.")
    emb = _embedding(session)
    row = {str(i): n for n, i in enumerate(emb["ids"])}
    values = emb["values"][[row[c.id] for c in members]]
    method = method or session.settings.get("method", "spectral")
    if len(members) < grouping.MIN_GROUP_CLIPS:
        parts = np.arange(len(members))
    else:
        parts = grouping.group_vectors(values, k, method=method,
                                       k_range=(2, min(grouping.K_RANGE[1], len(members) - 1))).assignments
    new_ids = {0: int(gid)}
    for part in sorted(set(parts.tolist()) - {0}):
        session.groups.append(Group(id=_next_id(session)))
        new_ids[part] = session.groups[-1].id
    for c, part in zip(members, parts):
        c.group = new_ids[int(part)]
    return _commit(session)


def discard_groups(session: Session, gids: Sequence[int], discarded: bool = True) -> Session:
    """Leave groups out of the data set (``discarded=False`` brings them back)."""
    workspace.require_writable("change a labelling session")
    for gid in gids:
        session.group(gid).discarded = bool(discarded)
    save(session)
    return session


def move_clips(session: Session, clip_ids: Sequence[str], target: int | str) -> Session:
    """Move clips to group ``target`` (an id), or to the group named ``target`` (made if new)."""
    workspace.require_writable("change a labelling session")
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        clean = safe_name(target).replace(" ", "_")
        if not clean:
            raise LabellingError(f"{target!r} is not usable as a class name.")
        found = [g for g in session.groups if g.name == clean]
        group = found[0] if found else Group(id=_next_id(session), name=clean)
        if not found:
            session.groups.append(group)
    else:
        group = session.group(int(target))
    for clip_id in clip_ids:
        clip = session.clip(clip_id)
        if clip.group is None:
            raise LabellingError(f"Clip {clip_id} has no usable features and cannot join a group.")
        clip.group = group.id
    return _commit(session)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Uncertain:
    """A clip the run is unsure about: its top two classes and how far apart they are."""

    clip_id: str
    path: Path
    group: int
    label: str
    confidence: float
    margin: float  # top probability minus the second


def next_most_useful(session: Session, run_id: str, n: int = 12, *, include_named: bool = False
                     ) -> list[Uncertain]:
    """Clips of groups not yet named (all groups with ``include_named``), least sure first.

    A clip is as useful to label as the run is unsure of it: the smallest margin between
    its two likeliest classes first (ties: the lowest top probability).
    """
    from audioclf.inference.predict import Predictor

    named = {g.id for g in session.active_groups if g.name}
    active = {g.id for g in session.active_groups}
    pool = [c for c in session.clips if c.group in active and (include_named or c.group not in named)]
    if not pool:
        return []
    predictor = Predictor.load(run_id)
    results = predictor.predict_files([session.clip_path(c) for c in pool])
    out = []
    for clip, res in zip(pool, results):
        if res.prediction is None:
            continue
        p = np.sort(res.prediction.probs)[::-1]
        margin = float(p[0] - (p[1] if len(p) > 1 else 0.0))
        out.append(Uncertain(clip.id, session.clip_path(clip), int(clip.group), res.prediction.top_label,
                             round(float(p[0]), 4), round(margin, 4)))
    out.sort(key=lambda u: (u.margin, u.confidence, u.clip_id))
    return out[: max(0, int(n))]

