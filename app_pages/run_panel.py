"""The Train page's view of one run: which run to show, its progress while it trains
(polled every POLL_SECONDS), its final state, and the cancel button."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from audioclf import jobs
from audioclf.insight import plotting
from app_pages.common import ACTIVE_RUN_KEY, code, dataset_root, fmt_seconds, guard, run_state_sentence

POLL_SECONDS = 1.0


def run_to_show(dataset: str | None = None) -> tuple[str | None, int]:
    """(run id, runs in progress): the newest run in progress (whatever its data set: it holds the
    one job slot), else this session's last run, else the newest run (its final state, also in a
    new session); with `dataset` (the sidebar's), only a run trained on that data set is shown."""
    from audioclf.training import active_runs, list_runs, runs as run_store

    busy = active_runs()
    if busy:
        return busy[0].id, len(busy)
    runs = [r for r in list_runs() if dataset is None or run_store.same_dataset(r, dataset_root(dataset))]
    mine = st.session_state.get(ACTIVE_RUN_KEY)
    if mine and any(r.id == mine for r in runs):
        return mine, 0
    return (runs[0].id if runs else None), 0


def early_stopping_note(train_cfg: dict) -> str | None:
    """Why early stopping cannot act in a run, if it cannot."""
    patience, epochs = train_cfg.get("patience"), int(train_cfg.get("epochs") or 0)
    min_epochs = int(train_cfg.get("min_epochs") or 0)
    if patience is not None and min_epochs >= epochs:
        return (f"Early stopping cannot act in this run: it starts after epoch {min_epochs} and "
                f"the run has {epochs} epoch(s), so all of them train and the last is kept. "
                "Lower “Early stopping starts after epoch” below the number of epochs to use it.")
    return None


def show_status(run_id: str) -> bool:
    """Progress of one run; returns True when it has finished."""
    from audioclf.training import cancel_run, run_status, runs

    s = run_status(run_id)
    train_cfg = (jobs.read_json(runs.run_dir(run_id) / runs.CONFIG, {}) or {}).get("train") or {}
    stops_early = train_cfg.get("patience") is not None and early_stopping_note(train_cfg) is None
    st.subheader(f"Run {run_id}")
    choice = runs.read_status(run_id).get("feature_choice")
    if choice:
        st.caption(f"Auto chose {choice['reason']}.")
    if blocks := train_cfg.get("finetune_blocks"):
        which = "block" if blocks == 1 else f"{blocks} blocks"
        st.caption(f"Fine-tuning EfficientAT's last {which} with the model: each epoch runs them forwards "
                   "and backwards, so it takes longer than with the network frozen.")
    if s.state in ("queued", "extracting"):
        frac = s.phase_done / s.phase_total if s.phase_total else 0.0
        doing = "Choosing the feature type" if s.phase == runs.CHOOSING else "Extracting features"
        # The total holds the warped copies too: say so, or "240 clips" reads as twice the data set.
        what = (f" ({s.phase_total - s.phase_copies} clips and {s.phase_copies} voice-warped copies of "
                "training clips)" if s.phase_copies else " clips")
        st.progress(frac, text=f"{doing}: {s.phase_done} / {s.phase_total}{what}"
                    if s.phase_total else "Starting (loading the data set and TensorFlow)...")
    elif s.state == "training":
        st.progress(s.epoch / s.epochs if s.epochs else 0.0,
                    text=f"Training: epoch {s.epoch} / {s.epochs}"
                         + (" (early stopping may end it sooner)" if stops_early else ""))
    if not s.final and (note := early_stopping_note(train_cfg)):
        st.warning(note, icon=":material/info:")
    c = st.columns(4)
    c[0].metric("State", s.state)
    c[1].metric("Elapsed", fmt_seconds(s.elapsed))
    c[2].metric("Remaining (estimate)", fmt_seconds(s.eta) if not s.final else "-")
    if s.history:
        last = s.history[-1]
        acc = last.get("val_accuracy", last.get("accuracy"))
        c[3].metric("Validation accuracy" if "val_accuracy" in last else "Accuracy",
                    f"{acc:.3f}" if acc is not None else "-")
        st.plotly_chart(plotting.learning_curves(list(s.history)), key=f"curves_{run_id}")
    if s.state == "done":
        st.success("Training finished. See its evaluation on the Runs page.", icon=":material/check_circle:")
        st.page_link("app_pages/runs.py", label="Open Runs", icon=":material/leaderboard:")
    elif s.state == "failed":
        st.error(run_state_sentence(s.state, s.message), icon=":material/error:")
    elif s.state == "cancelled":
        st.warning(run_state_sentence(s.state, s.message), icon=":material/cancel:")
    elif st.button("Cancel training", key=f"cancel_{run_id}", icon=":material/stop_circle:"):
        with guard("Cancelling"):
            cancel_run(run_id)
            st.rerun()
    return s.final


@st.fragment(run_every=POLL_SECONDS)
def monitor(run_id: str) -> None:
    # Only this fragment reruns every second; a full rerun once the run ends swaps in the static view.
    if show_status(run_id):
        st.rerun()


def other_dataset_note(run_id: str, dataset: str | None) -> None:
    """Say so when the run in progress trains on another data set than the sidebar's."""
    from audioclf.training import runs

    recorded = str((jobs.read_json(runs.run_dir(run_id) / runs.CONFIG, {}) or {}).get("dataset") or "")
    if dataset and recorded and not runs.same_dataset(recorded, dataset_root(dataset)):
        st.caption(f"This run trains on the data set {code(Path(recorded).name)}, not on the sidebar's "
                   f"{code(dataset)}: one run or search trains at a time.")
