"""Run storage: listing, comparing, deleting, best run, safe model loading, atomic writes."""
from __future__ import annotations

import numpy as np
import pytest

from audioclf import jobs
from audioclf.training import runs


def test_list_load_and_compare(trained_run):
    infos = {r.id: r for r in runs.list_runs()}
    info = infos[trained_run]
    assert info.state == "done" and info.name == "fixture"
    assert info.features == "mfcc" and info.model == "gru"
    assert 0.0 <= info.val_macro_f1 <= 1.0 and 0.0 <= info.test_accuracy <= 1.0
    run = runs.load_run(trained_run)
    assert run.labels == ["0", "1", "2"] and len(run.history) == 4
    assert run.config["model"]["kind"] == "gru"
    table = runs.compare_runs([trained_run])
    row = table[0]
    assert row["id"] == trained_run and row["model.kind"] == "gru"
    assert row["features.n_mfcc"] == 20 and row["train.epochs"] == 4
    assert row["val.macro_f1"] == info.val_macro_f1


def test_best_run_picks_highest_validation_f1(trained_run):
    done = [r for r in runs.list_runs() if r.state == "done"]
    best = runs.best_run()
    assert best is not None and best.val_macro_f1 == max(r.val_macro_f1 for r in done)


def test_delete_run(trained_run):
    run_id = runs.create_run(jobs.read_json(runs.run_dir(trained_run) / runs.CONFIG))
    runs.update_status(run_id, state="failed", message="test")
    assert run_id in {r.id for r in runs.list_runs()}
    runs.delete_run(run_id)
    assert run_id not in {r.id for r in runs.list_runs()}
    with pytest.raises(runs.RunError, match="No run"):
        runs.load_run(run_id)
    with pytest.raises(runs.RunError, match="not a run id"):
        runs.run_dir("../etc")


def test_run_with_dead_process_reads_as_interrupted(trained_run):
    run_id = runs.create_run(jobs.read_json(runs.run_dir(trained_run) / runs.CONFIG))
    runs.update_status(run_id, state="training", pid=2 ** 22 - 7)  # no such process
    st = runs.run_status(run_id)
    assert st.state == "failed" and "nterrupted" in st.message
    runs.delete_run(run_id)


def test_load_model_refuses_files_that_are_not_our_models(tmp_path, trained_run):
    import keras

    junk = tmp_path / "junk.keras"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(runs.ModelLoadError, match="junk.keras cannot be used as a model: it is not a .keras file"):
        runs.load_model(junk)
    foreign = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="someone_elses")
    foreign.save(tmp_path / "foreign.keras")
    with pytest.raises(runs.ModelLoadError, match="not one trained by audioclf"):
        runs.load_model(tmp_path / "foreign.keras")
    with pytest.raises(runs.ModelLoadError, match="No model file"):
        runs.load_model(tmp_path / "missing.keras")
    model = runs.load_model(trained_run)
    assert model.output_shape[-1] == 3


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    target = tmp_path / "status.json"
    for i in range(5):
        jobs.write_json(target, {"i": i})
    assert jobs.read_json(target) == {"i": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_active_runs_are_the_unfinished_runs_with_a_live_process():
    """What the Train page asks before starting a second run at the same time."""
    import shutil
    import subprocess
    import sys
    import time

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    made = []
    try:
        def run(**status) -> str:
            run_id = runs.create_run({"dataset": "x", "name": "active-test"})
            runs.update_status(run_id, **status)
            made.append(run_id)
            return run_id

        training = run(state="training", pid=alive.pid, pid_started=jobs.process_start_time(alive.pid))
        starting = run(state="queued")  # created just now, its process is being started
        run(state="training", pid=2 ** 22 - 7)  # process gone: failed, not active
        run(state="cancelled", message="Cancelled.")
        run(state="done")
        run(state="queued", created=time.time() - 2 * jobs.START_GRACE)  # never started
        assert [r.id for r in runs.active_runs()] == [starting, training]
        alive.kill()
        alive.wait()
        assert [r.id for r in runs.active_runs()] == [starting]
    finally:
        alive.kill()
        for run_id in made:
            shutil.rmtree(runs.run_dir(run_id))


def test_an_older_runs_training_clips_leave_its_warped_copies_out(tmp_path):
    """Issue 21, minor: "Training clips 240" for 120 clips; runs trained before n_train_copies
    counted the warped copies in n_train, and read as clips and copies apart now."""
    run_id = runs.create_run({"dataset": "d", "features": {"kind": "mfcc"}, "train": {"warp_augment": [0.9, 1.1]}})
    jobs.write_json(runs.run_dir(run_id) / runs.METRICS, {"n_train": 240})
    m = runs.load_run(run_id).metrics
    assert (m["n_train"], m["n_train_copies"]) == (80, 160)
    yam = runs.create_run({"dataset": "d", "features": {"kind": "yamnet"}, "train": {"warp_augment": [0.9, 1.1]}})
    jobs.write_json(runs.run_dir(yam) / runs.METRICS, {"n_train": 120})  # YAMNet is never warped
    assert (runs.load_run(yam).metrics["n_train"], runs.load_run(yam).metrics["n_train_copies"]) == (120, 0)
    new = runs.create_run({"dataset": "d", "features": {"kind": "mfcc"}, "train": {"warp_augment": [0.9, 1.1]}})
    jobs.write_json(runs.run_dir(new) / runs.METRICS, {"n_train": 120, "n_train_copies": 240})  # as trained now
    assert runs.load_run(new).metrics["n_train"] == 120
    for rid in (run_id, yam, new):
        runs.delete_run(rid)
