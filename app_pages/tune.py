"""Tune: search hyperparameters with Optuna in the background; live leaderboard, Optuna's figures,
the best config trained as a run and opened in the Train form."""
from __future__ import annotations

import streamlit as st

from audioclf import jobs
from audioclf import tuning
from audioclf.datasets import FSDD_SPEAKER_PATTERN, MAX_FOLDS, METHODS, MIN_FOLDS, SplitConfig
from audioclf.features import CONFIG_TYPES
from audioclf.training import RunConfig, resolve_settings, runs  # light: TensorFlow runs in the search process
from app_pages import efficientat_panel
from app_pages.common import (plural, DATASET_KEY, SPLIT_NAMES, TRAIN_PRESET_KEY, code, current_dataset, dataset_names,
                              dataset_root, feature_note, fmt_seconds, guard, md, select_dataset, yamnet_reason)
from app_pages.engine_panel import engine_choice

POLL_SECONDS = 2.0
ROW_PX = 35  # data editor row height: the space table shows every row without scrolling
ACTIVE_STUDY_KEY = "active_study"
VIEW_STUDY_KEY = "tu_view"
SHOWN_KEY = "_tu_shown"  # the finished study of this session last put in the viewer
FEATURE_NAMES = {"mfcc": "MFCC sequence", "spectral": "Spectral frames", "yamnet": "YAMNet embeddings",
                 "efficientat": "EfficientAT embeddings"}
OBJECTIVE_NAMES = {"val": "Validation macro F1", "cv": "Mean macro F1 of a k-fold cross-validation (small data)"}
SAMPLER_NAMES = {"tpe": "TPE (learns where good settings are)", "random": "Random", "grid": "Grid"}
PRUNER_NAMES = {"median": "Median: stop trials below the median so far", "hyperband": "Hyperband",
                "none": "None: every trial runs to the end"}
# Offered unticked below the default space: settings a user may want to add.
EXTRA_PARAMS = {
    "mfcc": ("features.n_mfcc=13,20,40", "features.sr=16000,22050", "model.pooling=last,mean,meanmax",
             "model.input_noise=0:0.5:0.1", "train.batch_size=32,64", "model.members=1,3",
             "train.average_epochs=0,3,5", "train.mixup=0,0.2,0.4"),
    "spectral": ("features.n_mfcc=13,20", "model.pooling=last,mean,meanmax", "model.members=1,3",
                 "train.mixup=0,0.2,0.4"),
    "yamnet": ("model.pooling=last,mean,meanmax", "model.input_noise=0:0.5:0.1", "model.members=1,3",
               "train.mixup=0,0.2,0.4"),
    "efficientat": ("features.sequence=frames,windows", "features.yamnet=false,true", "model.pooling=last,mean,meanmax",
                    "model.input_noise=0:0.5:0.1", "model.members=1,3", "train.mixup=0,0.2,0.4",
                    # fine-tuning trials cost several times a frozen one per epoch: offered, not ticked
                    "train.finetune_blocks=0,1,2", "train.backbone_learning_rate=3e-5:3e-4:log"),
}
SPACE_HELP = ("Values are a list (gru, lstm), a range low:high, a log range low:high:log or a stepped "
              "range low:high:step; one value sets that setting for every trial. Add rows for other "
              "settings (`features.*`, `model.*`, `train.*`). A setting not ticked keeps the value of the base "
              "config: the feature type's defaults, with the epochs set above.")


def active_study() -> str | None:
    """This session's study, else the newest study still running (e.g. after leaving the page)."""
    studies = tuning.list_studies()
    mine = st.session_state.get(ACTIVE_STUDY_KEY)
    if mine and any(s["study"] == mine for s in studies):
        return mine
    live = [s for s in studies if s["state"] not in jobs.FINAL_STATES]
    return live[0]["study"] if live else None


