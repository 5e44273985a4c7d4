"""audioclf's Streamlit app: `streamlit run app.py`.

The entry point only sets up navigation; each page lives in app_pages/ and is a
thin layer of widgets over the `audioclf` library. TensorFlow is imported by
the pages that need it (Train, Runs, Predict), never here, so the first page
opens fast.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
# `streamlit run` puts this folder on sys.path, AppTest does not; pages import app_pages.common.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audioclf.errors import AudioclfError  # noqa: E402  (light: no TensorFlow)

# Pages live in app_pages/, not pages/: a pages/ folder switches Streamlit (and AppTest) into
# its legacy file-based multipage mode, which runs page files without this entry point.
PAGES = {
    "audioclf": [
        st.Page("app_pages/data.py", title="Data", icon=":material/library_music:", default=True),
        st.Page("app_pages/explore.py", title="Explore", icon=":material/graphic_eq:"),
        st.Page("app_pages/dataset_map.py", title="Map", icon=":material/scatter_plot:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/tune.py", title="Tune", icon=":material/tune:"),
        st.Page("app_pages/runs.py", title="Runs", icon=":material/leaderboard:"),
        st.Page("app_pages/predict.py", title="Predict", icon=":material/online_prediction:"),
    ],
}

log = logging.getLogger("audioclf.app")

st.set_page_config(page_title="audioclf", page_icon=":material/graphic_eq:", layout="wide")
page = st.navigation(PAGES)
try:
    from app_pages.common import dataset_sidebar

    # In the entry point, so the choice is one widget shared by every page.
    dataset_sidebar()
    page.run()
except AudioclfError as exc:  # a library error a page did not expect here: its message is for people
    log.warning("library error on page %s: %s", page.title, exc)
    st.error(str(exc), icon=":material/error:")
except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback reaches a user
    # Streamlit's own control flow (rerun, stop, switch_page) uses BaseException, not Exception.
    log.exception("unexpected error on page %s", page.title)
    st.error(f"Something went wrong on this page: {exc}. Nothing saved was lost; "
             "try again, or report this message with the server log.", icon=":material/error:")
