"""YAMNet embeddings and AudioSet class scores, from TF Hub, a SavedModel or a TFLite file.

YAMNet (tensorflow/models, research/audioset/yamnet) turns 16 kHz audio into one
1024-d embedding and 521 AudioSet class scores per 0.975 s window, every 0.48 s.
Framing matches the SavedModel's ``pad_waveform``: windows start at 0, 0.48 s,
0.96 s, ... and the waveform is zero-padded at the end so the last one is whole
(a clip shorter than one window gives one window).

Where the model comes from (first match wins): ``YAMNetConfig.model``, then
``$AUDIOCLF_YAMNET``, then ``<workspace>/models/yamnet/yamnet.tflite``, then
TF Hub (``https://tfhub.dev/google/yamnet/1``). A spec is a URL, a SavedModel
folder or a ``.tflite`` file. Each model is loaded once per process.

A SavedModel is a TensorFlow graph, and a graph can read, write and delete files,
so ``YAMNetConfig.model`` (which a run's ``config.json``, a study or any settings
file can set) may only name a trusted source: a file or folder in the workspace's
models folder, the model ``$AUDIOCLF_YAMNET`` names (the owner's setting), or TF
Hub's YAMNet. Anything else is refused with :class:`UntrustedModel` before it is
opened.

The shipped TFLite model takes one window per call and hides the embedding in
an intermediate tensor. We rewrite its flatbuffer in memory so the embedding
is a regular output and its fixed-size front end (reshape/gather constants)
takes ``BATCH`` windows per call: same numbers, no debug-mode tensor
preservation, fewer calls.
"""
from __future__ import annotations

import csv
import hashlib
import os
import threading
import warnings
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from audioclf import workspace
from audioclf.audio import AudioError, Clip, resample
from audioclf.errors import AudioclfError
from audioclf.features import Features, YAMNetConfig, sources
from audioclf.features.threads import network_threads

SAMPLE_RATE = 16000
WINDOW = 15600  # 0.975 s: 96 log-mel frames of 25 ms every 10 ms
HOP = 7680  # 0.48 s
EMBEDDING_DIM = 1024
NUM_CLASSES = 521
BATCH = 4  # windows per TFLite call (docs/RESULTS.md, "Measurements behind settings in the code")

DEFAULT_HANDLE = "https://tfhub.dev/google/yamnet/1"
ENV_MODEL = "AUDIOCLF_YAMNET"
TFLITE_NAME = "yamnet.tflite"
CLASS_MAP_NAME = "yamnet_class_map.csv"
EMBEDDING_TENSOR = "yamnet_frames/global_average_pooling2d/Mean"
NAMES = tuple(f"yamnet_{i}" for i in range(EMBEDDING_DIM))


class YAMNetUnavailable(AudioclfError, RuntimeError):
    """No YAMNet model could be loaded; the message says how to provide one.

    Also a RuntimeError, as it was before the library had one error base."""


class UntrustedModel(YAMNetUnavailable):
    """A config names a YAMNet model outside the trusted sources (see the module doc)."""


NOT_SET_UP = "YAMNet is not set up on this machine (it would be downloaded from TF Hub). "


def how_to_provide() -> str:
    """The instructions every :class:`YAMNetUnavailable` message ends with."""
    local = workspace.models_dir() / "yamnet" / TFLITE_NAME
    return (
        f"To use YAMNet features, do one of: set {ENV_MODEL} to a yamnet.tflite file or a "
        f"YAMNet SavedModel folder; put {TFLITE_NAME} (with {CLASS_MAP_NAME}) at {local}; "
        f"or connect to the internet so TF Hub can download {DEFAULT_HANDLE}."
    )


def availability(model: str = "") -> str | None:
    """None if YAMNet `model` (see :func:`resolve_spec`) can be loaded without a download, else why not.

    Cheap (no model is loaded), so a form or a command can refuse YAMNet features
    before minutes of work start. A TF Hub handle counts as available once TF Hub
    has it cached (e.g. after Explore's "Try downloading it from TF Hub").
    """
    if not trusted_source(model) and not sources.missing(model):
        return _refusal(model)
    spec = resolve_spec(model)
    if _is_url(spec):
        return None if _hub_cached(spec) else NOT_SET_UP + how_to_provide()
    path = Path(spec)
    if not path.exists():
        return f"No YAMNet model at {path}. {how_to_provide()}"
    if not path.is_dir() and path.suffix != ".tflite":
        return f"{path} is neither a .tflite file nor a SavedModel folder. {how_to_provide()}"
    return None


