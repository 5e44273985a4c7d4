"""EfficientAT in the app: the checkpoint picker with why it cannot run (Train), and what it hears (Explore)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from audioclf.audio import load_audio
from audioclf.insight import plotting
from app_pages.common import guard, md

TOP_K = 8


def reason(model: str = "") -> str:
    """Why EfficientAT ``model`` cannot be used here ("" when its weights are on this machine)."""
    from audioclf.features import efficientat

    return efficientat.availability(model) or ""


def label(name: str) -> str:
    """A checkpoint as a picker shows it: its AudioSet mAP, and whether it is on this machine."""
    from audioclf.features import efficientat

    ckpt = efficientat.CHECKPOINTS.get(name)
    if ckpt is None:
        return name or f"{efficientat.DEFAULT_MODEL} (default)"
    here = "" if not reason(name) else ", not on this machine"
    return f"{name} (AudioSet mAP {ckpt.audioset_map:.3f}{here})"


def choose_model(col, key: str = "tr_eat_model") -> tuple[str, str]:
    """The checkpoint picker (outside any form, so the reason follows the choice): (model, reason)."""
    from audioclf.features import efficientat

    names = list(efficientat.CHECKPOINTS)
    if key not in st.session_state:
        st.session_state[key] = efficientat.DEFAULT_MODEL
    if st.session_state[key] not in names:  # a preset's .pt path, or "" (the default resolution)
        names.insert(0, st.session_state[key])
    model = col.selectbox("EfficientAT model", names, key=key, format_func=label,
                          help="Wider models hear better (higher AudioSet mAP) and cost more per clip; "
                               "mn04_as is small (4 MB) and fast on a CPU.")
    why = reason(model)
    if why:
        st.warning(md(why), icon=":material/block:")
        offer_download(model, key=f"{key}_download")
    return model, why


def offer_download(model: str, key: str) -> None:
    """A button that downloads an official checkpoint once (checksum verified), when that is what is missing."""
    from audioclf.features import efficientat
    from audioclf.features.efficientat import weights

    if model and model not in efficientat.CHECKPOINTS:
        return
    try:
        if weights.local_checkpoint(model) is not None:
            return
    except efficientat.EfficientATUnavailable:
        return  # a $AUDIOCLF_EFFICIENTAT that does not exist: the message says so; a download would not be used
    name = model or efficientat.DEFAULT_MODEL
    if st.button(f"Download {name} from the EfficientAT release", key=key, icon=":material/download:"):
        with guard("Downloading EfficientAT"), st.spinner(f"Downloading {name}..."):
            efficientat.download_checkpoint(name)
            st.rerun()


@st.cache_data(show_spinner="Asking EfficientAT...", max_entries=32)
def hears(source: str | bytes, name: str, k: int = TOP_K) -> dict:
    """The clip's top AudioSet classes (the network's clip probabilities) and their scores every 0.32 s."""
    from audioclf.features import EfficientATConfig, extract
    from audioclf.features.efficientat import audioset_labels
    from audioclf.features.efficientat.features import clip_probabilities

    from audioclf import limits
    from audioclf.audio import probe, stream_pieces
    from audioclf.features import target_rate

    cfg = EfficientATConfig(model="")
    if probe(source, name=name).duration <= limits.PREDICT_WHOLE_MAX_SECONDS:
        feats = extract(load_audio(source, name=name), cfg)
        probs, times, scores = clip_probabilities(feats), feats.times, feats.scores
    else:
        # Like Predict: a long clip a piece at a time (the network over a whole 10-minute
        # clip held most of a GB); the clip's classes are the pieces' mean, by their length.
        times, scores, parts, weights = [], [], [], []
        for start, piece, _ in stream_pieces(source, target_rate(cfg), limits.PREDICT_PIECE_SECONDS, name=name):
            feats = extract(piece, cfg)
            times.append(start + np.asarray(feats.times, np.float32))
            scores.append(np.asarray(feats.scores, np.float32))
            parts.append(clip_probabilities(feats))
            weights.append(piece.duration)
            del feats, piece  # before the next piece is decoded
        probs = np.average(np.stack(parts), axis=0, weights=weights)
        times, scores = np.concatenate(times), np.concatenate(scores)
    order = probs.argsort()[::-1][:k]
    names = audioset_labels()
    return {"names": [names[i] for i in order], "probs": [float(probs[i]) for i in order],
            "times": times, "scores": scores[:, order]}


def show_hears(choice: tuple[str | bytes, str]) -> None:
    """Explore's panel: EfficientAT's top classes for the clip, and when it hears them."""
    from audioclf.features import efficientat

    source, name = choice
    why = reason()
    if why:
        st.info(md(why))
        offer_download("", key="ex_eat_download")
        return
    got = None
    try:
        got = hears(source, name)
    except efficientat.EfficientATUnavailable as exc:
        st.info(md(exc))
    except Exception as exc:  # noqa: BLE001 - a broken checkpoint file: say so, keep the page
        st.error(f"EfficientAT could not run: {md(exc)}")
    if got:
        st.plotly_chart(plotting.top_class_bars(got["names"], got["probs"], title="EfficientAT: top AudioSet classes"),
                        key=f"eat_top_{name}")
        st.plotly_chart(plotting.classes_over_time(got["times"], got["scores"], got["names"],
                                                   title="EfficientAT: the same classes every 0.32 s"),
                        key=f"eat_time_{name}")
