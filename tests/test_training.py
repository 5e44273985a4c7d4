"""Training runs: real Keras training on a small FSDD subset, run folders, background runs."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from audioclf import jobs
from audioclf.datasets import DatasetError, SplitConfig
from audioclf.features import MFCCConfig
from audioclf.model import ModelConfig, ModelError
from audioclf.training import RunConfig, TrainConfig, TrainingError, cancel_run, run_status, runs, start_training, train

TINY = ModelConfig(kind="gru", rnn_units=(8,), dense_units=())


def _cfg(dataset, **kw) -> RunConfig:
    base = dict(dataset=str(dataset), split=SplitConfig(val=0.25, test=0.25), features=MFCCConfig(),
                model=TINY, train=TrainConfig(epochs=2, patience=None, batch_size=8, warp_augment=()))
    base.update(kw)
    return RunConfig(**base)


def test_run_folder_is_complete(trained_run):
    path = runs.run_dir(trained_run)
    for name in (runs.CONFIG, jobs.STATUS, runs.HISTORY, runs.LABELS, runs.MODEL, runs.METRICS,
                 runs.PREDICTIONS):
        assert (path / name).is_file(), name
    status = runs.read_status(trained_run)
    assert status["state"] == "done"
    history = runs.read_history(trained_run)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "elapsed", "eta"} <= set(history[0])
    metrics = json.loads((path / runs.METRICS).read_text())
    assert metrics["val"]["n"] == 9 and metrics["test"]["n"] == 9
    assert json.loads((path / runs.LABELS).read_text()) == ["0", "1", "2"]
    lines = (path / runs.PREDICTIONS).read_text().splitlines()
    assert lines[0].split(",") == ["path", "split", "true", "predicted", "p_0", "p_1", "p_2"]
    assert len(lines) == 1 + 18
    probs = np.array([[float(v) for v in line.split(",")[4:]] for line in lines[1:]])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)


def test_config_round_trips_through_json(trained_run):
    d = json.loads((runs.run_dir(trained_run) / runs.CONFIG).read_text())
    cfg = RunConfig.from_dict(d)
    assert cfg.model == ModelConfig(kind="gru", rnn_units=(16,), dense_units=(16,))
    assert cfg.features == MFCCConfig()
    assert cfg.to_dict() == d


def test_progress_callback_gets_extraction_and_epochs(fsdd_small):
    events = []
    run_id = train(_cfg(fsdd_small, model=ModelConfig(kind="baseline", dense_units=(8,))),
                   progress=events.append)
    phases = [e["phase"] for e in events]
    assert "extracting" in phases and phases[-1] == "training"
    assert [e["epoch"] for e in events if e["phase"] == "training"] == [1, 2]
    assert run_status(run_id).state == "done"


def test_should_stop_cancels_in_process(fsdd_small):
    epochs = []
    run_id = train(_cfg(fsdd_small, train=TrainConfig(epochs=50, patience=None, batch_size=4, warp_augment=())),
                   progress=lambda e: e["phase"] == "training" and epochs.append(e["epoch"]),
                   should_stop=lambda: len(epochs) >= 1)
    st = run_status(run_id)
    assert st.state == "cancelled" and epochs == [1] and st.epoch == 1
    assert not (runs.run_dir(run_id) / runs.MODEL).exists()


def test_bad_configs_give_clear_errors(fsdd_small, tmp_path):
    with pytest.raises(ModelError, match="Unknown model kind"):
        ModelConfig(kind="transformer")
    with pytest.raises(ModelError, match="1 to 3 recurrent layers"):
        ModelConfig(kind="lstm", rnn_units=(8, 8, 8, 8))
    with pytest.raises(TrainingError, match="Learning rate"):
        TrainConfig(learning_rate=0)
    one = tmp_path / "one"
    (one / "dog").mkdir(parents=True)
    for f in sorted((fsdd_small / "0").iterdir())[:6]:
        (one / "dog" / f.name).symlink_to(f.resolve())
    with pytest.raises((DatasetError, TrainingError), match="two classes"):
        train(_cfg(one))
    few = tmp_path / "few"
    for label in ("0", "1"):
        (few / label).mkdir(parents=True)
        for f in sorted((fsdd_small / label).iterdir())[:2]:
            (few / label / f.name).symlink_to(f.resolve())
    with pytest.raises((DatasetError, TrainingError), match="(?i)clips|empty"):
        train(_cfg(few, split=SplitConfig(val=0.3, test=0.3)))
    # Failed runs are recorded as failed with the message, never as done.
    failed = [r for r in runs.list_runs() if r.state == "failed"]
    assert failed and all("class" in r.message or "split" in r.message for r in failed)


def _wait_for(run_id, pred, timeout=90.0):
    end = time.time() + timeout
    while time.time() < end:
        st = run_status(run_id)
        if pred(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"timed out; last status {run_status(run_id)}")


def test_background_run_can_be_cancelled_within_seconds(fsdd_small):
    cfg = _cfg(fsdd_small, train=TrainConfig(epochs=500, patience=None, batch_size=4, warp_augment=()))
    run_id = start_training(cfg)
    _wait_for(run_id, lambda s: s.state == "training")
    t0 = time.perf_counter()
    state = cancel_run(run_id)
    took = time.perf_counter() - t0
    assert state == "cancelled" and took < 12  # graceful, or killed after CANCEL_WAIT
    st = run_status(run_id)
    assert st.state == "cancelled" and st.final
    assert not (runs.run_dir(run_id) / runs.MODEL).exists()
    assert runs.best_run() is None or runs.best_run().id != run_id


def test_killed_run_reads_as_failed_not_complete(fsdd_small):
    cfg = _cfg(fsdd_small, train=TrainConfig(epochs=500, patience=None, batch_size=4, warp_augment=()))
    run_id = start_training(cfg)
    st = _wait_for(run_id, lambda s: s.state == "training")
    pid = jobs.read_json(runs.run_dir(run_id) / jobs.STATUS)["pid"]
    os.killpg(pid, signal.SIGKILL)
    st = _wait_for(run_id, lambda s: s.final, timeout=10)
    assert st.state == "failed" and "nterrupted" in st.message
    info = {r.id: r for r in runs.list_runs()}[run_id]
    assert info.state == "failed"
    assert jobs.read_json(runs.run_dir(run_id) / jobs.STATUS)["state"] == "training"  # file untouched


def test_default_config_learns_the_demo_data_set(tmp_path):
    """The app's first-start path: default features, model and training on the demo set."""
    from audioclf.datasets import make_demo_dataset

    root = make_demo_dataset(tmp_path / "demo")
    run_id = train(RunConfig(dataset=str(root), split=SplitConfig(), features=MFCCConfig()))
    m = runs.load_run(run_id).metrics
    # Speed is measured in benchmarks/, not asserted here (a loaded machine would fail it).
    assert m["test"]["macro_f1"] >= 0.9, m["test"]
    assert m["val"]["macro_f1"] >= 0.9, m["val"]


