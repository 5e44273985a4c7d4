"""Live classification (audioclf.inference.live): real runs, real audio streamed in browser-sized blocks."""
from __future__ import annotations

import time

import numpy as np
import pytest

from audioclf.audio import AudioError, Clip
from audioclf.datasets import synth_clip
from audioclf.datasets.demo import CLASSES
from audioclf.inference import LiveClassifier, LiveError, LiveSession, to_mono_float
from audioclf.inference.confidence import UNKNOWN
from audioclf.inference.live import SILENCE

RATE = 48000


def demo_audio(label: str, sr: int = 16000, seed: int = 99) -> np.ndarray:
    """A fresh demo clip of `label` (not one the run trained on)."""
    return synth_clip(label, np.random.default_rng([seed, CLASSES.index(label)]), sr)


def as_browser_pcm(y: np.ndarray) -> np.ndarray:
    """Float mono -> interleaved int16 stereo, as a WebRTC audio track delivers it."""
    return np.repeat((np.clip(y, -1, 1) * 32767).astype(np.int16), 2)


def feed_blocks(live: LiveClassifier, pcm: np.ndarray, sr: int, block: int, channels: int = 1) -> list:
    out = []
    step = block * channels
    for i in range(0, len(pcm), step):
        out += live.feed(pcm[i:i + step], sr, channels=channels)
    return out


@pytest.fixture(scope="module")
def yam(demo_run):
    from audioclf.inference import Predictor

    return Predictor.load(demo_run)


@pytest.fixture(scope="module")
def mfcc(trained_run):
    from audioclf.inference import Predictor

    return Predictor.load(trained_run)


def test_browser_stream_gets_each_class_and_events_in_order(yam):
    live = LiveClassifier(yam, window=1.5, hop=0.5, threshold=0.0)
    labels = ["siren", "dial_tone", "rain"]
    y = np.concatenate([np.resize(demo_audio(lab, RATE), 4 * RATE) for lab in labels])  # 4 s each, looped
    preds = feed_blocks(live, as_browser_pcm(y), RATE, 960, channels=2)
    assert live.sample_rate == 16000 and live.hop_seconds == pytest.approx(0.48)
    assert live.window_seconds == pytest.approx((15600 + 7680) / 16000)  # two whole YAMNet frames
    assert len(preds) == pytest.approx(12 / 0.48 - 2, abs=2)
    times = [p.time for p in preds]
    assert times == sorted(times) and np.allclose(np.diff(times), 0.48)
    # Mid-clip windows hold one sound only: each gets its class.
    for i, lab in enumerate(labels):
        mid = [p for p in preds if 4 * i + 1.6 <= p.time <= 4 * i + 3.0]
        assert mid and all(p.label == lab for p in mid), [(p.time, p.label) for p in mid]
    assert [e.label for e in live.events if e.windows >= 2] == labels, ([e.to_dict() for e in live.events], [(round(p.time,2), p.label, round(p.confidence,2)) for p in preds])
    assert all(e.start < e.end for e in live.events)
    assert all(p.latency < 5 for p in preds)


def one_frame_windows(yam, y: np.ndarray, steady: int) -> list:
    """Labels of `y` (16 kHz) in windows of one YAMNet frame, two frame hops apart: the windows
    barely overlap, so a piece of audio laid on one window is heard by that window alone."""
    live = LiveClassifier(yam, window=0.975, hop=0.96, threshold=0.0, steady=steady)
    assert (live.window_seconds, live.hop_seconds) == (0.975, 0.96)
    return feed_blocks(live, y, 16000, 320)


def siren_with(other: str, windows: list[int], n: int = 14) -> np.ndarray:
    """A siren of `n` one-frame windows (see one_frame_windows) whose `windows` hold `other` instead."""
    step, win = 15360, 15600  # the windows' hop and length in samples at 16 kHz
    y = np.resize(demo_audio("siren"), n * step + win).copy()
    z = np.resize(demo_audio(other), y.size)
    for k in windows:
        y[k * step:k * step + win] = z[k * step:k * step + win]
    return y


