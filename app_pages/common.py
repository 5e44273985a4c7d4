"""Helpers shared by the app's pages: error display, caches and the data set choice.

Only Streamlit plumbing lives here; audio, model and metric work is done by
the `audioclf` library. TensorFlow-backed modules are imported inside the
functions that need them.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from audioclf.errors import AudioclfError

DATASET_KEY = "dataset"  # session key of the data set chosen in the sidebar
DATASET_PARAM = "dataset"  # ...and its URL query parameter: a reload or a new tab keeps the choice
PENDING_DATASET_KEY = "_pending_dataset"  # set by a page, applied before the sidebar renders
RUN_KEY = "run_id"  # run chosen on Runs
PICKS_KEY = "_run_picks"  # {run picker's key: (data set, run id)} picked there by the user
ACTIVE_RUN_KEY = "active_run"  # background training started from this session
SPLIT_NAMES = {"stratified": "Random, stratified by class", "group": "By group (e.g. speaker)",
               "fixed": "Fixed train/val/test folders"}  # the split methods, as the forms name them
TRAIN_PRESET_KEY = "_train_preset"  # a RunConfig dict the Train form fills itself with (e.g. from Tune)

# Model and feature kinds (configs' `kind`) as people read them.
MODEL_NAMES = {"bilstm": "Bidirectional LSTM", "lstm": "LSTM", "gru": "GRU", "simplernn": "SimpleRNN",
               "baseline": "Dense baseline (clip mean and std)"}
FEATURE_KIND_NAMES = {"mfcc": "MFCC", "spectral": "spectral frame", "yamnet": "YAMNet", "efficientat": "EfficientAT"}

log = logging.getLogger("audioclf.app")
# Characters Markdown would read as formatting (`_` in a regex turned it into italics).
MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$])")
# Parts of a library message shown as code: 'quoted' ones (patterns, names; not the ' of
# "don't") and absolute paths (/..., ~/...) up to trailing punctuation.
LITERAL = re.compile(r"(?<!\w)'(?P<quoted>[^'\n]+)'(?!\w)"
                     r"|(?<![\w/.~:])(?P<path>~?/[^\s'\"`]*[^\s'\"`.,;:)])")


def code(text: object) -> str:
    """`text` as an inline code span, whatever backticks it holds (patterns, paths, names)."""
    text = str(text)
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md(text: object) -> str:
    """A plain message (e.g. a library error) as Markdown that shows it literally.

    Its 'quoted' parts and paths become code. Quoted parts come from `{x!r}`,
    so their doubled backslashes are shown single, as the user typed them.
    """
    out, last = [], 0
    text = str(text)
    for m in LITERAL.finditer(text):
        out.append(MD_SPECIAL.sub(r"\\\1", text[last:m.start()]))
        out.append(code(m["quoted"].replace("\\\\", "\\")) if m["quoted"] else code(m["path"]))
        last = m.end()
    out.append(MD_SPECIAL.sub(r"\\\1", text[last:]))
    return "".join(out)


@contextlib.contextmanager
def guard(action: str = "") -> Iterator[None]:
    """Show library errors (and anything unexpected) as st.error instead of a traceback.

    The rest of the page keeps rendering after the `with` block.
    """
    try:
        yield
    except AudioclfError as exc:  # every library error: its message is written for people
        st.error(f"{action}: {md(exc)}" if action else md(exc), icon=":material/error:")
    except (OSError, ValueError) as exc:
        log.exception("error while %s", action or "rendering")
        st.error(f"{action or 'Error'}: {md(exc)}", icon=":material/error:")


def run_state_sentence(state: str, message: str = "") -> str:
    """A run's state as a sentence (Markdown), with the reason a run failed or stopped."""
    detail = (message or "").strip()
    if state == "failed":
        return f"This run failed: {md(detail)}" if detail else "This run failed."
    if state == "cancelled":
        said = detail.rstrip(".").lower() in ("", "cancelled")
        return "This run was cancelled." if said else f"This run was cancelled: {md(detail)}"
    if state == "done":
        return "This run finished."
    doing = {"queued": "waiting to start", "extracting": "extracting features"}.get(state, state)
    return f"This run is still {doing}."


