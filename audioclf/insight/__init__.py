"""Insight into a data set: its health (:mod:`~audioclf.insight.health`), a map of its clips
(:mod:`~audioclf.insight.mapping`), per-class profiles (:mod:`~audioclf.insight.profiles`) and
plotly figures of everything (:mod:`~audioclf.insight.plotting`)."""
from audioclf.insight import plotting
from audioclf.insight.health import Finding, HealthReport, apply_fix, check_dataset
from audioclf.insight.mapping import ClipVectors, MappingError, clip_vectors, project
from audioclf.insight.profiles import ClassProfiles, class_profiles

__all__ = ["ClassProfiles", "ClipVectors", "Finding", "HealthReport", "MappingError", "apply_fix", "check_dataset",
           "class_profiles", "clip_vectors", "plotting", "project"]
