"""Plotly figures for audio features, data sets, training runs and predictions.

Every function takes plain arrays (computed by `audioclf.features`,
`audioclf.datasets`, `audioclf.evaluation`, ...) and returns a
`plotly.graph_objects.Figure`. Nothing here computes audio features or
imports Streamlit, so the same figures serve the app, notebooks and reports.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Browsers choke on heat maps with millions of cells and on lines with
# millions of points; figures are reduced to at most these sizes.
MAX_LINE_POINTS = 4000
MAX_HEATMAP_FRAMES = 800
MAX_HEATMAP_BINS = 512

HEIGHT = 320
DB_RANGE = 80.0  # most dB below the loudest cell that a dB heat map's colour scale spans
# Streamlit's chart theme sends colours #000001 to #000040 to the browser as placeholders
# and swaps them for its own palette there: Magma's floor, #000004, came out pink.
THEME_PLACEHOLDER = re.compile(r"^#0000(0[1-9]|[1-3][0-9]|40)$")
FLOOR_COLOR = "#000000"  # "nothing" at the bottom of a dB scale
MARGIN = dict(l=60, r=20, t=50, b=45)
CENTROID_COLOR = "#38d6ff"
ROLLOFF_COLOR = "#7CFC00"
PROB_COLOR = "#4C78A8"
TOP_COLOR = "#F58518"
UNKNOWN_COLOR = "#9E9E9E"  # "not sure": none of the classes


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height,
                      margin=MARGIN, template="plotly_white")
    return fig


def _stride(n: int, limit: int) -> int:
    return max(1, int(np.ceil(n / limit)))


def _frame_times(n_frames: int, sr: int, hop_length: int) -> np.ndarray:
    # Same convention as librosa.frames_to_time (centred frames).
    return np.arange(n_frames) * hop_length / float(sr)


def _pool_columns(z: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Average groups of frames so at most `limit` columns remain."""
    step = _stride(z.shape[1], limit)
    if step == 1:
        return z, 1
    usable = z.shape[1] // step * step
    pooled = z[:, :usable].reshape(z.shape[0], -1, step).mean(axis=2)
    return pooled, step


