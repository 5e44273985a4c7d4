"""The command line, run for real: in-process `cli.main([...])` for speed, a subprocess for the
entry point. One tiny real training run (MFCC + GRU on a small FSDD subset) is shared."""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from audioclf import cli
from audioclf.training import runs
from conftest import ROOT, tone

SUBCOMMANDS = ("extract", "train", "evaluate", "predict", "runs", "check", "tune", "studies", "export", "demo",
               "download-esc50", "label")
TINY = ["--epochs", "2", "--rnn-units", "8", "--dense-units", "8", "--batch-size", "8",
        "--val", "0.25", "--test", "0.25", "--warp-augment", "none", "-q"]


def run_cli(*argv: str) -> tuple[int, str, str]:
    """cli.main in this process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse: --help and usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def run_subprocess(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "audioclf", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cli_run(fsdd_small) -> str:
    """A run trained through `audioclf train` (3 digits, 36 clips, 2 epochs)."""
    code, out, err = run_cli("train", fsdd_small, *TINY, "--name", "cli-test", "--format", "json")
    assert code == 0, err
    scores = json.loads(out)  # stdout is only JSON (defect 16): the summary line goes to stderr
    assert [r["split"] for r in scores] == ["val", "test"] and scores[1]["clips"] == 9
    run_id = scores[0]["run"]
    assert f"run {run_id}:" in err
    return run_id


@pytest.fixture(scope="module")
def clips(tmp_path_factory, fsdd_dir):
    """Two readable clips, a broken one, and a zip of the readable ones."""
    d = tmp_path_factory.mktemp("clips")
    good = d / "good"
    good.mkdir()
    (good / "one.wav").write_bytes((fsdd_dir / "1" / "1_theo_0.wav").read_bytes())
    sf.write(good / "tone.flac", tone(300.0, 0.8, sr=8000), 8000)
    bad = d / "broken.wav"
    bad.write_text("this is not audio")
    zpath = d / "clips.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in good.iterdir():
            z.write(p, f"inner/{p.name}")
    return {"dir": good, "wav": good / "one.wav", "flac": good / "tone.flac", "bad": bad, "zip": zpath}


# ---------------------------------------------------------------- help and usage

@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_each_subcommand(command):
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    assert out.startswith(f"usage: audioclf {command}")
    assert len(out.splitlines()) > 5  # a description and options, not just a usage line


def _choices(command: str, flag: str) -> tuple:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return tuple(next(a for a in sub.choices[command]._actions if flag in a.option_strings).choices)


def test_option_lists_are_the_librarys():
    """The CLI lists some choices itself (importing the library to build --help would cost seconds);
    they must be the library's own."""
    from audioclf.labelling.grouping import EMBEDDERS
    from audioclf.labelling.segmenting import CUT_METHODS as CUTS
    from audioclf.training.defaults import AUTO, FEATURE_KINDS
    from audioclf.tuning.config import OBJECTIVES, PRUNERS, SAMPLERS

    assert _choices("label", "--embedder") == EMBEDDERS
    assert _choices("label", "--cut") == CUTS
    assert _choices("train", "--features") == (AUTO, *FEATURE_KINDS)
    assert _choices("tune", "--sampler") == SAMPLERS
    assert _choices("tune", "--pruner") == PRUNERS
    assert _choices("tune", "--objective") == OBJECTIVES


def test_entry_point_runs_as_module():
    proc = run_subprocess("--help")
    assert proc.returncode == 0
    for command in SUBCOMMANDS:
        assert command in proc.stdout


def test_train_help_shows_dataclass_defaults():
    from audioclf.model import ModelConfig
    from audioclf.training import TrainConfig

    _, out, _ = run_cli("train", "--help")
    text = " ".join(out.split())
    assert f"(default: {ModelConfig().kind})" in text
    assert f"(default: {TrainConfig().epochs})" in text
    assert f"(default: {TrainConfig().patience})" in text


def test_usage_errors_exit_2_without_traceback():
    code, _, err = run_cli("train", "x", "--rnn-units", "abc")
    assert code == 2 and "layer sizes" in err and "Traceback" not in err
    code, _, err = run_cli("frobnicate")
    assert code == 2 and "invalid choice" in err


def test_option_that_does_not_apply_is_a_clear_error(fsdd_small):
    code, out, err = run_cli("extract", fsdd_small, "--features", "yamnet", "--n-mfcc", "13")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "does not apply to yamnet" in err


# ---------------------------------------------------------------- extract