def upload_limit_mb() -> int:
    """MB per uploaded file: server.maxUploadSize (.streamlit/config.toml), less in read-only mode.

    Pass it to every st.file_uploader (max_upload_size=): the browser then refuses a larger
    file with a message, and the server's guard (app_server.uploads) refuses it too.
    """
    from audioclf import limits

    limit = int(st.get_option("server.maxUploadSize"))
    return min(limit, max(1, limits.READONLY_UPLOAD_BYTES // limits.MB)) if read_only() else limit


@st.cache_resource(show_spinner="Preparing the demo data set (first start only)...")
def ensure_demo(home: str) -> str | None:
    """Synthesise the demo data set once per process and workspace; returns its name."""
    from audioclf.datasets import demo

    ds = demo.ensure_demo_dataset()
    return _name_of(ds)


def _name_of(ds) -> str:
    for attr in ("name",):
        if hasattr(ds, attr):
            return str(getattr(ds, attr))
    return Path(ds).name


def dataset_names() -> list[str]:
    """Names of the data sets in the workspace."""
    from audioclf import datasets

    return sorted(_name_of(d) for d in datasets.list_datasets())


def dataset_root(name: str) -> Path:
    from audioclf import workspace

    return workspace.datasets_dir() / name


def select_dataset(name: str) -> None:
    """Make `name` the chosen data set on the next rerun (call before st.rerun())."""
    st.session_state[PENDING_DATASET_KEY] = name


def dataset_sidebar() -> str | None:
    """The data set picker shown on every page; returns the chosen name."""
    from audioclf import workspace

    from audioclf.datasets import demo

    built_in = None
    with guard("Preparing the demo data set"):
        built_in = ensure_demo(str(workspace.home()))
    names = []
    with guard("Listing data sets"):
        names = dataset_names()
    pending = st.session_state.pop(PENDING_DATASET_KEY, None)
    if DATASET_KEY not in st.session_state and pending is None:
        pending = st.query_params.get(DATASET_PARAM)  # a new session: the URL's choice
    if pending in names:
        st.session_state[DATASET_KEY] = pending
    if st.session_state.get(DATASET_KEY) not in names:
        st.session_state.pop(DATASET_KEY, None)
    if not names:
        st.sidebar.info("No data set yet: create one on the Data page.")
        return None
    if built_in not in names or not demo.marked(dataset_root(built_in)):
        built_in = None  # deleted, or replaced by a user's own data set since the app started
    name = st.sidebar.selectbox(
        "Data set", names, key=DATASET_KEY,
        format_func=lambda n: f"{n} (built-in demo)" if n == built_in else n,
        help="Used by the Data, Explore and Train pages."
             + (f" '{built_in}' is the built-in demo: synthesised sounds of five kinds." if built_in else ""))
    if built_in and built_in != demo.DEMO_NAME and demo.DEMO_NAME in names:
        st.sidebar.caption(f"'{demo.DEMO_NAME}' is your own data set and is kept as it is; "
                           f"the built-in demo is '{built_in}'.")
    if st.query_params.get(DATASET_PARAM) != name:
        st.query_params[DATASET_PARAM] = name
    return name


def dataset_version(root: Path) -> float:
    """Changes whenever clips are added, moved or removed (cache key for summaries)."""
    stamps = [root.stat().st_mtime] if root.exists() else [0.0]
    stamps += [p.stat().st_mtime for p in root.iterdir() if p.is_dir()] if root.exists() else []
    return max(stamps)


@st.cache_data(show_spinner="Reading the data set...", max_entries=16)
def load_dataset_cached(root: str, version: float):
    """(Dataset, DatasetSummary) for a folder; `version` invalidates after edits."""
    from audioclf import datasets

    ds = datasets.load_dataset(root)
    return ds, datasets.summarize_dataset(ds)


def current_dataset(allow_empty: bool = False):
    """The chosen data set and its summary, or (None, None) with a message shown.

    With `allow_empty`, a data set folder without clips yet (just created) is
    returned as an empty Dataset so clips can be added to it.
    """
    from audioclf.audio import SUPPORTED_EXTENSIONS
    from audioclf.datasets import Dataset

    name = st.session_state.get(DATASET_KEY)
    if not name:
        st.info("Choose or create a data set in the sidebar / on the Data page.")
        return None, None
    root = dataset_root(name)
    if allow_empty and root.is_dir() and not any(
            p.suffix.lower() in SUPPORTED_EXTENSIONS for p in root.rglob("*")):
        return Dataset(name=name, root=root, items=[]), None
    with guard(f"Reading data set '{name}'"):
        return load_dataset_cached(str(root), dataset_version(root))
    return None, None


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def load_predictor(run_id: str, stamp: float):
    """A loaded Predictor per run (TensorFlow is imported here, on first use)."""
    from audioclf.inference import Predictor

    predictor = Predictor.load(run_id)
    freeze_loaded_objects()
    return predictor


def freeze_loaded_objects() -> None:
    """Put every object alive now (TensorFlow, Keras, a loaded model) out of the cyclic garbage
    collector's reach (gc.freeze); call it after loading something large.

    After every script and fragment run Streamlit collects garbage in full, once itself
    (runner.postScriptGC, off in .streamlit/config.toml) and once in Keras's clear_session,
    which it calls whenever keras is imported. With TensorFlow loaded each collection walked
    millions of objects holding the GIL, several times a second while Live redraws, and
    starved the event loop that also answers WebRTC: the browser dropped the stream. Frozen
    objects are still freed by reference counting; only garbage cycles among them stay.
    """
    gc.collect()
    gc.freeze()


def yamnet_reason() -> str:
    """Why YAMNet cannot be used here ("" when a model is available)."""
    from audioclf.features import yamnet

    return yamnet.availability() or ""


def feature_note(kind: str, yamnet_missing: str, eat_missing: str) -> str:
    """What a feature picker (Train, Tune) adds to a type that cannot run here as it stands."""
    if kind == "yamnet" and yamnet_missing:
        return " · not set up here"
    if kind == "efficientat" and eat_missing:
        return " · not on this machine"
    return ""


def fmt_seconds(seconds: float | None) -> str:
    """`75.2` -> `1:15`; None -> `-`."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def expand(up, label: str, tmp: str | Path) -> list[tuple[str, str, bytes | Path]]:
    """(label, filename, source) for an uploaded file: its bytes; for a zip, one entry per
    audio member, unpacked on disk inside `tmp` (a folder the caller removes afterwards).

    Members inside a folder take the folder's name as label (a zip of class folders);
    loose members take `label`. Unzipping is the library's unpack_audio (no path
    traversal, no zip bombs, limits per member and in total, members streamed to disk).
    """
    if not up.name.lower().endswith(".zip"):
        return [(label, up.name, up.getvalue())]
    from audioclf.datasets import safe_name, unpack_audio

    folder = Path(tempfile.mkdtemp(dir=tmp, prefix="zip-"))
    archive = folder / (safe_name(Path(up.name).name) or "upload.zip")
    up.seek(0)
    with open(archive, "wb") as out:
        shutil.copyfileobj(up, out)
    try:
        members = unpack_audio(archive, folder / "members", label)
    except AudioclfError as exc:  # name the file as the user knows it, not its copy in a temp folder
        said = str(exc).replace(str(archive), up.name).replace(archive.name, up.name)
        raise type(exc)(said.replace(str(folder), "the upload's folder")) from None
    finally:
        archive.unlink(missing_ok=True)
    return [(member_label, path.name, path) for member_label, path in members]


def read_only() -> bool:
    """True in read-only mode (a shared demo): pages then offer no training, deleting or editing."""
    from audioclf import workspace

    return workspace.read_only()


def remember_pick(key: str, run_id: str) -> None:
    """Record `run_id` as the run chosen in the picker `key` for the sidebar's data set."""
    st.session_state.setdefault(PICKS_KEY, {})[key] = (st.session_state.get(DATASET_KEY), run_id)


def describe_run(r) -> str:
    """A run as a picker shows it: id, name, model and features, the score it is ranked by."""
    from audioclf.training import runs

    ranked = runs.headline_score(r)
    score = (("val" if ranked[0] == "val" else "no validation, test") + f" macro F1 {ranked[1]:.3f}"
             if ranked else "no scores")
    return f"{r.id} {r.name}  ({r.model}/{r.features}, {score})"


def preselect(key: str, ids: list[str]) -> None:
    """Set the run picker `key` (options `ids`) to what it should show before it renders.

    That is the run last picked in it for the sidebar's data set (`remember_pick`), else
    that data set's best run, else the best of all, else the first. The picker's state is
    set rather than an index passed: a browser sends back the value it shows with its
    next rerun, so a changed index (another data set chosen) was undone.
    """
    from audioclf.training import runs

    dataset = st.session_state.get(DATASET_KEY)
    picked = st.session_state.get(PICKS_KEY, {}).get(key)
    if picked and picked[0] == dataset and picked[1] in ids:
        wanted = picked[1]
    else:
        best = (runs.best_run(dataset_root(dataset)) if dataset else None) or runs.best_run()
        wanted = best.id if best and best.id in ids else ids[0]
    if st.session_state.get(key) != wanted:
        st.session_state[key] = wanted


def choose_run(key: str, label: str = "Model (run)"):
    """A selectbox of finished runs; None if there is none.

    It shows the run last picked in it for the sidebar's data set, else the best run
    of that data set (`runs.best_run`), else the best of all. A pick on another page
    (Runs included) does not move it: each page shows what is best until its user
    picks there.
    """
    from audioclf.training import runs

    done = []
    with guard("Listing runs"):
        done = [r for r in runs.list_runs() if r.state == "done"]
    if not done:
        return None
    ids = [r.id for r in done]
    from app_pages.correct import apply_pending_run

    apply_pending_run(key)  # a retrain just made a new run: select it
    preselect(key, ids)
    names = {r.id: describe_run(r) for r in done}
    run_id = st.selectbox(label, ids, format_func=names.get, key=key,
                          on_change=lambda: remember_pick(key, st.session_state[key]),
                          help="The best run of the sidebar's data set is preselected (validation "
                               "macro F1, else test), until you pick another here.")
    return run_id


def predictor_for(run_id: str):
    """The loaded Predictor of a run, reloaded when its model file changes."""
    from audioclf.training import runs

    model = runs.run_dir(run_id) / runs.MODEL
    return load_predictor(run_id, model.stat().st_mtime if model.is_file() else 0.0)


def plural(n: int, word: str) -> str:
    """'1 class', '6 clips': a count with its noun in the right number."""
    return f"{n} {word if n == 1 else word + ('es' if word.endswith(('s', 'sh', 'ch')) else 's')}"
