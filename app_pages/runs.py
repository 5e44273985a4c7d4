"""Runs: every training run, compared; one run's evaluation, misclassified clips, downloads, delete."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from audioclf import jobs
from audioclf.insight import plotting
from audioclf.training import runs
from app_pages.common import (DATASET_KEY, code, dataset_root, guard, md, preselect, read_only, remember_pick,
                              run_state_sentence)

SPLITS = {"test": "Test", "val": "Validation"}
MAX_MISCLASSIFIED = 12


def runs_table(infos) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.id, "name": r.name, "state": r.state,
        "created": datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
        "data set": Path(r.dataset).name, "features": r.features, "model": r.model,
        "val macro F1": r.val_macro_f1, "val accuracy": r.val_accuracy,
        "test macro F1": r.test_macro_f1, "test accuracy": r.test_accuracy,
        "skipped clips": f"{r.skipped} of {r.n_clips}" if r.skipped else "",
    } for r in infos])


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """Settings and scores of the compared runs, one column per run, as text people read.

    Settings that differ between the runs come first: that is what a comparison is for.
    Scores have 3 decimals, seconds 1, other numbers 4 significant digits (a learning
    rate of 0.0001 stays itself); a setting a run does not have is "-", not "None".
    """
    def cell(name: str, v) -> str:
        if v is None or (isinstance(v, float) and v != v):  # NaN: the run has no such setting
            return "-"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return str(v)
        if name.endswith(("macro_f1", "accuracy")):
            return f"{v:.3f}"
        if name.endswith("seconds"):
            return f"{v:.1f}"
        return f"{v:.4g}"

    diff = pd.DataFrame(rows).set_index("id").T
    diff = pd.DataFrame({col: [cell(name, v) for name, v in diff[col].items()] for col in diff.columns},
                        index=diff.index)
    varies = diff.nunique(axis=1) > 1
    return pd.concat([diff[varies], diff[~varies]])


def per_class_table(m: dict) -> pd.DataFrame:
    rows = [{"class": label, **{k: v for k, v in vals.items()}} for label, vals in m["per_class"].items()]
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> list[str]:
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False))]


def report_markdown(run, split: str) -> str:
    """A human-readable report of a run (settings, scores, per-class table)."""
    m = run.metrics.get(split) or {}
    lines = [f"# audioclf run {run.info.id}", "",
             f"- name: {run.info.name or '-'}", f"- data set: {run.config.get('dataset')}",
             f"- state: {run.info.state}", ""]
    for section in ("features", "model", "train", "split"):
        lines.append(f"## {section}")
        lines += [f"- {k}: {v}" for k, v in (run.config.get(section) or {}).items()]
        lines.append("")
    if m:
        lines += [f"## {SPLITS[split].lower()} scores ({m.get('n', '?')} clips)", "",
                  f"- accuracy: {m['accuracy']:.4f}", f"- macro F1: {m['macro_f1']:.4f}", "",
                  *markdown_table(per_class_table(m)), ""]
    return "\n".join(lines)


@st.cache_data(max_entries=8)
def predictions(path: str, stamp: float) -> pd.DataFrame:
    return pd.read_csv(path)


def show_misclassified(run, m: dict, split: str) -> None:
    wrong = list(m.get("misclassified") or [])
    if not wrong:
        st.success("No misclassified clips in this split.")
        return
    st.caption(f"{len(wrong)} misclassified, most confident mistakes first "
               f"(showing up to {MAX_MISCLASSIFIED}).")
    probs = None
    csv = run.path / runs.PREDICTIONS
    if csv.is_file():
        df = predictions(str(csv), csv.stat().st_mtime)
        probs = df[df["split"] == split].set_index("path")
    labels = list(m.get("labels") or run.labels)
    for i, w in enumerate(wrong[:MAX_MISCLASSIFIED]):
        left, right = st.columns([2, 3], vertical_alignment="center")
        with left:
            st.markdown(f"{code(Path(w['path']).name)}: true **{md(w['true'])}**, predicted "
                        f"**{md(w['predicted'])}** ({w['confidence']:.0%})")
            if Path(w["path"]).is_file():
                st.audio(w["path"])
            else:
                st.caption("(the clip is no longer on disk)")
        if probs is not None and w["path"] in probs.index:
            row = probs.loc[w["path"]]
            p = [float(row.get(f"p_{lab}", 0.0)) for lab in labels]
            fig = plotting.probability_bars(p, labels, top=5, title="")
            fig.update_layout(height=200, margin=dict(t=10, b=30))
            right.plotly_chart(fig, key=f"mis_{split}_{i}")


def show_run(run_id: str) -> None:
    run = runs.load_run(run_id)
    st.subheader(f"Run {run_id}" + (f": {md(run.info.name)}" if run.info.name else ""))
    cfg = run.config
    st.caption(f"Data set {code(Path(str(cfg.get('dataset', ''))).name)} · features "
               f"**{run.info.features}** · model **{(cfg.get('model') or {}).get('kind')}** "
               f"· state **{run.info.state}**")
    if run.info.state != "done":
        (st.error if run.info.state == "failed" else st.info)(
            run_state_sentence(run.info.state, run.info.message))
    elif run.info.skipped:
        st.warning(f"{run.info.skipped} of {run.info.n_clips} clips could not be read and were left out of "
                   "this run: its scores are for the rest.", icon=":material/warning:")
    if run.info.state not in jobs.FINAL_STATES and not read_only():  # a shared demo stops nothing
        if st.button("Cancel this run", key="runs_cancel", icon=":material/stop_circle:"):
            from audioclf.training import cancel_run

            with guard("Cancelling the run"):
                state = cancel_run(run_id)
                st.toast(f"Run {code(run_id)}: {state}.")
                st.rerun()
    splits = [s for s in SPLITS if run.metrics.get(s)]
    split = st.radio("Evaluate on", splits, format_func=SPLITS.get, horizontal=True,
                     key="runs_split") if splits else None
    m = run.metrics.get(split) if split else None
    if m:
        c = st.columns(5)
        c[0].metric("Accuracy", f"{m['accuracy']:.3f}")
        c[1].metric("Macro F1", f"{m['macro_f1']:.3f}")
        c[2].metric("Clips", m.get("n", "-"))
        c[3].metric("Epochs", run.metrics.get("epochs_trained", "-"))
        c[4].metric("Training time", f"{run.metrics.get('train_seconds', 0):.0f} s")
        if ft := run.metrics.get("finetune"):
            which = "block" if ft["blocks"] == 1 else f"{ft['blocks']} blocks"
            st.caption(f"Fine-tuned EfficientAT's last {which} with the model ({ft['changed_share']:.0%} "
                       f"of their weights moved): {ft['seconds_per_epoch']:.1f} s per epoch, and "
                       f"{ft['frozen_part_seconds']:.1f} s once for the frozen lower blocks.")
        left, right = st.columns(2)
        with left:
            norm = st.toggle("Normalise by true class", key="runs_norm")
            st.plotly_chart(plotting.confusion_matrix(
                m["confusion"], m.get("labels") or run.labels, normalize=norm), key="cm")
        with right:
            st.markdown("**Per-class report**")
            st.dataframe(per_class_table(m), hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(format="%.3f")
                                        for k in ("precision", "recall", "f1")})
    if run.history:
        st.plotly_chart(plotting.learning_curves(run.history), key="run_curves")
    if m:
        with st.expander("Misclassified clips", expanded=False):
            show_misclassified(run, m, split)

    st.markdown("**Downloads**")
    d = st.columns(4)
    model_path = run.path / runs.MODEL
    if model_path.is_file():
        d[0].download_button("Model (.keras)", model_path.read_bytes(), f"audioclf-{run_id}.keras",
                             mime="application/octet-stream", icon=":material/download:")
    d[1].download_button("Report (JSON)", json.dumps({"config": run.config, "metrics": run.metrics},
                                                     indent=2), f"audioclf-{run_id}.json",
                         mime="application/json", icon=":material/download:")
    if m:
        d[2].download_button("Per-class (CSV)", per_class_table(m).to_csv(index=False),
                             f"audioclf-{run_id}-{split}.csv", mime="text/csv", icon=":material/download:")
    d[3].download_button("Report (Markdown)", report_markdown(run, split or "test"),
                         f"audioclf-{run_id}.md", mime="text/markdown", icon=":material/download:")

    if run.info.state == "done":
        export_bundle(run_id)

    if read_only():  # a shared demo deletes nothing
        return
    with st.popover("Delete this run", icon=":material/delete:"):
        st.write(f"Delete run {code(run_id)} and its model from disk? This cannot be undone.")
        if st.button("Delete for good", type="primary", key="runs_delete"):
            with guard("Deleting the run"):
                runs.delete_run(run_id)
                st.toast(f"Deleted run {run_id}.")
                st.rerun()


def export_bundle(run_id: str) -> None:
    """A portable bundle (TFLite, SavedModel, standalone predict.py) as a zip, made on request."""
    key = f"runs_bundle_{run_id}"
    if key not in st.session_state:
        st.caption("A portable bundle runs the model without audioclf: TFLite and TensorFlow models, "
                   "labels, feature settings and a standalone `predict.py`.")
        if st.button("Prepare a portable bundle", icon=":material/inventory_2:", key="runs_export"):
            with guard("Exporting the run"), st.status("Exporting the run...") as status:
                from audioclf.export import bundle_zip

                st.session_state[key] = bundle_zip(run_id, progress=lambda msg: status.update(label=msg))
                status.update(label="Bundle ready", state="complete")
            if key in st.session_state:
                st.rerun()  # show the download in place of the button
    if key in st.session_state:
        st.download_button("Portable bundle (.zip)", st.session_state[key], f"audioclf-{run_id}.zip",
                           mime="application/zip", icon=":material/download:", key="runs_bundle_download",
                           help="model.tflite, saved_model/, labels.json, features.json and predict.py: "
                                "`python predict.py FILE...` prints file,label,probability lines.")


st.title("Runs")
infos = []
with guard("Listing runs"):
    infos = runs.list_runs()
if not infos:
    st.info("No training runs yet." + ("" if read_only() else " Start one on the Train page."))
    if not read_only():  # read-only mode has no Train page to link to
        st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

dataset = st.session_state.get(DATASET_KEY)
mine = [r for r in infos if dataset and runs.same_dataset(r, dataset_root(dataset))]
every = st.toggle("Runs of every data set", key="runs_every", disabled=not mine or len(mine) == len(infos),
                  help="Off: only the runs trained on the data set chosen in the sidebar.")
if mine and not every:
    infos = mine
elif dataset and not mine:
    st.caption(f"No run was trained on {code(dataset)} yet: these are the runs of every data set.")

table = runs_table(infos)
st.caption("Click a column header to sort. Scores are on the validation and test splits.")
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f")
                            for c in table.columns if "F1" in c or "accuracy" in c})

ids = [r.id for r in infos]
labels = {r.id: f"{r.id} {r.name}  ({r.model}/{r.features}, {r.state})" for r in infos}
with st.expander("Compare runs", expanded=False):
    # A run without scores (cancelled, failed, still training) has nothing to compare.
    scored = [r.id for r in infos if r.val_macro_f1 is not None or r.test_macro_f1 is not None]
    chosen = st.multiselect("Runs to compare", ids, default=scored[:2], format_func=labels.get,
                            key="runs_compare")
    if chosen:
        with guard("Comparing runs"):
            rows = runs.compare_runs(chosen)
            st.plotly_chart(plotting.run_comparison(
                [r["id"] for r in rows],
                {"val macro F1": [r.get("val.macro_f1") for r in rows],  # None: no bar, not a 0
                 "test macro F1": [r.get("test.macro_f1") for r in rows],
                 "test accuracy": [r.get("test.accuracy") for r in rows]}), key="cmp")
            st.dataframe(comparison_table(rows), width="stretch")

preselect("runs_pick", ids)
run_id = st.selectbox("Run", ids, format_func=labels.get, key="runs_pick",
                      on_change=lambda: remember_pick("runs_pick", st.session_state["runs_pick"]),
                      help="The best run of the sidebar's data set is preselected, until you pick another.")
st.divider()
with guard(f"Showing run {run_id}"):
    show_run(run_id)
