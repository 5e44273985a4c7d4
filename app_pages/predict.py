"""Predict: classify an uploaded or recorded clip, or a batch of files, with a trained run."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from audioclf import limits
from audioclf.inference import threshold_info, threshold_text
from audioclf.inference.confidence import UNKNOWN, UNKNOWN_TEXT
from audioclf.insight import plotting
from audioclf.training import runs
from app_pages.common import choose_run, code, expand, guard, md, predictor_for, read_only, upload_limit_mb
from app_pages.correct import retrain_panel, wrong_control

AUDIO_TYPES = ["wav", "flac", "ogg", "oga", "mp3"]
TABLE_KEY = "pr_table"  # results of the last batch
AUDIO_KEY = "pr_table_audio"  # (file name, bytes or None) of each row of the last batch, for corrections
KEEP_AUDIO_BYTES = 64 << 20  # of a batch's audio kept in the session for corrections
BATCH_ROUND_KEY = "pr_batch_round"  # bumped after each batch: a new, empty uploader


@st.cache_data(show_spinner="Classifying...", max_entries=limits.APP_CACHE_ENTRIES)
def predict_bytes(run_id: str, data: bytes, name: str):
    """Prediction for one clip; cached per run and clip so reruns don't recompute."""
    return predictor_for(run_id).predict_audio(data, name=name)


def show_prediction(pred) -> None:
    """Headline (or "not sure"), probabilities, and for long clips which class when."""
    c = st.columns(3)
    if pred.unsure:
        c[0].metric("Predicted class", UNKNOWN, help=UNKNOWN_TEXT.capitalize())
        # The threshold as help, not a metric delta: a delta draws an arrow ("↑ below 85%").
        c[1].metric("Confidence", f"{pred.confidence:.1%}", help=f"Below the threshold of {pred.threshold:.0%}.")
        c[2].metric("Likeliest class", pred.top_label)
        st.warning(f"Not sure: it fits none of the classes well. The likeliest class, **{pred.top_label}**, has "
                   f"{pred.confidence:.0%}, below the threshold of {pred.threshold:.0%}.",
                   icon=":material/help:")
    else:
        c[0].metric("Predicted class", pred.label)
        c[1].metric("Confidence", f"{pred.confidence:.1%}")
        runner_up = pred.top_k(2)[1] if len(pred.labels) > 1 else None
        if runner_up:
            c[2].metric("Runner-up", f"{runner_up[0]} ({runner_up[1]:.0%})")
    if pred.silent:
        st.warning("This clip is (nearly) silent: the prediction means little.")
    over_time = pred.classes_over_time()
    if len(pred.window_times) and len(over_time) > 1:
        st.info(f"This clip holds several classes: **{', '.join(over_time)}** (in order of first "
                "appearance; see the timeline). The headline is the whole clip's answer.",
                icon=":material/timeline:")
    st.plotly_chart(plotting.probability_bars(pred.probs, pred.labels), key="pred_bars")
    if len(pred.window_times):
        show_segments(pred)


def show_segments(pred) -> None:
    """Which class when: the segment timeline, its table as CSV, and the raw per-window lines."""
    segs = pred.segments()
    st.plotly_chart(plotting.segment_timeline(segs, pred.labels), key="pred_segments")
    df = pd.DataFrame([s.to_dict() for s in segs])
    st.download_button("Download segments (CSV)", df.to_csv(index=False),
                       f"{Path(pred.name or 'clip').stem}_segments.csv", mime="text/csv",
                       icon=":material/download:", key="pred_segments_csv")
    with st.expander("Segments table and probabilities per window"):
        st.dataframe(df, hide_index=True, width="stretch")
        st.plotly_chart(plotting.probabilities_over_time(pred.window_times, pred.window_probs,
                                                         pred.labels), key="pred_time")


def threshold_slider(run_id: str) -> float:
    """The "not sure" threshold for this run: its suggestion, adjustable; 0 turns it off."""
    record = run_threshold_cached(run_id)
    suggested = record["value"] if record else None
    value = st.slider("Not sure below (confidence)", 0.0, 1.0, float(suggested or 0.0), 0.01,
                      key=f"pr_threshold_{run_id}", format="%.2f",
                      help="A clip whose top class has a lower probability than this is answered "
                           f"'{UNKNOWN_TEXT}'. 0 turns it off.")
    st.caption(threshold_text(record))
    return value


@st.cache_data(show_spinner=False, max_entries=64)
def run_threshold_cached(run_id: str) -> dict | None:
    return threshold_info(run_id)


def single(run_id: str, threshold: float) -> None:
    how = st.radio("Clip from", ("Upload", "Record"), horizontal=True, key="pr_src")
    if how == "Upload":
        up = st.file_uploader(f"An audio file (up to {upload_limit_mb()} MB)", type=AUDIO_TYPES,
                              key="pr_file", max_upload_size=upload_limit_mb())
        clip = (up.getvalue(), up.name) if up else None
    else:
        rec = st.audio_input("Record a clip", key="pr_rec")
        clip = (rec.getvalue(), "recording.wav") if rec else None
    if clip is None:
        return
    st.audio(clip[0])
    with guard(f"Could not classify '{clip[1]}'"):
        pred = predict_bytes(run_id, *clip).with_threshold(threshold)
        show_prediction(pred)
        wrong_control(run_id, "pr_wrong", pred.labels, predicted=pred.top_label, source=clip[0])


