"""The engines on a real two-node Ray cluster that this module starts on 127.0.0.1 (marker `ray`).

One cluster for the module (two nodes of one CPU, 100 MB object store each, no
dashboard), joined through the same `get_engine("ray", address=...)` a user calls.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

# Before Ray is imported: every Ray service of this module binds and talks on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import pytest
import soundfile as sf

from audioclf.engines import EngineError, get_engine
from audioclf.features import MFCCConfig, YAMNetConfig, extract_many
from audioclf.features.store import FeatureStore

pytest.importorskip("ray")
pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
NODE_MB = 100


# The cluster lives in a child process in its own session: pytest is then neither the Ray
# processes' parent (a Ray node's SIGTERM handler there exits the process) nor in their process
# group, and the nodes get a node's environment, not the driver's: their own workspace and no
# model settings (a joined cluster's raylet was started elsewhere), so a test fails if the
# engine leans on settings only the driver has.
CLUSTER_HOST = textwrap.dedent("""
    import sys
    from ray.cluster_utils import Cluster
    mb = int(sys.argv[1]) * 1024 * 1024
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": mb,
                "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    c.add_node(num_cpus=1, object_store_memory=mb, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    print(c.address, flush=True)
    sys.stdin.read()  # until the test closes it (or dies): then stop the nodes
    c.shutdown()
""")
DRIVER_SETTINGS = ("AUDIOCLF_YAMNET", "AUDIOCLF_EFFICIENTAT", "AUDIOCLF_EFFICIENTAT_URL")
CLUSTER_START_TIMEOUT = 180  # seconds for two nodes to come up on a loaded machine


def node_env(home: Path) -> dict[str, str]:
    """A Ray node's environment: this copy of audioclf, its own workspace, none of the driver's model settings."""
    env = {k: v for k, v in os.environ.items() if k not in DRIVER_SETTINGS}
    env.update({"AUDIOCLF_HOME": str(home), "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    return env


@contextmanager
def hosted_cluster(home: Path, script: str = CLUSTER_HOST):
    """Two nodes started by a child process in its own session; yields the head's address."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(NODE_MB)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=node_env(home),
                            start_new_session=True)
    try:
        ready = select.select([proc.stdout], [], [], CLUSTER_START_TIMEOUT)[0]
        address = proc.stdout.readline().strip() if ready else ""
        assert address, f"the test cluster did not start within {CLUSTER_START_TIMEOUT} s"
        yield address
    finally:
        proc.stdin.close()  # the host stops its nodes
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this test made: the host and its nodes only
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with hosted_cluster(tmp_path_factory.mktemp("node_home")) as address:
        yield SimpleNamespace(address=address)


@pytest.fixture(scope="module")
def engine(cluster):
    eng = get_engine("ray", address=cluster.address, batch_size=4)
    yield eng
    import ray

    eng.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(fsdd_dir) -> list[str]:
    """24 FSDD clips: every digit, three speakers."""
    return [str(fsdd_dir / d / f"{d}_{s}_{t}.wav") for d in "0123456789"[:8] for s in ("george", "lucas", "yweweler")
            for t in (0,)]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.wav").write_text("this is not audio")
    return [str(folder / "notes.wav"), str(folder / "missing.wav")]


def _by_hash(store: FeatureStore, config, paths: list[str]) -> dict:
    from audioclf.audio import fingerprint

    feats = store.read(config)
    return {p: feats[fingerprint(p)] for p in paths}


def test_the_cluster_has_two_nodes_and_map_runs_in_order(engine):
    info = engine.describe()
    assert len([n for n in info.nodes if n.alive]) == 2
    assert info.cpus == 2
    assert all(n.host == "127.0.0.1" for n in info.nodes)
    from audioclf.features import summarize

    arrays = [np.full((3, 2), float(i), np.float32) for i in range(6)]
    out = engine.map(summarize, arrays)
    assert [float(o[0]) for o in out] == [float(i) for i in range(6)]