def test_one_odd_window_does_not_flip_the_label(yam):
    """Issue 21: a short window of a steady sound is now and then heard as another class (the
    fake microphone's clean siren as clock_ticks or rain, with the audio complete and in order);
    the label shown is what most of the last windows heard, so one odd window never shows, and
    a sound that really starts shows from its second window."""
    y = siren_with("rain", [5])
    each = one_frame_windows(yam, y, steady=1)
    steady = one_frame_windows(yam, y, steady=3)
    heard = [p.label for p in each]
    assert [p.heard for p in steady] == heard and [p.heard for p in each] == heard
    assert heard[5] != "siren" and heard[4] == heard[6] == "siren", heard  # the odd window the test is about
    odd = [i for i in range(1, len(heard) - 1) if heard[i - 1] == heard[i + 1] != heard[i]]
    shown = [p.label for p in steady]
    for i in odd:
        assert shown[i] == shown[i - 1], (i, heard, shown)
    assert shown[5] == "siren" and "rain" not in shown
    # A change that lasts: shown as soon as two of the last three windows agree on it.
    y = siren_with("dial_tone", list(range(6, 14)))
    each, steady = one_frame_windows(yam, y, steady=1), one_frame_windows(yam, y, steady=3)
    heard, shown = [p.label for p in each], [p.label for p in steady]
    pairs = [i for i in range(1, len(heard)) if heard[i] == heard[i - 1] != shown[i - 1]]
    assert pairs, heard  # a class heard twice in a row where another one was shown
    for i in pairs:
        assert shown[i] == heard[i], (i, heard, shown)
    assert shown[-1] == "dial_tone", (heard, shown)
    # The confidence and likeliest class shown are of one recent window that heard the label shown
    # (an "unknown (likeliest X, N%)" never pairs one window's class with another's percentage).
    for i, p in enumerate(steady):
        assert p.confidence == pytest.approx(float(np.max(p.probs))) if p.heard == p.label else p.confidence > 0
        recent = [(q.heard, float(np.max(q.probs)), q.top_label) for q in steady[: i + 1]]
        assert any(h == p.label and c == pytest.approx(p.confidence) and t == p.likeliest
                   for h, c, t in recent), (i, recent, p)


def test_labels_do_not_depend_on_how_the_stream_is_cut(yam):
    y = demo_audio("siren", RATE)
    pcm = as_browser_pcm(y)
    a = feed_blocks(LiveClassifier(yam), pcm, RATE, 960, channels=2)
    b = feed_blocks(LiveClassifier(yam), pcm, RATE, 4410, channels=2)
    assert [p.time for p in a] == [p.time for p in b]
    assert np.allclose([p.probs for p in a], [p.probs for p in b], atol=1e-4)


def test_live_window_equals_predicting_that_audio_as_a_clip(yam, mfcc):
    """The cached YAMNet frames and the fixed-length padding change nothing: same probabilities."""
    for predictor, y in ((yam, demo_audio("rain")),
                         (mfcc, demo_audio("siren"))):
        live = LiveClassifier(predictor, window=1.5, hop=0.5, threshold=0.0)
        preds = feed_blocks(live, y, 16000, 320)
        assert len(preds) >= 2
        win = int(round(live.window_seconds * 16000))
        for p in preds:
            end = int(round(p.time * 16000))
            clip = Clip(y[end - win:end], 16000)
            want = predictor.predict_clip(clip).probs
            assert np.allclose(p.probs, want, atol=1e-4), (predictor.features_cfg.kind, p.time)


def test_silence_threshold_and_unknown(yam):
    live = LiveClassifier(yam, threshold=0.0)
    preds = feed_blocks(live, np.zeros(3 * 16000, np.float32), 16000, 320)
    assert preds and all(p.label == SILENCE for p in preds)
    assert live.events == []
    strict = LiveClassifier(yam, threshold=1.0)
    preds = feed_blocks(strict, demo_audio("rain"), 16000, 320)
    assert preds and all(p.label == UNKNOWN and p.top_label in yam.labels for p in preds)
    assert all(p.likeliest == p.top_label for p in preds)  # each window heard unknown: its own class
    assert strict.events == []


