"""Label: from a folder of unlabelled recordings to a data set.

Cut the recordings into clips, let a pretrained model group them, then name,
merge, split and discard groups, move single clips, and save the result as a
data set. Once a model exists, list the clips it is least sure of first. All
the work is `audioclf.labelling`'s; this page is widgets.
"""
from __future__ import annotations

import html
import tempfile
from pathlib import Path

import streamlit as st

from audioclf.errors import AudioclfError
from audioclf.labelling import session as lab
from app_pages.common import choose_run, code, expand, guard, md, read_only, select_dataset, upload_limit_mb

SESSION_KEY = "lab_session"
PENDING_KEY = "_lab_pending_session"
MESSAGE_KEY = "_lab_message"  # (kind, text) of the last action, shown at the top
USEFUL_KEY = "_lab_useful"  # (session, run, [Uncertain]) of the last "next most useful" list
NEW = "Start a new session..."
AUDIO_TYPES = ["wav", "flac", "ogg", "oga", "mp3", "zip"]
CUTS = {"Sound events": "events", "Fixed windows": "fixed", "Each file whole": "whole"}
EMBEDDER_NAMES = {"efficientat": "EfficientAT (best)", "yamnet": "YAMNet", "mfcc": "MFCC summaries (no model)"}
DEMO_SECONDS = 120.0


def act(fn, *args, done: str = "", **kwargs) -> None:
    """Run a library call from a widget callback; its error (or `done`) is shown on the rerun."""
    try:
        fn(*args, **kwargs)
        if done:
            st.session_state[MESSAGE_KEY] = ("success", done)
    except AudioclfError as exc:
        st.session_state[MESSAGE_KEY] = ("error", md(exc))


def show_message() -> None:
    kind, text = st.session_state.pop(MESSAGE_KEY, (None, ""))
    if kind == "error":
        st.error(text, icon=":material/error:")
    elif kind == "success":
        st.success(text, icon=":material/check:")


# ---------------------------------------------------------------- a new session


def new_session_form() -> None:
    from audioclf.labelling import grouping
    from audioclf.labelling.segmenting import CutConfig

    st.subheader("Start a session")
    source = st.radio("Recordings", ("A folder on the server", "Upload recordings", "A demo recording"),
                      horizontal=True, key="lab_src")
    path, uploads = "", []
    if source == "A folder on the server":
        path = st.text_input("Folder", key="lab_path", placeholder="/data/field-recordings",
                             help="Searched recursively for WAV, FLAC, OGG and MP3 files.")
    elif source == "Upload recordings":
        uploads = st.file_uploader(f"Recordings or a zip of them (up to {upload_limit_mb()} MB each)",
                                   type=AUDIO_TYPES, accept_multiple_files=True, key="lab_up",
                                   max_upload_size=upload_limit_mb()) or []
    else:
        st.caption(f"A {DEMO_SECONDS / 60:.0f}-minute recording of the demo's five sounds (siren, dial tone, "
                   "rain, clock ticks, bird chirps) at random times, with room noise between them.")
    cut_name = st.radio("Cut into clips by", list(CUTS), horizontal=True, key="lab_cut",
                        help="Sound events: the stretches louder than the recording's own noise floor. "
                             "Fixed windows: equal pieces. Each file whole: a folder of short clips.")
    cut = CUTS[cut_name]
    c = st.columns(4)
    values = {}
    if cut == "fixed":
        values["length"] = c[0].number_input("Window (s)", 0.25, 30.0, 2.0, 0.25, key="lab_len")
        values["hop"] = c[1].number_input("Every (s)", 0.25, 30.0, values["length"], 0.25, key="lab_hop")
    elif cut == "events":
        values["margin_db"] = c[0].number_input("Above the noise floor by (dB)", 3.0, 40.0, 10.0, 1.0,
                                                key="lab_margin")
        values["merge_gap"] = c[1].number_input("Join gaps shorter than (s)", 0.0, 5.0, 1.0, 0.1, key="lab_gap")
        values["max_len"] = c[2].number_input("Longest clip (s)", 0.5, 30.0, 5.0, 0.5, key="lab_max")
        values["min_len"] = min(0.25, values["max_len"])
    auto_k = st.toggle("Estimate the number of groups", True, key="lab_auto_k",
                       help="The number with the best silhouette (clips much closer to their own group "
                            "than to the next) between 2 and 12.")
    k = None if auto_k else int(st.number_input("Groups", 1, 50, 5, key="lab_k"))
    kinds = grouping.available_embedders()
    kind = st.selectbox("Embed the clips with", kinds, format_func=lambda x: EMBEDDER_NAMES.get(x, x),
                        key="lab_embedder", help="The best pretrained model available here comes first.")
    default_name = "demo-recording" if source == "A demo recording" else \
        Path(path).name if path else (Path(uploads[0].name).stem if uploads else "recordings")
    name = st.text_input("Session name", lab.unique_name(default_name), key="lab_name")
    if st.button("Cut and group", type="primary", key="lab_go", icon=":material/category:"):
        with guard("Could not start the session"):
            sources = sources_for(source, path, uploads, name)
            if sources:
                bar = st.progress(0.0, text="Cutting...")

                def progress(stage: str, done: int, total: int) -> None:
                    bar.progress(done / max(total, 1), text=f"{stage.capitalize()}: {done} / {total}")

                s = lab.create_session(name, sources, cut=CutConfig(method=cut, **values), embedder=kind, k=k,
                                       progress=progress)
                st.session_state[PENDING_KEY] = s.name
                st.session_state[MESSAGE_KEY] = ("success", f"Cut {len(s.clips)} clips into {len(s.groups)} groups.")
                st.rerun()


