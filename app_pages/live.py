"""Live: classify the microphone continuously with a trained run."""
from __future__ import annotations

import streamlit as st

from app_pages.common import choose_run, guard, predictor_for, read_only

st.title("Live")
st.caption("Classify what the microphone hears, continuously: a label every half second or so over the "
           "last second or two, with its confidence, the probabilities over time and a log of what was "
           "heard when. Audio stays in memory (the last 30 s, so that a wrong answer can be corrected) "
           "and is stored only if you correct an event.")
run_id = choose_run("live_run")
if run_id is None:
    st.info("No finished run yet." + ("" if read_only() else " Train a model on the Train page first."))
    st.stop()

predictor = None
with guard(f"Could not load the model of run {run_id}"):
    predictor = predictor_for(run_id)
if predictor is not None:
    st.caption(f"Classes: {', '.join(predictor.labels)}")
    from app_pages.mic import live_panel

    with guard("Live classification"):
        live_panel(predictor, "live")
    from app_pages.correct import retrain_panel

    retrain_panel(run_id, "live")
