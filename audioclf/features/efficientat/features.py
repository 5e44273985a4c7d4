"""The ``efficientat`` feature type: EfficientAT sequences and AudioSet scores for audioclf's models.

    from audioclf.features import EfficientATConfig, extract

    feats = extract(clip, EfficientATConfig())   # values (steps, 384), scores (steps, 527) for mn04
    clip_embedding(feats)                        # (384,): the network's clip embedding

Two sequences (``EfficientATConfig.sequence``):

``frames``
    the last feature map (``features.16``) averaged over frequency: one vector
    per 0.32 s from one pass of the network over the whole clip. Its mean over
    time is the network's clip embedding exactly (the official model averages
    that map over frequency and time), so :func:`clip_embedding` gives it.
``windows``
    the clip embedding of each 0.96 s window (96 mel frames cut from the clip's
    log-mel; the last window is padded with the log-mel of silence), every
    0.32 s; a clip of one window or less is one window. About three times the
    network's work of ``frames``.
``mel``
    the network's input itself, the normalised log-mel (frames, 128), one frame
    per 10 ms, without scores: what a run fine-tuning the network trains on
    (its model holds the network, see ``training.finetune``).

Scores are AudioSet tag probabilities (sigmoid of the logits) per step: of each
window for ``windows``; for ``frames``, the network's classifier head applied to
each step's vector. The head was trained on the clip's average, so per step it
is a class-activation map over time (which classes are heard when); the mean of
those probabilities is not the clip's, which :func:`clip_probabilities` gives.
"""
from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np

from audioclf.audio import Clip
from audioclf.features import EfficientATConfig, Features
from audioclf.features.efficientat import frontend, params
from audioclf.features.efficientat.model import MAX_BATCH_FRAMES, EfficientATModel, load_model, to_32k
from audioclf.features.efficientat.weights import check_source

WINDOW_FRAMES = 3 * params.TIME_REDUCTION  # 0.96 s of mel frames: three steps of the frame sequence
WINDOW_HOP_FRAMES = params.TIME_REDUCTION  # 0.32 s, the frame sequence's step
# The normalised log-mel of digital silence: what zero-padding the waveform gives.
SILENCE_MEL = (np.log(params.LOG_OFFSET) + params.NORM_SHIFT) / params.NORM_SCALE


def feature_names(dims: int) -> tuple[str, ...]:
    return tuple(f"efficientat_{i}" for i in range(dims))


def extract_efficientat(clip: Clip, config: EfficientATConfig) -> Features:
    """EfficientAT features of one clip (any rate: resampled to 32 kHz)."""
    return extract_efficientat_many([clip], config)[0]


def extract_efficientat_many(clips: Sequence[Clip], config: EfficientATConfig,
                             model: EfficientATModel | None = None) -> list[Features]:
    """:func:`extract_efficientat` for many clips, batching the network's calls across clips."""
    waves = [to_32k(c) for c in clips]
    if config.sequence == "mel":
        return [mel_features(w, config, c.silent) for w, c in zip(waves, clips)]
    if model is None:
        check_source(config.model)  # a config (a run's config.json) may name only trusted checkpoints
        model = load_model(config.model)
    if config.sequence == "windows":
        parts = _window_parts(model, waves)
    else:
        seqs = [e.sequence for e in model.embed_many(waves)]
        bounds = np.cumsum([0] + [len(q) for q in seqs])
        logits = head_logits(model, np.concatenate(seqs)) if seqs else np.zeros((0, model.num_classes))
        parts = [(q, logits[a:b], frontend.sequence_times(len(q))) for q, a, b in zip(seqs, bounds[:-1], bounds[1:])]
    names = feature_names(model.embedding_dim)
    if config.yamnet is not None:
        aligned = yamnet_alongside(clips, [p[2] for p in parts], config.yamnet)
        parts = [(np.hstack([seq, a]), logits, times) for (seq, logits, times), a in zip(parts, aligned)]
        names = names + yamnet_names()
    return [Features(values=np.ascontiguousarray(seq, dtype=np.float32), times=times, names=names, config=config,
                     scores=sigmoid(logits), silent=c.silent)
            for (seq, logits, times), c in zip(parts, clips)]


def yamnet_names() -> tuple[str, ...]:
    from audioclf.features.yamnet import NAMES

    return NAMES


def yamnet_alongside(clips: Sequence[Clip], times: Sequence[np.ndarray], model: str = "") -> list[np.ndarray]:
    """YAMNet's (``model``'s) embedding nearest in time to each step: (len(times[i]), 1024) for clip i.

    YAMNet's windows (0.96 s every 0.48 s) and EfficientAT's steps (every 0.32 s) do not
    line up, so each step takes the window whose centre is closest to its own.
    """
    from audioclf.features import YAMNetConfig
    from audioclf.features.yamnet import extract_yamnet_many

    out = []
    for feats, t in zip(extract_yamnet_many(clips, YAMNetConfig(model=model)), times):
        nearest = np.abs(np.asarray(t)[:, None] - feats.times[None, :]).argmin(axis=1)
        out.append(feats.values[nearest])
    return out


