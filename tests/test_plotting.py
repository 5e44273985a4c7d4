"""Figures from real features of synthesised audio."""
from __future__ import annotations

import librosa
import numpy as np
import plotly.graph_objects as go
import pytest

from audioclf.insight import plotting

SR = 16000
N_FFT = 1024
HOP = 256


@pytest.fixture(scope="module")
def chirp() -> np.ndarray:
    """2 s rising chirp plus a little noise: every feature varies over time."""
    rng = np.random.default_rng(0)
    y = librosa.chirp(fmin=200, fmax=4000, sr=SR, duration=2.0) * 0.5
    return (y + 0.01 * rng.standard_normal(len(y))).astype(np.float32)


@pytest.fixture(scope="module")
def stft_db(chirp):
    S = np.abs(librosa.stft(chirp, n_fft=N_FFT, hop_length=HOP))
    return librosa.amplitude_to_db(S, ref=np.max), librosa.fft_frequencies(sr=SR, n_fft=N_FFT)


def test_waveform_short_clip_is_drawn_sample_by_sample():
    y = np.sin(np.linspace(0, 20, 1000)).astype(np.float32)
    fig = plotting.waveform(y, SR)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 1 and len(fig.data[0].y) == 1000
    assert fig.data[0].x[-1] == pytest.approx(999 / SR)


def test_waveform_long_clip_is_an_envelope_keeping_peaks(chirp):
    long = np.tile(chirp, 10)  # 20 s
    long[12345] = 0.99
    fig = plotting.waveform(long, SR)
    assert len(fig.data) == 2
    assert len(fig.data[0].y) <= plotting.MAX_LINE_POINTS
    assert max(fig.data[0].y) == pytest.approx(0.99)
    assert fig.data[0].x[-1] == pytest.approx(20.0, abs=0.1)


def test_linear_spectrogram_axes_in_hz_and_seconds(stft_db):
    S_db, freqs = stft_db
    fig = plotting.spectrogram(S_db, SR, HOP, freqs=freqs)
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap)
    assert np.asarray(heat.z).shape[1] == S_db.shape[1]
    assert max(heat.y) == pytest.approx(SR / 2, rel=0.01)
    assert heat.x[-1] == pytest.approx((S_db.shape[1] - 1) * HOP / SR)
    assert "Hz" in fig.layout.yaxis.title.text


def test_mel_spectrogram_labels_bins_in_hz(chirp):
    M = librosa.power_to_db(librosa.feature.melspectrogram(y=chirp, sr=SR, n_fft=N_FFT,
                                                           hop_length=HOP, n_mels=64))
    freqs = librosa.mel_frequencies(n_mels=64, fmax=SR / 2)
    fig = plotting.spectrogram(M, SR, HOP, freqs=freqs, mel=True)
    assert np.asarray(fig.data[0].z).shape == M.shape
    assert fig.layout.yaxis.ticktext[-1] == f"{freqs[-1]:.0f}"
    assert "Mel" in fig.layout.title.text


def test_huge_spectrogram_is_pooled_for_the_browser():
    S = np.random.default_rng(1).normal(size=(2049, 5000)).astype(np.float32)
    fig = plotting.spectrogram(S, 44100, 128)
    z = np.asarray(fig.data[0].z)
    assert z.shape[0] <= plotting.MAX_HEATMAP_BINS and z.shape[1] <= plotting.MAX_HEATMAP_FRAMES
    assert len(fig.data[0].x) == z.shape[1]


def test_centroid_and_rolloff_overlaid_on_spectrogram(chirp, stft_db):
    S_db, freqs = stft_db
    cent = librosa.feature.spectral_centroid(y=chirp, sr=SR, n_fft=N_FFT, hop_length=HOP)[0]
    roll = librosa.feature.spectral_rolloff(y=chirp, sr=SR, n_fft=N_FFT, hop_length=HOP)[0]
    fig = plotting.spectral_overlay(S_db, SR, HOP, cent, roll, freqs=freqs)
    kinds = [type(t).__name__ for t in fig.data]
    assert kinds == ["Heatmap", "Scatter", "Scatter"]
    assert [t.name for t in fig.data[1:]] == ["centroid", "roll-off"]
    # The chirp rises, so does its centroid.
    assert fig.data[1].y[-5] > fig.data[1].y[5]


def test_mfcc_heatmap_centred_on_zero(chirp):
    m = librosa.feature.mfcc(y=chirp, sr=SR, n_mfcc=20, n_fft=N_FFT, hop_length=HOP)
    fig = plotting.mfcc(m, SR, HOP)
    assert np.asarray(fig.data[0].z).shape == m.shape
    assert fig.data[0].zmid == 0


def test_zcr_and_rms_on_two_axes(chirp):
    zcr = librosa.feature.zero_crossing_rate(chirp, frame_length=N_FFT, hop_length=HOP)[0]
    rms = librosa.feature.rms(y=chirp, frame_length=N_FFT, hop_length=HOP)[0]
    fig = plotting.zcr_rms(zcr, rms, SR, HOP)
    assert [t.name for t in fig.data] == ["ZCR", "RMS"]
    assert fig.data[1].yaxis == "y2"
    assert fig.data[0].y[-5] > fig.data[0].y[5]  # rising pitch crosses zero more often


