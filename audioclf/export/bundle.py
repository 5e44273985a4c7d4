"""Export a run as a portable bundle that classifies audio without audioclf.

    from audioclf.export import export_run
    result = export_run(run_id, "bundle/")     # or: audioclf export RUN --out bundle/
    result.tflite                              # True if model.tflite was written

A bundle folder holds:

* ``model.tflite``: the classifier for ai-edge-litert (TFLite), one clip per call
  (batch 1, any number of frames), standardisation inside;
* ``saved_model/``: the same model for plain TensorFlow (``tf.saved_model.load``,
  endpoint ``serve``), batch of clips padded with ``PAD_VALUE``;
* ``model.keras``: the Keras file as trained, with ``audioclf_layers.py`` (a copy of
  :mod:`audioclf.model.layers`): ``import audioclf_layers`` and ``keras.models.load_model`` load it;
* ``labels.json``, ``features.json`` (the run's feature config), ``run.json``
  (run id, scores, the suggested "not sure" threshold, what converted);
* ``predict.py`` (:mod:`audioclf.export.standalone`), ``requirements.txt``, ``README.md``;
* ``yamnet.tflite`` for YAMNet runs (the model the run's features came from);
* ``efficientat.tflite`` for EfficientAT runs: the network, batch 1 and any number of
  frames (:mod:`audioclf.export.backbone`), checked against audioclf's Keras network
  at export; ``predict.py`` computes its log-mel input in NumPy.

Why batch 1 for TFLite: recurrent layers become TFLite ``WHILE`` loops over
tensor lists, and the converter's built-in ops need those lists' element shape
(batch x units) to be static. With a dynamic batch it asks for ``SELECT_TF_OPS``,
i.e. the Flex delegate, which ai-edge-litert does not ship. One clip per call
needs no padding, so the model's mask is all ones and the numbers are the same.
"""
from __future__ import annotations

import ast
import io
import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import AudioclfError
from ..training import runs
from ..training.config import FINETUNE_SEQUENCE
from . import backbone as backbone_tflite

BUNDLE_README = "README.md"
TFLITE = "model.tflite"
SAVED_MODEL = "saved_model"
FEATURES = "features.json"
RUN_INFO = "run.json"
SCRIPT = "predict.py"
# audioclf.model.layers without audioclf: `import audioclf_layers` before loading model.keras
LAYERS = "audioclf_layers.py"
YAMNET_FILE = "yamnet.tflite"
# What predict.py needs, pinned to the versions audioclf is tested with.
BASE_REQUIREMENTS = ("numpy==2.4.6", "soundfile==0.14.0", "soxr==1.1.0", "ai-edge-litert==2.3.0")
LIBROSA_REQUIREMENT = "librosa==0.11.0"
LIBROSA_KINDS = ("mfcc", "spectral")
# EfficientAT's front end: scipy's float32 FFT, as audioclf's (numpy's rounds differently in quiet bins)
SCIPY_REQUIREMENT = "scipy==1.17.1"
# The bundle's TFLite backbone must give the features the run was trained on (float32 rounding apart).
BACKBONE_MAX_DIFF = 1e-3

Say = Callable[[str], None]  # a line of text about what is being done


class ExportError(AudioclfError):
    """A run that cannot be exported; message is for people."""


@dataclass
class ExportResult:
    """What `export_run` wrote: the folder, whether TFLite converted (and why not)."""

    path: Path
    tflite: bool
    tflite_error: str = ""
    files: list[str] = field(default_factory=list)