def sources_for(source: str, path: str, uploads, name: str) -> list:
    """What create_session reads: the folder, the staged uploads, or a fresh demo recording."""
    from audioclf.labelling import synth

    if source == "A folder on the server":
        if not path.strip():
            st.warning("Give the folder that holds the recordings.")
            return []
        return [Path(path.strip()).expanduser()]
    if source == "Upload recordings":
        if not uploads:
            st.warning("Upload at least one recording.")
            return []
        with tempfile.TemporaryDirectory() as tmp:  # zips unpack here; staging copies what it keeps
            files = [(fname, data) for up in uploads for _, fname, data in expand(up, "", tmp)]
            folder, refused = lab.stage_recordings(name, files)
        for fname, why in refused:
            st.warning(f"Skipped {code(fname)}: {md(why)}")
        return [folder]
    folder, _ = lab.stage_recordings(name, [])
    synth.write_demo_recording(folder / "demo.wav", DEMO_SECONDS, seed=0)
    return [folder]


# ---------------------------------------------------------------- a session


def group_card(s, g) -> None:
    members = s.members(g.id)
    with st.container(border=True):
        st.markdown(f"**Group {g.id}** · {len(members)} clips · spread {g.spread:.2f}"
                    + (" · *discarded*" if g.discarded else ""))
        if g.tags:
            st.caption("Sounds like: " + ", ".join(f"{html.escape(t)} ({v:.0%})" for t, v in g.tags))
        st.text_input("Name", value=g.name, placeholder=g.suggested, key=f"lab_gname_{s.name}_{g.id}",
                      help=f"Empty: saved as the suggestion, {g.suggested}.",
                      on_change=lambda: act(lab.name_group, lab.load_session(s.name), g.id,
                                            st.session_state[f"lab_gname_{s.name}_{g.id}"] or g.suggested))
        for clip_id in g.examples:
            clip = s.clip(clip_id)
            st.audio(str(s.clip_path(clip)))
            st.caption(f"{clip.recording} {clip.start:.1f}-{clip.end:.1f} s")
        c = st.columns(2)
        parts = c[0].number_input("Split into", 2, max(2, min(10, len(members))), 2, key=f"lab_parts_{g.id}",
                                  disabled=len(members) < 2)
        c[0].button("Split", key=f"lab_split_{g.id}", disabled=len(members) < 2,
                    on_click=lambda: act(lab.split_group, lab.load_session(s.name), g.id,
                                         int(st.session_state[f"lab_parts_{g.id}"]),
                                         done=f"Group {g.id} split into {int(parts)}."))
        c[1].button("Restore" if g.discarded else "Discard", key=f"lab_discard_{g.id}",
                    on_click=lambda: act(lab.discard_groups, lab.load_session(s.name), [g.id], not g.discarded))
        with st.expander(f"All {len(members)} clips"):
            # One player for the clip picked: a player per clip would send every file on each rerun.
            names = {c.id: f"{c.id} · {c.recording} {c.start:.1f}-{c.end:.1f} s" for c in members}
            pick = st.selectbox("Listen to", list(names), format_func=names.get, key=f"lab_listen_{g.id}")
            if pick:
                st.audio(str(s.clip_path(s.clip(pick))))