def test_extract_summary_then_cache(fsdd_small):
    code, out, err = run_cli("extract", fsdd_small, "--features", "mfcc", "--n-mfcc", "13", "--jobs", "1")
    assert code == 0, err
    summary = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines())
    assert summary["clips"] == "36" and summary["dims"] == "13" and summary["unreadable"] == "0"
    assert "extracting mfcc: 36/36" in err  # progress on stderr
    code, out, _ = run_cli("extract", fsdd_small, "--features", "mfcc", "--n-mfcc", "13", "-q")
    assert code == 0
    assert any(line.startswith("from cache") and line.split()[-1] == "36" for line in out.splitlines())


# ---------------------------------------------------------------- train and runs

def test_train_then_runs_list_shows_it(cli_run):
    code, out, _ = run_cli("runs", "--format", "json")
    assert code == 0
    listed = {r["id"]: r for r in json.loads(out)}
    assert listed[cli_run]["state"] == "done" and listed[cli_run]["name"] == "cli-test"
    assert listed[cli_run]["model"] == "gru" and 0.0 <= listed[cli_run]["test_f1"] <= 1.0
    code, out, _ = run_cli("runs", "list")
    assert code == 0 and cli_run in out and "cli-test" in out
    # the stored config mirrors the options
    cfg = runs.load_run(cli_run).config
    assert cfg["model"]["rnn_units"] == [8] and cfg["train"]["epochs"] == 2
    assert cfg["split"]["val"] == 0.25 and cfg["features"]["kind"] == "mfcc"


def test_runs_show_and_compare(cli_run):
    code, out, _ = run_cli("runs", "show", cli_run)
    assert code == 0
    assert "state      done" in out and "model.rnn_units" in out and "classes    0, 1, 2" in out
    code, out, _ = run_cli("runs", "compare", cli_run, cli_run, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 2 and rows[0]["model.kind"] == "gru"


def test_runs_errors_are_one_line(cli_run):
    code, _, err = run_cli("runs", "show", "no-such-run")
    assert code == 1 and err.startswith("audioclf runs: error:") and err.count("\n") == 1
    code, _, err = run_cli("runs", "delete")
    assert code == 1 and "needs at least one run id" in err


def test_evaluate_run_reports_stored_metrics(cli_run):
    code, out, _ = run_cli("evaluate", cli_run)
    assert code == 0 and "confusion matrix" in out and "macro F1" in out
    code, out, _ = run_cli("evaluate", cli_run, "--split", "val", "--format", "json")
    report = json.loads(out)[0]
    stored = runs.load_run(cli_run).metrics["val"]
    assert report["accuracy"] == pytest.approx(stored["accuracy"])
    assert np.array(report["confusion"]).sum() == stored["n"] == 9


def test_evaluate_run_on_another_labelled_data_set(cli_run, fsdd_small):
    code, out, err = run_cli("evaluate", cli_run, "--data", fsdd_small, "--format", "json", "-q")
    assert code == 0, err
    report = json.loads(out)[0]
    assert report["clips"] == 36 and report["labels"] == ["0", "1", "2"]
    assert sum(c["support"] for c in report["per_class"]) == 36 and 0.0 <= report["macro_f1"] <= 1.0


def test_evaluate_cross_validation(fsdd_small):
    code, out, err = run_cli("evaluate", fsdd_small, "--cv", "2", "--epochs", "1", "--rnn-units", "8",
                             "--dense-units", "none", "--batch-size", "16", "--val", "0", "--warp-augment", "none", "-q",
                             "--format", "json")
    assert code == 0, err
    res = json.loads(out)[0]
    assert res["k"] == 2 and len(res["macro_f1"]) == 2
    assert all(0.0 <= f <= 1.0 for f in res["macro_f1"])


def test_one_class_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(4):
        sf.write(tmp_path / "only" / f"c{i}.wav", tone(200.0 + 50 * i, 0.5), 16000)
    code, out, err = run_cli("train", tmp_path, *TINY)
    assert code == 1 and out == ""
    assert "at least two classes" in err and err.count("\n") == 1 and "Traceback" not in err


# ---------------------------------------------------------------- predict

def test_predict_csv_columns(cli_run, clips):
    code, out, err = run_cli("predict", clips["wav"], clips["flac"], "--run", cli_run, "--format", "csv",
                             "--top-k", "2", "--threshold", "0")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "predicted", "confidence", "top1", "p1", "top2", "p2", "silent", "error"]
    assert [r["path"] for r in rows] == [str(clips["wav"]), str(clips["flac"])]
    for r in rows:
        assert r["predicted"] == r["top1"] in {"0", "1", "2"}
        assert 1.0 >= float(r["p1"]) >= float(r["p2"]) >= 0.0
        assert float(r["p1"]) + float(r["p2"]) <= 1.0 + 1e-3
        assert r["error"] == ""


