"""Using a trained run: `predict` (files, folders, zips; top-k or which class when) and `export`
(a bundle that runs without audioclf)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .common import (EXIT_ERROR, EXIT_OK, CLIError, Command, ProgressBar, add_format_argument, err, format_table,
                     import_tensorflow_quietly, write_rows)

SMALL_BATCH = 20  # fewer files than this predict without a progress bar


# ---------------------------------------------------------------- predict

def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to 1 (0 = off), got {text!r}")
    return value


def predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders or .zip files")
    p.add_argument("--run", help="run id (default: the finished run with the best validation macro F1)")
    p.add_argument("--top-k", type=int, default=3, help="classes per file (default: 3)")
    p.add_argument("--threshold", type=probability, default=None, metavar="P",
                   help="below this confidence the answer is 'unknown' (none of the classes); "
                        "default: the run's suggestion from its validation predictions; 0 turns it off")
    p.add_argument("--segments", action="store_true",
                   help="print which class when instead: start,end,label,confidence rows per file "
                        "(windows of long clips, neighbours with the same answer merged)")
    add_format_argument(p)


def run_predict(args: argparse.Namespace) -> int:
    from ..inference.predict import Predictor
    from ..training import runs

    run_id = args.run
    if not run_id:
        best = runs.best_run()
        if best is None:
            raise CLIError("No finished run to predict with; train one (`audioclf train DATA`) or give --run ID.")
        run_id = best.id
        split, score = runs.headline_score(best)
        which = "validation" if split == "val" else "test"
        err(f"using run {run_id} (best {which} macro F1 {score:.3f}); choose one with --run")
    runs.run_dir(run_id)  # a wrong id fails before the slow import
    import_tensorflow_quietly()
    predictor = Predictor.load(run_id)
    threshold = _threshold(args.threshold, predictor.suggested_threshold, args.quiet)
    with tempfile.TemporaryDirectory(prefix="audioclf-predict-") as tmp:
        paths = _audio_files(args.paths, Path(tmp))
        if not paths:
            raise CLIError("No audio files to predict.")
        results = predictor.predict_files(paths, threshold=threshold,
                                          progress=ProgressBar("predicting", args.quiet or len(paths) < SMALL_BATCH))
    if args.segments:
        segments = [{"path": r.path, **seg.to_dict()} for r in results if r.prediction
                    for seg in r.prediction.segments()]
        if args.format == "table":
            segments = [{**r, "path": Path(r["path"]).name} for r in segments]
        write_rows(segments, args.format)
    else:
        rows = _prediction_rows(results, max(1, min(args.top_k, len(predictor.labels))), args.format)
        if args.format != "table":
            write_rows(rows, args.format)
        elif table := _prediction_table(rows):
            print(table)
    failed = [r for r in results if r.error]
    for r in failed:
        err(f"error: {r.error}")
    return EXIT_ERROR if failed else EXIT_OK


def _threshold(given: float | None, suggested: float | None, quiet: bool) -> float:
    """--threshold, else the run's suggestion (0 = off), said on stderr."""
    if given is not None:
        return given
    if not quiet:
        err(f"'not sure' threshold {suggested:.2f} (the run's suggestion; --threshold 0 turns it off)"
            if suggested else "no 'not sure' threshold (the run suggests none; set one with --threshold)")
    return suggested or 0.0


def _audio_files(sources: Sequence[str], tmp: Path) -> list[str]:
    """Files from files, folders (recursive) and zips (unpacked safely into `tmp`)."""
    from ..audio import SUPPORTED_EXTENSIONS
    from ..datasets import safe_extract

    out: list[str] = []
    for i, src in enumerate(sources):
        path = Path(src).expanduser()
        if path.is_file() and path.suffix.lower() == ".zip":
            path = safe_extract(path, tmp / f"zip{i}")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                           and not any(part.startswith(".") or part == "__MACOSX" for part in p.parts[-3:]))
            if not found:
                err(f"no audio files ({', '.join(SUPPORTED_EXTENSIONS)}) in {src}")
            out += [str(p) for p in found]
        else:
            out.append(str(path))  # a missing or bad file gets its error from load_audio
    return out


def _prediction_rows(results, k: int, format: str) -> list[dict]:
    """One row per file: predicted class, confidence, top-k (flat columns, or a list in JSON)."""
    rows = []
    for r in results:
        p = r.prediction
        row: dict[str, Any] = {"path": r.path, "predicted": p.label if p else None,
                               "confidence": round(p.confidence, 4) if p else None}
        top = p.top_k(k) if p else []
        if format == "json":
            row["top_k"] = [{"label": lab, "probability": round(pr, 4)} for lab, pr in top]
        else:
            for i in range(k):
                lab, pr = top[i] if i < len(top) else (None, None)
                row[f"top{i + 1}"] = lab
                row[f"p{i + 1}"] = round(pr, 4) if pr is not None else None
        row["silent"] = bool(p.silent) if p else None
        row["error"] = r.error or None
        rows.append(row)
    return rows


def _prediction_table(rows: list[dict]) -> str:
    # Errors go to stderr; a silent column only when some clip is silent.
    ok = [{**r, "path": Path(r["path"]).name, "silent": "silent" if r["silent"] else ""}
          for r in rows if not r["error"]]
    cols = [c for c in (ok[0] if ok else {}) if c != "error" and (c != "silent" or any(r["silent"] for r in ok))]
    return format_table(ok, cols)


PREDICT = Command("predict", "predict the classes of audio files",
                  "Predict audio files, folders (searched recursively) or .zip archives with a trained run, "
                  "and print the top-k classes per file. Files that cannot be read are reported on stderr "
                  "and make the exit status 1.", predict_arguments, run_predict)


# ---------------------------------------------------------------- export

def export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_ID", help="a finished run (see `audioclf runs`)")
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder for the bundle")


def run_export(args: argparse.Namespace) -> int:
    from ..export.bundle import export_run
    from ..training import runs

    runs.run_dir(args.run)  # a wrong id fails before the slow import
    import_tensorflow_quietly()
    result = export_run(args.run, args.out, progress=None if args.quiet else lambda m: err(f"export: {m}"))
    if not result.tflite:
        err(f"note: no model.tflite ({result.tflite_error}); the bundle's saved_model/ needs TensorFlow")
    print(result.path)
    return EXIT_OK


EXPORT = Command("export", "export a run as a bundle that runs without audioclf",
                 "Write a finished run's model as TFLite (model.tflite), a TensorFlow SavedModel and the Keras "
                 "file, with labels.json, features.json, a standalone predict.py (numpy, soundfile, soxr, "
                 "ai-edge-litert, librosa for MFCCs, scipy for EfficientAT) and its requirements.txt, into a new "
                 "folder; YAMNet runs include yamnet.tflite, EfficientAT runs efficientat.tflite. Prints the "
                 "folder.", export_arguments, run_export)

COMMANDS = (PREDICT, EXPORT)