def require_available(model: str = "") -> None:
    """Raise :class:`YAMNetUnavailable` with :func:`availability`'s message if YAMNet is not available."""
    check_source(model)
    reason = availability(model)
    if reason:
        raise YAMNetUnavailable(reason)


def hub_cache_dir() -> Path:
    """Where TF Hub keeps downloads for audioclf: $TFHUB_CACHE_DIR, else the workspace's models/tfhub."""
    return Path(os.environ.get("TFHUB_CACHE_DIR") or workspace.models_dir() / "tfhub")


def _hub_cached(handle: str) -> bool:
    # tensorflow_hub caches a handle under sha1(handle) (compressed_module_resolver._module_dir).
    folder = hub_cache_dir() / hashlib.sha1(handle.encode("utf8")).hexdigest()
    return (folder / "saved_model.pb").is_file()


class YAMNetModel(Protocol):
    """A loaded YAMNet: ``embed`` maps a padded 16 kHz waveform to (scores, embeddings)."""

    spec: str

    def embed(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def class_names(self) -> list[str]: ...


# ---------------------------------------------------------------- framing


def num_frames(n_samples: int) -> int:
    """Number of YAMNet windows for ``n_samples`` at 16 kHz (at least 1)."""
    return 1 + -(-max(0, n_samples - WINDOW) // HOP)


def pad_waveform(y: np.ndarray) -> np.ndarray:
    """Zero-pad the end of ``y`` to a whole number of windows, as YAMNet's SavedModel does."""
    n = WINDOW + (num_frames(len(y)) - 1) * HOP
    out = np.zeros(n, dtype=np.float32)
    out[: len(y)] = y
    return out


def frame_waveform(y: np.ndarray) -> np.ndarray:
    """(frames, WINDOW) windows of the padded waveform, a read-only strided view."""
    return np.lib.stride_tricks.sliding_window_view(pad_waveform(y), WINDOW)[::HOP]


def frame_times(n: int) -> np.ndarray:
    """Centres (s) of the first ``n`` windows."""
    return ((np.arange(n) * HOP + WINDOW / 2) / SAMPLE_RATE).astype(np.float32)


def to_16k(clip: Clip) -> np.ndarray:
    """The clip's samples at 16 kHz, float32; AudioError for NaN/inf samples."""
    y = np.asarray(clip.samples, dtype=np.float32).ravel()
    if not np.isfinite(y).all():
        raise AudioError(f"{clip.name or 'The clip'} contains NaN or infinite samples; YAMNet can't use it.")
    return resample(y, clip.sr, SAMPLE_RATE) if y.size else y


# ---------------------------------------------------------------- public API


def extract_yamnet(clip: Clip, config: YAMNetConfig) -> Features:
    """YAMNet embeddings (frames, 1024) and AudioSet scores (frames, 521) of one clip."""
    return extract_yamnet_many([clip], config)[0]


def extract_yamnet_many(clips: Sequence[Clip], config: YAMNetConfig) -> list[Features]:
    """Like :func:`extract_yamnet` for many clips, batching windows across clips (TFLite)."""
    check_source(config.model)
    model = load_model(config.model)
    waves = [to_16k(c) for c in clips]
    if isinstance(model, TFLiteYAMNet):
        # Short clips (one window each) only batch across clips.
        windows = [frame_waveform(y) for y in waves]
        scores, emb = model.run_windows(np.concatenate(windows) if windows else np.zeros((0, WINDOW), np.float32))
        bounds = np.cumsum([0] + [len(w) for w in windows])
        parts = [(scores[a:b], emb[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        parts = [model.embed(pad_waveform(y)) for y in waves]
    return [_features(s, e, config, c.silent) for (s, e), c in zip(parts, clips)]


def _features(scores: np.ndarray, emb: np.ndarray, config: YAMNetConfig, silent: bool | None = None) -> Features:
    return Features(
        values=np.ascontiguousarray(emb, dtype=np.float32),
        times=frame_times(len(emb)),
        names=NAMES,
        config=config,
        scores=np.ascontiguousarray(scores, dtype=np.float32),
        silent=silent,
    )


def class_names(spec: str | None = None) -> list[str]:
    """The 521 AudioSet class names of the model ``spec`` resolves to."""
    return load_model(spec or "").class_names()


def top_classes(scores: np.ndarray, k: int = 5, names: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """The ``k`` classes with the highest score averaged over frames, best first."""
    scores = np.asarray(scores, dtype=np.float32)
    mean = scores.reshape(-1, scores.shape[-1]).mean(axis=0) if scores.size else np.zeros(scores.shape[-1])
    names = list(names) if names is not None else class_names()
    if len(names) != len(mean):
        raise ValueError(f"{len(names)} class names for {len(mean)} scores.")
    order = np.argsort(-mean, kind="stable")[: max(0, k)]
    return [(names[i], float(mean[i])) for i in order]


# ---------------------------------------------------------------- resolution and loading

_MODELS: dict[tuple, YAMNetModel] = {}
_MODELS_LOCK = threading.Lock()


def trusted_source(model: str) -> bool:
    """True if a config may name ``model``: "", the workspace's models, ``$AUDIOCLF_YAMNET``'s or TF Hub's YAMNet."""
    return sources.trusted(model, ENV_MODEL, known=(DEFAULT_HANDLE,))


def check_source(model: str) -> None:
    """Raise :class:`UntrustedModel`, saying what to do instead, unless :func:`trusted_source`."""
    if not trusted_source(model):
        if sources.missing(model):  # nothing there to load
            raise YAMNetUnavailable(f"No YAMNet model at {sources.absolute(model)}. {how_to_provide()}")
        raise UntrustedModel(_refusal(model))


def _refusal(model: str) -> str:
    return sources.refusal("YAMNet", model, ENV_MODEL, f"TF Hub ({DEFAULT_HANDLE})")


def resolve_spec(model: str = "") -> str:
    """Where YAMNet comes from: ``model``, ``$AUDIOCLF_YAMNET``, the workspace file, or TF Hub."""
    spec = (model or os.environ.get(ENV_MODEL, "")).strip()
    if not spec:
        local = workspace.models_dir() / "yamnet" / TFLITE_NAME
        spec = str(local) if local.is_file() else DEFAULT_HANDLE
    if _is_url(spec):
        return spec
    return str(Path(spec).expanduser().resolve())


def load_model(model: str = "", *, num_threads: int | None = None, batch: int = BATCH) -> YAMNetModel:
    """The YAMNet model for ``model`` (see :func:`resolve_spec`), loaded once per process.

    ``batch`` is the TFLite windows per call; 0 selects the plain per-window
    interpreter reading the embedding from preserved intermediate tensors.
    """
    spec = resolve_spec(model)
    # In the main process TFLite gets up to 4 of the cores (the interpreter's own default is 1).
    threads = num_threads or network_threads("yamnet", main=max(1, min(4, os.cpu_count() or 1)))
    key = (spec, threads, batch) if spec.endswith(".tflite") else (spec,)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load(spec, threads, batch)
        return _MODELS[key]


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://", "gs://"))


def _load(spec: str, threads: int, batch: int) -> YAMNetModel:
    if _is_url(spec):
        return SavedModelYAMNet(spec)
    path = Path(spec)
    if not path.exists():
        raise YAMNetUnavailable(f"No YAMNet model at {path}. {how_to_provide()}")
    if path.is_dir():
        return SavedModelYAMNet(spec)
    if path.suffix != ".tflite":
        raise YAMNetUnavailable(f"{path} is neither a .tflite file nor a SavedModel folder. {how_to_provide()}")
    return TFLiteYAMNet(path, num_threads=threads, batch=batch)


def _read_class_map(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "display_name" not in rows[0]:
        raise YAMNetUnavailable(f"{path} is not a YAMNet class map (index,mid,display_name).")
    return [r["display_name"] for r in rows]


def _generic_names(n: int = NUM_CLASSES) -> list[str]:
    return [f"class_{i}" for i in range(n)]


# ---------------------------------------------------------------- TF Hub / SavedModel


class SavedModelYAMNet:
    """YAMNet as a SavedModel (TF Hub handle or local folder): waveform -> scores, embeddings, log-mel."""

    def __init__(self, spec: str):
        self.spec = spec
        # TF Hub caches downloads under TFHUB_CACHE_DIR; keep them in the workspace.
        os.environ.setdefault("TFHUB_CACHE_DIR", str(hub_cache_dir()))
        try:
            import tensorflow_hub as hub

            self._model = hub.load(spec)
        except Exception as exc:  # hub raises many types (OSError, URLError, ValueError...)
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise YAMNetUnavailable(f"Could not load YAMNet from {spec} ({reason}). {how_to_provide()}") from None
        self._lock = threading.Lock()

    def embed(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        with self._lock:
            out = self._model(tf.constant(waveform, dtype=tf.float32))
        if isinstance(out, dict):
            scores, emb = out["scores"], out["embeddings"]
        else:
            scores, emb = out[0], out[1]
        return np.asarray(scores, np.float32), np.asarray(emb, np.float32)

    def class_names(self) -> list[str]:
        path = None
        if hasattr(self._model, "class_map_path"):
            path = Path(self._model.class_map_path().numpy().decode())
        elif not _is_url(self.spec):
            path = Path(self.spec) / "assets" / CLASS_MAP_NAME
        return _read_class_map(path) if path is not None and path.is_file() else _generic_names()


# ---------------------------------------------------------------- TFLite


class TFLiteYAMNet:
    """YAMNet as a .tflite file, run with ai_edge_litert; one lock serialises calls (interpreters aren't thread-safe)."""

    def __init__(self, path: Path, *, num_threads: int = 1, batch: int = BATCH):
        self.spec = str(path)
        self.path = Path(path)
        self.num_threads = num_threads
        self._lock = threading.Lock()
        try:
            self._single = _Runner(self.path, num_threads, 1 if batch else 0)
        except YAMNetUnavailable:
            raise
        except Exception as exc:  # the runtime raises ValueError/RuntimeError for bad files
            raise YAMNetUnavailable(f"{path} is not a usable YAMNet TFLite model ({exc}). {how_to_provide()}") from None
        self._batched = self._batched_runner(batch) if batch > 1 else None
        self.batch = self._batched.batch if self._batched is not None else (1 if batch else 0)

    def _batched_runner(self, batch: int) -> _Runner | None:
        """A runner for ``batch`` windows per call, if it gives what one window per call gives."""
        x = np.random.default_rng(0).uniform(-1, 1, (batch, WINDOW)).astype(np.float32)
        try:
            runner = _Runner(self.path, self.num_threads, batch)
            got = runner(x)
            want = [np.concatenate(p) for p in zip(*(self._single(w[None]) for w in x))]
        except Exception:  # an unfamiliar graph: stay correct, one window per call
            return None
        same = all(np.allclose(g, w, rtol=1e-4, atol=1e-5) for g, w in zip(got, want))
        return runner if same else None

    def run_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n, 521) and embeddings (n, 1024) of (n, WINDOW) 16 kHz windows."""
        windows = np.asarray(windows, dtype=np.float32).reshape(-1, WINDOW)
        scores = np.empty((len(windows), NUM_CLASSES), np.float32)
        emb = np.empty((len(windows), EMBEDDING_DIM), np.float32)
        with self._lock:
            start = 0
            if self._batched is not None:
                n = self._batched.batch
                for start in range(0, len(windows) - n + 1, n):
                    scores[start : start + n], emb[start : start + n] = self._batched(windows[start : start + n])
                start = (len(windows) // n) * n
            for i in range(start, len(windows)):
                scores[i : i + 1], emb[i : i + 1] = self._single(windows[i : i + 1])
        return scores, emb

    def embed(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.run_windows(frame_waveform(waveform))

    def class_names(self) -> list[str]:
        path = self.path.with_name(CLASS_MAP_NAME)
        return _read_class_map(path) if path.is_file() else _generic_names()


class _Runner:
    """One interpreter taking ``batch`` windows per call (0 = the file as is, embedding from preserved tensors)."""

    def __init__(self, path: Path, num_threads: int, batch: int):
        from ai_edge_litert.interpreter import Interpreter

        self.batch = max(1, batch)
        if batch == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that's the point here
                self._it = Interpreter(
                    model_path=str(path), num_threads=num_threads, experimental_preserve_all_tensors=True
                )
            self._emb = _tensor_index(self._it, EMBEDDING_TENSOR)
        else:
            self._it = Interpreter(model_content=_rewrite(path, batch), num_threads=num_threads)
            self._emb = _tensor_index(self._it, EMBEDDING_TENSOR)
        self._it.allocate_tensors()
        self._input = self._it.get_input_details()[0]["index"]
        self._scores = next(
            d["index"] for d in self._it.get_output_details() if d["shape"][-1] == NUM_CLASSES
        )

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._it.set_tensor(self._input, np.ascontiguousarray(windows, dtype=np.float32))
        self._it.invoke()
        return self._it.get_tensor(self._scores), self._it.get_tensor(self._emb)


def _tensor_index(interpreter, name: str) -> int:
    for t in interpreter.get_tensor_details():
        if t["name"] == name:
            return t["index"]
    raise YAMNetUnavailable(f"The TFLite model has no tensor {name!r}; is it YAMNet?")


def _rewrite(path: Path, batch: int) -> bytes:
    """The .tflite model with the embedding as an output and a front end for ``batch`` windows.

    YAMNet's TFLite front end hard-codes one window: reshape to (15600,),
    frame into (195, 80) hops, gather 96 STFT frames, ..., reshape to
    (1, 96, 64, 1) for the CNN. Scaling the leading dimension of those shape
    constants and offsetting the gather indices per window makes each window
    flow through independently, so results equal one window per call.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(str(path))
    graph = model.subgraphs[0]
    names = {t.name.decode(): i for i, t in enumerate(graph.tensors)}
    if EMBEDDING_TENSOR not in names:
        raise YAMNetUnavailable(f"{path} has no tensor {EMBEDDING_TENSOR!r}; is it YAMNet?")
    graph.outputs = list(graph.outputs) + [names[EMBEDDING_TENSOR]]
    if batch == 1:
        return bytes(fb.convert_object_to_bytearray(model))

    def const(i: int) -> np.ndarray:
        t = graph.tensors[i]
        return np.frombuffer(bytes(model.buffers[t.buffer].data), np.int32).reshape(t.shape).copy()

    done: set[int] = set()  # constants can be shared (reshape and slice both use (15600,))

    def set_const(i: int, value: np.ndarray) -> None:
        done.add(i)
        value = np.ascontiguousarray(value, dtype=np.int32)
        model.buffers[graph.tensors[i].buffer].data = np.frombuffer(value.tobytes(), np.uint8)
        graph.tensors[i].shape = np.array(value.shape, np.int32)

    stft_frames = None  # rows per window in the (frames, 80) hop view
    for op in graph.operators:
        kind = fb.opcode_to_name(model, op.opcodeIndex)
        inputs = list(op.inputs)
        if any(i in done for i in inputs[1:]):
            continue
        if kind == "RESHAPE":
            shape = const(inputs[1])
            if shape.tolist() == [WINDOW]:
                shape[0] = batch * WINDOW
            else:
                if shape.size == 2 and stft_frames is None:
                    stft_frames = int(shape[0])
                shape[0] *= batch
            set_const(inputs[1], shape)
        elif kind == "SLICE":
            size = const(inputs[2])
            size[0] *= batch
            set_const(inputs[2], size)
        elif kind == "STRIDED_SLICE":
            end = const(inputs[2])
            end[0] *= batch
            set_const(inputs[2], end)
        elif kind == "GATHER":
            idx = const(inputs[1])
            # (96, 5) indices pick STFT frames from each window's 195 hops; (1, 2) pick 2 half-patches.
            step = stft_frames if idx.ndim == 2 and idx.shape[1] > 2 else idx.shape[-1]
            set_const(inputs[1], np.concatenate([idx + k * step for k in range(batch)]))
    graph.tensors[graph.inputs[0]].shape = np.array([batch, WINDOW], np.int32)
    graph.tensors[graph.inputs[0]].shapeSignature = None
    return bytes(fb.convert_object_to_bytearray(model))
