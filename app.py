"""audioclf's Streamlit app: `streamlit run app.py`.

The entry point only sets up navigation; each page lives in app_pages/ and is a
thin layer of widgets over the `audioclf` library. TensorFlow is imported by
the pages that need it (Train, Runs, Predict), never here, so the first page
opens fast.

The file is read twice. `streamlit run app.py` first imports it as the module `app`
and finds `app = st.App(...)` at the bottom: the ASGI server, with the password guard
(app_server.guard) in front of everything it answers. Each browser session then runs
the file as "__main__", which draws the app.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# Pages live in app_pages/, not pages/: a pages/ folder switches Streamlit (and AppTest) into
# its legacy file-based multipage mode, which runs page files without this entry point.
DATA = ("app_pages/data.py", "Data", ":material/library_music:")
LABEL = ("app_pages/label.py", "Label", ":material/category:")
EXPLORE = ("app_pages/explore.py", "Explore", ":material/graphic_eq:")
MAP = ("app_pages/dataset_map.py", "Map", ":material/scatter_plot:")
TRAIN = ("app_pages/train.py", "Train", ":material/model_training:")
TUNE = ("app_pages/tune.py", "Tune", ":material/tune:")
RUNS = ("app_pages/runs.py", "Runs", ":material/leaderboard:")
PREDICT = ("app_pages/predict.py", "Predict", ":material/online_prediction:")
LIVE = ("app_pages/live.py", "Live", ":material/mic:")
PRESENT = ("app_pages/present.py", "Present", ":material/co_present:")

log = logging.getLogger("audioclf.app")


def pages() -> dict:
    """The navigation. Read-only (a shared demo): no Train, Tune or Label page, and the presentation opens first."""
    import streamlit as st

    from audioclf.workspace import read_only

    order = [PRESENT, LIVE, PREDICT, RUNS, EXPLORE, MAP, DATA] if read_only() else \
        [DATA, LABEL, EXPLORE, MAP, TRAIN, TUNE, RUNS, PREDICT, LIVE, PRESENT]
    return {"audioclf": [st.Page(path, title=title, icon=icon, default=i == 0)
                         for i, (path, title, icon) in enumerate(order)]}


def password_ok() -> bool:
    """True when no password is configured (st.secrets) or this session signed in at the server.

    The server's guard refuses the websocket of a browser that has not signed in, so a
    session without a valid sign-in cookie means the guard is not in front (the app was
    started some other way): then nothing is shown, rather than a password field that
    would guard the page and not the server.
    """
    import streamlit as st

    from app_server.guard import SecretsUnreadable, configured_password, signed_in

    try:
        password = configured_password()
    except SecretsUnreadable as exc:
        st.title("audioclf")
        st.error(f"The secrets file cannot be read, so the app stays shut: {shown(exc)}",
                 icon=":material/lock:")
        return False
    if password is None or signed_in(st.context.cookies, password):
        return True
    st.title("audioclf")
    st.error("This app asks for a password, and the server checks it: start it with "
             "`streamlit run app.py` or `audioclf app` from the repository, then sign in.",
             icon=":material/lock:")
    return False


def apply_readonly_flag() -> None:
    """`streamlit run app.py -- --readonly` is the same as AUDIOCLF_READONLY=1 (`audioclf app --readonly`)."""
    if "--readonly" in sys.argv[1:]:
        from audioclf.workspace import ENV_READONLY

        os.environ[ENV_READONLY] = "1"


def shown(exc: BaseException) -> str:
    """An error's message as Markdown that shows it literally (patterns, paths)."""
    try:
        from app_pages.common import md

        return md(exc)
    except Exception:  # noqa: BLE001 - the helpers themselves may be what failed to import
        return str(exc)


def main() -> None:
    """Password, navigation, the data set picker, then the chosen page."""
    import streamlit as st

    try:
        # The Live page's WebRTC (aiortc) loads pylibsrtp, whose initialisation crashes the process
        # (segfault) when TensorFlow was loaded before it; loaded first (18 ms), both work.
        import pylibsrtp  # noqa: F401
    except ImportError:  # the Live page then says what is missing
        pass
    # `streamlit run` puts this folder on sys.path, AppTest does not; pages import app_pages.common.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    apply_readonly_flag()
    from audioclf.errors import AudioclfError  # light: no TensorFlow

    st.set_page_config(page_title="audioclf", page_icon=":material/graphic_eq:", layout="wide")
    if not password_ok():
        st.stop()
    page = st.navigation(pages())
    try:
        from app_pages.common import dataset_sidebar
        from app_pages.engine_panel import engine_sidebar

        # In the entry point, so the choice is one widget shared by every page.
        dataset_sidebar()
        engine_sidebar()
        page.run()
    except AudioclfError as exc:  # a library error a page did not expect here: its message is for people
        log.warning("library error on page %s: %s", page.title, exc)
        st.error(shown(exc), icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback reaches a user
        # Streamlit's own control flow (rerun, stop, switch_page) uses BaseException, not Exception.
        log.exception("unexpected error on page %s", page.title)
        st.error(f"Something went wrong on this page: {shown(exc)}. Nothing saved was lost; "
                 "try again, or report this message with the server log.", icon=":material/error:")


# Streamlit runs this file as "__main__". A feature-extraction worker process started by
# multiprocessing (forkserver/spawn) re-runs the main script as "__mp_main__" before its
# first task: there it must not draw the app (Streamlit calls outside a session only fill
# the server log with "missing ScriptRunContext" warnings and slow each worker's start).
if __name__ == "__main__":
    main()
elif __name__ != "__mp_main__":
    # Imported by `streamlit run app.py` (Streamlit finds this assignment by reading the file):
    # the server. Read-only is known before the first session, for the guard's upload limits.
    import streamlit as st

    from app_server.guard import middleware

    apply_readonly_flag()
    app = st.App(__file__, middleware=middleware())
