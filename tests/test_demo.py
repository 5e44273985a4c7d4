"""Demo data: synthesised, idempotent, real non-silent audio, and clearly separable classes."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import librosa
import numpy as np
import pytest

from audioclf import workspace
from audioclf.audio import load_audio
from audioclf.datasets import ensure_demo_dataset, load_dataset, make_demo_dataset, summarize_dataset
from audioclf.datasets.demo import CLASSES, MARKER


@pytest.fixture(scope="module")
def demo():
    start = time.perf_counter()
    root = ensure_demo_dataset()
    return root, time.perf_counter() - start


def test_demo_is_built_in_the_workspace_fast(demo):
    root, elapsed = demo
    assert root == workspace.datasets_dir() / "demo"
    assert elapsed < 10, f"building the demo data set took {elapsed:.1f} s"
    start = time.perf_counter()
    assert ensure_demo_dataset() == root
    assert time.perf_counter() - start < 0.1  # second call: already there


def test_demo_has_five_classes_of_real_audio(demo):
    root, _ = demo
    ds = load_dataset(root)
    assert len(ds.labels) >= 5 and set(ds.labels) == set(CLASSES)
    assert all(n >= 20 for n in ds.counts.values())
    assert not ds.problems  # the marker file is hidden, not listed
    summary = summarize_dataset(ds)
    assert not summary.unreadable and summary.sample_rates == {16000: summary.n_clips}
    assert 2.0 <= min(summary.all_durations) and max(summary.all_durations) <= 4.0
    for item in ds.items[::7]:
        clip = load_audio(item.path)
        assert not clip.silent
        assert 0.1 < np.abs(clip.samples).max() <= 1.0


def test_demo_clips_vary_within_a_class(demo):
    root, _ = demo
    a, b = (load_audio(root / "siren" / f"siren_{i:03d}.wav").samples for i in (0, 1))
    assert len(a) != len(b) or not np.allclose(a, b)


def test_demo_classes_are_separable(demo):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = load_dataset(demo[0])
    X = np.array([
        librosa.feature.mfcc(y=load_audio(i.path).samples, sr=16000, n_mfcc=13, hop_length=1024).mean(axis=1)
        for i in ds.items
    ])
    y = [i.label for i in ds.items]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    accuracy = cross_val_score(model, X, y, cv=4).mean()
    assert accuracy >= 0.9, accuracy


def test_same_seed_same_audio_and_parameters_respected(tmp_path):
    a = make_demo_dataset(tmp_path / "a", clips_per_class=2, seed=5, sr=8000)
    b = make_demo_dataset(tmp_path / "b", clips_per_class=2, seed=5, sr=8000)
    for label in CLASSES:
        assert (a / label / f"{label}_001.wav").read_bytes() == (b / label / f"{label}_001.wav").read_bytes()
    assert load_audio(a / "rain" / "rain_000.wav").sr == 8000
    # Other parameters: the old folder is replaced, never mixed with the new one.
    c = make_demo_dataset(tmp_path / "a", clips_per_class=3, seed=5, sr=8000)
    assert c == a and load_dataset(c).counts == {label: 3 for label in sorted(CLASSES)}
    assert json.loads((c / MARKER).read_text())["clips_per_class"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_half_built_folder_is_never_used(tmp_path):
    root = tmp_path / "demo"
    (root / "siren").mkdir(parents=True)  # e.g. a crash mid-way in an old version: no marker
    make_demo_dataset(root, clips_per_class=2)
    assert (root / MARKER).exists() and load_dataset(root).counts["siren"] == 2


def test_concurrent_calls_give_one_complete_copy(tmp_path):
    root = tmp_path / "demo"
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: make_demo_dataset(root, clips_per_class=2), range(3)))
    assert paths == [root] * 3
    assert load_dataset(root).counts == {label: 2 for label in sorted(CLASSES)}
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp folders left behind
