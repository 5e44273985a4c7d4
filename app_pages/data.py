"""Data: choose or create a data set, add clips (upload, zip, recording), play, relabel, delete."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from audioclf.insight import plotting
from app_pages.common import (DATASET_KEY, code, current_dataset, expand, fmt_seconds, guard,
                              md, plural, read_only, select_dataset, upload_limit_mb)
from app_pages.health_panel import health_tab

NEW_CLASS = "New class..."
PAGE_SIZE = 8
UPLOAD_TYPES = ["wav", "flac", "ogg", "oga", "mp3", "zip"]
TABS = ["Overview", "Add clips", "Browse and edit", "Health", "New data set"]
TAB_KEY = "data_tab"  # keeps the chosen tab across the reruns an action causes
SPLITS = ("train", "val", "test")  # folders of a data set with a fixed split
FLASH_KEY = "data_flash"  # what the last action did, shown once after its rerun


def class_choice(labels: list[str], key: str) -> str | None:
    """An existing class or a new one typed by the user; None until valid."""
    options = [*labels, NEW_CLASS]
    pick = st.selectbox("Class label", options, key=f"{key}_pick",
                        index=0 if labels else len(options) - 1)
    if pick != NEW_CLASS:
        return pick
    name = st.text_input("New class name", key=f"{key}_new", placeholder="e.g. dog_bark").strip()
    if name and (note := renamed("class", name)):
        st.caption(note)  # before the clips are added, not discovered in the sidebar afterwards
    return name or None


def renamed(what: str, given: str) -> str:
    """What a name becomes on disk, when that is not what was typed ("" when it is kept).

    Folder and file names keep letters, digits, space, - _ and . only (datasets.safe_name):
    an emoji is dropped and an apostrophe becomes _, which users were not told.
    """
    from audioclf.datasets import safe_name

    saved = safe_name(given)
    if saved == given:
        return ""
    if not saved:
        return f"{code(given)} cannot be a {what} name: use letters, digits, - or _."
    return f"The {what} {code(given)} will be saved as {code(saved)} (letters, digits, space, - _ and . only)."


def fixed_splits(ds) -> bool:
    """True for a data set with train/ and test/ folders: clips outside them are not loaded."""
    return any(it.split for it in ds.items)


def split_choice(ds, key: str) -> str | None:
    """The split folder new clips go to (None: the data set has no fixed split)."""
    if not fixed_splits(ds):
        return None
    return st.radio("Add to split", SPLITS, horizontal=True, key=f"{key}_split",
                    help="This data set keeps its own train/ val/ test/ folders; "
                         "clips outside them would not be part of it.")


def save_clip(root: Path, label: str, filename: str, data: bytes | Path, split: str | None,
              report: dict) -> None:
    """Add one clip and note it in `report` (added, refused, silent)."""
    from audioclf import datasets
    from audioclf.audio import check_audio

    try:
        path = datasets.add_clip(root, label, filename, data, split=split)
    except ValueError as exc:  # AudioError and DatasetError: messages for people
        report["refused"].append((filename, str(exc)))
        return
    report["added"] += 1
    given = Path(str(filename).replace("\\", "/")).name
    if path.name != given:  # made safe, or a -1 suffix beside a clip of that name: say so
        report["renamed"].append((given, path.name))
    if path.parent.name != label:
        report["classes"][label] = path.parent.name
    if check_audio(path).silent:
        report["silent"].append(path.name)


def new_report(split: str | None) -> dict:
    return {"added": 0, "refused": [], "silent": [], "split": split, "renamed": [], "classes": {}}


def add_files(root: Path, label: str, files: list, split: str | None = None) -> None:
    """Save uploads (audio files or zips) into the data set; report what was refused."""
    report = new_report(split)
    bar = st.progress(0.0, text="Checking and saving clips...")
    for i, up in enumerate(files, 1):
        with tempfile.TemporaryDirectory() as tmp:  # a zip's members, on disk until saved
            try:
                entries = expand(up, label, tmp)
            except ValueError as exc:  # ArchiveError: not a usable or a hostile zip; it says which
                report["refused"].append((up.name, str(exc)))
                entries = []
            except OSError as exc:  # e.g. no room in the temp folder for its members
                report["refused"].append((up.name, f"could not be unpacked ({exc.strerror or exc})"))
                entries = []
            for clip_label, filename, data in entries:
                save_clip(root, clip_label, filename, data, split, report)
        bar.progress(i / len(files), text=f"{i} / {len(files)} files checked")
    bar.empty()
    st.session_state[FLASH_KEY] = report


def show_flash() -> None:
    report = st.session_state.pop(FLASH_KEY, None)
    if not report:
        return
    if report.get("note"):
        st.info(report["note"], icon=":material/edit_note:")
    if report["added"]:
        where = f" (split {code(report['split'])})" if report["split"] else ""
        st.success(f"Added {plural(report['added'], 'clip')} to the data set{where}.",
                   icon=":material/check_circle:")
    changed = [f"class {code(a)} is {code(b)}" for a, b in report.get("classes", {}).items()]
    changed += [f"{code(a)} is {code(b)}" for a, b in report.get("renamed", [])[:20]]
    if changed:
        more = len(report["renamed"]) - 20
        st.info("Saved under other names (file and folder names keep letters, digits, space, - _ and . "
                "only, and never replace a clip): " + "; ".join(changed)
                + (f"; and {more} more" if more > 0 else "") + ".", icon=":material/edit_note:")
    if report["silent"]:
        n = len(report["silent"])
        names = ", ".join(code(name) for name in report["silent"][:20])
        more = f" and {n - 20} more" if n > 20 else ""
        what, was = ("1 added clip is", "It was") if n == 1 else (f"{n} added clips are", "They were")
        st.warning(f"{what} silent (nothing above -60 dBFS): {names}{more}. {was} added, but a "
                   "silent clip teaches the model nothing; delete it under **Browse and edit** "
                   "if it was a mistake.", icon=":material/volume_off:")
    if report["refused"]:
        # A list, not a table: a table column cuts long reasons off.
        st.error(f"{plural(len(report['refused']), 'file')} {'was' if len(report['refused']) == 1 else 'were'} "
                 "not added:\n\n"
                 + "\n".join(f"- {refusal(name, reason)}" for name, reason in report["refused"]),
                 icon=":material/error:")


def refusal(name: str, reason: str) -> str:
    """One refused file as Markdown: its name once, then the whole reason."""
    if reason.startswith((f"'{name}'", name)):  # the library's messages name the file first
        return md(reason)
    return f"{code(name)}: {md(reason)}"


def overview(ds, summary) -> None:
    counts = {label: sum(1 for it in ds.items if it.label == label) for label in ds.labels}
    durations = getattr(summary, "durations", None)
    total = getattr(summary, "total_duration", None)
    c = st.columns(4)
    c[0].metric("Clips", len(ds.items))
    c[1].metric("Classes", len(ds.labels))
    c[2].metric("Total audio", fmt_seconds(total) if total is not None else "-")
    c[3].metric("Unreadable files", len(ds.problems))
    if not ds.items:
        st.info("No clips yet: add some in the **Add clips** tab.")
        return
    left, right = st.columns(2)
    left.plotly_chart(plotting.class_counts(counts), key="counts")
    if durations:
        right.plotly_chart(plotting.duration_histogram(durations), key="durations")
    if len(ds.labels) < 2:
        st.warning("A classifier needs at least two classes: add clips with another label.")
    if ds.problems:
        st.subheader("Files that could not be read")
        st.dataframe(pd.DataFrame(ds.problems, columns=["file", "reason"]), hide_index=True,
                     width="stretch", column_config={
                         "file": st.column_config.TextColumn(width="medium"),
                         "reason": st.column_config.TextColumn(width="large")})


def add_tab(ds) -> None:
    limit = upload_limit_mb()
    st.markdown(f"Upload audio files (WAV, FLAC, OGG, MP3) or a **zip** of them; "
                f"**up to {limit} MB per file**. A zip with one folder per class keeps its "
                "folder names as labels; loose files get the label below.")
    label = class_choice(ds.labels, "add")
    split = split_choice(ds, "add")
    files = st.file_uploader("Audio files or a zip", type=UPLOAD_TYPES, accept_multiple_files=True,
                             key=f"uploads_{st.session_state.get('upload_round', 0)}",
                             max_upload_size=limit)
    if st.button(f"Add {plural(len(files or []), 'file')}", disabled=not files or not label,
                 type="primary", key="add_btn"):
        with guard("Adding clips"):
            add_files(ds.root, label, files, split)
            # A fresh uploader key clears the list so the same files aren't added twice.
            st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
            st.rerun()

    st.divider()
    st.markdown("**Record a clip** with your microphone.")
    rec_label = class_choice(ds.labels, "rec")
    rec_split = split_choice(ds, "rec")
    rec = st.audio_input("Record", key=f"rec_{st.session_state.get('rec_round', 0)}")
    if st.button("Save recording", disabled=rec is None or not rec_label, key="rec_btn"):
        with guard("Saving the recording"):
            n = sum(1 for it in ds.items if it.label == rec_label)
            report = new_report(rec_split)
            save_clip(ds.root, rec_label, f"recording_{n + 1:03d}.wav", rec.getvalue(), rec_split,
                      report)
            st.session_state[FLASH_KEY] = report
            st.session_state["rec_round"] = st.session_state.get("rec_round", 0) + 1
            st.rerun()

    st.divider()
    background_section(ds)


def background_section(ds) -> None:
    """Record or upload background noise into its own class, as Teachable Machine offers."""
    from audioclf import datasets

    st.markdown(f"**Background / other sounds.** Record about 20 s of the place where the model will "
                f"listen (room tone, traffic, fan hum; none of your classes): it is cut into "
                f"{datasets.editing.BACKGROUND_CLIP_SECONDS:g} s clips of a class "
                f"**{datasets.BACKGROUND_LABEL}**, so the model can answer 'nothing of interest'.")
    turn = st.session_state.get("bg_round", 0)
    how = st.radio("Background from", ("Record", "Upload"), horizontal=True, key="bg_src")
    if how == "Record":
        bg = st.audio_input("Record background noise", key=f"bg_rec_{turn}")
        name = "background.wav"
    else:
        bg = st.file_uploader("A recording of background noise", type=UPLOAD_TYPES[:-1], key=f"bg_up_{turn}")
        name = bg.name if bg else "background.wav"
    if st.button(f"Add to '{datasets.BACKGROUND_LABEL}'", disabled=bg is None, key="bg_btn",
                 icon=":material/noise_aware:"):
        with guard("Adding background noise"):
            # Data sets with train/ val/ test/ folders: background trains, like any new clip.
            split = "train" if any(it.split for it in ds.items) else None
            paths = datasets.add_background(ds.root, bg.getvalue(), name, split=split)
            st.session_state[FLASH_KEY] = {**new_report(split), "added": len(paths)}
            st.session_state["bg_round"] = turn + 1
            st.rerun()


EDIT_NOTE_KEY = "data_edit_note"  # (kind, message) of the last relabel/delete, shown once after it


def edit_clip(path: str, action: str, label: str | None = None) -> None:
    """A Browse button's callback: relabel or delete `path`, noting the outcome for the rerun.

    A callback, not an `if st.button(...)`: it runs even when the clip is gone from the
    list this rerun shows (moved or deleted in another tab), so that click is answered.
    """
    from audioclf import datasets
    from audioclf.errors import AudioclfError

    name = Path(path).name
    if not Path(path).is_file():
        st.session_state[EDIT_NOTE_KEY] = (
            "warning", f"{code(name)} is no longer in this class: it was moved or deleted meanwhile "
                       "(in another tab?). Nothing was changed; the list below is up to date now.")
        return
    try:
        if action == "delete":
            datasets.delete_clip(path)
            done = f"Deleted {code(name)}."
        else:
            datasets.relabel_clip(path, label)
            done = f"Moved {code(name)} to {code(label)}."
    except (AudioclfError, OSError) as exc:
        st.session_state[EDIT_NOTE_KEY] = ("error", f"Could not change {code(name)}: {md(str(exc))}")
        return
    st.session_state[EDIT_NOTE_KEY] = ("toast", done)


def _moved(path: str, key: str) -> None:
    label = st.session_state.get(key)
    if label:
        edit_clip(path, "relabel", label)


def show_edit_note() -> None:
    kind, text = st.session_state.pop(EDIT_NOTE_KEY, (None, ""))
    if kind == "toast":
        st.toast(text)
    elif kind:
        getattr(st, kind)(text)


def browse_tab(ds) -> None:
    show_edit_note()
    if not ds.items:
        st.info("No clips yet.")
        return
    label = st.selectbox("Class", ds.labels, key="browse_label")
    items = sorted((it for it in ds.items if it.label == label), key=lambda it: it.path.name)
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="browse_page") if pages > 1 else 1
    for it in items[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        name, player, move, drop = st.columns([2, 4, 3, 1], vertical_alignment="center")
        name.write(it.path.name)
        player.audio(str(it.path))
        if read_only():  # a shared demo: play, but no relabelling or deleting
            continue
        others = [x for x in ds.labels if x != label]
        with move:
            key = f"mv_{it.path}"
            # The label is hidden to keep the row on one line; the empty box says what it does.
            st.selectbox("Move to class", others, index=None, placeholder="Move to class...", key=key,
                         label_visibility="collapsed", help="Relabel this clip",
                         on_change=_moved, args=(str(it.path), key))
        # Keyed by the clip: an unkeyed popover is known by its place, so after a delete the
        # open one would reappear on the next clip in that place and a second click delete it too.
        with drop.popover(":material/delete:", help="Delete this clip", key=f"delpop_{it.path}"):
            st.write(f"Delete {code(it.path.name)} from disk?")
            st.button("Delete", key=f"del_{it.path}", type="primary", on_click=edit_clip,
                      args=(str(it.path), "delete"))


def new_tab() -> None:
    from audioclf import datasets

    with st.form("new_dataset", clear_on_submit=True):
        name = st.text_input("Name of the new data set", placeholder="e.g. my_sounds")
        if st.form_submit_button("Create", type="primary"):
            with guard("Creating the data set"):
                created = Path(datasets.create_dataset(name.strip()))
                select_dataset(created.name)
                if created.name != name.strip():  # the name made safe for a folder: say what it is
                    st.session_state[FLASH_KEY] = {
                        **new_report(None), "note": f"Created the data set {code(created.name)} (from "
                                                    f"{code(name.strip())}: folder names keep letters, digits, "
                                                    "space, - _ and . only)."}
                st.rerun()


st.title("Data")
name = st.session_state.get(DATASET_KEY)
st.caption(f"Data set {code(name)} (change it in the sidebar). Clips live in class folders "
           "inside the workspace; nothing leaves your machine." if name else
           "Create a data set to start.")
show_flash()
ds, summary = current_dataset(allow_empty=True)
if read_only():  # a shared demo: look and listen; no adding, fixing or relabelling
    tabs = st.tabs(["Overview", "Browse"])
    if ds is not None:
        with tabs[0]:
            overview(ds, summary)
        with tabs[1]:
            browse_tab(ds)
    st.stop()
tabs = st.tabs(TABS, key=TAB_KEY, on_change="rerun")
if ds is not None:
    with tabs[0]:
        overview(ds, summary)
    with tabs[1]:
        add_tab(ds)
    with tabs[2]:
        browse_tab(ds)
    with tabs[3]:
        health_tab(ds)
with tabs[4]:
    new_tab()
