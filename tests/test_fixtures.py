"""The ../shared fixtures: present here, and without ../shared the tests that need it are
skipped with a reason saying how to get it (not failed)."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, SHARED_HELP


def test_shared_fixtures_find_the_data(fsdd_dir, esc10_dir, yamnet_tflite):
    assert len(list(fsdd_dir.glob("*/*.wav"))) == 3000
    assert len(list(esc10_dir.glob("*/*.flac"))) == 400
    assert yamnet_tflite.is_file()


def test_without_shared_tests_are_skipped_saying_how_to_get_it(tmp_path):
    env = {**os.environ, "AUDIOCLF_SHARED": str(tmp_path / "nowhere")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_fixtures.py::test_shared_fixtures_find_the_data"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and SHARED_HELP in proc.stdout
