"""Read-only mode (AUDIOCLF_READONLY=1): the library refuses to train, delete or edit data sets."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from audioclf import workspace
from audioclf.workspace import ReadOnlyError


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(np.arange(8000) / 5).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


@pytest.fixture
def readonly(monkeypatch):
    monkeypatch.setenv(workspace.ENV_READONLY, "1")


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                            ("0", False), ("", False), ("no", False)])
def test_read_only_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(workspace.ENV_READONLY, value)
    assert workspace.read_only() is expected


def test_library_refuses_training_and_deleting_runs(demo_run, readonly):
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf import training
    from audioclf.training import RunConfig, runs

    before = sorted(r.id for r in runs.list_runs())
    cfg = RunConfig(dataset="demo", split=SplitConfig(), features=MFCCConfig())
    with pytest.raises(ReadOnlyError, match="read-only mode"):
        training.train(cfg)
    from audioclf.training import cancel_run, start_training

    with pytest.raises(ReadOnlyError, match="train a model"):
        start_training(cfg)
    with pytest.raises(ReadOnlyError, match="cancel"):
        cancel_run(demo_run)
    with pytest.raises(ReadOnlyError, match="delete a run"):
        runs.delete_run(demo_run)
    assert sorted(r.id for r in runs.list_runs()) == before  # nothing was created or removed
    assert runs.run_status(demo_run).state == "done"


def test_library_refuses_editing_data_sets(workspace_home, monkeypatch):
    from audioclf import datasets
    from audioclf.datasets import download

    root = datasets.create_dataset("ro_test")
    clip = datasets.add_clip(root, "tone", "a.wav", wav_bytes())
    monkeypatch.setenv(workspace.ENV_READONLY, "1")
    with pytest.raises(ReadOnlyError, match="create a data set"):
        datasets.create_dataset("ro_other")
    with pytest.raises(ReadOnlyError, match="add clips"):
        datasets.add_clip(root, "tone", "b.wav", wav_bytes())
    with pytest.raises(ReadOnlyError, match="add clips"):
        datasets.add_background(root, wav_bytes())
    with pytest.raises(ReadOnlyError, match="relabel"):
        datasets.relabel_clip(clip, "other")
    with pytest.raises(ReadOnlyError, match="delete a clip"):
        datasets.delete_clip(clip)
    with pytest.raises(ReadOnlyError, match="download"):
        download.download_esc50(workspace_home / "datasets" / "esc_ro", url=str(workspace_home / "none.zip"))
    assert clip.is_file() and sorted(p.name for p in root.rglob("*.wav")) == ["a.wav"]
    assert not (workspace.datasets_dir() / "ro_other").exists()
    # Reading and predicting stay allowed.
    assert [it.label for it in datasets.load_dataset(root).items] == ["tone"]


def test_read_only_error_is_a_value_error_for_the_cli_and_pages():
    assert issubclass(ReadOnlyError, ValueError)
