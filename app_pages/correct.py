""""Wrong? This is ..." and "Retrain": the correction controls of Predict, Live and Present (not a page).

A correction adds the clip (or a stretch of the live stream) to the run's data set
with the right class (`audioclf.labelling.corrections.add_correction`); the retrain
trains the run's settings again on the grown data set, in this process (seconds with
cached features), and shows both models' scores on the run's own test clips. In
read-only mode both are there only if the owner allows corrections
(AUDIOCLF_READONLY_ALLOW=corrections).
"""
from __future__ import annotations

import streamlit as st

from app_pages.common import guard, md, read_only, remember_pick

NEW_CLASS = "a new class..."
PENDING_RUN = "_pending_run"  # a retrained run the run pickers switch to on the next rerun
LAST_RETRAIN = "_last_retrain"  # (parent run, RetrainResult) shown until the next retrain
ADDED = "_correction_added"  # the last correction's message, shown by retrain_panel after the rerun


def allowed() -> bool:
    """Corrections are possible: not read-only, or the owner allows them there."""
    from audioclf import workspace

    return not read_only() or workspace.owner_allows("corrections")


def apply_pending_run(key: str) -> None:
    """Before a run picker with ``key`` renders: switch it to a run a retrain just made.

    The picker's own state is set (not dropped): a browser sends back the value it shows
    with its next rerun, so a dropped state came back as the old run at the next click.
    """
    pending = st.session_state.pop(PENDING_RUN, None)
    if pending:
        st.session_state[key] = pending
        remember_pick(key, pending)  # as if picked there: it stays through the next clicks


def wrong_control(run_id: str, key: str, labels, *, predicted: str = "", source=None,
                  start: float | None = None, end: float | None = None) -> None:
    """A popover: "Wrong? This is ..." a class (or a new one) -> the clip joins the data set."""
    if not allowed() or source is None:
        return
    with st.popover("Wrong? This is ...", icon=":material/edit:"):
        choices = [lab for lab in labels if lab != predicted] + [NEW_CLASS]
        choice = st.selectbox("The right class", choices, key=f"{key}_class")
        new = st.text_input("New class name", key=f"{key}_new") if choice == NEW_CLASS else ""
        if st.button("Add it to the data set", key=f"{key}_add", type="primary"):
            label = new.strip() if choice == NEW_CLASS else choice
            with guard("Could not add the correction"):
                from audioclf.labelling.corrections import add_correction

                added = add_correction(run_id, label, source, start=start, end=end, predicted=predicted)
                st.session_state[ADDED] = (f"Added to the data set as **{md(added.label)}** "
                                           f"({md(added.path.name)}). Retrain to learn from it.")
                st.rerun()  # the whole page: its retrain button counts the new correction


def retrain_panel(run_id: str, key: str) -> None:
    """The corrections waiting since the run, a "Retrain" button, and the last before/after."""
    if not allowed():
        return
    from audioclf.labelling import corrections

    added = st.session_state.pop(ADDED, None)
    if added:
        st.success(added, icon=":material/check:")
    pending = []
    with guard("Reading the corrections"):
        pending = corrections.corrections_since(run_id)
    last = st.session_state.get(LAST_RETRAIN)
    if last and last[1].run_id == run_id:
        show_retrain(last[1])
    if not pending:
        return
    st.caption(f"{len(pending)} correction(s) added since this run: "
               + ", ".join(f"{md(c['label'])}" for c in pending[-5:]) + ("..." if len(pending) > 5 else ""))
    if st.button(f"Retrain with {len(pending)} correction(s)", key=f"{key}_retrain", icon=":material/refresh:"):
        bar = st.progress(0.0, text="Retraining...")

        def progress(event: dict) -> None:
            if event.get("phase") == "training":
                bar.progress(event["epoch"] / max(1, event["epochs"]),
                             text=f"Retraining: epoch {event['epoch']} of at most {event['epochs']}")

        with guard("The retrain failed"):
            result = corrections.retrain(run_id, progress=progress)
            st.session_state[LAST_RETRAIN] = (run_id, result)
            st.session_state[PENDING_RUN] = result.run_id
            st.rerun()
        bar.empty()


def show_retrain(result) -> None:
    """Before and after on the same clips, and how the retrain started."""
    st.success(f"Retrained as run **{result.run_id}** in {result.seconds:.0f} s ({md(result.why)}); "
               "it is now the selected model.", icon=":material/check:")
    b, a = result.before, result.after
    c = st.columns(3)
    if a.macro_f1 is not None and b.macro_f1 is not None:
        c[0].metric(f"Macro F1 on the {b.n} {result.split} clips", f"{a.macro_f1:.2f}",
                    delta=f"{a.macro_f1 - b.macro_f1:+.2f} (was {b.macro_f1:.2f})", delta_color="normal")
        c[1].metric("Accuracy on the same clips", f"{a.accuracy:.0%}", delta=f"{a.accuracy - b.accuracy:+.0%}")
    if a.corrected[1]:
        c[2].metric("Corrections now right", f"{a.corrected[0]} of {a.corrected[1]}",
                    delta=f"was {b.corrected[0]}", delta_color="off")