def _pool_rows(z: np.ndarray, axis_values: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    step = _stride(z.shape[0], limit)
    if step == 1:
        return z, axis_values
    usable = z.shape[0] // step * step
    pooled = z[:usable].reshape(-1, step, z.shape[1]).mean(axis=1)
    return pooled, axis_values[:usable].reshape(-1, step).mean(axis=1)


def safe_colorscale(name: str) -> list[list]:
    """Plotly's named colour scale as stops, with no colour that Streamlit's theme replaces."""
    return [[pos, FLOOR_COLOR if THEME_PLACEHOLDER.match(color) else color]
            for pos, color in plotly.colors.get_colorscale(name)]


DB_COLORSCALE = safe_colorscale("Magma")  # starts at black: silence reads as nothing


def _db_range(z: np.ndarray) -> tuple[float, float]:
    """(zmin, zmax) of a dB heat map: its quietest cell (at most DB_RANGE down) to its loudest.

    The dB values are relative to the clip's own loudest bin, so a flat image
    (a silent clip: every bin 0 dB "re max") has no signal and is drawn as floor.
    """
    if not z.size or not np.isfinite(z).any():
        return 0.0, DB_RANGE
    top, bottom = float(np.nanmax(z)), float(np.nanmin(z))
    if bottom >= top:
        return top, top + DB_RANGE
    return max(bottom, top - DB_RANGE), top


def _heatmap(z: np.ndarray, times: np.ndarray, y, *, colorbar: str,
             colorscale: str = "Viridis", zmid: float | None = None,
             db: bool = False) -> go.Heatmap:
    """A heat map; `db` gives the dB scale whose floor (black) is silence."""
    z, step = _pool_columns(np.asarray(z, dtype=np.float32), MAX_HEATMAP_FRAMES)
    times = np.asarray(times)[: z.shape[1] * step: step][: z.shape[1]]
    zmin, zmax = _db_range(z) if db else (None, None)
    scale = DB_COLORSCALE if db else safe_colorscale(colorscale)
    # A flat dB image (a silent clip) has no loudness range: a 0..80 dB bar would invent one.
    flat = db and not (z.size and np.isfinite(z).any() and np.nanmax(z) > np.nanmin(z))
    return go.Heatmap(z=z, x=times, y=y, colorscale=scale, zmid=zmid, zmin=zmin, zmax=zmax,
                      showscale=not flat, colorbar=dict(title=colorbar), hovertemplate=(
                          "t=%{x:.2f} s<br>y=%{y}<br>%{z:.1f}<extra></extra>"))


def envelope(y: np.ndarray, sr: int, points: int = MAX_LINE_POINTS // 2
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, minimum, maximum) of `y` over at most `points` blocks; a short clip is its samples."""
    y = np.asarray(y, dtype=np.float32).ravel()
    step = _stride(len(y), points)
    if step == 1:
        return np.arange(len(y)) / float(sr), y, y
    usable = len(y) // step * step
    blocks = y[:usable].reshape(-1, step)
    return np.arange(blocks.shape[0]) * step / float(sr), blocks.min(axis=1), blocks.max(axis=1)


def waveform(y: np.ndarray, sr: int, *, title: str = "Waveform") -> go.Figure:
    """Amplitude over time; long clips are drawn as a min/max envelope."""
    return waveform_envelope(*envelope(y, sr), title=title)


def waveform_envelope(times: np.ndarray, lo: np.ndarray, hi: np.ndarray, *,
                      title: str = "Waveform") -> go.Figure:
    """The waveform from :func:`envelope`'s arrays (a short clip's are its samples)."""
    fig = go.Figure()
    if lo is hi or np.array_equal(lo, hi):
        fig.add_trace(go.Scatter(x=times, y=hi, mode="lines", name="amplitude", line=dict(width=1)))
    else:
        # An envelope keeps peaks visible where plain decimation would hide them.
        fig.add_trace(go.Scatter(x=times, y=hi, mode="lines", name="max",
                                 line=dict(width=0.5, color=PROB_COLOR)))
        fig.add_trace(go.Scatter(x=times, y=lo, mode="lines", name="min",
                                 line=dict(width=0.5, color=PROB_COLOR), fill="tonexty",
                                 fillcolor="rgba(76, 120, 168, 0.6)"))
        fig.update_layout(showlegend=False)
    fig.update_yaxes(range=[-1.05, 1.05])
    return _layout(fig, title, "time (s)", "amplitude")


def spectrogram(S_db: np.ndarray, sr: int, hop_length: int, *, freqs: np.ndarray | None = None,
                mel: bool = False, title: str | None = None) -> go.Figure:
    """A (bins, frames) dB spectrogram as a heat map.

    `freqs` are the bin centre frequencies in Hz. Linear spectrograms are drawn
    on a Hz axis; mel spectrograms on a mel-bin axis labelled in Hz, because mel
    bins are unevenly spaced in Hz and would squash the low frequencies.
    """
    S_db = np.asarray(S_db, dtype=np.float32)
    n_bins, n_frames = S_db.shape
    if freqs is None:
        freqs = np.linspace(0, sr / 2, n_bins)
    freqs = np.asarray(freqs, dtype=np.float64)
    times = _frame_times(n_frames, sr, hop_length)
    title = title or ("Mel spectrogram (dB)" if mel else "Spectrogram (dB)")
    if mel:
        fig = go.Figure(_heatmap(S_db, times, np.arange(n_bins), colorbar="dB", db=True))
        ticks = np.unique(np.linspace(0, n_bins - 1, 8).round().astype(int))
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{freqs[i]:.0f}" for i in ticks])
        return _layout(fig, title, "time (s)", "frequency (Hz, mel scale)")
    S_db, freqs = _pool_rows(S_db, freqs, MAX_HEATMAP_BINS)
    fig = go.Figure(_heatmap(S_db, times, freqs, colorbar="dB", db=True))
    return _layout(fig, title, "time (s)", "frequency (Hz)")


def spectral_overlay(S_db: np.ndarray, sr: int, hop_length: int, centroid: np.ndarray,
                     rolloff: np.ndarray, *, freqs: np.ndarray | None = None,
                     title: str = "Spectral centroid and roll-off") -> go.Figure:
    """Centroid and roll-off (Hz per frame) drawn over the linear spectrogram."""
    fig = spectrogram(S_db, sr, hop_length, freqs=freqs, title=title)
    for values, name, color in ((centroid, "centroid", CENTROID_COLOR),
                                (rolloff, "roll-off", ROLLOFF_COLOR)):
        values = np.asarray(values, dtype=np.float32).ravel()
        fig.add_trace(go.Scatter(x=_frame_times(len(values), sr, hop_length), y=values,
                                 mode="lines", name=name, line=dict(color=color, width=2)))
    fig.update_layout(legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def share_colour_scale(figures: Sequence[go.Figure]) -> None:
    """Give the heat maps of `figures` (the same figure for several clips) one colour scale.

    Each clip's own scale made a quiet clip look as bright as a loud one; with one range
    (the union of theirs; symmetric about `zmid` where a map has one) colours compare.
    """
    for i in range(min((len(f.data) for f in figures), default=0)):
        traces = [f.data[i] for f in figures if f.data[i].type == "heatmap"]
        if len(traces) < 2:
            continue
        lows = [t.zmin if t.zmin is not None else np.nanmin(np.asarray(t.z, dtype=float)) for t in traces]
        highs = [t.zmax if t.zmax is not None else np.nanmax(np.asarray(t.z, dtype=float)) for t in traces]
        lo, hi = float(np.nanmin(lows)), float(np.nanmax(highs))
        if traces[0].zmid is not None:
            half = max(abs(lo - traces[0].zmid), abs(hi - traces[0].zmid))
            lo, hi = traces[0].zmid - half, traces[0].zmid + half
        for t in traces:
            t.update(zmin=lo, zmax=hi)


def mfcc(values: np.ndarray, sr: int, hop_length: int, *, title: str = "MFCC") -> go.Figure:
    """A (n_mfcc, frames) MFCC matrix as a heat map centred on zero."""
    values = np.asarray(values, dtype=np.float32)
    fig = go.Figure(_heatmap(values, _frame_times(values.shape[1], sr, hop_length),
                             np.arange(values.shape[0]), colorbar="value",
                             colorscale="RdBu_r", zmid=0.0))
    return _layout(fig, title, "time (s)", "coefficient")


def zcr_rms(zcr: np.ndarray, rms: np.ndarray, sr: int, hop_length: int,
            *, title: str = "Zero-crossing rate and RMS") -> go.Figure:
    """Zero-crossing rate and RMS energy per frame, on two y axes."""
    zcr = np.asarray(zcr, dtype=np.float32).ravel()
    rms = np.asarray(rms, dtype=np.float32).ravel()
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=_frame_times(len(zcr), sr, hop_length), y=zcr, name="ZCR",
                             mode="lines"), secondary_y=False)
    fig.add_trace(go.Scatter(x=_frame_times(len(rms), sr, hop_length), y=rms, name="RMS",
                             mode="lines"), secondary_y=True)
    # Both are never negative: axes from 0, with ticks of at most 3 significant digits.
    fig.update_yaxes(title_text="zero-crossing rate", secondary_y=False, rangemode="nonnegative",
                     tickformat=".3~g")
    fig.update_yaxes(title_text="RMS", secondary_y=True, rangemode="nonnegative", tickformat=".3~g")
    return _layout(fig, title, "time (s)", "zero-crossing rate")


def chroma(values: np.ndarray, sr: int, hop_length: int, *, title: str = "Chroma") -> go.Figure:
    """A (12, frames) chromagram, one row per pitch class."""
    values = np.asarray(values, dtype=np.float32)
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    y = names if values.shape[0] == 12 else list(range(values.shape[0]))
    fig = go.Figure(_heatmap(values, _frame_times(values.shape[1], sr, hop_length), y,
                             colorbar="energy", colorscale="Viridis"))
    return _layout(fig, title, "time (s)", "pitch class")


def class_counts(counts: Mapping[str, int], *, title: str = "Clips per class") -> go.Figure:
    """A bar per class."""
    labels = list(counts)
    fig = go.Figure(go.Bar(x=labels, y=[counts[k] for k in labels], marker_color=PROB_COLOR,
                           text=[counts[k] for k in labels], textposition="auto"))
    fig.update_xaxes(type="category")
    return _layout(fig, title, "class", "clips")


def duration_histogram(durations: Sequence[float] | Mapping[str, Sequence[float]],
                       *, title: str = "Clip durations", nbins: int = 30) -> go.Figure:
    """Histogram of clip durations (s), stacked per class when given a mapping."""
    fig = go.Figure()
    groups = durations if isinstance(durations, Mapping) else {"all": durations}
    for label, values in groups.items():
        fig.add_trace(go.Histogram(x=np.asarray(values, dtype=np.float64), name=str(label),
                                   nbinsx=nbins))
    fig.update_layout(barmode="stack", showlegend=isinstance(durations, Mapping))
    return _layout(fig, title, "duration (s)", "clips")


def confusion_matrix(cm: np.ndarray, labels: Sequence[str], *, normalize: bool = False,
                     title: str | None = None) -> go.Figure:
    """Confusion matrix heat map: rows are true classes, columns predicted ones.

    With `normalize`, each row is divided by its total (recall on the diagonal).
    """
    cm = np.asarray(cm, dtype=np.float64)
    labels = [str(x) for x in labels]
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        z = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
        text, colorbar = np.vectorize(lambda v: f"{v:.2f}")(z), "fraction"
    else:
        z = cm
        text, colorbar = cm.astype(int).astype(str), "clips"
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=text, texttemplate="%{text}",
                               colorscale=safe_colorscale("Blues"), colorbar=dict(title=colorbar),
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    # True classes read top-down like a table.
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom")
    size = max(HEIGHT, 40 * len(labels) + 120)
    title = title or ("Confusion matrix (normalised by true class)" if normalize
                      else "Confusion matrix (counts)")
    return _layout(fig, title, "predicted", "true", height=size)


def integer_ticks(n: int, first: int = 1, most: int = 10) -> dict:
    """Axis settings that put ticks on whole numbers only (epochs, trials): at most
    `most` of them from `first`; Plotly's own choice for a few epochs was 1.5, 2, 2.5."""
    return dict(tick0=first, dtick=max(1, math.ceil(n / most)), tickformat="d")


