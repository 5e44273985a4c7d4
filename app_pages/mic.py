"""The live microphone panel shared by the Live and Present pages (not a page itself).

The browser sends the microphone over WebRTC (streamlit-webrtc, its aiortc
backend); each batch of audio frames is pushed, without waiting, into an
`audioclf.inference.LiveSession` kept in the user's session, which labels it on a
thread of its own. While the stream plays, one small fragment redraws the big
label every REFRESH s and another the rolling probability chart and the event
log every DETAILS_REFRESH s (each redraw is a rerun on the server, which also
answers WebRTC). All classification logic is in the library.
"""
from __future__ import annotations

import html
import json
import logging
import os

import numpy as np
import pandas as pd
import streamlit as st

from app_pages.common import freeze_loaded_objects
from audioclf.inference import LiveSession, live
from audioclf.inference.confidence import UNKNOWN, UNKNOWN_TEXT, threshold_info, threshold_text

REFRESH = 0.25  # s between redraws of the live label: adds REFRESH / 2 on average to its latency
DETAILS_REFRESH = 1.0  # s between redraws of the chart and the event log
ENV_ICE = "AUDIOCLF_ICE_SERVERS"  # JSON list of ICE servers for a browser on another network
CHART_SECONDS = 30  # the rolling chart shows this much of the stream
EVENTS_SHOWN = 20
# The microphone as it is, not as a call wants it: browsers default to echo cancellation, noise
# suppression and automatic gain, which treat a steady sound (a siren, an engine, rain) as noise
# and turn it down or reshape it over seconds, so the model would hear what its clips never held.
MEDIA_CONSTRAINTS = {"audio": {"echoCancellation": False, "noiseSuppression": False,
                               "autoGainControl": False}, "video": False}
COLOURS = {live.SILENCE: "#9e9e9e", UNKNOWN: "#9e9e9e"}

log = logging.getLogger("audioclf.app")


def ice_servers() -> list:
    """ICE servers for WebRTC: none by default (same machine or network, no internet needed).

    Without this, streamlit-webrtc would ask public STUN servers; a browser on
    another network can be given STUN/TURN servers in $AUDIOCLF_ICE_SERVERS.
    """
    raw = os.environ.get(ENV_ICE, "").strip()
    if not raw:
        return []
    try:
        servers = json.loads(raw)
    except ValueError:
        log.warning("%s is not JSON; using no ICE servers", ENV_ICE)
        return []
    return servers if isinstance(servers, list) else []


def frame_pcm(frame) -> tuple[np.ndarray, int, int]:
    """(samples, rate, channels) of an av.AudioFrame: planar formats give (channels, n)."""
    pcm = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        return pcm.reshape(channels, -1), frame.sample_rate, channels
    return pcm.reshape(-1), frame.sample_rate, channels


def webrtc_problem() -> str:
    """Why the microphone component cannot run here ("" when it can)."""
    try:
        from streamlit_webrtc.session_info import get_this_session_info
    except ImportError:
        return "The live microphone needs streamlit-webrtc: `pip install -r requirements.txt`."
    try:
        get_this_session_info()  # the server's session; absent in a bare or simulated run
    except Exception:  # noqa: BLE001 - AttributeError/RuntimeError depending on how it is run
        return "The live microphone needs the app served to a browser (`streamlit run app.py`)."
    return ""


def _session(key: str, predictor, window: float, hop: float, threshold: float) -> LiveSession:
    """This user's LiveSession for these settings (a new one when they change)."""
    settings = (predictor.run_id, window, hop, threshold)
    state = st.session_state.get(key)
    if state and state[0] == settings:
        return state[1]
    if state:
        state[1].stop()
    classifier = live.LiveClassifier(predictor, window=window, hop=hop, threshold=threshold)
    with st.spinner("Preparing the model for live audio..."):
        classifier.warm_up()
    freeze_loaded_objects()  # the warm-up built YAMNet's and the model's graphs
    session = LiveSession(classifier)
    st.session_state[key] = (settings, session)
    return session


def _offer(key: str) -> tuple:
    """(the component's value, the SDP of the browser's pending offer or None)."""
    from streamlit_webrtc import component as swc

    value = st.session_state.get(swc.generate_frontend_component_key(key)) or {}
    offer = (value.get("sdpOffer") or {}).get("sdp") if hasattr(value, "get") else None
    return value, offer