def group_label(s, gid) -> str:
    g = s.group(gid)
    return f"group {g.id}: {g.label} ({len(s.members(g.id))} clips)"


def tools(s) -> None:
    ids = [g.id for g in s.groups]
    with st.expander("Merge groups, move clips"):
        merge = st.multiselect("Merge these groups (into the first)", ids, key="lab_merge",
                               format_func=lambda gid: group_label(s, gid))
        st.button("Merge", key="lab_merge_go", disabled=len(merge) < 2,
                  on_click=lambda: act(lab.merge_groups, lab.load_session(s.name), merge, done="Merged."))
        clip_names = {c.id: f"{c.id} · {c.recording} {c.start:.1f}-{c.end:.1f} s (group {c.group})"
                      for c in s.clips if c.group is not None}
        move = st.multiselect("Move these clips", list(clip_names), key="lab_move",
                              format_func=clip_names.get)
        target = st.selectbox("... to", [*ids, "new"], key="lab_move_to",
                              format_func=lambda t: "a new group named ..." if t == "new" else group_label(s, t))
        new_name = st.text_input("New group's name", key="lab_move_new") if target == "new" else ""
        st.button("Move", key="lab_move_go", disabled=not move or (target == "new" and not new_name.strip()),
                  on_click=lambda: act(lab.move_clips, lab.load_session(s.name), move,
                                       new_name if target == "new" else target, done=f"Moved {len(move)} clip(s)."))


def save_form(s) -> None:
    from audioclf.labelling.saving import save_dataset

    st.subheader("Save as a data set")
    active = s.active_groups
    st.caption("Classes: " + ", ".join(f"{code(g.label)} ({len(s.members(g.id))})" for g in active)
               + (f"; {len(s.groups) - len(active)} discarded group(s) stay out." if len(active) < len(s.groups) else "")
               + " Each clip's recording becomes its group, so a split by group never puts one recording "
                 "on both sides.")
    c = st.columns([3, 1], vertical_alignment="bottom")
    name = c[0].text_input("Data set name", s.name, key="lab_ds_name")
    if c[1].button("Save", type="primary", key="lab_save", icon=":material/save:"):
        with guard("Could not save the data set"):
            saved = save_dataset(s, name)
            select_dataset(saved.path.name)
            st.session_state[MESSAGE_KEY] = (
                "success", f"Saved {sum(saved.counts.values())} clips in {len(saved.counts)} classes as "
                           f"{code(saved.path.name)}; it is now the chosen data set (train it on the Train page).")
            st.rerun()