def batch(run_id: str, threshold: float) -> None:
    # A fresh uploader after each batch: the files of the last one are not classified again.
    round_ = st.session_state.get(BATCH_ROUND_KEY, 0)
    at_once = (f"; at most {limits.READONLY_SESSION_FILES} files or "
               f"{limits.mb(limits.READONLY_SESSION_BYTES)} at a time" if read_only() else "")
    files = st.file_uploader(f"Audio files or a zip (up to {upload_limit_mb()} MB each{at_once})",
                             type=[*AUDIO_TYPES, "zip"], accept_multiple_files=True,
                             key=f"pr_batch_{round_}", max_upload_size=upload_limit_mb())
    if files:  # a new set waits: the last batch's table is not its result
        st.session_state.pop(TABLE_KEY, None)
    if files and st.button(f"Classify {len(files)} upload(s)", type="primary", key="pr_go"):
        if classify(run_id, files, threshold):  # on an error the message stays, and so do the files
            st.session_state[BATCH_ROUND_KEY] = round_ + 1
            st.rerun()
    df = st.session_state.get(TABLE_KEY)
    if df is not None:
        failed = int((df["error"] != "").sum())
        st.success(f"Classified {len(df) - failed} file(s)" + (f"; {failed} could not be read." if failed else ".")
                   + " Add files above for a new batch.")
        answered = df[df["error"] == ""]
        if len(answered):  # the answers; a failed file's reason is shown whole below, not cut in a column
            st.dataframe(answered.drop(columns="error"), hide_index=True, width="stretch")
        if failed:
            st.warning("Not classified:\n" + "\n".join(  # a reason naming its file is said once
                f"- {md(row.error) if repr(row.file) in row.error else code(row.file) + ': ' + md(row.error)}"
                for row in df[df["error"] != ""].itertuples()), icon=":material/warning:")
        st.download_button("Download predictions (CSV)", df.to_csv(index=False), "predictions.csv",
                           mime="text/csv", icon=":material/download:")
        audio = st.session_state.get(AUDIO_KEY) or []
        rows = [i for i in range(len(df)) if df["predicted"].iloc[i] and i < len(audio) and audio[i][1]]
        if rows:
            labels = [c[2:] for c in df.columns if c.startswith("p_")]
            pick = st.selectbox("Correct an answer", rows, key="pr_fix_row",
                                format_func=lambda i: f"{df['file'].iloc[i]}: {df['predicted'].iloc[i]}")
            wrong_control(run_id, f"pr_fix_{pick}", labels, predicted=df["predicted"].iloc[pick],
                          source=audio[pick][1])


def classify(run_id: str, files: list, threshold: float) -> bool:
    """Classify one set of uploads into the session's table; False if it failed (error shown)."""
    with guard("Batch prediction"), tempfile.TemporaryDirectory() as tmp:
        paths, audio, kept = [], [], 0
        for i, up in enumerate(files):
            for j, (_, name, data) in enumerate(expand(up, "", tmp)):
                if isinstance(data, Path):  # a zip member, already on disk
                    paths.append(data)
                else:
                    path = Path(tmp) / f"{i:04d}_{j:04d}" / Path(name).name
                    path.parent.mkdir()
                    path.write_bytes(data)
                    paths.append(path)
                kept += paths[-1].stat().st_size
                # Each row's audio is kept for "wrong? this is ...", within a budget.
                audio.append((Path(name).name, paths[-1].read_bytes() if kept <= KEEP_AUDIO_BYTES else None))
        bar = st.progress(0.0, text="Extracting features...")
        results = predictor_for(run_id).predict_files(
            paths, progress=lambda d, t: bar.progress(d / max(t, 1), text=f"{d} / {t} files"),
            threshold=threshold)
        bar.empty()
        rows = []
        for r in results:
            p = r.prediction
            row = {"file": Path(r.path).name, "predicted": p.label if p else "",
                   "confidence": round(p.confidence, 4) if p else None,
                   # uploads sit in a temp folder: name them as the user knows them
                   "error": r.error.replace(str(r.path), Path(r.path).name)}
            if p:
                row.update({f"p_{lab}": round(float(v), 4) for lab, v in zip(p.labels, p.probs)})
            rows.append(row)
        st.session_state[TABLE_KEY] = pd.DataFrame(rows)
        st.session_state[AUDIO_KEY] = audio
        return True
    return False


st.title("Predict")
done = []
with guard("Listing runs"):
    done = [r for r in runs.list_runs() if r.state == "done"]
if not done:
    st.info("No finished run yet." + ("" if read_only() else " Train a model on the Train page first."))
    if not read_only():  # read-only mode has no Train page to link to
        st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

run_id = choose_run("pr_run")
if run_id is None:  # the runs were deleted meanwhile
    st.stop()
st.caption(f"Classes: {', '.join(code(label) for label in runs.load_run(run_id).labels)}")

ok = False
with guard(f"Could not load the model of run {run_id}"):
    predictor_for(run_id)
    ok = True
if ok:
    threshold = threshold_slider(run_id)
    one, many = st.tabs(["One clip", "Batch"])
    with one:
        single(run_id, threshold)
    with many:
        batch(run_id, threshold)
    retrain_panel(run_id, "pr")