def show_study(study: str, live: bool) -> bool:
    """Progress, leaderboard and figures of one study; returns True when it has finished."""
    status = tuning.read_status(study)
    state = status.get("state", "failed")
    st.subheader(f"Study {study}")
    if state not in jobs.FINAL_STATES:  # first, so no slow or failing read below can hide it
        cancel_button(study)
    result = tuning.summarize_study(study)  # empty until the search has made its database (storage_ready)
    board = tuning.leaderboard(study)
    if state in ("queued", "extracting"):
        total = status.get("total") or 0
        st.progress(status.get("done", 0) / total if total else 0.0,
                    text=f"Extracting features: {status.get('done', 0)} / {total} clips" if total
                    else "Starting (loading the data set and TensorFlow)...")
    elif state == "searching":
        target, before = status.get("target"), int(status.get("n_before", 0))
        # This search's trials only (Optuna numbers a study's trials in order, so they are those
        # from n_before on), all from the one leaderboard read: a trial starting between two reads
        # made the count negative, and an earlier search's trial still marked running hid a finished one.
        mine = [r for r in board if r["trial"] >= before]
        running = sum(r["state"] == "running" for r in mine)
        done = len(mine) - running
        todo = (target - before) if target else None
        frac = min(1.0, done / todo) if todo and todo > 0 else 0.0
        text = f"{done} of {todo} trials finished" if todo else f"{done} trials finished (until the time limit)"
        earlier = f" (and {plural(before, 'trial')} of earlier searches)" if before else ""
        st.progress(frac, text=f"{text}, {running} running{earlier}")
    elif state == "training":
        st.progress(1.0, text=status.get("message", "Training the best config"))
    c = st.columns(5)
    c[0].metric("State", state)
    c[1].metric("Trials", result.n_trials)
    c[2].metric("Pruned", result.n_pruned)
    c[3].metric("Best val macro F1", f"{result.best_value:.3f}" if result.best_value is not None else "-")
    started, end = status.get("started"), status.get("finished") or status.get("updated")
    c[4].metric("Elapsed", fmt_seconds((end - started) if started and end else None))
    if board:
        st.dataframe(board, hide_index=True, key=f"board_{study}_{live}",
                     column_config={"macro_f1": st.column_config.NumberColumn("val macro F1", format="%.3f"),
                                    "last_reported": st.column_config.NumberColumn(format="%.3f")})
    figs = tuning.figures(study, importances=not live)
    if figs:
        tabs = st.tabs(list(figs))
        for tab, (title, fig) in zip(tabs, figs.items()):
            tab.plotly_chart(fig, key=f"fig_{title}_{study}_{live}")
    if state == "done":
        show_best(study, result, status)
    elif state == "failed":
        st.error(f"The search failed: {md(status.get('message', ''))}", icon=":material/error:")
    elif state == "cancelled":
        st.warning("The search was cancelled. Resume it below to add trials.")
    return state in jobs.FINAL_STATES


def cancel_button(study: str) -> None:
    if st.button("Cancel search", key=f"tu_cancel_{study}", icon=":material/stop_circle:"):
        with guard("Cancelling"):
            tuning.cancel_tuning(study)
            st.rerun()


def show_best(study: str, result, status: dict) -> None:
    from audioclf.training import RunError, load_run

    run_id = result.run_id
    test = None
    if run_id:
        try:
            test = (load_run(run_id).metrics.get("test") or {}).get("macro_f1")
        except RunError:
            run_id = None
    st.success(f"Best: trial {result.best_trial}, validation macro F1 {result.best_value:.3f}"
               + (f"; trained as run {run_id}, test macro F1 {test:.3f}" if run_id and test is not None else ""),
               icon=":material/check_circle:")
    st.caption("The best trial's settings (the others are the base config's):")
    st.json(result.best_params, expanded=True)
    c = st.columns(2)
    if result.best_config and c[0].button("Open in the Train form", key=f"tu_open_{study}",
                                          icon=":material/model_training:"):
        st.session_state[TRAIN_PRESET_KEY] = {**result.best_config,
                                              "name": f"{study} best (trial {result.best_trial})"}
        if result.best_config.get("dataset") in dataset_names():  # the search's data set in the sidebar
            select_dataset(result.best_config["dataset"])
        st.switch_page("app_pages/train.py")
    if run_id:
        with c[1]:
            st.page_link("app_pages/runs.py", label=f"Open run {run_id} on Runs", icon=":material/leaderboard:")


@st.fragment(run_every=POLL_SECONDS)
def monitor(study: str) -> None:
    # Only this fragment reruns while the search runs; a full rerun once it ends shows the static view.
    # An error is shown in it and the next poll tries again (a raised one would end the polling).
    ended = False
    with guard("Reading the study"):
        ended = show_study(study, live=True)
    if ended:
        st.rerun()


