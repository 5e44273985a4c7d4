"""The pretrained network an export bundle carries for EfficientAT runs, as TFLite.

    from audioclf.export.backbone import checked_efficientat
    data, diff = checked_efficientat(model)     # bytes of efficientat.tflite, max abs difference from Keras

The file is the BatchNorm-folded inference network (the one audioclf runs) with
one signature, ``serving_default``: input ``mel`` (1, 128, frames, 1), the
normalised log-mel of ONE clip with any number of frames; outputs ``embedding``
(1, C), ``sequence`` (1, steps, C), ``hidden`` and ``logits`` (AudioSet). Batch 1
as for the classifier: one clip per call needs no padding, and the bundle's
``predict.py`` makes the same feature sequence from it that the feature type does.
TensorFlow is imported only when converting.
"""
from __future__ import annotations

import tempfile
import threading

import numpy as np

from ..errors import AudioclfError

EFFICIENTAT_FILE = "efficientat.tflite"
SIGNATURE = "serving_default"
MEL_INPUT = "mel"
# Log-mel frame counts the parity check runs: shorter than one step, between steps, one 0.96 s window,
# a 5 s clip (ESC's length): odd counts exercise the strided convolutions' padding.
PARITY_FRAMES = (7, 33, 96, 501)


class BackboneError(AudioclfError):
    """The backbone did not convert to TFLite or does not match Keras; message is for people."""


# Converting takes tens of seconds and gives the same file for the same checkpoint: once per process.
_CHECKED: dict[str, tuple[bytes, float]] = {}
_CHECKED_LOCK = threading.Lock()


def checked_efficientat(model) -> tuple[bytes, float]:
    """(:func:`efficientat_tflite`, :func:`efficientat_parity` of it) for ``model``, once per checkpoint file."""
    with _CHECKED_LOCK:
        if model.sha256 not in _CHECKED:
            data = efficientat_tflite(model)
            _CHECKED[model.sha256] = (data, efficientat_parity(data, model))
        return _CHECKED[model.sha256]


def efficientat_tflite(model) -> bytes:
    """``model``'s (an ``EfficientATModel``) folded network as TFLite built-in ops: batch 1, any frames."""
    import tensorflow as tf

    from ..features.efficientat import params

    spec = tf.TensorSpec([1, params.N_MELS, None, 1], tf.float32, name=MEL_INPUT)
    try:
        return keras_to_tflite(model.inference_model, SIGNATURE, spec)
    except TFLiteConversionError as exc:
        raise BackboneError(f"EfficientAT did not convert to TFLite: {exc}") from None


class TFLiteConversionError(AudioclfError):
    """A Keras model TFLite could not convert; the message is the converter's last error line."""


def keras_to_tflite(model, signature: str, input_spec) -> bytes:
    """``model`` as TFLite built-in ops with one endpoint, ``signature``, taking ``input_spec``
    (a ``tf.TensorSpec``); TFLiteConversionError with the converter's reason if it cannot."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="audioclf-tflite-") as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(signature, lambda x: model(x, training=False), input_signature=[input_spec])
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises ConverterError and others
            lines = [ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()]
            raise TFLiteConversionError((lines[-1] if lines else type(exc).__name__)[:300]) from None


def run_tflite(tflite: bytes, mel: np.ndarray) -> dict[str, np.ndarray]:
    """The TFLite network's outputs for one (128, frames) log-mel, batch axis dropped."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=tflite).get_signature_runner(SIGNATURE)
    out = runner(**{MEL_INPUT: np.ascontiguousarray(mel[None, :, :, None], dtype=np.float32)})
    return {k: np.asarray(v)[0] for k, v in out.items()}


def efficientat_parity(tflite: bytes, model, frames: tuple[int, ...] = PARITY_FRAMES) -> float:
    """Max abs difference between the TFLite and Keras outputs (every output) on log-mels of noise."""
    from ..features.efficientat import frontend, params

    rng = np.random.default_rng(0)
    worst = 0.0
    for n in frames:
        mel = frontend.log_mel(0.1 * rng.standard_normal(n * params.HOP_LENGTH).astype(np.float32))
        keras_out = model.run(mel[None])
        lite = run_tflite(tflite, mel)
        if set(lite) != set(keras_out):
            raise BackboneError(f"The TFLite backbone has outputs {sorted(lite)}, Keras {sorted(keras_out)}.")
        worst = max(worst, *(float(np.abs(lite[k] - keras_out[k][0]).max()) for k in lite))
    return worst