def test_ray_gives_the_local_features_and_lists_bad_files(engine, clips, bad_files, tmp_path):
    cfg = MFCCConfig()
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{Path(p).parent.name}\n" for p in clips + bad_files))
    seen = []
    result = engine.extract(str(manifest), cfg, store=tmp_path / "store", progress=lambda d, t: seen.append((d, t)))
    assert result.total == len(clips) + 2 and result.extracted == len(clips)
    reasons = dict(result.errors)
    assert set(reasons) == set(bad_files)
    assert "not audio" in reasons[bad_files[0]] and "does not exist" in reasons[bad_files[1]]
    assert seen[-1] == (result.total, result.total)
    assert sum(result.by_node.values()) == len(clips)  # which node took how many: the benchmark's table
    store = FeatureStore(tmp_path / "store")
    ray_feats = _by_hash(store, cfg, clips)
    local = extract_many(clips, cfg, cache=False, n_jobs=1)
    for path, want in zip(clips, local):
        got = ray_feats[path]
        assert got.values.shape == want.values.shape
        np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.times, want.times)
        assert got.silent == want.silent
    labels = store.index(cfg).column("label").to_pylist()
    assert sorted(labels) == sorted(Path(p).parent.name for p in clips)
    again = engine.extract(str(manifest), cfg, store=tmp_path / "store")
    assert again.skipped == len(clips) and again.extracted == 0  # stored clips are not extracted again


def test_yamnet_on_ray_matches_local(engine, clips, yamnet_tflite, tmp_path):
    cfg = YAMNetConfig(model=str(yamnet_tflite))
    few = clips[:6]
    result = engine.extract(few, cfg, store=tmp_path / "store")
    assert result.extracted == len(few) and not result.errors
    got = _by_hash(FeatureStore(tmp_path / "store"), cfg, few)
    for path, want in zip(few, extract_many(few, cfg, cache=False)):
        np.testing.assert_allclose(got[path].values, want.values, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[path].scores, want.scores, rtol=1e-4, atol=1e-4)


def test_the_owners_yamnet_setting_reaches_the_workers(engine, clips, yamnet_tflite, tmp_path, monkeypatch):
    """$AUDIOCLF_YAMNET set in the driver only (the nodes never had it), naming a file outside every
    workspace's models folder: the workers load that file (they refused it as untrusted)."""
    outside = yamnet_tflite.resolve()  # the shared file the session's models folder links to
    assert not outside.is_relative_to(workspace_home_of(yamnet_tflite))
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(outside))
    few = clips[:4]
    result = engine.extract(few, YAMNetConfig(), store=tmp_path / "store")
    assert result.extracted == len(few) and not result.errors
    got = _by_hash(FeatureStore(tmp_path / "store"), YAMNetConfig(), few)
    for path, want in zip(few, extract_many(few, YAMNetConfig(), cache=False)):
        np.testing.assert_allclose(got[path].values, want.values, rtol=1e-4, atol=1e-4)


def test_an_untrusted_model_is_refused_before_the_job_starts(engine, clips, yamnet_tflite, tmp_path, monkeypatch):
    from audioclf.features.yamnet import UntrustedModel

    monkeypatch.delenv("AUDIOCLF_YAMNET", raising=False)
    stranger = tmp_path / "elsewhere" / "yamnet.tflite"
    stranger.parent.mkdir()
    stranger.write_bytes(yamnet_tflite.read_bytes())
    with pytest.raises(UntrustedModel, match="Refusing to load"):
        engine.extract(clips[:2], YAMNetConfig(model=str(stranger)), store=tmp_path / "store")
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("*.parquet"))


def workspace_home_of(model: Path) -> Path:
    """The workspace whose models folder holds `model` (as the session's fixture links it)."""
    return model.parent.parent.parent


# The killed-worker job, driver and cluster in one child process in its own session: whatever
# a SIGKILLed worker sets off in Ray (a Ray driver that loses its raylet, or fails one of its
# own checks, ends its process at once, with no Python cleanup), it ends that child, seen here
# as a failed test with its output, never pytest.
KILL_JOB = textwrap.dedent("""
    import json, os, signal, sys
    from ray.cluster_utils import Cluster
    from audioclf.engines import get_engine
    from audioclf.features import MFCCConfig
    paths, store = json.loads(sys.argv[1]), sys.argv[2]
    mb = int(sys.argv[3]) * 1024 * 1024
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": mb,
                "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    c.add_node(num_cpus=1, object_store_memory=mb, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    killed = []

    def kill_first_worker(rows):
        if not killed:
            killed.append(rows[0]["pid"])
            os.kill(rows[0]["pid"], signal.SIGKILL)  # a real worker process, mid-job

    with get_engine("ray", address=c.address, batch_size=4) as engine:
        result = engine.extract(paths, MFCCConfig(n_mfcc=13), store=store, on_summary=kill_first_worker)
    try:
        os.kill(killed[0], 0)
        gone = False
    except ProcessLookupError:
        gone = True
    import ray
    ray.shutdown()
    c.shutdown()
    print(json.dumps({"killed": killed, "gone": gone, "extracted": result.extracted, "errors": result.errors}))
""")
KILL_JOB_TIMEOUT = 600