def test_reset_starts_a_new_stream(yam):
    live = LiveClassifier(yam)
    feed_blocks(live, demo_audio("siren"), 16000, 320)
    assert live.history and live.stream_seconds > 1
    live.reset()
    assert not live.history and live.events == [] and live.stream_seconds == 0
    preds = feed_blocks(live, demo_audio("siren", RATE), RATE, 960)  # another rate after reset is fine
    assert preds and preds[0].time == pytest.approx(live.window_seconds)


def test_bad_settings_and_audio_are_refused_with_messages(yam):
    with pytest.raises(LiveError, match="window"):
        LiveClassifier(yam, window=5)
    with pytest.raises(LiveError, match="hop"):
        LiveClassifier(yam, hop=0)
    with pytest.raises(LiveError, match="threshold"):
        LiveClassifier(yam, threshold=1.5)
    with pytest.raises(LiveError, match="Steadying"):
        LiveClassifier(yam, steady=0)
    live = LiveClassifier(yam)
    with pytest.raises(LiveError, match="sample rate"):
        live.feed(np.zeros(10, np.float32), 0)
    live.feed(np.zeros(100, np.float32), 16000)
    with pytest.raises(LiveError, match="changed"):
        live.feed(np.zeros(100, np.float32), 44100)
    with pytest.raises(AudioError):
        live.feed(np.array([0.0, np.nan], np.float32), 16000)


def test_pcm_conversion():
    stereo = np.array([32767, -32768, 0, 16384], np.int16)
    assert np.allclose(to_mono_float(stereo, 2), [-0.5 / 32768, 0.25], atol=1e-6)
    planar = np.array([[0.5, 0.5], [-0.5, 0.5]], np.float32)
    assert np.allclose(to_mono_float(planar), [0.0, 0.5])


def test_session_classifies_on_its_own_thread(yam):
    session = LiveSession(LiveClassifier(yam, threshold=0.0))
    try:
        pcm = as_browser_pcm(demo_audio("dial_tone", RATE))
        for i in range(0, len(pcm), 1920):
            session.push(pcm[i:i + 1920], RATE, 2)  # returns at once
        deadline = time.time() + 30
        while len(session.snapshot().history) < 3 and time.time() < deadline:
            time.sleep(0.05)
        snap = session.snapshot()
        assert snap.running and not snap.error
        assert len(snap.history) >= 3 and snap.history[-1].label == "dial_tone"
        assert snap.latency["median"] > 0
        session.reset()
        assert session.snapshot().history == []
    finally:
        session.stop()
    assert not session.snapshot().running


def test_audio_dropped_from_a_full_queue_is_counted_not_silent(yam):
    """A worker more than QUEUE_BLOCKS blocks behind drops the oldest audio: the snapshot says how
    many seconds (the page shows it), and they plus the seconds heard are all that was pushed."""
    from audioclf.inference.session import QUEUE_BLOCKS

    session = LiveSession(LiveClassifier(yam, threshold=0.0))
    try:
        pcm = as_browser_pcm(demo_audio("siren", RATE))
        block, pushed = 960 * 2, 0.0  # 20 ms of stereo, as the browser sends it
        while pushed < 3 * QUEUE_BLOCKS * 0.02:  # three queues' worth at once: far faster than the model
            for i in range(0, len(pcm) - block + 1, block):
                session.push(pcm[i:i + block], RATE, 2)
                pushed += 0.02
        deadline = time.time() + 120
        while time.time() < deadline:
            snap = session.snapshot()
            if snap.stream_seconds + snap.dropped_seconds >= pushed - 0.05:  # all of it heard or dropped
                break
            time.sleep(0.1)
        assert snap.dropped_seconds > 0, "nothing dropped: the test did not outrun the model"
        assert snap.stream_seconds + snap.dropped_seconds == pytest.approx(pushed, abs=0.05)
        session.reset()
        assert session.snapshot().dropped_seconds == 0.0  # a new stream starts its own count
    finally:
        session.stop()


