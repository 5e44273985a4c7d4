"""Inference: a trained run's predictions (:mod:`~audioclf.inference.predict`), the "not sure"
threshold (:mod:`~audioclf.inference.confidence`) and live streams (:mod:`~audioclf.inference.live`)."""
from audioclf.inference import live
from audioclf.inference.confidence import UNKNOWN, UNKNOWN_TEXT, record_from_predictions, run_threshold, threshold_info, threshold_text
from audioclf.inference.live import LiveClassifier, LiveError, LiveSession, to_mono_float
from audioclf.inference.predict import FeatureMismatchError, PredictError, Prediction, Predictor, Segment

__all__ = ["FeatureMismatchError", "LiveClassifier", "LiveError", "LiveSession", "PredictError", "Prediction",
           "Predictor", "Segment", "UNKNOWN", "UNKNOWN_TEXT", "live", "record_from_predictions", "run_threshold", "threshold_info", "threshold_text",
           "to_mono_float"]