def resume_form(study: str) -> None:
    with st.form(f"tu_resume_{study}", enter_to_submit=False):
        c = st.columns(2)
        more = c[0].number_input("More trials", 1, 1000, 10, key="tu_more")
        minutes = c[1].number_input("Time limit (minutes, 0 = none)", 0.0, 1440.0, 0.0, key="tu_more_minutes")
        if st.form_submit_button("Resume the search", icon=":material/play_arrow:"):
            with guard("Cannot resume"):
                with jobs.one_at_a_time():  # one training run or search at a time, in every tab
                    st.session_state[ACTIVE_STUDY_KEY] = tuning.start_tuning(
                        study=study, trials=int(more), timeout=minutes * 60 or None)
                st.rerun()


def space_rows(kind: str) -> list[dict]:
    rows = [{"vary": True, "setting": p.name, "values": p.describe()} for p in tuning.default_space(kind).params]
    for text in EXTRA_PARAMS.get(kind, ()):
        name, spec = text.split("=", 1)
        if not any(r["setting"] == name for r in rows):
            rows.append({"vary": False, "setting": name, "values": spec})
    return rows


def space_from_rows(rows) -> tuning.SearchSpace:
    import pandas as pd

    space = tuning.SearchSpace()
    for row in pd.DataFrame(rows).fillna("").to_dict("records"):
        if row.get("vary") and str(row.get("setting") or "").strip():
            space = space.with_param(tuning.parse_param(str(row["setting"]), str(row.get("values") or "")))
    return space


def new_search(ds) -> None:
    top = st.columns(4)
    kinds = list(FEATURE_NAMES)  # MFCC first, as in the Train form
    yamnet_missing, eat_missing = yamnet_reason(), efficientat_panel.reason()
    kind = top[0].selectbox("Features", kinds, key="tu_feat",
                            format_func=lambda k: FEATURE_NAMES[k] + feature_note(k, yamnet_missing, eat_missing))
    method = top[1].selectbox("Split", METHODS, format_func=SPLIT_NAMES.get, key="tu_split")
    objective = top[2].selectbox("Objective", list(OBJECTIVE_NAMES), format_func=OBJECTIVE_NAMES.get, key="tu_obj")
    features, blocked = CONFIG_TYPES[kind](), ""
    if kind == "efficientat":
        eat_model, blocked = efficientat_panel.choose_model(top[3], key="tu_eat_model")
        features = CONFIG_TYPES[kind](model=eat_model)
    elif kind == "yamnet" and yamnet_missing:  # said before Start, which is disabled
        blocked = yamnet_missing
        st.warning(md(yamnet_missing), icon=":material/block:")
    base_split, base_train = SplitConfig(), resolve_settings(kind)[1]  # the feature type's own defaults
    with st.form("tune_form", enter_to_submit=False):
        cols = st.columns(3)
        with cols[0]:
            st.markdown("**Budget**")
            trials = st.number_input("Trials", 1, 1000, tuning.TuneConfig.trials, key="tu_trials")
            minutes = st.number_input("Time limit (minutes, 0 = none)", 0.0, 1440.0, 0.0, key="tu_minutes")
            epochs = st.number_input("Epochs per trial (maximum)", 1, 1000, base_train.epochs, key="tu_epochs")
            folds = st.slider("Folds (cv objective)", MIN_FOLDS, MAX_FOLDS, tuning.TuneConfig.folds, key="tu_folds",
                              disabled=objective != "cv")
        with cols[1]:
            st.markdown("**Method**")
            sampler = st.selectbox("Sampler", tuning.SAMPLERS, format_func=SAMPLER_NAMES.get, key="tu_sampler")
            pruner = st.selectbox("Pruner", tuning.PRUNERS, format_func=PRUNER_NAMES.get, key="tu_pruner")
            name = st.text_input("Study name (optional)", key="tu_name", placeholder="e.g. esc10-yamnet")
        with cols[2]:
            st.markdown("**Split** (the search never sees the test part)")
            val = st.slider("Validation share", 0.0, 0.4, base_split.val, step=0.05, key="tu_val")
            test = st.slider("Test share", 0.0 if method == "fixed" else 0.05, 0.4,
                             0.0 if method == "fixed" else base_split.test, step=0.05, key="tu_test",
                             disabled=method == "fixed")
            pattern = st.text_input("Group regex (first group = group id)", FSDD_SPEAKER_PATTERN,
                                    key="tu_group", disabled=method != "group")
            seed = st.number_input("Seed", 0, 2**31 - 1, base_split.seed, key="tu_seed")
        st.markdown("**What varies**")
        initial = space_rows(kind)
        rows = st.data_editor(initial, key=f"tu_space_{kind}", num_rows="dynamic", hide_index=True,
                              height=ROW_PX * (len(initial) + 2) + 3,
                              column_config={"vary": st.column_config.CheckboxColumn(width="small"),
                                             "setting": st.column_config.TextColumn(width="medium"),
                                             "values": st.column_config.TextColumn(width="large")},
                              width="stretch")
        st.caption(SPACE_HELP)
        submitted = st.form_submit_button("Start search", type="primary", icon=":material/play_arrow:",
                                          disabled=bool(blocked), help=blocked or None)
    if not submitted:
        return
    with guard("Cannot start the search"):
        split = SplitConfig(method=method, val=val, test=0.0 if method == "fixed" else test, seed=int(seed),
                            group_pattern=pattern if method == "group" else None)
        # As the Train page does: the feature type's defaults, with what was set here on top.
        mine = {"train.epochs": int(epochs)} if int(epochs) != base_train.epochs else {}
        base = RunConfig(dataset=ds.name, split=split, features=features, overrides=mine)
        engine, address = engine_choice()  # the sidebar's "Where work runs"
        cfg = tuning.TuneConfig(base=base, space=space_from_rows(rows), objective=objective, folds=int(folds),
                                trials=int(trials), timeout=minutes * 60 or None, sampler=sampler, pruner=pruner,
                                engine=engine, address=address)
        with jobs.one_at_a_time():  # one training run or search at a time, in every tab (SlotTaken says which)
            st.session_state[ACTIVE_STUDY_KEY] = tuning.start_tuning(cfg, name=name.strip())
        st.session_state.pop(VIEW_STUDY_KEY, None)
        st.rerun()


