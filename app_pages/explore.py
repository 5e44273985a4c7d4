"""Explore: look at one clip (or two side by side) through every feature audioclf computes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from audioclf import limits
from audioclf.audio import load_audio
from audioclf.insight import plotting
from app_pages import efficientat_panel
from app_pages.common import code, current_dataset, guard, md, upload_limit_mb

RATES = {"native": None, "8000 Hz": 8000, "16000 Hz": 16000, "22050 Hz": 22050, "44100 Hz": 44100}
N_FFTS = (256, 512, 1024, 2048, 4096)
HOPS = (64, 128, 256, 512, 1024)
SOURCES = ("Data set", "Upload", "Record")
TOP_K = 8
AUDIO_FORMATS = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
                 ".oga": "audio/ogg"}
FIGURES = {
    "Waveform": "waveform",
    "Spectrogram (dB)": "spec",
    "Mel spectrogram (dB)": "mel",
    "MFCC": "mfcc",
    "Centroid and roll-off": "overlay",
    "ZCR and RMS": "zcr",
    "Chroma": "chroma",
}


@dataclass(frozen=True)
class Settings:
    sr: int | None
    n_fft: int
    hop_length: int
    n_mfcc: int
    n_mels: int


@st.cache_data(show_spinner="Computing features...", max_entries=limits.APP_CACHE_ENTRIES)
def analyse(source: str | bytes, name: str, s: Settings):
    """Every figure's arrays for one clip and one set of settings, reduced to figure size
    (a few MB whatever the clip's length: all sessions share this cache)."""
    from audioclf.insight.analysis import analyse_clip

    return analyse_clip(source, sr=s.sr, n_fft=s.n_fft, hop_length=s.hop_length, n_mfcc=s.n_mfcc,
                        n_mels=s.n_mels, name=name)


@st.cache_data(show_spinner="Asking YAMNet...", max_entries=limits.APP_CACHE_ENTRIES)
def yamnet_top(source: str | bytes, name: str, k: int = TOP_K) -> list[tuple[str, float]]:
    """YAMNet's top AudioSet classes for a clip (averaged over its 0.96 s windows)."""
    from audioclf.features import YAMNetConfig, extract
    from audioclf.features.yamnet import SAMPLE_RATE, top_classes

    feats = extract(load_audio(source, sr=SAMPLE_RATE, name=name), YAMNetConfig())
    return top_classes(feats.scores, k)


def figure(kind: str, a):
    """One plotly figure from `analyse`'s arrays."""
    if kind == "waveform":
        return plotting.waveform_envelope(*a.envelope)
    if kind == "spec":
        return plotting.spectrogram(a.spec.values, a.sr, a.heat_hop, freqs=a.spec.freqs)
    if kind == "mel":
        return plotting.spectrogram(a.mel.values, a.sr, a.heat_hop, freqs=a.mel.freqs, mel=True)
    if kind == "mfcc":
        return plotting.mfcc(a.mfcc, a.sr, a.heat_hop)
    if kind == "overlay":
        return plotting.spectral_overlay(a.spec.values, a.sr, a.heat_hop, a.centroid, a.rolloff,
                                         freqs=a.spec.freqs)
    if kind == "zcr":
        return plotting.zcr_rms(a.zcr, a.rms, a.sr, a.line_hop)
    return plotting.chroma(a.chroma, a.sr, a.heat_hop)


def settings_form() -> Settings:
    with st.sidebar:
        st.subheader("Analysis settings")
        rate = st.selectbox("Sample rate", list(RATES), index=0, key="ex_sr",
                            help="Resample the clip before analysis; 'native' keeps the file's rate.")
        n_fft = st.select_slider("n_fft (window, samples)", N_FFTS, value=1024, key="ex_nfft")
        hop = st.select_slider("Hop length (samples)", HOPS, value=256, key="ex_hop")
        n_mels = st.slider("n_mels", 16, 256, 128, step=8, key="ex_nmels")
        n_mfcc = st.slider("n_mfcc", 5, 40, 20, key="ex_nmfcc")
    if hop > n_fft:
        st.sidebar.warning(f"Hop {hop} > n_fft {n_fft}: using hop = n_fft.")
        hop = n_fft
    return Settings(RATES[rate], n_fft, hop, min(n_mfcc, n_mels), n_mels)


def pick_clip(key: str, default_index: int = 0) -> tuple[str | bytes, str] | None:
    """(source, name) of the clip chosen from the data set, an upload or a recording."""
    source = st.radio("Clip from", SOURCES, horizontal=True, key=f"{key}_src")
    if source == "Upload":
        up = st.file_uploader(f"Audio file (WAV, FLAC, OGG, MP3; up to {upload_limit_mb()} MB)",
                              type=["wav", "flac", "ogg", "oga", "mp3"], key=f"{key}_up",
                              max_upload_size=upload_limit_mb())
        return (up.getvalue(), up.name) if up else None
    if source == "Record":
        rec = st.audio_input("Record a clip", key=f"{key}_rec")
        return (rec.getvalue(), "recording.wav") if rec else None
    ds, _ = current_dataset()
    if ds is None or not ds.items:
        st.info("This data set has no clips yet: add some on the Data page, or upload one here.")
        return None
    labels = ds.labels
    label = st.selectbox("Class", labels, key=f"{key}_label",
                         index=min(default_index, len(labels) - 1))
    items = [it for it in ds.items if it.label == label]
    names = [it.path.name for it in items]
    name = st.selectbox("Clip", names, key=f"{key}_clip")
    item = items[names.index(name)] if name in names else items[0]
    return str(item.path), item.path.name


def show_clip(choice: tuple[str | bytes, str], s: Settings, kinds: list[str], slot: str):
    """Player, facts and the chosen figures for one clip."""
    source, name = choice
    a = None
    with guard(f"Could not analyse '{name}'"):
        a = analyse(source, name, s)
    if a is None:
        return None
    # The file itself plays (as uploaded): the analysed samples of a long clip would be
    # sent to the browser again, uncompressed, for every rerun.
    st.audio(source, format=AUDIO_FORMATS.get(Path(name).suffix.lower(), "audio/wav"))
    st.caption(f"{code(name)} · {a.duration:.2f} s · {a.sr} Hz · "
               f"{a.frames} frames of {a.n_fft} samples, hop {a.hop_length}")
    if a.note:
        st.info(a.note, icon=":material/memory:")
    if a.silent:
        st.warning("This clip is silent (nothing above -60 dBFS): features will be flat.")
    for kind in kinds:
        st.plotly_chart(figure(kind, a), key=f"fig_{slot}_{kind}")
    return a


def show_yamnet(choice: tuple[str | bytes, str]) -> None:
    from audioclf.features import yamnet

    source, name = choice
    spec = yamnet.resolve_spec()
    if spec.startswith(("http://", "https://")):
        st.info(md(yamnet.NOT_SET_UP + yamnet.how_to_provide()))
        if not st.button("Try downloading it from TF Hub", key="yamnet_hub"):
            return
    top = None
    try:
        top = yamnet_top(source, name)
    except yamnet.YAMNetUnavailable as exc:
        st.info(md(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. no internet for TF Hub: say so, keep the page
        st.error(f"YAMNet could not run: {md(exc)}")
    if top:
        st.plotly_chart(plotting.top_class_bars([n for n, _ in top], [v for _, v in top]),
                        key=f"yamnet_{name}")


st.title("Explore")
st.caption("Listen to a clip and see how audioclf's features describe it. "
           "Change the analysis settings in the sidebar.")
settings = settings_form()
compare = st.toggle("Compare two clips side by side", key="ex_compare")

# Clip A's picker sits in the same place in both modes: a widget that moves to another
# spot is remounted by the browser, and a remounted recorder shows "An error has occurred".
pickers = st.columns(2)
with pickers[0]:
    st.subheader("Clip A" if compare else "Clip")
    choice = pick_clip("a")
if compare:
    with pickers[1]:
        st.subheader("Clip B")
        choice_b = pick_clip("b", default_index=1)
    shown = st.multiselect("Figures", list(FIGURES), default=["Waveform", "Mel spectrogram (dB)", "MFCC"],
                           key="ex_figs")
    kinds = [FIGURES[f] for f in shown]
    cols = st.columns(2)
    shown_clips = {}
    for slot, col, picked in (("a", cols[0], choice), ("b", cols[1], choice_b)):
        with col:
            if picked is not None and (a := show_clip(picked, settings, [], slot)) is not None:
                shown_clips[slot] = (col, a)
    for kind in kinds:  # one colour scale per figure for both clips: their colours compare
        figs = {slot: figure(kind, a) for slot, (_, a) in shown_clips.items()}
        plotting.share_colour_scale(list(figs.values()))
        for slot, fig in figs.items():
            shown_clips[slot][0].plotly_chart(fig, key=f"fig_{slot}_{kind}")
elif choice is not None:
    left, right = st.columns(2)
    order = list(FIGURES.values())
    a = None
    with left:
        a = show_clip(choice, settings, order[0::2], "l")
    with right:
        if a is not None:
            for kind in order[1::2]:
                st.plotly_chart(figure(kind, a), key=f"fig_r_{kind}")
            st.subheader("What YAMNet hears")
            st.caption("Top AudioSet classes of the pretrained YAMNet model, averaged over the clip.")
            show_yamnet(choice)
            st.subheader("What EfficientAT hears")
            st.caption("Top AudioSet classes of the pretrained EfficientAT model for the whole clip, and how "
                       "strongly it hears each of them every 0.32 s.")
            efficientat_panel.show_hears(choice)