def test_predict_json_folder_and_zip(cli_run, clips):
    code, out, err = run_cli("predict", clips["dir"], clips["zip"], "--run", cli_run, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 4  # two files in the folder, the same two inside the zip
    assert all(len(r["top_k"]) == 3 and r["error"] is None for r in rows)
    by_name = {}
    for r in rows:
        by_name.setdefault(os.path.basename(r["path"]), []).append(r["top_k"])
    # the same clip gives the same answer from a folder or a zip
    assert by_name["one.wav"][0] == by_name["one.wav"][1]


def test_predict_table_uses_best_run_by_default(cli_run, clips):
    code, out, err = run_cli("predict", clips["wav"])
    assert code == 0
    assert "using run" in err
    assert out.splitlines()[0].split()[:3] == ["path", "predicted", "confidence"]
    assert "one.wav" in out


def test_predict_bad_file_subprocess(cli_run, clips):
    proc = run_subprocess("predict", clips["bad"], clips["wav"], "--run", cli_run, "--format", "csv",
                          "--threshold", "0")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.wav" in errors[0]
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert rows[0]["error"] and rows[0]["predicted"] == ""
    assert rows[1]["predicted"] in {"0", "1", "2"}  # the good file is still predicted


def test_predict_threshold_answers_unknown_below_it(cli_run, clips):
    code, out, err = run_cli("predict", clips["wav"], clips["flac"], "--run", cli_run, "--format", "csv",
                             "--threshold", "1")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["predicted"] for r in rows] == ["unknown", "unknown"]
    assert all(r["top1"] in {"0", "1", "2"} for r in rows)  # the likeliest class is still shown
    code, out, err = run_cli("predict", clips["wav"], "--run", cli_run)
    suggested = runs.load_run(cli_run).metrics.get("threshold")
    assert code == 0 and ("'not sure' threshold" in err if suggested else "no 'not sure' threshold" in err)
    code, _, err = run_cli("predict", clips["wav"], "--run", cli_run, "--threshold", "1.5")
    assert code == 2 and "probability from 0 to 1" in err


def test_predict_segments_of_a_long_clip(cli_run, fsdd_dir, tmp_path):
    from audioclf.audio import load_audio

    parts = [load_audio(fsdd_dir / d / f"{d}_theo_{k}.wav", sr=8000).samples for d in "012" for k in range(6)]
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate(parts), 8000)
    seconds = sum(map(len, parts)) / 8000
    code, out, err = run_cli("predict", long, "--run", cli_run, "--segments", "--format", "csv", "--threshold", "0")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "start", "end", "label", "confidence"]
    assert float(rows[0]["start"]) == 0.0 and len(rows) >= 1
    assert all(float(a["end"]) == float(b["start"]) for a, b in zip(rows, rows[1:]))
    assert all(a["label"] != b["label"] for a, b in zip(rows, rows[1:]))  # neighbours merged
    assert seconds > 4.0 and float(rows[-1]["end"]) > 0.8 * seconds and {r["label"] for r in rows} <= {"0", "1", "2"}
    code, out, _ = run_cli("predict", long, "--run", cli_run, "--segments", "--format", "json", "--threshold", "0")
    assert code == 0 and [r["label"] for r in json.loads(out)] == [r["label"] for r in rows]


def test_predict_missing_run_is_one_line(clips):
    code, _, err = run_cli("predict", clips["wav"], "--run", "20000101-000000-abcdef")
    assert code == 1 and err.count("\n") == 1 and "No run" in err


# ---------------------------------------------------------------- small commands

def test_demo_creates_the_data_set(tmp_path):
    dest = tmp_path / "demo"
    code, out, _ = run_cli("demo", "--dest", dest, "--clips", "2")
    assert code == 0 and out.strip() == str(dest)
    classes = sorted(p.name for p in dest.iterdir() if p.is_dir())
    assert len(classes) == 5 and all(len(list((dest / c).glob("*.wav"))) == 2 for c in classes)


def test_download_esc50_of_a_non_zip_is_a_clear_error(tmp_path):
    fake = tmp_path / "esc50.zip"
    fake.write_text("not a zip")
    code, out, err = run_cli("download-esc50", "--url", fake, "--dest", tmp_path / "esc50", "-q")
    assert code == 1 and out == ""
    assert "not a zip archive" in err and err.count("\n") == 1


def test_extract_reports_unreadable_files(tmp_path):
    for label, freq in (("low", 200.0), ("high", 2000.0)):
        (tmp_path / label).mkdir()
        sf.write(tmp_path / label / "a.wav", tone(freq, 0.5), 16000)
    (tmp_path / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00")
    code, out, err = run_cli("extract", tmp_path, "--jobs", "1", "-q")
    assert code == 0
    assert re.search(r"^unreadable\s+1$", out, re.M) and re.search(r"^clips\s+3$", out, re.M)
    assert "broken.wav" in err and "Traceback" not in err
