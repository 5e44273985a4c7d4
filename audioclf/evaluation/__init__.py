"""Evaluation: metrics of predictions (:mod:`~audioclf.evaluation.metrics`), k-fold
cross-validation (:mod:`~audioclf.evaluation.cross_validation`) and the suggested
confidence threshold (:mod:`~audioclf.evaluation.threshold`)."""
from audioclf.evaluation.cross_validation import CVResult, FoldParts, k_fold
from audioclf.evaluation.metrics import EvaluationError, Metrics, evaluate
from audioclf.evaluation.threshold import suggest_threshold, threshold_record

__all__ = ["CVResult", "EvaluationError", "FoldParts", "Metrics", "evaluate", "k_fold",
           "suggest_threshold", "threshold_record"]
