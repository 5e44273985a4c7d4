"""Running EfficientAT: a checkpoint loaded once per process, waveforms in, embeddings and AudioSet logits out.

    model = load_model("mn04_as")                  # or a path to a .pt file; see weights.py
    emb, logits, seq = model.embed(waveform_32k)   # (384,), (527,), (steps, 384)

The network runs as one ``tf.function`` whose signature leaves batch and frames
open, so any clip length is traced once; clips of equal length are batched.
TensorFlow is imported only when a model is loaded.
"""
from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from audioclf.audio import AudioError, Clip, resample
from audioclf.features.efficientat import architecture, frontend, params, weights
from audioclf.features.efficientat.checkpoint import CheckpointError, read_state_dict
from audioclf.features.threads import network_threads, pin_tensorflow_threads

MAX_BATCH_FRAMES = 8000  # mel frames per network call: 16 clips of 5 s; bounds the feature maps' memory
PACKAGED_LABELS = Path(__file__).with_name(params.LABELS_FILE)


class Embedding(NamedTuple):
    """What EfficientAT makes of one clip."""

    embedding: np.ndarray  # (C,) features.16 averaged over frequency and time; C = 384 for mn04
    logits: np.ndarray  # (527,) AudioSet logits; sigmoid gives tag probabilities
    sequence: np.ndarray  # (steps, C) features.16 averaged over frequency: one step per 0.32 s