def test_a_killed_worker_is_retried_and_the_store_stays_whole(fsdd_dir, tmp_path):
    paths = sorted(str(p) for p in (fsdd_dir / "3").glob("3_jackson_*.wav"))[:32]
    cfg = MFCCConfig(n_mfcc=13)
    out = subprocess.run([sys.executable, "-c", KILL_JOB, json.dumps(paths), str(tmp_path / "store"), str(NODE_MB)],
                         capture_output=True, text=True, env=node_env(tmp_path / "home"), timeout=KILL_JOB_TIMEOUT,
                         start_new_session=True, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"the job's process exited {out.returncode}:\n{out.stderr[-3000:]}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["killed"] and result["gone"]  # the worker really died mid-job
    assert result["extracted"] == len(paths) and not result["errors"]
    store = FeatureStore(tmp_path / "store")
    assert store.verify(cfg) >= len(paths)  # every finished shard reads in full
    assert store.count(cfg) == len(paths)  # each clip once, though a retried block may be stored twice
    local = extract_many(paths[:4], cfg, cache=False, n_jobs=1)
    got = _by_hash(store, cfg, paths[:4])
    for p, want in zip(paths[:4], local):
        np.testing.assert_allclose(got[p].values, want.values, rtol=1e-5, atol=1e-5)


def test_a_search_and_cross_validation_run_on_the_cluster(engine, cluster, workspace_home):
    """The same study as on one machine (leaderboard), its trials as Ray tasks; then k-fold folds as tasks."""
    from audioclf import tuning
    from audioclf.datasets import SplitConfig, make_demo_dataset
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig

    data = make_demo_dataset(workspace_home / "ray_tune", clips_per_class=6, seed=3)
    base = RunConfig(dataset=str(data), split=SplitConfig(val=0.25, test=0.25, seed=0), features=MFCCConfig(),
                     model=ModelConfig(rnn_units=(8,), dense_units=(8,)),
                     train=TrainConfig(epochs=2, patience=None, min_epochs=0, batch_size=8, warp_augment=(),
                                       reduce_lr=None))
    space = tuning.SearchSpace((tuning.parse_param("train.learning_rate", "1e-3:1e-2:log"),))
    cfg = tuning.TuneConfig(base=base, space=space, trials=2, sampler="random", pruner="none",
                            engine="ray", address=cluster.address, final_run=False)
    result = tuning.run_study(cfg)
    assert result.state == "done" and result.n_trials == 2 and result.n_complete == 2, result
    status = tuning.read_status(result.study)
    assert status["engine"] == "ray" and status["ray_workers"] == 2
    assert len(tuning.leaderboard(result.study)) == 2
    assert tuning.TuneConfig.from_dict(cfg.to_dict()).engine == "ray"
    # Resumed with more trials on the cluster, then cancelled once a trial runs.
    import threading
    import time

    running = threading.Event()

    def watch() -> None:
        end = time.time() + 300
        while time.time() < end and not any(r["state"] == "running" for r in tuning.leaderboard(result.study)):
            time.sleep(0.3)
        running.set()

    threading.Thread(target=watch, daemon=True).start()
    again = tuning.run_study(study=result.study, trials=50, should_stop=running.is_set)
    assert again.state == "cancelled" and 2 < again.n_trials < 52, again
    assert all(r["state"] != "running" for r in tuning.leaderboard(result.study))
    from audioclf.training import cross_validate

    cv = cross_validate(base, k=2, engine=engine)  # the folds as tasks, on the trial workers' processes
    assert cv.k == 2 and len(cv.macro_f1) == 2 and all(0.0 <= f <= 1.0 for f in cv.macro_f1)


def test_the_cli_extracts_a_manifest_on_the_cluster(cluster, engine, clips, tmp_path, capsys):
    from audioclf.cli import main

    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{Path(p).parent.name}\n" for p in clips[:8]))
    code = main(["extract", str(manifest), "--features", "mfcc", "--engine", "ray", "--address", cluster.address,
                 "--store", str(tmp_path / "store"), "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "extracted" in out and " 8" in out and "127.0.0.1" in out
    assert FeatureStore(tmp_path / "store").count(MFCCConfig()) == 8
    assert main(["engines", "--engine", "ray", "--address", cluster.address]) == 0
    assert "2 node(s), 2 CPUs" in capsys.readouterr().out


def test_the_app_sidebar_shows_the_cluster(cluster, engine):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    at.sidebar.radio(key="engine").set_value("ray").run()
    at.sidebar.text_input(key="ray_address").set_value(cluster.address).run()
    next(b for b in at.sidebar.button if b.label == "Check the cluster").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("2 node(s), 2 CPUs" in c.value for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]
    at.sidebar.text_input(key="ray_address").set_value("127.0.0.1:9").run()
    next(b for b in at.sidebar.button if b.label == "Check the cluster").click().run()
    assert any("127.0.0.1:9" in e.value for e in at.error) and not at.exception


def test_an_unreachable_address_is_one_line(capsys):
    with pytest.raises(EngineError) as err:
        get_engine("ray", address="127.0.0.1:9")  # discard port: nothing listens there
    message = str(err.value)
    assert "127.0.0.1:9" in message and "\n" not in message
    from audioclf.cli import main

    assert main(["engines", "--engine", "ray", "--address", "127.0.0.1:9"]) != 0
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 1 and "127.0.0.1:9" in err_lines[0]


def test_the_local_default_does_not_import_ray(tmp_path):
    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    code = textwrap.dedent(f"""
        import sys
        import audioclf.cli, audioclf.tuning, audioclf.engines, audioclf.features.store
        from audioclf.engines import get_engine
        from audioclf.features import MFCCConfig
        r = get_engine().extract([{str(wav)!r}], MFCCConfig(), store={str(tmp_path / 'store')!r})
        assert r.extracted == 1, r
        print('ray' in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AUDIOCLF_ENGINE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_trial_or_fold_task_gets_the_owners_model_settings(monkeypatch, tmp_path):
    """Search trials and CV folds on a cluster run where the driver's environment is not: the owner's
    model settings go with them (as absolute paths: a worker's working folder is not ours)."""
    from audioclf.engines import task_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDIOCLF_YAMNET", "models/yamnet.tflite")
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", "https://example.org/mn04_as.pt")
    monkeypatch.delenv("AUDIOCLF_EFFICIENTAT_URL", raising=False)
    env = task_env()
    assert env["AUDIOCLF_YAMNET"] == str(tmp_path / "models" / "yamnet.tflite")
    assert env["AUDIOCLF_EFFICIENTAT"] == "https://example.org/mn04_as.pt" and "AUDIOCLF_EFFICIENTAT_URL" not in env
    monkeypatch.delenv("AUDIOCLF_YAMNET")
    assert "AUDIOCLF_YAMNET" not in task_env()


# ---------------------------------------------------------------- the warm actor pool

def _pool_actors(cfg_kind: str | None = None) -> list[dict]:
    """info() of each actor of the warm pools (of one feature kind), as the actors report it."""
    import ray

    from audioclf.engines import ray_extract

    out = []
    for pool in ray_extract.pools():
        if cfg_kind is None or pool.config["kind"] == cfg_kind:
            out += ray.get([a.info.remote() for a in pool.actors()], timeout=120)
    return out


def _gone(pid: int, within: float = 30.0) -> bool:
    import time

    end = time.time() + within
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def fresh_pools(engine):
    """No warm pool from an earlier test, none left for the next."""
    from audioclf.engines import ray_extract

    ray_extract.shutdown_pools()
    yield ray_extract
    ray_extract.shutdown_pools()


def test_a_second_job_reuses_the_warm_actors_without_loading_the_model_again(engine, fresh_pools, clips,
                                                                           yamnet_tflite, tmp_path):
    cfg = YAMNetConfig(model=str(yamnet_tflite))
    first = engine.extract(clips[:6], cfg, store=tmp_path / "a")
    assert first.extracted == 6 and not first.errors
    before = _pool_actors()
    assert len(before) == 2 and len({a["node"] for a in before}) == 2  # one actor per node's CPU
    assert all(a["warm_ups"] == 1 for a in before)
    second = engine.extract(clips[6:12], cfg, store=tmp_path / "b")  # another store: the same actors
    assert second.extracted == 6 and not second.errors
    after = _pool_actors()
    assert sorted(a["pid"] for a in after) == sorted(a["pid"] for a in before)
    assert all(a["warm_ups"] == 1 for a in after)  # no second model load
    assert sum(a["blocks"] for a in after) > sum(a["blocks"] for a in before)
    got = _by_hash(FeatureStore(tmp_path / "b"), cfg, clips[6:8])
    for path, want in zip(clips[6:8], extract_many(clips[6:8], cfg, cache=False)):
        np.testing.assert_allclose(got[path].values, want.values, rtol=1e-4, atol=1e-4)


def test_another_config_or_a_changed_model_file_gets_fresh_actors(engine, fresh_pools, clips, yamnet_tflite,
                                                                 workspace_home, tmp_path):
    folder = workspace_home / "models" / "warm-pool-yamnet"
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "yamnet.tflite"
    model.write_bytes(yamnet_tflite.read_bytes())
    if not (folder / "yamnet_class_map.csv").exists():
        (folder / "yamnet_class_map.csv").symlink_to(yamnet_tflite.with_name("yamnet_class_map.csv"))
    cfg = YAMNetConfig(model=str(model))
    assert engine.extract(clips[:4], cfg, store=tmp_path / "a").extracted == 4
    yamnet_pids = {a["pid"] for a in _pool_actors("yamnet")}
    assert engine.extract(clips[:4], MFCCConfig(), store=tmp_path / "a").extracted == 4
    mfcc_pids = {a["pid"] for a in _pool_actors("mfcc")}
    assert len(mfcc_pids) == 2 and not mfcc_pids & yamnet_pids
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file replaced under the same name
    assert engine.extract(clips[4:8], cfg, store=tmp_path / "b").extracted == 4
    fresh = _pool_actors("yamnet")
    assert len(fresh) == 2 and not {a["pid"] for a in fresh} & yamnet_pids
    assert all(a["warm_ups"] == 1 for a in fresh)
    assert len(fresh_pools.pools()) <= fresh_pools.MAX_POOLS


def test_an_actor_killed_between_jobs_is_replaced(engine, fresh_pools, clips, tmp_path):
    cfg = MFCCConfig(n_mfcc=13)
    assert engine.extract(clips[:8], cfg, store=tmp_path / "a").extracted == 8
    pids = sorted(a["pid"] for a in _pool_actors())
    os.kill(pids[0], signal.SIGKILL)  # a worker process of this module's cluster
    assert _gone(pids[0])
    again = engine.extract(clips[8:16], cfg, store=tmp_path / "b")
    assert again.extracted == 8 and not again.errors
    now = sorted(a["pid"] for a in _pool_actors())
    assert len(now) == 2 and pids[0] not in now and pids[1] in now
    assert sum(s.replaced for p in fresh_pools.pools() for s in p.slots) == 1
    assert FeatureStore(tmp_path / "b").count(cfg) == 8


def test_an_idle_pool_ends_its_actors(engine, fresh_pools, clips, tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(fresh_pools, "idle_timeout", 1.0)
    pids: set[int] = set()  # from the job's summaries: the pool may end any moment after the job
    result = engine.extract(clips[:8], MFCCConfig(n_mfcc=13), store=tmp_path / "a",
                            on_summary=lambda rows: pids.update(r["pid"] for r in rows))
    assert result.extracted == 8 and pids
    end = time.time() + 30
    while fresh_pools.pools() and time.time() < end:
        time.sleep(0.2)
    assert not fresh_pools.pools()  # the reaper ended it, no job asked
    assert all(_gone(pid) for pid in pids)


def test_a_model_the_actors_cannot_load_is_one_error_and_no_warm_pool(engine, fresh_pools, clips, workspace_home,
                                                                     tmp_path):
    from audioclf.features.yamnet import YAMNetUnavailable

    folder = workspace_home / "models" / "broken-yamnet"
    folder.mkdir(parents=True, exist_ok=True)
    broken = folder / "yamnet.tflite"
    broken.write_bytes(b"not a flatbuffer" * 64)  # trusted (the workspace's models), not loadable
    with pytest.raises(YAMNetUnavailable, match="not a usable YAMNet"):
        engine.extract(clips[:4], YAMNetConfig(model=str(broken)), store=tmp_path / "store")
    assert not fresh_pools.pools()  # the next job starts afresh, e.g. once the file is fixed
