"""Inference: a trained run's predictions (:mod:`~audioclf.inference.predict`), the "not sure"
threshold (:mod:`~audioclf.inference.confidence`) and live streams: the stream's audio
(:mod:`~audioclf.inference.stream`), its windows and labels (:mod:`~audioclf.inference.live`), the
event log (:mod:`~audioclf.inference.events`) and the worker thread (:mod:`~audioclf.inference.session`)."""
from audioclf.inference import live
from audioclf.inference.confidence import UNKNOWN, UNKNOWN_TEXT, record_from_predictions, run_threshold, threshold_info, threshold_text
from audioclf.inference.events import LiveEvent
from audioclf.inference.live import SILENCE, LiveClassifier, LivePrediction
from audioclf.inference.predict import FeatureMismatchError, PredictError, Prediction, Predictor, Segment
from audioclf.inference.session import LiveSession, LiveSnapshot
from audioclf.inference.stream import LiveError, to_mono_float

__all__ = ["FeatureMismatchError", "LiveClassifier", "LiveError", "LiveEvent", "LivePrediction",
           "LiveSession", "LiveSnapshot", "PredictError", "Prediction", "Predictor", "SILENCE", "Segment",
           "UNKNOWN", "UNKNOWN_TEXT", "live", "record_from_predictions", "run_threshold", "threshold_info",
           "threshold_text", "to_mono_float"]