def export_run(run_id: str, out_dir: str | Path, *, progress: Say | None = None) -> ExportResult:
    """Write the bundle of a finished run into ``out_dir`` (created; must be empty or new).

    Raises ExportError for an unfinished run, a non-empty destination or a
    YAMNet run whose YAMNet model is not a .tflite file.
    """
    from ..features import config_from_dict, config_to_dict

    say = progress or (lambda _msg: None)
    run = runs.load_run(run_id)
    if run.info.state != "done":
        raise ExportError(f"Run {run_id} is {run.info.state}, not done: it has no model to export.")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder; choose a new one.")
    out.mkdir(parents=True, exist_ok=True)
    features = config_to_dict(config_from_dict(run.config["features"]))
    also_yamnet = features["kind"] == "efficientat" and features.get("yamnet") is not None
    yamnet_src = _yamnet_source(features["model"] if features["kind"] == "yamnet" else features["yamnet"]) \
        if features["kind"] == "yamnet" or also_yamnet else None
    # A fine-tuned run's model holds the network itself and takes its log-mels: no backbone file.
    finetuned = features["kind"] == "efficientat" and features.get("sequence") == FINETUNE_SEQUENCE
    efficientat = _efficientat_model(features) if features["kind"] == "efficientat" and not finetuned else None

    say("Loading the model")
    model = runs.load_model(run_id)
    dims = int(model.input_shape[-1])
    shutil.copy2(run.path / runs.MODEL, out / runs.MODEL)
    write_layers(out / LAYERS)
    say("Writing the SavedModel")
    write_saved_model(model, out / SAVED_MODEL, dims)
    say("Converting to TFLite")
    error = ""
    try:
        (out / TFLITE).write_bytes(convert_tflite(model, dims))
    except ExportError as exc:
        error = str(exc)
    if yamnet_src is not None:
        shutil.copy2(yamnet_src, out / YAMNET_FILE)
        features["yamnet" if also_yamnet else "model"] = YAMNET_FILE  # the copy beside predict.py
    backbone = {}
    if efficientat is not None:
        backbone = _write_efficientat(efficientat, out / backbone_tflite.EFFICIENTAT_FILE, say)
        features["model"] = backbone_tflite.EFFICIENTAT_FILE
    from ..inference.confidence import run_threshold

    info = {"run_id": run_id, "name": run.info.name, "model": run.config.get("model", {}).get("kind"),
            "features": features["kind"], "threshold": run_threshold(run_id),
            "val_macro_f1": run.info.val_macro_f1, "test_macro_f1": run.info.test_macro_f1,
            "tflite": not error, "tflite_error": error, "input_dims": dims,
            "pad_value": _pad_value(), "finetuned": finetuned, **backbone}
    _write_json(out / runs.LABELS, list(run.labels))
    _write_json(out / FEATURES, features)
    _write_json(out / RUN_INFO, info)
    shutil.copy2(Path(__file__).with_name("standalone.py"), out / SCRIPT)
    reqs = list(BASE_REQUIREMENTS) + ([LIBROSA_REQUIREMENT] if features["kind"] in LIBROSA_KINDS else []) \
        + ([SCIPY_REQUIREMENT] if features["kind"] == "efficientat" else [])
    (out / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
    (out / BUNDLE_README).write_text(readme(info, list(run.labels), features), encoding="utf-8")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    say("Done")
    return ExportResult(out, not error, error, files)


def bundle_zip(run_id: str, *, progress: Say | None = None) -> bytes:
    """The bundle of a run as zip bytes (one top folder named after the run), for downloads."""
    with tempfile.TemporaryDirectory(prefix="audioclf-export-") as tmp:
        name = f"audioclf-{run_id}"
        result = export_run(run_id, Path(tmp) / name, progress=progress)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for rel in result.files:
                z.write(result.path / rel, f"{name}/{rel}")
        return buf.getvalue()


def write_saved_model(model, path: Path, dims: int) -> None:
    """A SavedModel of ``model`` with one endpoint, ``serve``: (batch, frames, dims) -> probabilities."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec([None, None, dims], tf.float32, name="features")])
    archive.write_out(str(path), verbose=False)


def convert_tflite(model, dims: int) -> bytes:
    """``model`` as TFLite built-in ops: one clip per call, any number of frames (ExportError if not)."""
    import tensorflow as tf

    # Batch fixed at 1: see the module docstring.
    spec = tf.TensorSpec([1, None, dims], tf.float32, name="features")
    try:
        return backbone_tflite.keras_to_tflite(model, "serve", spec)
    except backbone_tflite.TFLiteConversionError as exc:
        raise ExportError(f"TFLite conversion failed: {exc}") from None


def tflite_probabilities(tflite: bytes | str | Path, features: list[np.ndarray]) -> np.ndarray:
    """Run a bundle's model.tflite on (frames, dims) sequences, one call each (for checks)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite) if isinstance(tflite, bytes) else Interpreter(model_path=str(tflite))
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    rows = []
    for f in features:
        x = np.ascontiguousarray(np.asarray(f, np.float32)[None])
        it.resize_tensor_input(inp, list(x.shape))
        it.allocate_tensors()
        it.set_tensor(inp, x)
        it.invoke()
        rows.append(np.array(it.get_tensor(out), np.float32)[0])
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def _yamnet_source(model: str) -> Path:
    from ..features.yamnet import check_source, resolve_spec

    check_source(model)  # a run's config names it: copy only a trusted model
    spec = resolve_spec(model)
    if not spec.endswith(".tflite") or not Path(spec).is_file():
        raise ExportError(f"This run's YAMNet model is {spec}, not a .tflite file: the bundle needs YAMNet "
                          "as TFLite. Set AUDIOCLF_YAMNET to a yamnet.tflite file and export again.")
    return Path(spec)


def _efficientat_model(features: dict):
    from ..features.efficientat import EfficientATUnavailable, load_model

    try:
        return load_model(features.get("model", ""), download=False)
    except EfficientATUnavailable as exc:
        raise ExportError(f"This run's EfficientAT weights are not on this machine, and the bundle needs "
                          f"them: {exc}") from None


def _write_efficientat(model, path: Path, say: Say) -> dict:
    """Write ``efficientat.tflite``, checked against Keras; what run.json records about it."""
    say("Converting EfficientAT to TFLite")
    try:
        data, diff = backbone_tflite.checked_efficientat(model)
    except backbone_tflite.BackboneError as exc:
        raise ExportError(str(exc)) from None
    if diff > BACKBONE_MAX_DIFF:
        raise ExportError(f"EfficientAT as TFLite differs from audioclf's network by {diff:.2g} (more than "
                          f"{BACKBONE_MAX_DIFF:g}); the bundle would not compute the run's features.")
    path.write_bytes(data)
    return {"backbone": {"file": path.name, "checkpoint": model.name, "sha256": model.sha256,
                         "max_abs_diff": diff}}


def _pad_value() -> float:
    from ..model.sequences import PAD_VALUE

    return float(PAD_VALUE)


def write_layers(path: Path) -> None:
    """audioclf's custom Keras layers as one file that imports only Keras (constants inlined)."""
    from ..model import sequences

    text = Path(sequences.__file__).with_name("layers.py").read_text(encoding="utf-8")

    def inline(match: re.Match) -> str:
        names = [n.strip() for n in match.group(1).split(",")]
        return "\n".join(f"{n} = {getattr(sequences, n)!r}" for n in names)

    text = re.sub(r"^from \.sequences import ([\w, ]+?)\s*(#.*)?$", inline, text, flags=re.M)
    if any(isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("audioclf"))
           or isinstance(node, ast.Import) and any(a.name.startswith("audioclf") for a in node.names)
           for node in ast.walk(ast.parse(text))):
        raise ExportError("audioclf.model.layers imports more of audioclf than its constants; "
                          "the bundle cannot carry it alone.")
    header = ("# Copied from audioclf.model.layers by `audioclf export`: `import audioclf_layers` registers the\n"
              "# custom layers, then keras.models.load_model('model.keras') works without audioclf.\n")
    path.write_text(header + text, encoding="utf-8")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def readme(info: dict, labels: list[str], features: dict) -> str:
    """The bundle's README: what is in it, how to run it, what converts."""
    settings = ", ".join(f"{k}={v}" for k, v in features.items() if k != "kind")
    threshold = info.get("threshold")
    tflite = ("`model.tflite` converted with TFLite built-in ops." if info["tflite"] else
              f"No `model.tflite`: {info['tflite_error']} Use `saved_model/` with TensorFlow.")
    source = _source_note(features, info.get("backbone") or {})
    return f"""# audioclf model: {info.get('name') or info['run_id']}

A sound classifier trained with audioclf (run `{info['run_id']}`, {info['model']} on {features['kind']}
features), exported to run without audioclf.

Classes: {', '.join(labels)}.
Validation macro F1: {_score(info.get('val_macro_f1'))}; test macro F1: {_score(info.get('test_macro_f1'))}.

## Classify files

```bash
python -m venv .venv && .venv/bin/pip install -r requirements.txt
.venv/bin/python predict.py clip1.wav clip2.flac     # file,label,probability lines
```

Below a probability of {threshold if threshold is not None else 0} (the run's suggested "not sure" threshold:
95% of its correct validation predictions are at least this confident) the label is `unknown`,
none of the classes; `--threshold 0` turns that off, `--threshold 0.8` sets another.
{source}
## Files

| File | What |
|---|---|
| `model.tflite` | the classifier for ai-edge-litert / TFLite: input `[1, frames, {info['input_dims']}]` float32 features of ONE clip (any number of frames), output `[1, {len(labels)}]` class probabilities |
| `saved_model/` | the same for TensorFlow: `tf.saved_model.load("saved_model").serve(x)` with `x` `[clips, frames, {info['input_dims']}]`; pad shorter clips AFTER their last frame with {info['pad_value']:g} (the model masks padding) |
| `model.keras`, `audioclf_layers.py` | the Keras file as trained: `import audioclf_layers` (registers its custom layers), then `keras.models.load_model("model.keras")` |
{_backbone_row(features)}| `labels.json` | class names in the order of the model's outputs |
| `features.json` | the feature settings: {features['kind']} ({settings}) |
| `run.json` | run id, scores, the suggested threshold, what converted |
| `predict.py`, `requirements.txt` | the standalone classifier and what it needs |

Feature standardisation (and per-clip normalisation) is inside the model: it takes raw features.
`predict.py` computes them as audioclf does: decode with libsndfile, mix to mono, resample with
soxr (HQ), then for MFCCs trim leading and trailing audio quieter than `trim_db` below the peak, a
centred zero-padded STFT with a periodic Hann window, librosa's Slaney mel bank, MFCC (DCT-II).

## What converts to TFLite

{tflite}

Every architecture audioclf builds (SimpleRNN, LSTM, GRU, bidirectional LSTM, the dense baseline,
ensembles of them; tested) converts with TFLite built-in ops when the batch is fixed at one clip.
What does not convert is a dynamic batch for recurrent models: their loops keep per-step state in
tensor lists whose element shape (batch x units) TFLite's built-in ops need to know in advance;
otherwise the converter asks for `SELECT_TF_OPS` (the Flex delegate), which ai-edge-litert does not
include. One clip per call needs no padding, so nothing is lost.
"""