class EfficientATModel:
    """One checkpoint's network in Keras, ready to run; see :func:`load_model`.

    ``keras_model`` is the network as trained (BatchNorm layers: fine-tune or export
    this one); ``inference_model`` the same with BatchNorm folded into the
    convolutions, which :meth:`run` and :meth:`embed` use.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            state = read_state_dict(self.path)
        except CheckpointError as exc:
            raise weights.EfficientATUnavailable(f"{exc} {weights.how_to_provide()}") from None
        found = architecture.infer_width(state)
        if found is None:
            raise weights.EfficientATUnavailable(
                f"{self.path.name} is a PyTorch state dict but not of an EfficientAT mnXX model (its tensors fit "
                f"none of the widths {', '.join(f'{w:g}' for w in params.WIDTHS)}). {weights.how_to_provide()}")
        self.width, self.num_classes = found
        self.sha256 = weights.sha256(self.path)
        self.name = _official_name(self.path, self.sha256, self.width)
        threads = network_threads("efficientat")
        if threads is not None:
            pin_tensorflow_threads(threads)
        from audioclf.features.efficientat import network

        self.keras_model = network.load_torch_state(network.build_network(self.width, self.num_classes), state)
        self.inference_model = network.fold_batchnorm(self.keras_model)
        self.embedding_dim = architecture.embedding_dim(self.width)
        self._fn = None
        self._fn_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EfficientATModel({self.name!r}, width={self.width:g}, path={str(self.path)!r})"

    def run(self, mel: np.ndarray) -> dict[str, np.ndarray]:
        """The network's outputs (``network.OUTPUTS``) for a (batch, 128, frames) batch of log-mels."""
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 3 or mel.shape[1] != params.N_MELS or mel.shape[2] < 1:
            raise ValueError(f"EfficientAT takes (batch, {params.N_MELS}, frames) log-mels, got {mel.shape}.")
        out = self._compiled()(mel[..., None])
        return {k: np.asarray(v) for k, v in out.items()}

    def _compiled(self):
        with self._fn_lock:
            if self._fn is None:
                import tensorflow as tf

                model = self.inference_model
                self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                                       input_signature=[tf.TensorSpec((None, params.N_MELS, None, 1), tf.float32)])
            return self._fn

    def embed(self, waveform: np.ndarray) -> Embedding:
        """The :class:`Embedding` of a mono 32 kHz waveform in [-1, 1] of any length."""
        return self.embed_many([waveform])[0]

    def embed_many(self, waveforms: Sequence[np.ndarray]) -> list[Embedding]:
        """:meth:`embed` for many waveforms, batching those with the same number of mel frames."""
        mels = [frontend.log_mel(w) for w in waveforms]
        out: list[Embedding | None] = [None] * len(mels)
        by_length: dict[int, list[int]] = {}
        for i, mel in enumerate(mels):
            by_length.setdefault(mel.shape[1], []).append(i)
        for frames, members in by_length.items():
            step = max(1, MAX_BATCH_FRAMES // frames)
            for start in range(0, len(members), step):
                chunk = members[start:start + step]
                got = self.run(np.stack([mels[i] for i in chunk]))
                for j, i in enumerate(chunk):
                    out[i] = Embedding(got["embedding"][j], got["logits"][j], got["sequence"][j])
        return out  # type: ignore[return-value]

    def labels(self) -> list[str]:
        """The class names of the logits: a ``class_labels_indices.csv`` beside the checkpoint, else AudioSet's."""
        beside = self.path.with_name(params.LABELS_FILE)
        names = read_labels(beside) if beside.is_file() else audioset_labels()
        if len(names) != self.num_classes:
            return [f"class_{i}" for i in range(self.num_classes)]
        return names


def _official_name(path: Path, digest: str, width: float) -> str:
    for ckpt in params.CHECKPOINTS.values():
        if digest == ckpt.sha256 or (path.name == ckpt.filename and width == ckpt.width):
            return ckpt.name
    return path.stem


_MODELS: dict[tuple[str, int, int], EfficientATModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(spec: str = "", *, download: bool = True) -> EfficientATModel:
    """The EfficientAT model for ``spec`` (an official name like "mn04_as", a .pt path, or "" for the default).

    Loaded once per process and checkpoint file (a changed file loads again).
    Raises ``EfficientATUnavailable``, saying how to get the weights, when they
    cannot be found (or, with ``download=False``, are not on this machine).
    """
    path = weights.resolve_checkpoint(spec, download=download)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = EfficientATModel(path)
        return _MODELS[key]


def embed(waveform: np.ndarray, model: str | EfficientATModel = "") -> Embedding:
    """(embedding, logits, sequence) of a mono 32 kHz waveform with the model ``model`` names (see :func:`load_model`)."""
    return (model if isinstance(model, EfficientATModel) else load_model(model)).embed(waveform)


def to_32k(clip: Clip) -> np.ndarray:
    """The clip's samples at 32 kHz, float32; AudioError for NaN/inf samples."""
    y = np.asarray(clip.samples, dtype=np.float32).ravel()
    if not np.isfinite(y).all():
        raise AudioError(f"{clip.name or 'The clip'} contains NaN or infinite samples; EfficientAT can't use it.")
    return resample(y, clip.sr, params.SAMPLE_RATE) if y.size else y


def read_labels(path: str | Path) -> list[str]:
    """The ``display_name`` column of an ``index,mid,display_name`` CSV, in index order."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "display_name" not in rows[0] or "index" not in rows[0]:
        raise weights.EfficientATUnavailable(f"{path} is not a class list (index,mid,display_name).")
    return [r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"]))]


_LABELS: list[str] = []


def audioset_labels() -> list[str]:
    """The 527 AudioSet class names of the official checkpoints' logits, in order."""
    if not _LABELS:
        _LABELS.extend(read_labels(PACKAGED_LABELS))
    return list(_LABELS)


def top_classes(logits: np.ndarray, k: int = 5, names: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """The ``k`` most probable classes (sigmoid of the logits, averaged over any leading axes), best first."""
    logits = np.asarray(logits, dtype=np.float32)
    probs = (1.0 / (1.0 + np.exp(-logits))).reshape(-1, logits.shape[-1]).mean(axis=0)
    names = list(names) if names is not None else audioset_labels()
    if len(names) != len(probs):
        raise ValueError(f"{len(names)} class names for {len(probs)} logits.")
    order = np.argsort(-probs, kind="stable")[: max(0, k)]
    return [(names[i], float(probs[i])) for i in order]
