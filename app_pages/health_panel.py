"""The Data page's Health tab: run `audioclf.insight.health.check_dataset`, list findings, fix them in one click."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.common import guard

FEATURES = {"MFCC summary (fast)": "mfcc", "YAMNet embedding (best for sound events)": "yamnet",
            "EfficientAT embedding (sound events)": "efficientat"}
REPORT_KEY = "_health_report"  # (data set root, feature kind, time, HealthReport)
FIXED_KEY = "_health_fixed"  # indices of findings fixed since the check ran
SEVERITY_ICONS = {"high": ":material/error:", "medium": ":material/warning:", "low": ":material/info:"}
STAGES = {"reading": "Reading clips", "features": "Features", "checking": "Looking for mislabelled clips"}
MAX_FIX_ROWS = 100
MAX_PLAYERS = 3


def run_check(ds, kind: str) -> None:
    from audioclf.features import EfficientATConfig, MFCCConfig, YAMNetConfig
    from audioclf.insight import check_dataset

    bar = st.progress(0.0, text="Reading clips...")

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{STAGES.get(stage, stage)}: {done} / {total}")

    cfg = {"yamnet": YAMNetConfig(), "efficientat": EfficientATConfig(model="")}.get(kind) or MFCCConfig()
    report = check_dataset(ds, cfg, progress=progress)
    bar.empty()
    st.session_state[REPORT_KEY] = (str(ds.root), kind, time.strftime("%H:%M:%S"), report)
    st.session_state[FIXED_KEY] = set()


def fix_label(f) -> str:
    if f.action == "relabel":
        return f"Relabel as {f.label}"
    if f.kind in ("duplicate", "leakage", "near_duplicate"):
        return "Delete the copy" if len(f.targets) == 1 else f"Delete {len(f.targets)} copies"
    return "Delete the clip"


def still_there(f) -> bool:
    return all(Path(p).exists() for p in f.targets)


def finding_row(i: int, f) -> None:
    from audioclf.insight import apply_fix

    with st.container(border=True):
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(f"**{f.kind.replace('_', ' ')}** · {f.severity}  \n{f.message}")
        text.caption(f"Fix: {f.fix}")
        if f.action and button.button(fix_label(f), key=f"hc_fix_{i}",
                                      type="primary" if f.severity == "high" else "secondary"):
            with guard("Applying the fix"):
                done = apply_fix(f)
                st.session_state.setdefault(FIXED_KEY, set()).add(i)
                st.toast(done)
                st.rerun()
        if f.paths:
            with st.expander("Listen", expanded=False):
                for p in f.paths[:MAX_PLAYERS]:
                    if Path(p).is_file():
                        st.caption(Path(p).name)
                        st.audio(p)


def health_tab(ds) -> None:
    st.markdown("Find the clips that will hurt a model before you train one: duplicates and leakage, "
                "clips that are probably mislabelled, silent, clipped, too short or too long clips, mixed "
                "formats and class imbalance. Each finding has its fix one click away.")
    if not ds.items:
        st.info("No clips yet: add some in the **Add clips** tab.")
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    feature = left.selectbox("Features for near duplicates and mislabelled clips", list(FEATURES), key="hc_features")
    if right.button("Run the health check", type="primary", key="hc_run"):
        with guard("Checking the data set"):
            run_check(ds, FEATURES[feature])
    saved = st.session_state.get(REPORT_KEY)
    if not saved or saved[0] != str(ds.root):
        st.info("Run the health check to see what needs attention.")
        return
    _, kind, when, report = saved
    fixed = st.session_state.get(FIXED_KEY, set())
    open_ = [(i, f) for i, f in enumerate(report.findings) if i not in fixed and still_there(f)]
    sev = pd.Series([f.severity for _, f in open_], dtype=object).value_counts()
    c = st.columns(4)
    c[0].metric("Clips checked", report.n_clips)
    c[1].metric("High", int(sev.get("high", 0)))
    c[2].metric("Medium", int(sev.get("medium", 0)))
    c[3].metric("Low", int(sev.get("low", 0)))
    st.caption(f"Checked at {when} with {kind} features; {len(fixed)} fixed since. "
               f"{report.n_suspects} clip(s) looked mislabelled, the {len(report.of_kind('mislabelled'))} "
               "likeliest are listed. Run the check again after larger edits.")
    for note in report.notes:
        st.info(note, icon=":material/info:")
    if not open_:
        st.success("No problems left.", icon=":material/check_circle:")
        return
    table = pd.DataFrame([{"severity": f.severity, "kind": f.kind,
                           "files": ", ".join(Path(p).name for p in f.paths[:3]) + (" ..." if len(f.paths) > 3 else ""),
                           "message": f.message} for _, f in open_])
    st.dataframe(table, hide_index=True, width="stretch")
    st.subheader("Fix")
    for i, f in open_[:MAX_FIX_ROWS]:
        finding_row(i, f)
    if len(open_) > MAX_FIX_ROWS:
        st.caption(f"{len(open_) - MAX_FIX_ROWS} more findings: fix these first, then run the check again.")
