"""The sharded Parquet feature store and the local engine that fills it (no Ray here)."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audioclf.engines import ManifestError, get_engine, read_manifest
from audioclf.features import Features, MFCCConfig, extract_many
from audioclf.features.store import TMP_PREFIX, FeatureStore, StoreRow

from conftest import tone


def _feats(n_frames: int, seed: int, cfg) -> Features:
    rng = np.random.default_rng(seed)
    return Features(values=rng.normal(size=(n_frames, 3)).astype(np.float32),
                    times=np.arange(n_frames, dtype=np.float32) * 0.016, names=("a", "b", "c"), config=cfg,
                    silent=bool(seed % 2))


@pytest.fixture
def clips(tmp_path) -> list[str]:
    out = []
    for i, f in enumerate((220.0, 330.0, 440.0, 550.0, 660.0)):
        path = tmp_path / "audio" / f"c{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, tone(f, 0.5 + 0.1 * i), 16000)
        out.append(str(path))
    return out


def test_rows_round_trip_and_duplicates_read_once(tmp_path):
    cfg = MFCCConfig()
    store = FeatureStore(tmp_path / "store")
    rows = [StoreRow(hash=f"h{i}", path=f"/x/{i}.wav", features=_feats(4 + i, i, cfg), label=str(i % 2))
            for i in range(5)]
    store.write(cfg, rows[:3])
    store.write(cfg, rows[2:])  # h2 again, as a retried block writes it
    assert len(store.shards(cfg)) == 2 and store.count(cfg) == 5 and store.verify(cfg) == 6
    got = store.read(cfg)
    for r in rows:
        np.testing.assert_array_equal(got[r.hash].values, r.features.values)
        np.testing.assert_array_equal(got[r.hash].times, r.features.times)
        assert got[r.hash].names == ("a", "b", "c") and got[r.hash].silent == r.features.silent
    streamed = [h for t in store.iter_batches(cfg, seed=1) for h in t.column("hash").to_pylist()]
    assert sorted(streamed) == [f"h{i}" for i in range(5)]  # each clip once, whatever the order
    only = [h for t in store.iter_batches(cfg, hashes={"h1", "h4"}) for h in t.column("hash").to_pylist()]
    assert sorted(only) == ["h1", "h4"]
    assert store.configs()[0]["names"] == ["a", "b", "c"]


def test_a_half_written_shard_is_invisible(tmp_path):
    cfg = MFCCConfig()
    store = FeatureStore(tmp_path / "store")
    store.write(cfg, [StoreRow(hash="h0", path="/x/0.wav", features=_feats(3, 0, cfg))])
    folder = tmp_path / "store" / store.folder(cfg).rsplit("/", 1)[1]
    whole = next(folder.glob("part-*.parquet")).read_bytes()
    (folder / f"{TMP_PREFIX}part-killed.parquet").write_bytes(whole[: len(whole) // 2])  # a killed writer
    assert store.count(cfg) == 1 and store.verify(cfg) == 1
    assert store.clean(cfg) == 1 and not list(folder.glob(f"{TMP_PREFIX}*"))


def test_row_groups_bound_what_one_read_holds(tmp_path):
    cfg = MFCCConfig()
    store = FeatureStore(tmp_path / "store")
    rows = [StoreRow(hash=f"h{i}", path=f"/{i}", features=_feats(2, i, cfg)) for i in range(150)]
    store.write(cfg, rows)
    shard = store.shards(cfg)[0]
    assert pq.ParquetFile(shard).metadata.num_row_groups == 3  # 64 + 64 + 22 rows
    assert [t.num_rows for t in store.iter_batches(cfg)] == [64, 64, 22]


def test_the_local_engine_fills_a_store_with_the_cache_s_numbers(clips, tmp_path):
    cfg = MFCCConfig()
    bad = tmp_path / "audio" / "bad.wav"
    bad.write_bytes(b"not audio at all")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group\n" + "".join(f"audio/c{i}.wav,{i % 2},g\n" for i in range(5))
                        + "audio/bad.wav,0,g\n")
    result = get_engine("local").extract(manifest, cfg, store=tmp_path / "store")
    assert result.total == 6 and result.extracted == 5 and [p for p, _ in result.errors] == [str(bad)]
    store = FeatureStore(tmp_path / "store")
    idx = store.index(cfg)
    assert sorted(idx.column("label").to_pylist()) == ["0", "0", "0", "1", "1"]
    want = extract_many(clips, cfg, cache=False, n_jobs=1)
    from audioclf.audio import fingerprint

    got = store.read(cfg)
    for p, w in zip(clips, want):
        np.testing.assert_allclose(got[fingerprint(p)].values, w.values, rtol=1e-6)
    again = get_engine("local").extract(manifest, cfg, store=tmp_path / "store")
    assert again.skipped == 5 and again.extracted == 0 and len(again.errors) == 1


def test_manifests_say_what_is_wrong(tmp_path):
    empty = tmp_path / "m.csv"
    empty.write_text("file,class\n")
    assert read_manifest(empty).num_rows == 0
    nopath = tmp_path / "n.csv"
    nopath.write_text("label\nx\n")
    with pytest.raises(ManifestError, match="needs a 'path' column"):
        read_manifest(nopath)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "missing.parquet")
    table = read_manifest(empty)
    assert table.column_names == ["path", "label", "group"]


def test_a_store_split_streams_what_memory_holds(tmp_path):
    """Statistics equal input_stats on all clips; each epoch yields every clip once; buffers stay in budget."""
    from audioclf.model import ModelConfig, input_stats
    from audioclf.training.streaming import BudgetError, StoreSplit, parse_bytes

    assert parse_bytes("200MB") == 200_000_000 and parse_bytes("1.5 GiB") == int(1.5 * 2**30)
    with pytest.raises(BudgetError):
        parse_bytes("lots")
    cfg = MFCCConfig()
    store = FeatureStore(tmp_path / "store")
    rows = [StoreRow(hash=f"h{i}", path=f"/{i}", features=_feats(20 + i % 7, i, cfg)) for i in range(300)]
    for k in range(0, 300, 100):
        store.write(cfg, rows[k:k + 100])
    hashes = [r.hash for r in rows[:250]]
    y = [i % 3 for i in range(250)]
    part = StoreSplit.of(store, cfg, hashes, y, budget=16 * 1024)
    assert len(part) == 250 and part.dims == 3 and part.buffer_clips < 250
    for model_cfg in (ModelConfig(), ModelConfig(kind="baseline")):
        mean, var = part.input_stats(model_cfg)
        want_mean, want_var = input_stats(model_cfg, [r.features.values for r in rows[:250]])
        np.testing.assert_allclose(mean, want_mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(var, want_var, rtol=1e-6, atol=1e-9)
    seen = [int(v) for xb, yb in part.batches(16, seed=1, class_w=None) for v in yb]
    assert sorted(seen) == sorted(y)
    assert part.peak_bytes <= 16 * 1024 + max(r.features.values.nbytes for r in rows)
    with pytest.raises(BudgetError, match="not in the feature store"):
        StoreSplit.of(store, cfg, ["nope"], [0], budget=1 << 20)


def test_fit_trains_from_a_store_split(tmp_path):
    from audioclf.model import ModelConfig
    from audioclf.training import TrainConfig
    from audioclf.training.fit import fit
    from audioclf.training.streaming import StoreSplit

    cfg = MFCCConfig()
    store = FeatureStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):  # two classes a model tells apart at once: the sign of the first dimension
        v = rng.normal(size=(12, 3)).astype(np.float32)
        v[:, 0] += 3.0 if i % 2 else -3.0
        rows.append(StoreRow(hash=f"h{i}", path=f"/{i}", features=Features(v, np.arange(12, dtype=np.float32),
                                                                           ("a", "b", "c"), cfg)))
    store.write(cfg, rows)
    y = [i % 2 for i in range(60)]
    train = StoreSplit.of(store, cfg, [r.hash for r in rows[:48]], y[:48], budget=2048)
    val = StoreSplit.of(store, cfg, [r.hash for r in rows[48:]], y[48:], budget=2048)
    model, info = fit(ModelConfig(rnn_units=(8,), dense_units=(8,), clip_norm=False),  # the offset is the class
                      TrainConfig(epochs=6, patience=None, batch_size=8, learning_rate=1e-2, warp_augment=()),
                      train, val, 2)
    probs, labels, _ = val.predict(model)
    assert info["epochs_trained"] == 6 and (probs.argmax(1) == labels).mean() >= 0.9


def test_a_run_trains_from_a_store_and_records_it(fsdd_small, tmp_path, capsys):
    from audioclf.cli import main
    from audioclf.training import runs

    flags = ["--features", "mfcc", "--rnn-units", "8", "--dense-units", "8", "--epochs", "2", "--patience", "none",
             "--min-epochs", "0", "--batch-size", "8", "--warp-augment", "none", "--reduce-lr", "none",
             "--val", "0.25", "--test", "0.25", "--format", "json", "-q"]
    store = tmp_path / "store"
    assert main(["train", str(fsdd_small), "--store", str(store), "--memory-budget", "1MB", *flags]) == 0
    run_id = max(runs.list_runs(), key=lambda r: r.created).id
    m = runs.load_run(run_id).metrics
    assert m["store"]["root"] == str(store) and m["store"]["memory_budget"] == 1_000_000
    assert m["n_train"] > 0 and m["test"]["accuracy"] is not None
    assert FeatureStore(store).count(MFCCConfig()) == 36  # every clip of the data set, once
    capsys.readouterr()
    assert main(["train", str(fsdd_small), "--memory-budget", "1MB", *flags]) != 0
    assert "--store" in capsys.readouterr().err


def test_a_file_larger_than_any_audio_is_refused_unread(tmp_path, monkeypatch):
    from audioclf import limits
    from audioclf.audio import AudioError
    from audioclf.engines.work import decode

    big = tmp_path / "long.wav"
    sf.write(big, np.zeros(16000 * 4, np.float32), 16000)  # 128 KB
    monkeypatch.setattr(limits, "ZIP_MAX_MEMBER_BYTES", 64 * 1024)
    d = decode(str(big), MFCCConfig())
    assert isinstance(d.clip, AudioError) and "larger than any audio file" in str(d.clip) and d.hash is None