st.title("Tune")
st.caption("Let Optuna search the settings: it trains many small configurations on the training split, "
           "scores each on the validation split (or by cross-validation), stops hopeless ones early, and "
           "trains the best one as a run scored once on the test split.")
with guard("Reading studies"):
    study = active_study()
    live_now = bool(study) and tuning.read_status(study).get("state") not in jobs.FINAL_STATES
    if live_now:
        monitor(study)
        st.divider()
    # The sidebar's data set's studies (and this session's own): another data set's best settings
    # say nothing about this one.
    sidebar = st.session_state.get(DATASET_KEY)
    ended = [s for s in tuning.list_studies() if s["state"] in jobs.FINAL_STATES]
    mine = st.session_state.get(ACTIVE_STUDY_KEY)
    finished = [s["study"] for s in ended if not sidebar or s["study"] == mine
                or runs.same_dataset(str(s["dataset"]), dataset_root(sidebar))]
    if len(finished) < len(ended):
        n = len(ended) - len(finished)
        st.caption(f"{n} finished {'study' if n == 1 else 'studies'} of other data sets: choose their data "
                   "set in the sidebar to see them.")
    if finished:
        if mine in finished and st.session_state.get(SHOWN_KEY) != mine:
            st.session_state[VIEW_STUDY_KEY] = mine  # a search of this session just ended: show it
            st.session_state[SHOWN_KEY] = mine
        with st.expander("Results of a study", expanded=mine in finished or not live_now):
            view = st.selectbox("Study", finished, key=VIEW_STUDY_KEY)
            if view and show_study(view, live=False):
                resume_form(view)

ds, summary = current_dataset()
if ds is None:
    st.stop()
st.subheader("New search")
with guard("Reading jobs"):
    if busy := jobs.active_jobs():
        st.info(f"{busy[0].kind.capitalize()} {code(busy[0].name)} is still {busy[0].state}: a new search can "
                "start once it has ended or been cancelled (one training run or search at a time).",
                icon=":material/hourglass_top:")
st.caption(f"Data set {code(st.session_state.get(DATASET_KEY))}: {plural(len(ds.items), 'clip')}, {plural(len(ds.labels), 'class')}.")
new_search(ds)