def _stale_worker(key: str) -> None:
    """Drop this component's server-side WebRTC worker when the browser has offered a new stream.

    streamlit-webrtc makes a worker only when none exists. When the browser ends a
    stream by itself (chromium reports the connection "disconnected" when the server
    answers late, as on a loaded machine) and Start is pressed again before a rerun has
    seen the stream stop, the old worker is still there: the new offer was never
    answered and the press stayed "connecting" for good (issue 21). The offer a worker
    was made for is remembered (`key`_offer); a different offer replaces the worker.
    """
    from streamlit_webrtc import component as swc

    mark = f"{key}_offer"
    context = st.session_state.get(key)
    if context is None or context._get_worker() is None:
        st.session_state.pop(mark, None)
        return
    value, offer = _offer(key)
    if offer and st.session_state.get(mark) and offer != st.session_state[mark]:
        log.info("a new WebRTC offer while the last stream's worker runs: replacing it")
        swc._reset_context(context)
        context._set_state(swc.compile_state(value))
        st.session_state.pop(mark, None)


def _remember_offer(key: str, ctx) -> None:
    """Remember the offer this component's worker answers (see _stale_worker)."""
    mark = f"{key}_offer"
    if ctx._get_worker() is None:
        st.session_state.pop(mark, None)
        return
    offer = _offer(key)[1]
    if offer and mark not in st.session_state:
        st.session_state[mark] = offer


def big_label(p, *, size: str = "4.5rem", state: str = "live", note: str = "") -> None:
    """A label, large, with its confidence; `state` (live, paused, stopped, waiting, idle) is also
    the element's data-state. A paused or stopped label is the last one heard, dimmed, with `note`
    saying when."""
    opacity = "0.45" if state in ("paused", "stopped") else "1"
    if state == "idle":
        text, sub, colour, size = "Press Start listening", "then allow the microphone: what it hears is " \
            "labelled here", "#9e9e9e", "2rem"
    elif p is None:
        text, sub, colour = "listening...", "the first label comes once a window of audio has arrived", "#9e9e9e"
    elif p.label == live.SILENCE:
        text, sub, colour = "silence", "no sound in the window", COLOURS[live.SILENCE]
    elif p.label == UNKNOWN:
        text, sub, colour = UNKNOWN, f"{UNKNOWN_TEXT} (likeliest {p.likeliest or p.top_label}, {p.confidence:.0%})", \
            COLOURS[UNKNOWN]
    else:
        text, sub, colour = p.label, f"{p.confidence:.0%} confident", "inherit"
    if note:
        sub = f"{note} ({sub})" if sub else note
    st.markdown(
        f'<div data-testid="live-label" data-state="{state}" style="font-size:{size};font-weight:700;'
        f'line-height:1.1;color:{colour};opacity:{opacity}">{html.escape(text)}</div>'
        f'<div style="font-size:1.3rem;opacity:0.8">{html.escape(sub)}</div>',
        unsafe_allow_html=True)


def show_label(snap, *, playing: bool = True, compact: bool = False) -> None:
    """The newest label of a LiveSnapshot, large (or why classification stopped).

    Once a label was shown it stays, marked as the last one heard, while the stream
    pauses, after Stop and while a new stream fills its first window: a label that
    vanished ("listening..." again) reads as the stream or the model having failed.
    """
    if snap.error:
        st.error(f"Live classification stopped: {snap.error}", icon=":material/error:")
    size = "3.5rem" if compact else "4.5rem"
    if snap.last is None:
        big_label(None, size=size, state="waiting" if playing else "idle")
    elif playing and not snap.stale:
        big_label(snap.last, size=size)
    else:  # paused: this stream's, late; stopped: after Stop, or an earlier stream's
        ago = f"last heard {snap.last_age:.0f} s ago" if snap.last_age >= 1 else "last heard just now"
        if playing and snap.last_current:
            big_label(snap.last, size=size, state="paused", note=f"{ago}; waiting for audio")
        else:
            big_label(snap.last, size=size, state="stopped",
                      note=f"{ago}; " + ("waiting for this stream's first label" if playing else "stopped"))


def show_details(snap, labels: tuple[str, ...], *, compact: bool = False) -> None:
    """Rolling probabilities, timing and (unless compact) the event log of a LiveSnapshot."""
    if snap.history:
        recent = [p for p in snap.history if p.time >= snap.history[-1].time - CHART_SECONDS]
        df = pd.DataFrame(np.array([p.probs for p in recent]), columns=list(labels),
                          index=pd.Index([round(p.time, 2) for p in recent], name="stream time (s)"))
        st.line_chart(df, height=220 if compact else 280, y_label="probability")
        lat = snap.latency
        st.caption(f"Stream {snap.stream_seconds:.1f} s; a label every {snap.hop_seconds:.2f} s over the "
                   f"last {snap.window_seconds:.2f} s"
                   + (f"; processing {lat['median'] * 1000:.0f} ms median, {lat['p95'] * 1000:.0f} ms p95"
                      if lat else "")
                   + (f"; {snap.skipped} window(s) skipped to keep up" if snap.skipped else "")
                   + (f"; {snap.dropped_seconds:.1f} s of microphone audio dropped unheard: the server "
                      "fell behind" if snap.dropped_seconds else ""))
    if not compact:
        st.markdown("**Detected events**")
        if snap.events:
            rows = [{"class": e.label, "from (s)": round(e.start, 1), "to (s)": round(e.end, 1),
                     "peak confidence": f"{e.peak:.0%}"} for e in reversed(snap.events[-EVENTS_SHOWN:])]
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        else:
            st.caption("None yet: a class appears here when a window is given it.")