def most_useful(s) -> None:
    st.subheader("Label the next most useful clips")
    st.caption("With a trained model, the clips of groups you have not named yet, the ones it is least "
               "sure of first (the smallest gap between its two likeliest classes): naming those teaches "
               "the next model most.")
    run_id = choose_run("lab_run", "Model to ask")
    if run_id is None:
        st.caption("No finished run yet: save the data set and train one first.")
        return
    n = st.number_input("How many", 1, 50, 6, key="lab_useful_n")
    if st.button("List them", key="lab_useful_go"):
        with guard("Could not ask the model"):
            st.session_state[USEFUL_KEY] = (s.name, run_id, lab.next_most_useful(s, run_id, int(n)))
    found = st.session_state.get(USEFUL_KEY)
    if not found or found[0] != s.name:
        return
    if not found[2]:
        st.info("Every group is named already.")
    for u in found[2]:
        if u.clip_id not in {c.id for c in s.clips}:
            continue
        with st.container(border=True):
            c = st.columns([3, 2, 1], vertical_alignment="bottom")
            c[0].audio(str(u.path))
            c[0].caption(f"{u.clip_id} (group {s.clip(u.clip_id).group}): the model says {code(u.label)}, "
                         f"{u.confidence:.0%}, margin {u.margin:.2f}")
            choices = [g.id for g in s.groups]
            to = c[1].selectbox("This is", choices, key=f"lab_useful_to_{u.clip_id}",
                                format_func=lambda gid: group_label(s, gid))
            c[2].button("Move", key=f"lab_useful_mv_{u.clip_id}",
                        on_click=lambda cid=u.clip_id, key=f"lab_useful_to_{u.clip_id}": act(
                            lab.move_clips, lab.load_session(s.name), [cid], st.session_state[key],
                            done=f"Moved {cid}."))


def show_session(name: str) -> None:
    s = lab.load_session(name)
    st.markdown(f"**{len(s.clips)}** clips from **{len({c.recording for c in s.clips})}** recording(s), "
                f"**{len(s.groups)}** groups by {EMBEDDER_NAMES.get(s.settings.get('embedder'), '?')}. "
                f"{md(s.settings.get('k_reason', ''))}")
    if s.problems:
        with st.expander(f"{len(s.problems)} file(s) or clip(s) left out"):
            for path, why in s.problems[:50]:
                st.caption(f"{code(Path(path).name)}: {md(why)}")
    tools(s)
    active = [g for g in s.groups if not g.discarded]
    for start in range(0, len(active), 3):
        cols = st.columns(3)
        for col, g in zip(cols, active[start:start + 3]):
            with col:
                group_card(s, g)
    gone = [g for g in s.groups if g.discarded]
    if gone:
        with st.expander(f"{len(gone)} discarded group(s)"):
            for g in gone:
                group_card(s, g)
    save_form(s)
    most_useful(s)
    with st.expander("Delete this session"):
        st.caption("Its cut clips go; data sets saved from it stay.")
        if st.button("Delete the session", key="lab_delete"):
            with guard("Could not delete the session"):
                lab.delete_session(s.name)
                st.session_state.pop(SESSION_KEY, None)
                st.rerun()


st.title("Label")
st.caption("From unlabelled recordings to a data set: cut them into clips, let a pretrained model group "
           "what sounds alike, then name, merge, split or discard groups, move single clips, and save.")
if read_only():
    st.info("Labelling writes to the workspace, so it is off in read-only mode.", icon=":material/lock:")
    st.stop()
show_message()
names = []
with guard("Listing sessions"):
    names = lab.list_sessions()
pending = st.session_state.pop(PENDING_KEY, None)
if pending in names:
    st.session_state[SESSION_KEY] = pending
if st.session_state.get(SESSION_KEY) not in [NEW, *names]:
    st.session_state[SESSION_KEY] = names[0] if names else NEW  # the newest session, else a new one
chosen = st.selectbox("Session", [NEW, *names], key=SESSION_KEY)
if chosen == NEW:
    new_session_form()
else:
    with guard(f"Could not open the session {chosen}"):
        show_session(chosen)
