"""Present: show a trained model to people: its classes with an example of each, its scores, and
a large answer for an upload, a recording or the live microphone. No training controls."""
from __future__ import annotations

import html
from pathlib import Path

import streamlit as st

from audioclf import limits
from audioclf.inference.confidence import UNKNOWN_TEXT
from audioclf.insight import plotting
from audioclf.training import runs
from app_pages.common import (FEATURE_KIND_NAMES, MODEL_NAMES, choose_run, code, guard, md, predictor_for, read_only,
                              upload_limit_mb)
from app_pages.correct import retrain_panel, wrong_control

AUDIO_TYPES = ["wav", "flac", "ogg", "oga", "mp3"]
PER_ROW = 4  # example players per row
MAX_TITLE_CLASSES = 5  # a headline names up to this many classes ("Dog, rain or siren?")


@st.cache_data(show_spinner=False, max_entries=16)
def examples(run_id: str) -> dict:
    return runs.example_clips(run_id)


@st.cache_data(show_spinner="Listening...", max_entries=limits.APP_CACHE_ENTRIES)
def predict_bytes(run_id: str, data: bytes, name: str):
    predictor = predictor_for(run_id)
    return predictor.predict_audio(data, name=name, threshold=predictor.suggested_threshold or 0.0)


def title(labels: list[str], dataset: str) -> str:
    """The page's headline from what the model tells apart: "Dog, rain or siren?"; for
    many classes, how many and from which data set (a run's name is for its owner)."""
    if 2 <= len(labels) <= MAX_TITLE_CLASSES:
        text = ", ".join(labels[:-1]) + " or " + labels[-1] + "?"
        return text[:1].upper() + text[1:]
    return f"{len(labels)} kinds of sound" + (f" from {dataset}" if dataset else "")


def model_sentence(config: dict) -> str:
    """ "Model: GRU on YAMNet features, trained on the data set `demo`." (Markdown)"""
    model = (config.get("model") or {}).get("kind")
    features = (config.get("features") or {}).get("kind")
    dataset = Path(str(config.get("dataset") or "")).name
    what = MODEL_NAMES.get(model, model or "unknown")
    on = f" on {FEATURE_KIND_NAMES.get(features, features)} features" if features else ""
    return f"Model: {what}{on}" + (f", trained on the data set {code(dataset)}." if dataset else ".")


def headline(run) -> None:
    m = run.metrics or {}
    test, val = m.get("test") or {}, m.get("val") or {}
    c = st.columns(4)
    c[0].metric("Classes", len(run.labels))
    if test.get("accuracy") is not None:
        c[1].metric("Accuracy on unseen clips", f"{test['accuracy']:.0%}",
                    help=f"Test split: {test.get('n', '?')} clips the model never trained on.")
        c[2].metric("Macro F1 (test)", f"{test['macro_f1']:.2f}",
                    help="Mean of the per-class F1 scores: every class counts the same.")
    elif val.get("accuracy") is not None:
        c[1].metric("Accuracy (validation)", f"{val['accuracy']:.0%}")
        c[2].metric("Macro F1 (validation)", f"{val['macro_f1']:.2f}")
    if m.get("n_train") is not None:
        c[3].metric("Training clips", m["n_train"])


def class_gallery(run_id: str, labels: list[str]) -> None:
    found = examples(run_id)
    for start in range(0, len(labels), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, label in zip(cols, labels[start:start + PER_ROW]):
            with col.container(border=True):
                st.markdown(f"**{html.escape(label)}**")
                if label in found:
                    st.audio(str(found[label]))
                else:
                    st.caption("No example clip on disk.")


def big_answer(pred) -> None:
    """The answer in large type, then every class's probability."""
    if pred.unsure:
        text, sub = "not sure", f"{UNKNOWN_TEXT} (likeliest: {pred.top_label}, {pred.confidence:.0%})"
    else:
        text, sub = pred.label, f"{pred.confidence:.0%} confident"
    st.markdown(f'<div data-testid="present-answer" style="font-size:4.5rem;font-weight:700;'
                f'line-height:1.1">{html.escape(text)}</div>'
                f'<div style="font-size:1.3rem;opacity:0.8">{html.escape(sub)}</div>',
                unsafe_allow_html=True)
    if pred.silent:
        st.warning("This clip is (nearly) silent: the answer means little.")
    st.plotly_chart(plotting.probability_bars(pred.probs, pred.labels), key="present_bars")


def try_it(run_id: str, predictor) -> None:
    up_tab, rec_tab, live_tab = st.tabs(["Upload a clip", "Record a clip", "Live microphone"])
    with up_tab:
        up = st.file_uploader(f"An audio file (up to {upload_limit_mb()} MB)", type=AUDIO_TYPES,
                              key="present_file", max_upload_size=upload_limit_mb())
        if up is not None:
            st.audio(up.getvalue())
            with guard(f"Could not classify '{up.name}'"):
                pred = predict_bytes(run_id, up.getvalue(), up.name)
                big_answer(pred)
                wrong_control(run_id, "present_wrong_up", pred.labels, predicted=pred.top_label,
                              source=up.getvalue())
    with rec_tab:
        rec = st.audio_input("Record", key="present_rec")
        if rec is not None:
            with guard("Could not classify the recording"):
                pred = predict_bytes(run_id, rec.getvalue(), "recording.wav")
                big_answer(pred)
                wrong_control(run_id, "present_wrong_rec", pred.labels, predicted=pred.top_label,
                              source=rec.getvalue())
    with live_tab:
        from app_pages.mic import live_panel

        with guard("Live classification"):
            live_panel(predictor, "present_live", compact=True)


with st.sidebar:
    run_id = choose_run("present_run", "Model to present")
if run_id is None:
    st.title("Present")
    st.info("No finished run to present yet." + ("" if read_only() else " Train a model on the Train page first."))
    st.stop()

run = runs.load_run(run_id)
st.title(title(run.labels, Path(str(run.config.get("dataset") or "")).name))
st.markdown(f"Tells apart **{len(run.labels)}** kinds of sound: "
            + ", ".join(f"**{html.escape(x)}**" for x in run.labels) + ". " + model_sentence(run.config))
st.caption(f"Run {code(run_id)}" + (f" · {md(run.info.name)}" if run.info.name else ""))
headline(run)
st.subheader("The classes")
class_gallery(run_id, run.labels)
st.subheader("Try it")
predictor = None
with guard(f"Could not load the model of run {run_id}"):
    predictor = predictor_for(run_id)
if predictor is not None:
    try_it(run_id, predictor)
    retrain_panel(run_id, "present")