def correct_events(session: LiveSession, predictor, key: str) -> None:
    """"Wrong? This is ..." for a detected event whose audio is still held (the last
    live.KEEP_SECONDS of the stream, in memory only)."""
    from app_pages.correct import allowed, wrong_control

    if not allowed():
        return
    snap = session.snapshot()
    held = {f"{e.start:.1f}-{e.end:.1f} s: {e.label}": e for e in reversed(snap.events[-EVENTS_SHOWN:])
            if session.recent_audio(e.start, e.end) is not None}
    c = st.columns([4, 1], vertical_alignment="bottom")
    c[1].button("Refresh", key=f"{key}_fix_refresh", icon=":material/refresh:",
                help="List the newest events")
    if not held:
        c[0].caption(f"Events of the last {live.KEEP_SECONDS:.0f} s can be corrected here.")
        return
    name = c[0].selectbox("Correct a detected event", list(held), key=f"{key}_fix_event")
    event = held[name]
    clip = session.recent_audio(event.start, event.end)
    if clip is None:  # dropped out of memory since the list was made
        st.caption("That event is no longer held; refresh the list.")
        return
    st.audio(clip.samples, sample_rate=clip.sr)
    wrong_control(predictor.run_id, f"{key}_fix", predictor.labels, predicted=event.label, source=clip)


def live_panel(predictor, key: str, *, compact: bool = False, threshold: float | None = None) -> None:
    """Window/hop settings, the microphone component (start/stop) and the live display.

    Parameters
    ----------
    predictor : audioclf.inference.predict.Predictor
        The run to classify with.
    key : str
        Widget and session key prefix (one panel per key).
    compact : bool
        Presentation layout: settings folded away, no event table.
    threshold : float or None
        The "not sure" threshold; None = the run's suggestion.
    """
    problem = webrtc_problem()
    if problem:
        st.info(problem, icon=":material/mic_off:")
        return
    from streamlit_webrtc import WebRtcMode, create_audio_sink_track, webrtc_streamer

    box = st.expander("Live settings") if compact else st.container()
    with box:
        c = st.columns(2)
        window = c[0].slider("Window (s of audio behind each label)", live.MIN_WINDOW, live.MAX_WINDOW,
                             live.LIVE_WINDOW_SECONDS, 0.1, key=f"{key}_window",
                             help="YAMNet runs use whole 0.975 s frames, EfficientAT runs whole 0.32 s steps.")
        hop = c[1].slider("A new label every (s)", 0.2, live.MAX_HOP, live.LIVE_HOP_SECONDS, 0.1,
                          key=f"{key}_hop",
                          help="YAMNet runs use multiples of YAMNet's 0.48 s frame hop.")
    if threshold is None:
        threshold = predictor.suggested_live_threshold or predictor.suggested_threshold or 0.0
        if predictor.run_id and not compact:
            st.caption(threshold_text(threshold_info(predictor.run_id, live=True)))
    session = _session(f"{key}_session", predictor, window, hop, threshold)

    def on_frame(frame) -> None:
        # Runs on aiortc's event loop for every 20 ms frame: only queue it, never wait for the model.
        session.push(*frame_pcm(frame))

    _stale_worker(f"{key}_webrtc")  # before the sink: a replaced worker takes its sink with it
    sink = create_audio_sink_track(on_frame, key=f"{key}_sink")
    ctx = webrtc_streamer(
        key=f"{key}_webrtc", mode=WebRtcMode.SENDONLY, rtc_configuration={"iceServers": ice_servers()},
        media_stream_constraints=MEDIA_CONSTRAINTS, sink_audio_track=sink,
        translations={"start": "Start listening", "stop": "Stop"})
    _remember_offer(f"{key}_webrtc", ctx)
    playing = bool(ctx.state.playing)
    was = st.session_state.get(f"{key}_was_playing", False)
    if playing and not was:
        session.reset()  # a new stream starts at time 0 with an empty log
    st.session_state[f"{key}_was_playing"] = playing
    if not playing:
        st.caption(f"Once listening, a label appears every {hop:g} s. Nothing is stored: the last "
                   f"{live.KEEP_SECONDS:.0f} s stay in memory so that a wrong answer can be corrected.")

    def label() -> None:
        show_label(session.snapshot(), playing=playing, compact=compact)

    def details() -> None:
        show_details(session.snapshot(), predictor.labels, compact=compact)

    st.fragment(label, run_every=REFRESH if playing else None)()
    st.fragment(details, run_every=DETAILS_REFRESH if playing else None)()
    st.fragment(lambda: correct_events(session, predictor, key))()
