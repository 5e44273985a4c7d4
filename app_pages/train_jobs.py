"""The Train page's jobs: start a run in the one job slot, a run that waits for the slot, k-fold in the page.

One training run or search runs at a time (`audioclf.jobs.one_at_a_time`); a run asked
for meanwhile waits in the session, visibly, until the user starts or drops it.
"""
from __future__ import annotations

import streamlit as st

from audioclf import jobs
from app_pages.common import ACTIVE_RUN_KEY, code, guard

PENDING_KEY = "pending_run"  # a RunConfig asked for while another run was in progress


def cross_validate(cfg, k: int) -> None:
    """k-fold cross-validation in this session (blocking, with progress); scores are shown, not saved."""
    from audioclf.training import cross_validate as run_cv

    with st.status(f"{k}-fold cross-validation...", expanded=True) as status:
        bar = st.progress(0.0, text="Extracting features")

        def progress(event: dict) -> None:
            if event["phase"] == "extracting" and event.get("total"):
                bar.progress(event["done"] / event["total"],
                             text=f"Extracting features: {event['done']} / {event['total']}")
            elif event["phase"] == "training":
                bar.progress((event["fold"] - 1) / event["folds"],
                             text=f"Training fold {event['fold']} / {event['folds']}")
            elif event["phase"] == "fold":
                held = f" (held out: {', '.join(event['groups'])})" if event.get("groups") else ""
                st.write(f"Fold {event['fold']}{held}: macro F1 {event['macro_f1']:.3f}, "
                         f"accuracy {event['accuracy']:.3f}")

        result = run_cv(cfg, k, progress=progress)
        bar.progress(1.0, text="Done")
        status.update(label=f"{k}-fold cross-validation: macro F1 {result.macro_f1_mean:.3f} "
                            f"± {result.macro_f1_std:.3f}", state="complete")
    st.session_state["cv_result"] = result.to_dict()


def launch(cfg) -> None:
    """Start `cfg` in the background and show it (`jobs.SlotTaken` if another job started meanwhile)."""
    from audioclf.training import start_training

    with jobs.one_at_a_time():
        run_id = start_training(cfg)
    st.session_state.pop(PENDING_KEY, None)
    st.session_state[ACTIVE_RUN_KEY] = run_id
    # The button sits at the bottom of a long form; the run's progress shows at the top.
    st.toast(f"Run {code(run_id)} started: its progress is at the top of this page.",
             icon=":material/arrow_upward:")
    st.rerun()


def busy_sentence(job: jobs.Job) -> str:
    if job.kind == "run":
        return f"Run {code(job.name)} is still in progress (watch it above)."
    return f"The search {code(job.name)} on the Tune page is still {job.state}."


def cancel_job(job: jobs.Job) -> None:
    if job.kind == "run":
        from audioclf.training import cancel_run

        cancel_run(job.name)
    else:
        from audioclf import tuning

        tuning.cancel_tuning(job.name)


def pending_prompt() -> None:
    """A run asked for while another job ran waits here, visibly, until the user starts or drops it.

    It never starts on its own when the other job ends: the user may have left
    the page, or started something else in another tab, meanwhile.
    """
    cfg = st.session_state.get(PENDING_KEY)
    if cfg is None:
        return
    busy = jobs.active_jobs()
    label = f" {code(cfg.name)}" if cfg.name else ""
    if busy:
        st.warning(f"{busy_sentence(busy[0])} One training run or search runs at a time (two would each "
                   f"go at half speed), so the new run{label} has not started.", icon=":material/hourglass_top:")
        start_label = f"Cancel {busy[0].kind} {busy[0].name} and start the new one"
    else:
        st.info(f"The run{label} you asked for while another job was in progress has not started. "
                "Nothing is running now: start it, or drop it.", icon=":material/pending_actions:")
        start_label = "Start it now"
    left, right = st.columns(2)
    if left.button(start_label, type="primary", key="pending_replace", icon=":material/play_arrow:"):
        with guard("Cannot start the run"):
            for job in busy:
                cancel_job(job)
            launch(cfg)
    if right.button("Drop the new run" if not busy else "Keep the running one, drop the new one",
                    key="pending_drop", icon=":material/delete:"):
        st.session_state.pop(PENDING_KEY, None)
        st.rerun()