def mel_features(waveform: np.ndarray, config: EfficientATConfig, silent: bool | None = None) -> Features:
    """The ``mel`` sequence of a 32 kHz waveform: (frames, 128), frame times, no scores."""
    mel = np.ascontiguousarray(frontend.log_mel(waveform).T, dtype=np.float32)
    return Features(values=mel, times=frontend.frame_times(len(mel)),
                    names=tuple(f"mel_{i}" for i in range(params.N_MELS)), config=config, silent=silent)


def window_starts(n_frames: int) -> np.ndarray:
    """First mel frame of each window of a clip with ``n_frames`` mel frames."""
    return np.arange(1 + -(-max(0, n_frames - WINDOW_FRAMES) // WINDOW_HOP_FRAMES)) * WINDOW_HOP_FRAMES


def mel_windows(mel: np.ndarray) -> np.ndarray:
    """(windows, 128, WINDOW_FRAMES) cut from a (128, frames) log-mel; one window of the clip if it is shorter."""
    n = mel.shape[1]
    if n <= WINDOW_FRAMES:
        return mel[None]
    starts = window_starts(n)
    padded = np.full((mel.shape[0], starts[-1] + WINDOW_FRAMES), SILENCE_MEL, dtype=np.float32)
    padded[:, :n] = mel
    return np.stack([padded[:, s:s + WINDOW_FRAMES] for s in starts])


def _window_parts(model: EfficientATModel, waves: list[np.ndarray]):
    mels = [frontend.log_mel(w) for w in waves]
    windows = [mel_windows(m) for m in mels]
    emb: list[np.ndarray | None] = [None] * len(mels)
    logits: list[np.ndarray | None] = [None] * len(mels)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_length.setdefault(w.shape[2], []).append(i)
    for frames, members in by_length.items():
        stacked = np.concatenate([windows[i] for i in members])
        bounds = np.cumsum([0] + [len(windows[i]) for i in members])
        step = max(1, MAX_BATCH_FRAMES // frames)
        got = [model.run(stacked[s:s + step]) for s in range(0, len(stacked), step)]
        e = np.concatenate([g["embedding"] for g in got])
        lg = np.concatenate([g["logits"] for g in got])
        for j, i in enumerate(members):
            emb[i], logits[i] = e[bounds[j]:bounds[j + 1]], lg[bounds[j]:bounds[j + 1]]
    hop = params.HOP_LENGTH / params.SAMPLE_RATE
    out = []
    for i, m in enumerate(mels):
        n = m.shape[1]
        centres = (window_starts(n) + WINDOW_FRAMES / 2) * hop if n > WINDOW_FRAMES else np.array([n * hop / 2])
        out.append((emb[i], logits[i], centres.astype(np.float32)))
    return out


_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CONTROLLER: list = []


def blas_controller():
    """threadpoolctl's controller, made once: finding the thread pools costs ~9 ms a time (a live label's budget)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def head_weights(model: EfficientATModel) -> tuple[np.ndarray, ...]:
    """(W1, b1, W2, b2) of the classifier head: Linear + Hardswish, (dropout), Linear; read once per model."""
    if model not in _HEADS:
        net = model.inference_model
        _HEADS[model] = tuple(np.asarray(w, np.float32) for name in ("classifier_2", "classifier_5")
                              for w in net.get_layer(name).get_weights())
    return _HEADS[model]


def head_logits(model: EfficientATModel, vectors: np.ndarray) -> np.ndarray:
    """The classifier head applied to each row of ``vectors`` (n, C): (n, classes) logits.

    Call it once for many rows: on a busy machine waking BLAS's thread pool for a
    small product cost 40x the product itself, so it runs on this thread alone.
    """
    w1, b1, w2, b2 = head_weights(model)
    with blas_controller().limit(limits=1, user_api="blas"):
        h = np.asarray(vectors, np.float32) @ w1 + b1
        h = h * np.clip(h + 3.0, 0.0, 6.0) / 6.0  # Hardswish
        return h @ w2 + b2


def sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # no overflow for large negative logits

    return expit(np.asarray(x, np.float32)).astype(np.float32)


def clip_embedding(feats: Features) -> np.ndarray:
    """One vector for a clip: the mean of its steps (for ``frames``, the network's clip embedding exactly)."""
    return np.asarray(feats.values, np.float32).mean(axis=0)


def clip_probabilities(feats: Features, model: EfficientATModel | None = None) -> np.ndarray:
    """The clip's AudioSet probabilities: the head on :func:`clip_embedding` (``frames``, as the network
    does), or the mean of the windows' probabilities (``windows``)."""
    if feats.config.sequence == "windows" or feats.n_frames == 0:
        return np.asarray(feats.scores, np.float32).mean(axis=0)
    model = model or load_model(feats.config.model)
    return sigmoid(head_logits(model, clip_embedding(feats)[None]))[0]