def learning_curves(history: Sequence[Mapping[str, float]] | Mapping[str, Sequence[float]],
                    *, title: str = "Learning curves") -> go.Figure:
    """Loss and accuracy per epoch, training and validation, side by side.

    `history` is either Keras' `History.history` (metric -> list) or a list of
    per-epoch dicts (as in a run's history.jsonl).
    """
    if isinstance(history, Mapping):
        series = {k: list(v) for k, v in history.items()}
    else:
        series = {}
        for row in history:
            for key, value in row.items():
                series.setdefault(key, []).append(value)
    epochs = series.pop("epoch", None)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, dash in (("", "solid"), ("val_", "dot")):
            values = series.get(prefix + metric)
            if not values:
                continue
            x = [e + 1 for e in epochs] if epochs and min(epochs) == 0 else (
                epochs or list(range(1, len(values) + 1)))
            fig.add_trace(go.Scatter(x=x[: len(values)], y=values, mode="lines+markers",
                                     name=("validation " if prefix else "training ") + metric,
                                     line=dict(dash=dash)), row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col,
                         **integer_ticks(len(epochs or series.get("loss") or [])))
    fig.update_layout(title=title, height=HEIGHT, margin=MARGIN, template="plotly_white",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def probability_bars(probs: np.ndarray, labels: Sequence[str], *, top: int | None = None,
                     title: str = "Class probabilities") -> go.Figure:
    """Horizontal bars of class probabilities, most likely on top and highlighted."""
    probs = np.asarray(probs, dtype=np.float64).ravel()
    order = np.argsort(probs)[::-1][: top or len(probs)]
    colors = [TOP_COLOR if i == order[0] else PROB_COLOR for i in order]
    fig = go.Figure(go.Bar(x=probs[order], y=[str(labels[i]) for i in order], orientation="h",
                           marker_color=colors, text=[f"{probs[i]:.1%}" for i in order],
                           textposition="auto"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    return _layout(fig, title, "probability", "class",
                   height=max(HEIGHT, 28 * len(order) + 100))


def probabilities_over_time(times: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                            *, title: str = "Class probabilities over time") -> go.Figure:
    """One line per class: probability (windows, classes) at window start `times`."""
    probs = np.asarray(probs, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    fig = go.Figure()
    for i, label in enumerate(labels):
        fig.add_trace(go.Scatter(x=times, y=probs[:, i], mode="lines+markers", name=str(label)))
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return _layout(fig, title, "time (s)", "probability")


def segment_timeline(segments: Sequence, labels: Sequence[str], *, unknown: str = "unknown",
                     title: str = "Which class when") -> go.Figure:
    """A Gantt chart of a clip's segments: one row per class that occurs, bars where it does.

    ``segments`` have ``start``, ``end`` (s), ``label`` and ``confidence``
    (``predict.Segment``). Each class keeps its colour from its place in
    ``labels``; ``unknown`` segments ("not sure") are grey, on the bottom row.
    """
    palette = plotly.colors.qualitative.Plotly
    color = {str(lab): palette[i % len(palette)] for i, lab in enumerate(labels)}
    present = {str(s.label) for s in segments}
    rows = [str(lab) for lab in labels if str(lab) in present]
    rows += sorted(present - set(rows) - {unknown}) + ([unknown] if unknown in present else [])
    fig = go.Figure()
    for lab in rows:
        segs = [s for s in segments if str(s.label) == lab]
        fig.add_trace(go.Bar(
            base=[s.start for s in segs], x=[s.end - s.start for s in segs], y=[lab] * len(segs),
            orientation="h", name=lab, marker_color=UNKNOWN_COLOR if lab == unknown else color.get(lab, PROB_COLOR),
            text=[f"{s.confidence:.0%}" for s in segs], textposition="inside", insidetextanchor="middle",
            customdata=[[s.start, s.end, s.confidence] for s in segs],
            hovertemplate=f"{lab}<br>%{{customdata[0]:.2f}}-%{{customdata[1]:.2f}} s"
                          "<br>confidence %{customdata[2]:.0%}<extra></extra>"))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=rows[::-1])
    fig.update_xaxes(range=[0, max((s.end for s in segments), default=1.0)], rangemode="tozero")
    fig.update_layout(barmode="overlay", bargap=0.25, showlegend=False)
    return _layout(fig, title, "time (s)", "class", height=max(180, 46 * len(rows) + 110))


def top_class_bars(names: Sequence[str], scores: Sequence[float], *,
                title: str = "YAMNet: top AudioSet classes") -> go.Figure:
    """Horizontal bars for (class name, score) pairs such as YAMNet's top classes."""
    fig = go.Figure(go.Bar(x=list(scores), y=list(names), orientation="h",
                           marker_color=PROB_COLOR, text=[f"{s:.2f}" for s in scores],
                           textposition="auto"))
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, title, "mean score", "", height=max(HEIGHT // 1.3, 26 * len(names) + 90))


def classes_over_time(times: np.ndarray, scores: np.ndarray, names: Sequence[str], *,
                      title: str = "Top AudioSet classes over time") -> go.Figure:
    """Heat map of class scores (steps, classes) over time, one row per class in the order given."""
    z = np.asarray(scores, dtype=np.float32).reshape(len(times), len(names)).T
    fig = go.Figure(go.Heatmap(z=z, x=np.asarray(times, dtype=np.float64), y=list(names), zmin=0.0, zmax=1.0,
                               colorscale=safe_colorscale("Viridis"), colorbar=dict(title="probability"),
                               hovertemplate="t=%{x:.2f} s<br>%{y}<br>%{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, title, "time (s)", "", height=max(HEIGHT // 1.3, 26 * len(names) + 110))


def run_comparison(names: Sequence[str], metrics: Mapping[str, Sequence[float]],
                 *, title: str = "Compare runs") -> go.Figure:
    """Grouped bars: one group per run, one bar per metric (e.g. accuracy, macro F1)."""
    fig = go.Figure()
    for metric, values in metrics.items():
        fig.add_trace(go.Bar(x=list(names), y=list(values), name=metric,
                             text=[f"{v:.3f}" if v is not None else "" for v in values],
                             textposition="auto"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title, "run", "score")


# ---------------------------------------------------------------- data set map and class profiles

MAP_HEIGHT = 560
MAX_SVG_POINTS = 5000  # above this the map draws with WebGL (fast, but needs a GPU-capable browser)
MAP_MARKER = dict(size=8, opacity=0.8, line=dict(width=0.5, color="white"))
HIGHLIGHT_MARKER = dict(size=16, symbol="circle-open", line=dict(width=3, color="black"))


def clip_map(xy: np.ndarray, labels: Sequence[str], names: Sequence[str], *,
             highlight: Sequence[int] = (), title: str = "Clips", axis: str = "PCA") -> go.Figure:
    """Every clip as a point, one trace (colour) per class.

    Each point's ``customdata`` is its row in `xy`, so a selection names the clips
    whatever the trace order. `highlight` rows get a ring (e.g. the clip playing).
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    labels = [str(x) for x in labels]
    scatter = go.Scatter if len(xy) <= MAX_SVG_POINTS else go.Scattergl
    fig = go.Figure()
    for label in sorted(set(labels)):
        rows = np.array([i for i, lab in enumerate(labels) if lab == label], dtype=int)
        fig.add_trace(scatter(
            x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=label, marker=MAP_MARKER,
            customdata=rows, text=[names[i] for i in rows],
            hovertemplate=f"<b>%{{text}}</b><br>{label}<extra></extra>"))
    rows = [i for i in highlight if 0 <= i < len(xy)]
    if rows:
        fig.add_trace(go.Scatter(x=xy[rows, 0], y=xy[rows, 1], mode="markers", name="playing",
                                 marker=HIGHLIGHT_MARKER, hoverinfo="skip", showlegend=False))
    fig.update_layout(legend=dict(itemsizing="constant"), dragmode="pan", clickmode="event+select")
    return _layout(fig, title, f"{axis} 1", f"{axis} 2", height=MAP_HEIGHT)


def class_mel_profiles(profiles: Mapping[str, np.ndarray], freqs: np.ndarray, *,
                       title: str = "Mean mel spectrogram per class", cols: int = 4) -> go.Figure:
    """One small mel heat map per class (bands x time as a share of each clip's length)."""
    labels = list(profiles)
    cols = max(1, min(cols, len(labels)))
    rows = max(1, -(-len(labels) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels, shared_yaxes=True,
                        horizontal_spacing=0.03, vertical_spacing=0.12 if rows > 1 else 0.1)
    lo = min(float(np.min(p)) for p in profiles.values()) if labels else -80.0
    hi = max(float(np.max(p)) for p in profiles.values()) if labels else 0.0
    freqs = np.asarray(freqs, dtype=np.float64)
    for k, label in enumerate(labels):
        z = np.asarray(profiles[label], dtype=np.float32)
        fig.add_trace(go.Heatmap(
            z=z, x=np.linspace(0, 1, z.shape[1]), y=np.arange(z.shape[0]), zmin=lo, zmax=hi,
            colorscale=DB_COLORSCALE, showscale=k == 0, colorbar=dict(title="dB"),
            customdata=np.repeat(freqs[:, None], z.shape[1], axis=1),
            hovertemplate=f"{label}<br>%{{customdata:.0f}} Hz<br>%{{z:.1f}} dB<extra></extra>"),
            row=k // cols + 1, col=k % cols + 1)
    ticks = np.unique(np.linspace(0, len(freqs) - 1, 5).round().astype(int)) if len(freqs) else []
    fig.update_yaxes(tickvals=list(ticks), ticktext=[f"{freqs[i]:.0f}" for i in ticks])
    fig.update_xaxes(tickvals=[0, 0.5, 1], ticktext=["start", "middle", "end"])
    fig.update_layout(title=title, height=max(HEIGHT, 230 * rows), margin=MARGIN, template="plotly_white")
    return fig


def class_feature_means(means: np.ndarray, labels: Sequence[str], names: Sequence[str], *,
                        title: str = "Mean of each feature per class (z-score across classes)") -> go.Figure:
    """Classes x features heat map of per-class means, each feature scaled across classes.

    The hover shows the unscaled mean; scaling makes centroid (Hz) and ZCR (0-1) comparable.
    """
    means = np.asarray(means, dtype=np.float64).reshape(len(labels), len(names))
    std = means.std(axis=0)
    z = (means - means.mean(axis=0)) / np.where(std > 0, std, 1.0)
    fig = go.Figure(go.Heatmap(z=z, x=list(names), y=[str(x) for x in labels], colorscale=safe_colorscale("RdBu_r"),
                               zmid=0.0, customdata=means, colorbar=dict(title="z"),
                               hovertemplate="%{y}<br>%{x}: %{customdata:.4g}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(type="category")
    return _layout(fig, title, "feature", "class", height=max(HEIGHT, 40 + 28 * len(labels)))


def feature_ranking(names: Sequence[str], f_scores: Sequence[float], mi: Sequence[float], *,
                    top: int = 20, title: str = "Features that separate the classes best") -> go.Figure:
    """ANOVA F and mutual information per feature, best `top` by F, side by side."""
    f = np.nan_to_num(np.asarray(f_scores, dtype=np.float64))
    m = np.nan_to_num(np.asarray(mi, dtype=np.float64))
    order = np.argsort(-f, kind="stable")[:top][::-1]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=("ANOVA F", "mutual information (nats)"))
    y = [names[i] for i in order]
    fig.add_trace(go.Bar(x=f[order], y=y, orientation="h", marker_color=PROB_COLOR, name="F"), row=1, col=1)
    fig.add_trace(go.Bar(x=m[order], y=y, orientation="h", marker_color=TOP_COLOR, name="MI"), row=1, col=2)
    fig.update_layout(title=title, height=max(HEIGHT, 60 + 22 * len(order)), margin=MARGIN,
                      template="plotly_white", showlegend=False)
    fig.update_yaxes(type="category")
    return fig