def _source_note(features: dict, backbone: dict) -> str:
    """Where a pretrained run's features come from, for the README ("" for MFCC and spectral runs)."""
    if features["kind"] == "yamnet":
        return ("\nThe features come from YAMNet: `yamnet.tflite` (the model this run was trained with, "
                "Apache-2.0, from tensorflow/models) is included; `--yamnet PATH` uses another copy.\n")
    if features["kind"] != "efficientat":
        return ""
    both = ("\nEach step also carries YAMNet's 1024-d embedding of the window whose centre is nearest "
            "(YAMNet on the clip at 16 kHz, resampled from 32 kHz; `yamnet.tflite`, Apache-2.0, is included); "
            "the model has a network for each part.\n") if features.get("yamnet") is not None else ""
    if features.get("sequence") == FINETUNE_SEQUENCE:
        return """
This run fine-tuned EfficientAT (Schmid et al. 2023, MIT licence): the model holds the whole network
(its frozen lower blocks, the fine-tuned top, the head), so `model.tflite` and `saved_model/` take the
network's input, the normalised log-mel `[frames, 128]`. `predict.py` computes it in NumPy from the clip
at 32 kHz (pre-emphasis 0.97; centred STFT, n_fft 1024, hop 320, a symmetric Hann of 800; 128 Kaldi mel
bands 0-15 kHz; log(x + 1e-5); (x + 4.5) / 5). `model.keras` holds audioclf's EfficientAT layers, which
`audioclf_layers.py` does not carry: load it where audioclf is installed.
"""
    return f"""
The features come from EfficientAT (Schmid et al. 2023, MIT licence), checkpoint `{backbone.get('checkpoint')}`:
`efficientat.tflite` is its network with BatchNorm folded in, as audioclf runs it, checked at export
against audioclf's Keras network (largest difference {backbone.get('max_abs_diff', 0.0):.2g}).
`predict.py` computes its input in NumPy from the clip at 32 kHz (pre-emphasis 0.97; centred STFT,
n_fft 1024, hop 320, a symmetric Hann of 800; 128 Kaldi mel bands 0-15 kHz; log(x + 1e-5);
(x + 4.5) / 5), then the `{features.get('sequence')}` sequence as audioclf does: `frames` is the last
feature map averaged over frequency, one step per 0.32 s from one pass over the clip; `windows` the
network's clip embedding of each 0.96 s window, every 0.32 s.
""" + both


def _backbone_row(features: dict) -> str:
    if features["kind"] == "yamnet":
        return "| `yamnet.tflite` | YAMNet: 0.975 s of 16 kHz audio in, its 1024-d embedding is the feature |\n"
    if features["kind"] == "efficientat":
        yamnet = ("| `yamnet.tflite` | YAMNet: 0.975 s of 16 kHz audio in, its 1024-d embedding joins each step |\n"
                  if features.get("yamnet") is not None else "")
        return ("| `efficientat.tflite` | EfficientAT: signature `serving_default`, input `mel` `[1, 128, frames, 1]` "
                "(one clip's normalised log-mel, any number of frames), outputs `embedding`, `sequence` "
                "`[1, steps, C]`, `hidden`, `logits` (527 AudioSet classes) |\n") + yamnet
    return ""


def _score(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"
