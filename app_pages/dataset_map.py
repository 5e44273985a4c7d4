"""Map: every clip of the data set as a point you can listen to, and what each class sounds like."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from audioclf.insight import plotting
from app_pages.common import code, current_dataset, dataset_version, guard, read_only

FEATURES = {"MFCC summary": "mfcc", "Spectral summary": "spectral", "YAMNet embedding": "yamnet",
            "EfficientAT embedding": "efficientat"}
PROJECTIONS = {"PCA (instant)": "pca", "UMAP": "umap", "t-SNE": "tsne"}
VIEWS = ("Map", "Class profiles")
MAX_LISTED = 30  # players shown for a lasso/box selection
CLIP_KEY = "map_clip"  # path of the clip playing
VECTORS_KEY = "_map_vectors"  # session cache: (root, version, kind) -> ClipVectors
NO_MOVE = "-"


def feature_config(kind: str):
    from audioclf.features import EfficientATConfig, MFCCConfig, SpectralConfig, YAMNetConfig

    return {"mfcc": MFCCConfig(), "spectral": SpectralConfig(), "yamnet": YAMNetConfig(),
            "efficientat": EfficientATConfig(model="")}[kind]


def vectors(ds, kind: str):
    """Clip vectors from the feature cache, with a progress bar while features are computed."""
    from audioclf.insight import clip_vectors

    key = (str(ds.root), dataset_version(Path(ds.root)), kind, len(ds.items))
    store = st.session_state.setdefault(VECTORS_KEY, {})
    if key not in store:
        bar = st.progress(0.0, text="Reading features...")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Features of {done} / {total} clips")

        vecs = clip_vectors(ds, feature_config(kind), progress=progress)
        bar.empty()
        store.clear()  # one data set at a time: vectors of 10,000 clips are tens of MB
        store[key] = vecs
    return store[key]


@st.cache_data(show_spinner="Projecting...", max_entries=8)
def projection(key: tuple, method: str, _values: np.ndarray) -> np.ndarray:
    """2-D coordinates; `key` (root, version, kind, clips) stands in for the unhashed values."""
    from audioclf.insight import project

    return project(_values, method)


@st.cache_data(show_spinner=False, max_entries=64)
def mel_figure(path: str, stamp: float):
    from audioclf.features.spectral import mel_spectrogram_db
    from audioclf.insight.analysis import load_for_analysis

    clip, hop, _ = load_for_analysis(path, sr=None, n_fft=1024, hop_length=256)  # a long clip: a longer hop
    spec = mel_spectrogram_db(clip.samples, clip.sr, n_fft=1024, hop_length=hop, n_mels=96)
    return plotting.spectrogram(spec.db, clip.sr, hop, freqs=spec.freqs, mel=True,
                                title=f"{Path(path).name}: mel spectrogram (dB)")


def selected_rows(event) -> list[int]:
    """Rows (customdata) of the points a click, box or lasso chose."""
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    points = (selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)) or []
    rows = []
    for p in points:
        data = p.get("customdata")
        data = data[0] if isinstance(data, (list, tuple)) and data else data
        if isinstance(data, (int, float)) and int(data) not in rows:
            rows.append(int(data))
    return rows


def clip_panel(vecs, row: int) -> None:
    path = vecs.paths[row]
    st.subheader(path.name)
    st.caption(f"class {code(vecs.labels[row])}" + (f" · {vecs.splits[row]}" if vecs.splits[row] else ""))
    st.audio(str(path))
    with guard(f"Could not draw {path.name}"):
        st.plotly_chart(mel_figure(str(path), path.stat().st_mtime), key="map_mel")


def edit_selection(vecs, rows: list[int], labels: list[str]) -> None:
    """Players for the chosen clips, and moving or deleting them all at once."""
    from audioclf import datasets

    chosen = [(vecs.paths[r], vecs.labels[r]) for r in rows]
    st.subheader(f"{len(chosen)} clips selected")
    counts = pd.Series([lab for _, lab in chosen]).value_counts()
    st.caption(", ".join(f"{n} {lab}" for lab, n in counts.items()))
    for path, label in chosen[:MAX_LISTED]:
        name, player = st.columns([2, 3], vertical_alignment="center")
        name.write(f"{path.name} · *{label}*")
        player.audio(str(path))
    if len(chosen) > MAX_LISTED:
        st.caption(f"... and {len(chosen) - MAX_LISTED} more (all of them are moved or deleted below).")
    if read_only():  # a shared demo: listen, but move and delete nothing
        return
    move, drop = st.columns(2)
    target = move.selectbox("Move all to class", [NO_MOVE, *labels], key="map_move_to")
    if move.button(f"Move {len(chosen)} clips", disabled=target == NO_MOVE, key="map_move"):
        with guard("Moving clips"):
            for path, label in chosen:
                if label != target:
                    datasets.relabel_clip(path, target)
            st.toast(f"Moved {len(chosen)} clips to {code(target)}.")
            st.rerun()
    with drop.popover(f"Delete {len(chosen)} clips", icon=":material/delete:"):
        st.write(f"Delete these **{len(chosen)}** clips from disk?")
        if st.button("Delete", type="primary", key="map_delete"):
            with guard("Deleting clips"):
                for path, _ in chosen:
                    datasets.delete_clip(path)
                st.toast(f"Deleted {len(chosen)} clips.")
                st.rerun()


def map_tab(ds, kind: str, method: str) -> None:
    from audioclf.insight.mapping import PROJECTION_NAMES

    vecs = vectors(ds, kind)
    if vecs.errors:
        with st.expander(f"{len(vecs.errors)} clip(s) could not be read and are not on the map"):
            st.dataframe(pd.DataFrame(vecs.errors, columns=["file", "reason"]), hide_index=True)
    if len(vecs) < 3:
        st.info("The map needs at least 3 readable clips: add some on the Data page.")
        return
    if len(set(vecs.labels)) < 2:
        st.info("Only one class: the map shows how its clips differ; add another class to see them apart.")
    key = (str(ds.root), dataset_version(Path(ds.root)), kind, len(vecs))
    xy = projection(key, method, vecs.values)
    names = [p.name for p in vecs.paths]
    rows_of = {str(p): i for i, p in enumerate(vecs.paths)}
    # A new key per version of the data set: a selection made before a move or delete
    # must not name other clips afterwards.
    chart_key = f"map_chart_{abs(hash(key)) % 10**8}"
    # The click that caused this run is already in the state: ring that point as it plays.
    clicked = [r for r in selected_rows(st.session_state.get(chart_key)) if r < len(vecs)]
    if len(clicked) == 1:
        st.session_state[CLIP_KEY] = str(vecs.paths[clicked[0]])
    current = rows_of.get(st.session_state.get(CLIP_KEY))
    left, right = st.columns([3, 2])
    with left:
        fig = plotting.clip_map(xy, vecs.labels, names, highlight=[current] if current is not None else [],
                                title=f"{len(vecs)} clips, {FEATURE_NAMES[kind]}", axis=PROJECTION_NAMES[method])
        event = st.plotly_chart(fig, key=chart_key, on_select="rerun",
                                selection_mode=("points", "box", "lasso"))
        st.caption("Click a point to hear it; drag a box or lasso (toolbar) to pick several clips.")
    rows = [r for r in selected_rows(event) if r < len(vecs)]
    if len(rows) == 1:
        current = rows[0]
        st.session_state[CLIP_KEY] = str(vecs.paths[current])
    with right:
        order = sorted(range(len(vecs)), key=lambda i: names[i])
        pick = st.selectbox("Or find a clip", [None, *order], key="map_find",
                            format_func=lambda i: "-" if i is None else f"{names[i]} ({vecs.labels[i]})")
        if pick is not None and len(rows) != 1:
            current = pick
        if current is not None:
            clip_panel(vecs, current)
        else:
            st.info("Click a point on the map to play its clip.")
    if len(rows) > 1:
        edit_selection(vecs, rows, sorted(set(vecs.labels)))


def profiles_tab(ds) -> None:
    from audioclf.insight.profiles import MAX_PER_CLASS

    per_class = st.slider("Clips per class for the mean spectrograms", 5, 100, MAX_PER_CLASS, step=5,
                          key="prof_n")
    prof = None
    with guard("Computing class profiles"):
        prof = profiles(str(ds.root), dataset_version(Path(ds.root)), per_class)
    if prof is None:
        return
    if prof.errors:
        st.caption(f"{len(prof.errors)} unreadable clip(s) left out.")
    st.plotly_chart(plotting.class_mel_profiles(prof.mel, prof.mel_freqs), key="prof_mel")
    st.plotly_chart(plotting.class_feature_means(prof.means, prof.labels, prof.feature_names), key="prof_means")
    if not prof.ranking:
        st.info("Ranking features needs at least two classes.")
        return
    st.plotly_chart(plotting.feature_ranking([s.name for s in prof.ranking], [s.f_score for s in prof.ranking],
                                             [s.mutual_info for s in prof.ranking]), key="prof_rank")
    st.dataframe(pd.DataFrame([{"feature": s.name, "ANOVA F": s.f_score, "mutual information": s.mutual_info}
                               for s in prof.ranking]), hide_index=True)


@st.cache_data(show_spinner="Averaging spectrograms per class...", max_entries=8)
def profiles(root: str, version: float, per_class: int):
    from audioclf.datasets import load_dataset
    from audioclf.insight import class_profiles

    return class_profiles(load_dataset(root), max_per_class=per_class)


FEATURE_NAMES = {v: k for k, v in FEATURES.items()}

st.title("Map")
st.caption("The whole data set at once: every clip as a point placed by its features (close = similar), "
           "coloured by class. Listen to outliers, and move or delete clips that sit with the wrong class.")
ds, _ = current_dataset()
if ds is None or not ds.items:
    if ds is not None:
        st.info("This data set has no clips yet: add some on the Data page.")
    st.stop()
# A choice rather than tabs: Streamlit runs every tab, and profiles decode clips.
view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="map_view", label_visibility="collapsed")
if view == VIEWS[1]:
    st.caption("Spectral features (MFCC, centroid, roll-off, ZCR, chroma, RMS) per class, and which of them "
               "tell the classes apart: ANOVA F (between- over within-class variance) and mutual information.")
    profiles_tab(ds)
else:
    c1, c2 = st.columns(2)
    feature = c1.selectbox("Features", list(FEATURES), key="map_features",
                           help="MFCC/spectral: mean and std of each frame feature; YAMNet, EfficientAT: the "
                                "pretrained model's clip embedding (best for sound events, needs the model).")
    method = c2.radio("Projection", list(PROJECTIONS), horizontal=True, key="map_projection",
                      help="PCA is instant; UMAP and t-SNE keep neighbours together better and take seconds "
                           "(UMAP's first use loads its libraries, up to half a minute).")
    with guard("Drawing the map"):
        map_tab(ds, FEATURES[feature], PROJECTIONS[method])