def test_the_last_label_outlives_a_new_stream_marked_stale(yam, monkeypatch):
    """Issue 21: the Live page went back to "listening..." when a stream restarted; the session
    keeps its last label across reset (of the previous stream: stale) and while the stream
    pauses (stale after STALE_HOPS hops), until the current stream labels again."""
    from audioclf.inference import session as sessions

    session = LiveSession(LiveClassifier(yam, threshold=0.0))

    def push(label: str) -> None:
        pcm = as_browser_pcm(demo_audio(label, RATE))
        for i in range(0, len(pcm), 1920):
            session.push(pcm[i:i + 1920], RATE, 2)

    def wait(ok) -> sessions.LiveSnapshot:
        deadline = time.time() + 30
        while not ok(session.snapshot()) and time.time() < deadline:
            time.sleep(0.05)
        return session.snapshot()

    try:
        assert session.snapshot().last is None and session.snapshot().stale  # nothing heard yet
        session.reset()  # a stream starts
        push("siren")
        snap = wait(lambda s: s.last is not None and s.last.label == "siren" and len(s.history) >= 3)
        assert snap.last == snap.history[-1] and snap.last_current and not snap.stale
        heard = snap.last
        session.reset()  # Stop and Start again: a new stream, no label of its own yet
        snap = session.snapshot()
        assert snap.history == [] and snap.events == []
        assert snap.last == heard and not snap.last_current and snap.stale
        push("dial_tone")
        seconds = len(demo_audio("dial_tone", RATE)) / RATE
        snap = wait(lambda s: s.last_current and s.stream_seconds >= seconds - 0.1)  # all of it labelled
        assert snap.last is not heard and snap.last.time == pytest.approx(snap.history[-1].time)
        monkeypatch.setattr(sessions, "STALE_MIN_SECONDS", 0.0)  # then the stream pauses
        time.sleep(sessions.STALE_HOPS * snap.hop_seconds + 0.1)
        snap = session.snapshot()
        assert snap.last_current and snap.last_age > sessions.STALE_HOPS * snap.hop_seconds and snap.stale
    finally:
        session.stop()


def test_default_threshold_is_the_runs_suggestion(yam):
    """The one set on live-length windows (issue 21, major 11), else the clip one."""
    assert yam.suggested_live_threshold is not None
    assert LiveClassifier(yam).threshold == pytest.approx(yam.suggested_live_threshold)
    assert LiveClassifier(yam, threshold=0.3).threshold == 0.3


def test_the_app_server_runs_no_full_collection_or_module_scan_after_each_rerun():
    """Issue 21: the Live page reruns several times a second while it streams; after each run
    Streamlit collected garbage in full (runner.postScriptGC) and, watching source files, rescanned
    every loaded module, both holding the event loop (or the GIL) that also answers WebRTC, until
    the browser dropped the stream. The app's settings turn both off."""
    import tomllib
    from pathlib import Path

    settings = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert settings["runner"]["postScriptGC"] is False
    assert settings["server"]["fileWatcherType"] == "none"


def test_a_loaded_model_is_out_of_the_full_collections_reach(yam):
    """The collection Keras's clear_session still makes after each rerun walks only what was made
    since the last load: a loaded model (and TensorFlow) is frozen out of it (gc.freeze)."""
    import gc

    from app_pages.common import freeze_loaded_objects

    live = LiveClassifier(yam)
    live.warm_up()
    gc.collect()
    before = len(gc.get_objects(generation=2))
    try:
        freeze_loaded_objects()
        assert before > 0 and gc.get_freeze_count() > 0.9 * before
        assert len(gc.get_objects(generation=2)) < before / 100
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def test_the_live_microphone_asks_the_browser_for_the_unprocessed_signal():
    """Call processing (echo cancellation, noise suppression, automatic gain) is off: it reshapes a
    steady sound over seconds (docs/RESULTS.md, "The live siren and the browser's call processing")."""
    from app_pages.mic import MEDIA_CONSTRAINTS

    audio = MEDIA_CONSTRAINTS["audio"]
    assert audio == {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
    assert MEDIA_CONSTRAINTS["video"] is False