def test_chroma_has_pitch_class_rows(chirp):
    c = librosa.feature.chroma_stft(y=chirp, sr=SR, n_fft=N_FFT, hop_length=HOP)
    fig = plotting.chroma(c, SR, HOP)
    assert list(fig.data[0].y) == ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def test_class_counts_and_durations():
    fig = plotting.class_counts({"dog": 3, "cat": 5})
    assert list(fig.data[0].x) == ["dog", "cat"] and list(fig.data[0].y) == [3, 5]
    fig = plotting.duration_histogram({"dog": [1.0, 1.5], "cat": [0.5]})
    assert [t.name for t in fig.data] == ["dog", "cat"]
    fig = plotting.duration_histogram([1.0, 2.0, 3.0])
    assert len(fig.data) == 1 and fig.layout.showlegend is False


def test_confusion_matrix_counts_and_normalised():
    cm = np.array([[8, 2], [0, 5]])
    fig = plotting.confusion_matrix(cm, ["a", "b"])
    assert np.asarray(fig.data[0].z).tolist() == [[8, 2], [0, 5]]
    assert fig.data[0].text[0][0] == "8"
    fig = plotting.confusion_matrix(cm, ["a", "b"], normalize=True)
    z = np.asarray(fig.data[0].z)
    assert z[0].tolist() == pytest.approx([0.8, 0.2]) and z[1].tolist() == pytest.approx([0, 1])
    # An empty row (a class absent from the test set) stays zeros, not NaN.
    z = np.asarray(plotting.confusion_matrix(np.array([[0, 0], [1, 1]]), ["a", "b"],
                                             normalize=True).data[0].z)
    assert not np.isnan(z).any()


def test_learning_curves_from_rows_and_from_keras_history():
    rows = [{"epoch": e, "loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1),
             "accuracy": e / 5, "val_accuracy": e / 6} for e in range(5)]
    fig = plotting.learning_curves(rows)
    assert len(fig.data) == 4
    assert list(fig.data[0].x) == [1, 2, 3, 4, 5]
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    fig = plotting.learning_curves({"loss": [1.0, 0.5], "accuracy": [0.3, 0.6]})
    assert len(fig.data) == 2 and list(fig.data[0].x) == [1, 2]