def _zombie_children() -> list[int]:
    """Pids of this process's children that have exited but were never waited for."""
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            out.append(int(stat.parent.name))
    return out


def test_finished_and_cancelled_background_runs_leave_no_zombie(fsdd_small):
    """Defect 13: every background run is reaped, however it ends, without anyone asking."""
    done_id = start_training(_cfg(fsdd_small, train=TrainConfig(epochs=1, patience=None, batch_size=8,
                                                                warp_augment=())))
    cancel_id = start_training(_cfg(fsdd_small, train=TrainConfig(epochs=500, patience=None, batch_size=4,
                                                                  warp_augment=())))
    pids = {run_id: jobs.read_json(runs.run_dir(run_id) / jobs.STATUS)["pid"] for run_id in (done_id, cancel_id)}
    _wait_for(cancel_id, lambda s: s.state == "training", timeout=180)
    assert cancel_run(cancel_id) == "cancelled"
    end = time.time() + 180
    while runs.read_status(done_id).get("state") not in jobs.FINAL_STATES:  # status file only: no reaping
        assert time.time() < end, "the short run did not finish"
        time.sleep(0.5)
    assert runs.read_status(done_id)["state"] == "done"
    end = time.time() + 15  # the process exits just after its last status write
    while any(Path(f"/proc/{pid}").exists() for pid in pids.values()) and time.time() < end:
        time.sleep(0.2)
    # Only this test's runs: other tests' children (searches, servers) are theirs to check.
    assert not set(_zombie_children()) & set(pids.values())
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())


def test_a_warm_start_keeps_the_standardisation_its_weights_learnt():
    """A retrain's data has other statistics; the warm-started model still reads inputs as its weights learnt."""
    from dataclasses import replace

    from audioclf.model.sequences import SplitData
    from audioclf.training.fit import fit
    from audioclf.training.warm import standardisation

    rng = np.random.default_rng(3)

    def data(n, shift):
        return SplitData([rng.normal(shift, 1 + shift, (20, 6)).astype(np.float32) for _ in range(n)],
                         np.arange(n) % 3, [f"c{i}" for i in range(n)])

    model_cfg = ModelConfig(kind="baseline", dense_units=(8,))
    train_cfg = TrainConfig(epochs=3, patience=None, batch_size=4)
    first, _ = fit(model_cfg, train_cfg, data(12, 0.0), None, 3)
    # Rates too small to move anything: the warm-started model is where it started.
    still = replace(train_cfg, epochs=1, learning_rate=1e-12)
    grown = data(12, 2.0)
    model, info = fit(model_cfg, still, grown, None, 3, initial=first)
    assert info["warm_start"]["used"] is True
    for a, b in zip(standardisation(model), standardisation(first)):
        np.testing.assert_array_equal(a, b)
    x = np.stack(grown.x[:4])
    np.testing.assert_allclose(model.predict_on_batch(x), first.predict_on_batch(x), atol=1e-5)
    wider = SplitData([np.concatenate([s, s], axis=1) for s in grown.x], grown.y, grown.paths)
    _, info = fit(model_cfg, still, wider, None, 3, initial=first)  # other inputs: from scratch, saying so
    assert info["warm_start"]["used"] is False and "do not match" in info["warm_start"]["why"]
