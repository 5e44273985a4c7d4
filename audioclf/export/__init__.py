"""Export: portable bundles of a run (:mod:`~audioclf.export.bundle`) and the bundle's own
classifier script (:mod:`~audioclf.export.standalone`, which imports no audioclf)."""
from audioclf.export.bundle import (ExportError, ExportResult, bundle_zip, convert_tflite, export_run,
                                    tflite_probabilities)

__all__ = ["ExportError", "ExportResult", "bundle_zip", "convert_tflite", "export_run", "tflite_probabilities"]