def test_probability_bars_sorted_and_top_highlighted():
    fig = plotting.probability_bars(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"])
    assert list(fig.data[0].y) == ["b", "c", "a"]
    assert fig.data[0].marker.color[0] == plotting.TOP_COLOR
    assert len(plotting.probability_bars(np.array([0.1, 0.7, 0.2]), "abc", top=2).data[0].y) == 2


def test_probabilities_over_time_one_line_per_class():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    fig = plotting.probabilities_over_time(np.array([0.0, 0.5, 1.0]), probs, ["x", "y"])
    assert [t.name for t in fig.data] == ["x", "y"]
    assert list(fig.data[1].y) == [0.1, 0.8, 0.5]


def test_top_classes_and_compare_runs():
    fig = plotting.top_class_bars(["Speech", "Music"], [0.8, 0.1])
    assert list(fig.data[0].y) == ["Speech", "Music"]
    fig = plotting.run_comparison(["r1", "r2"], {"accuracy": [0.9, 0.8], "macro F1": [0.85, 0.7]})
    assert [t.name for t in fig.data] == ["accuracy", "macro F1"]
    assert fig.layout.barmode == "group"


def _luminance(color: str) -> float:
    """Relative luminance (0 black .. 1 white) of '#rrggbb' or 'rgb(r,g,b)'."""
    import plotly.colors as pc

    r, g, b = (pc.hex_to_rgb(color) if color.startswith("#") else pc.unlabel_rgb(color))
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _db_figures(y: np.ndarray, sr: int) -> list[go.Figure]:
    from audioclf.features.spectral import mel_spectrogram_db, spectrogram_db

    spec, mel = spectrogram_db(y, sr, N_FFT, HOP), mel_spectrogram_db(y, sr, N_FFT, HOP, 64)
    return [plotting.spectrogram(spec.db, sr, HOP, freqs=spec.freqs),
            plotting.spectrogram(mel.db, sr, HOP, freqs=mel.freqs, mel=True),
            plotting.spectral_overlay(spec.db, sr, HOP, np.zeros(spec.db.shape[1]),
                                      np.zeros(spec.db.shape[1]), freqs=spec.freqs)]


@pytest.mark.parametrize("signal", ["chirp", "silence", "chirp_then_silence"])
def test_db_heat_maps_draw_nothing_as_black(chirp, signal):
    """The floor of every dB scale reads as "nothing": silence is black, not pink."""
    y = {"chirp": chirp, "silence": np.zeros(SR, np.float32),
         "chirp_then_silence": np.concatenate([chirp, np.zeros(SR, np.float32)])}[signal]
    for fig in _db_figures(y, SR):
        heat = fig.data[0]
        floor = heat.colorscale[0]
        assert floor[0] == 0.0 and _luminance(floor[1]) < 0.05, floor
        z = np.asarray(heat.z)
        assert heat.zmin is not None and 0 < heat.zmax - heat.zmin <= plotting.DB_RANGE
        if signal == "silence":
            assert z.max() <= heat.zmin  # all of it at the floor
        else:
            assert heat.zmax == pytest.approx(z.max())
            assert z.min() == pytest.approx(heat.zmin)  # the quietest bins hit the floor
        if signal == "chirp_then_silence":
            tail = z[:, np.asarray(heat.x) > 2.2]
            assert tail.size and tail.max() <= heat.zmin  # the silent second is black


def test_no_heat_map_uses_a_colour_streamlits_theme_replaces(chirp, stft_db):
    """Streamlit swaps #000001..#000040 for its palette in the browser (Magma's floor was one)."""
    S_db, freqs = stft_db
    figs = [plotting.spectrogram(S_db, SR, HOP, freqs=freqs),
            plotting.mfcc(S_db[:13], SR, HOP), plotting.chroma(np.abs(S_db[:12]), SR, HOP),
            plotting.confusion_matrix(np.eye(3), ["a", "b", "c"])]
    for fig in figs:
        colors = [c for _, c in fig.data[0].colorscale]
        assert not [c for c in colors if plotting.THEME_PLACEHOLDER.match(c)], colors


def test_segment_timeline_one_row_per_class_present_unknown_grey_at_bottom():
    from audioclf.inference import Segment

    segs = [Segment(0.0, 2.5, "dog", 0.9), Segment(2.5, 3.5, "unknown", 0.4), Segment(3.5, 7.0, "cat", 0.8),
            Segment(7.0, 8.0, "dog", 0.7)]
    fig = plotting.segment_timeline(segs, ["bird", "cat", "dog"])
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["cat", "dog", "unknown"]  # only classes that occur; bird is absent
    dog = fig.data[1]
    assert list(dog.base) == [0.0, 7.0] and list(dog.x) == [2.5, 1.0] and list(dog.text) == ["90%", "70%"]
    assert fig.data[2].marker.color == plotting.UNKNOWN_COLOR
    assert list(fig.layout.yaxis.categoryarray) == ["unknown", "dog", "cat"]  # first class on top
    assert fig.layout.xaxis.range == (0, 8.0)
    # A class keeps its colour whatever else the clip holds.
    alone = plotting.segment_timeline([Segment(0.0, 1.0, "dog", 0.9)], ["bird", "cat", "dog"])
    assert alone.data[0].marker.color == dog.marker.color


def test_axes_of_counts_and_energies_read_as_such():
    """Cosmetic (issue 21): epoch ticks 1.5, 2.5; RMS ticks 0.0123456 and below 0; a 0..80 dB
    colour bar on a silent clip."""
    fig = plotting.learning_curves({"loss": [1.0, 0.6, 0.5], "accuracy": [0.3, 0.6, 0.7]})
    for axis in (fig.layout.xaxis, fig.layout.xaxis2):
        assert axis.dtick == 1 and axis.tick0 == 1 and axis.tickformat == "d"
    assert plotting.learning_curves([{"loss": 1.0, "epoch": e} for e in range(45)]).layout.xaxis.dtick == 5
    fig = plotting.zcr_rms(np.full(20, 0.1), np.full(20, 0.0123456), SR, HOP)
    for axis in (fig.layout.yaxis, fig.layout.yaxis2):
        assert axis.rangemode == "nonnegative" and axis.tickformat == ".3~g"
    silent, loud = (_db_figures(y, SR)[0].data[0] for y in (np.zeros(SR, np.float32), _chirp_like()))
    assert silent.showscale is False and loud.showscale is not False


def _chirp_like() -> np.ndarray:
    t = np.arange(SR) / SR
    return (0.5 * np.sin(2 * np.pi * (200 + 3000 * t) * t)).astype(np.float32)


def test_compared_heat_maps_share_one_colour_scale():
    """Explore's comparison gave each clip its own colour scale (issue 21): a quiet clip's
    loudest bin was as bright as a loud one's."""
    t = np.arange(SR) / SR
    loud = np.sin(2 * np.pi * 440 * t)[None, :20].repeat(4, 0) * 40
    quiet = loud / 4 + 3
    figs = [plotting.mfcc(loud, SR, HOP), plotting.mfcc(quiet, SR, HOP)]
    plotting.share_colour_scale(figs)
    a, b = (f.data[0] for f in figs)
    assert (a.zmin, a.zmax) == (b.zmin, b.zmax) and a.zmax == pytest.approx(-a.zmin)  # about zmid 0
    assert a.zmax == pytest.approx(max(np.abs(loud).max(), np.abs(quiet).max()))
    specs = [_db_figures(y, SR)[0] for y in (_chirp_like(), 0.5 * _chirp_like())]
    plotting.share_colour_scale(specs)
    assert specs[0].data[0].zmin == specs[1].data[0].zmin and specs[0].data[0].zmax == specs[1].data[0].zmax
