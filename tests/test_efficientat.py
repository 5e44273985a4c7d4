"""EfficientAT in Keras against the official PyTorch model's outputs, and the safe checkpoint reader.

The references in ../shared/models/efficientat/reference were made with the
official code (eval mode, float32, CPU); nothing here imports PyTorch.
"""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from audioclf.errors import AudioclfError
from audioclf.features import efficientat
from audioclf.features.efficientat import architecture, frontend, params, weights
from audioclf.features.efficientat.checkpoint import CheckpointError, read_state_dict

REFERENCES = ("dog", "rain", "chainsaw", "silence_2s", "noise_1s", "dog_10s")
TOL = 1e-3


@pytest.fixture(scope="session")
def mn04_model(efficientat_pt):
    """The official mn04_as checkpoint loaded through the public API, once per session."""
    return efficientat.load_model(str(efficientat_pt))


@pytest.fixture(scope="session")
def mn04(mn04_model):
    """Its Keras network as trained (mel (batch, 128, frames, 1) -> logits, embedding, hidden, sequence)."""
    return mn04_model.keras_model


@pytest.fixture(scope="session", params=["trained", "folded"])
def mn04_form(request, mn04_model):
    """The network with BatchNorm layers, and the inference copy with them folded into the convolutions."""
    return mn04_model.keras_model if request.param == "trained" else mn04_model.inference_model


def _run(model, waveform: np.ndarray) -> dict[str, np.ndarray]:
    mel = frontend.log_mel(waveform)
    return {k: np.asarray(v)[0] for k, v in model(mel[None, :, :, None]).items()} | {"mel": mel}


# ---------------------------------------------------------------- parity with the official model


def test_every_reference_input_is_tested(efficientat_reference):
    index = json.loads((efficientat_reference / "index.json").read_text())
    assert sorted(k for k in index if k != "source") == sorted(REFERENCES)


@pytest.mark.parametrize("name", REFERENCES)
def test_matches_the_official_model(name, mn04_form, efficientat_reference):
    ref = np.load(efficientat_reference / f"{name}.npz")
    top3 = json.loads((efficientat_reference / "index.json").read_text())[name]["top3_audioset_index"]
    got = _run(mn04_form, ref["waveform"])
    for key in ("mel", "embedding", "hidden", "logits"):
        assert got[key].shape == ref[key].shape, key
        err = float(np.abs(got[key] - ref[key]).max())
        assert err < TOL, f"{name} {key}: max abs error {err:.2e}"
    assert np.argsort(-got["logits"], kind="stable")[:3].tolist() == top3
    # The sequence is the embedding before averaging over time: one step per 32 mel frames.
    steps = -(-ref["mel"].shape[1] // params.TIME_REDUCTION)
    assert got["sequence"].shape == (steps, 384)
    np.testing.assert_allclose(got["sequence"].mean(axis=0), got["embedding"], atol=1e-5)


def test_every_block_matches_the_official_model(mn04, efficientat_reference):
    from audioclf.features.efficientat import network

    layers = np.load(efficientat_reference / "noise_1s_layers.npz")
    waveform = np.load(efficientat_reference / "noise_1s.npz")["waveform"]
    mel = frontend.log_mel(waveform)
    got = {k: np.asarray(v)[0] for k, v in network.feature_maps(mn04)(mel[None, :, :, None]).items()}
    for n in range(len(params.BLOCKS) + 2):
        ref = layers[f"features.{n}"]  # (channels, freq, time)
        ours = got[f"features_{n}"].transpose(2, 0, 1)  # (freq, time, channels) ->
        assert ours.shape == ref.shape, n
        assert float(np.abs(ours - ref).max()) < TOL, f"features.{n}"
    assert float(np.abs(got["hidden"] - layers["classifier.3"].ravel()).max()) < TOL


def test_front_end_is_kaldi_mel_not_slaney():
    banks = frontend.mel_banks()
    assert banks.shape == (params.N_MELS, params.N_FFT // 2 + 1)
    assert not banks[:, -1].any()  # the Nyquist column is padding
    assert (banks.max(axis=1) > 0).all()  # even the lowest bands, narrower than a bin, catch one
    assert (banks[64:].max(axis=1) > 0.8).all()  # unnormalised triangles peak near 1 (Slaney's: ~0.01)
    assert frontend.log_mel(np.zeros(10, np.float32)).shape == (params.N_MELS, 2)  # short input padded
    assert frontend.num_frames(32000) == frontend.log_mel(np.zeros(32000, np.float32)).shape[1] == 100


def test_any_length_gives_one_embedding(mn04):
    for seconds in (0.05, 0.5, 3.3):
        y = np.random.default_rng(1).uniform(-0.5, 0.5, int(seconds * params.SAMPLE_RATE)).astype(np.float32)
        got = _run(mn04, y)
        assert got["embedding"].shape == (384,) and got["logits"].shape == (527,)
        assert np.isfinite(got["logits"]).all()


# Parameter counts in the EfficientAT README's table of AudioSet models (millions).
PUBLISHED_PARAMS = {0.4: 0.983, 0.5: 1.43, 1.0: 4.88, 2.0: 17.91, 3.0: 39.09, 4.0: 68.43}


@pytest.mark.parametrize("width", sorted(PUBLISHED_PARAMS))
def test_every_official_width_has_the_published_size(width):
    published = PUBLISHED_PARAMS[width] * 1e6
    count = sum(int(np.prod(s)) for k, s in architecture.torch_shapes(width).items() if s)
    assert abs(count - published) / published < 0.02


def test_a_network_at_another_width_takes_its_shapes():
    from audioclf.features.efficientat import network

    model = network.build_network(1.0)
    assert model.output["embedding"].shape[-1] == 960 and model.output["hidden"].shape[-1] == 1280
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in architecture.torch_shapes(1.0).items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = np.abs(state[k]) + 0.5
    network.load_torch_state(model, state)
    np.testing.assert_array_equal(model.get_layer("classifier_5").get_weights()[0], state["classifier.5.weight"].T)
    assert architecture.infer_width(state) == (1.0, 527)
    with pytest.raises(network.WeightsMismatch, match="width 0.4"):
        network.load_torch_state(network.build_network(0.4), state)
    folded = network.fold_batchnorm(model)
    x = np.random.default_rng(3).standard_normal((2, 128, 70, 1)).astype(np.float32)
    want, got = model(x), folded(x)
    for key in network.OUTPUTS:
        scale = float(np.abs(np.asarray(want[key])).max())
        assert float(np.abs(np.asarray(got[key]) - np.asarray(want[key])).max()) < 1e-4 * max(1.0, scale), key
    with pytest.raises(network.WeightsMismatch, match="BatchNorm"):
        network.load_torch_state(folded, state)


def test_the_network_round_trips_through_keras_saving(mn04, tmp_path):
    import keras

    path = tmp_path / "mn04.keras"
    mn04.save(path)
    again = keras.saving.load_model(path)
    x = frontend.log_mel(np.random.default_rng(2).uniform(-1, 1, 16000).astype(np.float32))[None, :, :, None]
    np.testing.assert_allclose(np.asarray(again(x)["logits"]), np.asarray(mn04(x)["logits"]), atol=1e-6)


# ---------------------------------------------------------------- the safe checkpoint reader


def test_the_official_checkpoint_reads_without_torch(efficientat_pt):
    state = read_state_dict(efficientat_pt)
    assert len(state) == 312
    assert state["features.0.0.weight"].shape == (8, 1, 3, 3) and state["features.0.0.weight"].dtype == np.float32
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    assert architecture.infer_width(state) == (0.4, 527)
    assert "torch" not in __import__("sys").modules


def _p(obj) -> bytes:
    """The pickle opcodes of a plain value, without the protocol header and STOP."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def _tensor(storage: str, key: str, numel: int, offset: int, size: tuple, stride: tuple) -> bytes:
    """Opcodes rebuilding one tensor exactly as torch.save writes it."""
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(("
            + _p("storage") + f"ctorch\n{storage}\n".encode() + _p(key) + _p("cpu") + _p(numel)
            + b"tQ" + _p(offset) + _p(size) + _p(stride) + b"\x89ccollections\nOrderedDict\n)Rt" + b"R")


def _write_pt(path: Path, pickled: bytes, storages: dict[str, bytes], folder: str = "archive") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{folder}/data.pkl", pickled)
        for key, raw in storages.items():
            z.writestr(f"{folder}/data/{key}", raw)
        z.writestr(f"{folder}/version", "3\n")
    return path


def _state_pickle(entries: dict[str, bytes]) -> bytes:
    return b"\x80\x02}(" + b"".join(_p(name) + t for name, t in entries.items()) + b"u."


def test_strides_offsets_and_dtypes_are_rebuilt(tmp_path):
    base = np.arange(12, dtype=np.float32)
    pickled = _state_pickle({
        "w": _tensor("FloatStorage", "0", 12, 0, (3, 4), (4, 1)),
        "wt": _tensor("FloatStorage", "0", 12, 0, (4, 3), (1, 4)),  # a transposed view of the same storage
        "tail": _tensor("FloatStorage", "0", 12, 8, (2, 2), (2, 1)),
        "half": _tensor("HalfStorage", "1", 3, 0, (3,), (1,)),
        "count": _tensor("LongStorage", "2", 1, 0, (), ()),
    })
    path = _write_pt(tmp_path / "ok.pt", pickled, {
        "0": base.tobytes(), "1": np.array([1.5, -2, 0.25], "<f2").tobytes(), "2": np.int64(7).tobytes()})
    state = read_state_dict(path)
    np.testing.assert_array_equal(state["w"], base.reshape(3, 4))
    np.testing.assert_array_equal(state["wt"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(state["tail"], [[8, 9], [10, 11]])
    assert state["half"].dtype == np.float16 and state["half"].tolist() == [1.5, -2, 0.25]
    assert state["count"].shape == () and int(state["count"]) == 7
    state["w"][0, 0] = 99  # a copy, writable, not a view of the file's bytes
    assert state["wt"][0, 0] == 0


class _Calls:
    """Pickles as a call of ``func(*args)``: what a hostile checkpoint would hide among its tensors."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("target", ["os.system", "builtins.exec", "subprocess.check_call"])
def test_a_checkpoint_calling_any_other_global_is_refused_unrun(target, tmp_path):
    import builtins
    import subprocess

    marker = tmp_path / "ran"
    call = {"os.system": _Calls(os.system, f"touch {marker}"),
            "builtins.exec": _Calls(builtins.exec, f"open({str(marker)!r}, 'w')"),
            "subprocess.check_call": _Calls(subprocess.check_call, ["touch", str(marker)])}[target]
    path = _write_pt(tmp_path / "evil.pt", pickle.dumps({"features.0.0.weight": call}, protocol=2), {})
    name = target.rsplit(".", 1)[1]
    with pytest.raises(CheckpointError, match=rf"\.{name}, which a file of weights never needs.*refused"):
        read_state_dict(path)
    assert not marker.exists()
    assert issubclass(CheckpointError, AudioclfError)


def test_a_torch_global_that_is_not_a_storage_is_refused(tmp_path):
    pickled = b"\x80\x02}(" + _p("w") + b"ctorch\nload\n" + _p(("x.pt",)) + b"Ru."
    with pytest.raises(CheckpointError, match=r"torch\.load"):
        read_state_dict(_write_pt(tmp_path / "evil.pt", pickled, {}))


def test_a_tensor_reaching_outside_its_storage_is_refused(tmp_path):
    pickled = _state_pickle({"w": _tensor("FloatStorage", "0", 4, 2, (2, 2), (2, 1))})
    with pytest.raises(CheckpointError, match="reaches element"):
        read_state_dict(_write_pt(tmp_path / "big.pt", pickled, {"0": np.zeros(4, np.float32).tobytes()}))


def test_random_bytes_and_odd_zips_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_state_dict(junk)
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        read_state_dict(tmp_path / "missing.pt")
    empty = tmp_path / "nodata.pt"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError, match="no archive/data.pkl"):
        read_state_dict(empty)
    for bad in ("../archive/data.pkl", "/archive/data.pkl", "archive/../../x"):
        tricky = tmp_path / "tricky.pt"
        with zipfile.ZipFile(tricky, "w") as z:
            z.writestr("archive/data.pkl", _state_pickle({}))
            z.writestr(bad, b"x")
        with pytest.raises(CheckpointError, match="unsafe path"):
            read_state_dict(tricky)
    broken = _write_pt(tmp_path / "broken.pt", b"\x80\x02}(" + _p("w"), {})  # truncated pickle
    with pytest.raises(CheckpointError, match="not a readable state dict"):
        read_state_dict(broken)
    not_tensors = _write_pt(tmp_path / "list.pt", pickle.dumps([1, 2, 3], protocol=2), {})
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(not_tensors)


def test_an_ordered_dict_with_metadata_and_big_endian_storages_reads(tmp_path):
    # torch.save(model.state_dict()) pickles an OrderedDict whose _metadata attribute is set by BUILD.
    entries = _p("w") + _tensor("FloatStorage", "0", 3, 0, (3,), (1,))
    pickled = (b"\x80\x02ccollections\nOrderedDict\n)R(" + entries + b"u"
               + _p({"_metadata": {"": {"version": 1}}}) + b"b.")
    path = _write_pt(tmp_path / "od.pt", pickled, {"0": np.array([1, 2, 3], ">f4").tobytes()})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("archive/byteorder", "big")
    state = read_state_dict(path)
    assert state["w"].tolist() == [1, 2, 3] and state["w"].dtype == np.float32


def test_a_checkpoint_folder_may_have_any_name(tmp_path):
    pickled = _state_pickle({"b": _tensor("FloatStorage", "0", 2, 0, (2,), (1,))})
    path = _write_pt(tmp_path / "m.pt", pickled, {"0": np.ones(2, np.float32).tobytes()}, folder="mn04_as")
    assert read_state_dict(path)["b"].tolist() == [1, 1]


def test_reading_weights_and_the_front_end_import_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from audioclf.features.efficientat import architecture, checkpoint, frontend, params; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules or 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- the public API and where weights come from


def test_load_model_once_and_embed(mn04_model, efficientat_pt, efficientat_reference):
    assert efficientat.load_model(str(efficientat_pt)) is mn04_model
    assert (mn04_model.name, mn04_model.width, mn04_model.embedding_dim) == ("mn04_as", 0.4, 384)
    assert mn04_model.sha256 == params.CHECKPOINTS["mn04_as"].sha256
    refs = [np.load(efficientat_reference / f"{n}.npz") for n in ("dog", "noise_1s", "rain", "silence_2s")]
    many = mn04_model.embed_many([r["waveform"] for r in refs])  # two of one length batch together
    for ref, got in zip(refs, many):
        emb, logits, seq = got
        assert float(np.abs(emb - ref["embedding"]).max()) < TOL
        assert float(np.abs(logits - ref["logits"]).max()) < TOL
        assert seq.shape == (-(-ref["mel"].shape[1] // params.TIME_REDUCTION), 384)
    one = efficientat.embed(refs[0]["waveform"], mn04_model)
    np.testing.assert_allclose(one.embedding, many[0].embedding, atol=1e-5)
    names = [n for n, _ in efficientat.top_classes(many[0].logits, 3, mn04_model.labels())]
    assert "Dog" in names and len(mn04_model.labels()) == 527


def test_audioset_labels_ship_with_the_package(efficientat_pt):
    labels = efficientat.audioset_labels()
    assert len(labels) == 527 and labels[0] == "Speech" and labels[74] == "Dog"
    shared = (efficientat_pt.parent / params.LABELS_FILE).read_text(encoding="utf-8")
    assert (Path(efficientat.__file__).parent / params.LABELS_FILE).read_text(encoding="utf-8") == shared


def test_to_32k_resamples_a_clip():
    from audioclf.audio import AudioError, Clip

    y = efficientat.to_32k(Clip(np.zeros(16000, np.float32), 16000, "x"))
    assert y.shape == (32000,) and y.dtype == np.float32
    with pytest.raises(AudioError, match="NaN"):
        efficientat.to_32k(Clip(np.full(10, np.nan, np.float32), 16000, "bad"))


@pytest.fixture
def empty_workspace(tmp_path, monkeypatch) -> Path:
    """A workspace of its own with no EfficientAT weights, and no environment pointing at any."""
    home = tmp_path / "home"
    monkeypatch.setenv("AUDIOCLF_HOME", str(home))
    monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    monkeypatch.delenv(weights.ENV_RELEASE, raising=False)
    return home


def test_the_environment_variable_names_a_file_or_a_folder(empty_workspace, efficientat_pt, monkeypatch, tmp_path):
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(efficientat_pt))
    assert weights.local_checkpoint("") == weights.local_checkpoint("mn04_as") == efficientat_pt.resolve()
    assert weights.local_checkpoint("mn10_as") is None  # the file is mn04's: mn10 would be downloaded
    assert "mn10_as is not downloaded yet" in efficientat.availability("mn10_as")
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / efficientat_pt.name).symlink_to(efficientat_pt)
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(folder))
    assert weights.local_checkpoint("mn04_as") == folder / efficientat_pt.name
    assert efficientat.availability() is None
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(tmp_path / "typo.pt"))
    with pytest.raises(efficientat.EfficientATUnavailable, match="does not exist"):
        efficientat.resolve_checkpoint("mn04_as")


def test_the_workspace_copy_is_found(empty_workspace, efficientat_pt):
    assert efficientat.availability() is not None
    with pytest.raises(efficientat.EfficientATUnavailable, match="not downloaded yet.*AUDIOCLF_EFFICIENTAT"):
        efficientat.load_model("mn04_as", download=False)
    weights.models_folder().mkdir(parents=True)
    (weights.models_folder() / efficientat_pt.name).symlink_to(efficientat_pt)
    assert efficientat.availability("mn04_as") is None
    assert efficientat.resolve_checkpoint("", download=False) == weights.models_folder() / efficientat_pt.name


def test_unknown_names_and_unusable_files_say_what_to_do(empty_workspace, tmp_path):
    with pytest.raises(efficientat.EfficientATUnavailable, match="no EfficientAT model called 'mn99'.*mn04_as"):
        efficientat.load_model("mn99")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(efficientat.EfficientATUnavailable, match="not a PyTorch checkpoint.*To use EfficientAT"):
        efficientat.load_model(str(junk))
    assert "No EfficientAT checkpoint at" in efficientat.availability(str(tmp_path / "missing.pt"))


def test_download_from_a_file_url_checks_the_sha256(empty_workspace, efficientat_pt, monkeypatch):
    monkeypatch.setenv(weights.ENV_RELEASE, efficientat_pt.parent.as_uri() + "/")
    path = efficientat.resolve_checkpoint("mn04_as")
    assert path == weights.models_folder() / "mn04_as_mAP_432.pt" and path.is_file() and not path.is_symlink()
    assert weights.sha256(path) == params.CHECKPOINTS["mn04_as"].sha256
    monkeypatch.setenv(weights.ENV_RELEASE, "file:///nonexistent/")  # downloaded once: no second fetch
    assert efficientat.resolve_checkpoint("mn04_as") == path
    assert sorted(p.name for p in weights.models_folder().iterdir()) == ["mn04_as_mAP_432.pt"]


def _write_state(path: Path, state: dict[str, np.ndarray]) -> Path:
    """A torch.save-shaped file holding float32/int64 arrays (one storage each)."""
    entries, storages = {}, {}
    for i, (name, array) in enumerate(state.items()):
        kind = "LongStorage" if array.dtype == np.int64 else "FloatStorage"
        strides = tuple(int(np.prod(array.shape[d + 1:])) for d in range(array.ndim))
        entries[name] = _tensor(kind, str(i), int(array.size), 0, tuple(array.shape), strides)
        storages[str(i)] = np.ascontiguousarray(array).tobytes()
    return _write_pt(path, _state_pickle(entries), storages)


@pytest.fixture
def release_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/release (stopped after the test)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "release"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_download_over_http_verifies_and_keeps_nothing_bad(empty_workspace, efficientat_pt, release_server,
                                                           monkeypatch):
    root, url = release_server
    monkeypatch.setenv(weights.ENV_RELEASE, url)
    # A corrupt copy of the official file fails its SHA-256 check and leaves nothing behind.
    data = bytearray(efficientat_pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "mn04_as_mAP_432.pt").write_bytes(bytes(data))
    with pytest.raises(efficientat.EfficientATUnavailable, match="SHA-256.*To use EfficientAT mn04_as"):
        efficientat.resolve_checkpoint("mn04_as")
    assert not weights.models_folder().exists() or not any(weights.models_folder().iterdir())
    # No checksum is recorded for mn05_as: a file whose tensors fit width 0.5 is kept, one of mn04 is not.
    assert params.CHECKPOINTS["mn05_as"].sha256 is None
    (root / "mn05_as_mAP_443.pt").symlink_to(efficientat_pt)
    with pytest.raises(efficientat.EfficientATUnavailable, match="width 0.5"):
        efficientat.download_checkpoint("mn05_as")
    (root / "mn05_as_mAP_443.pt").unlink()
    rng = np.random.default_rng(0)
    state = {k: (np.zeros(s, np.int64) if k.endswith("num_batches_tracked") else
                 rng.standard_normal(s).astype(np.float32)) for k, s in architecture.torch_shapes(0.5).items()}
    _write_state(root / "mn05_as_mAP_443.pt", state)
    path = efficientat.download_checkpoint("mn05_as")
    assert path.name == "mn05_as_mAP_443.pt" and architecture.infer_width(read_state_dict(path)) == (0.5, 527)
    # The good official file over HTTP.
    (root / "mn04_as_mAP_432.pt").write_bytes(efficientat_pt.read_bytes())
    assert weights.sha256(efficientat.resolve_checkpoint("mn04_as")) == params.CHECKPOINTS["mn04_as"].sha256


def test_no_weights_and_no_network_is_a_clear_error(empty_workspace, monkeypatch, tmp_path):
    monkeypatch.setenv(weights.ENV_RELEASE, (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(efficientat.EfficientATUnavailable, match="Could not download.*To use EfficientAT mn04_as"):
        efficientat.load_model("")
    assert not weights.models_folder().exists() or not any(weights.models_folder().iterdir())


def test_thread_count_comes_from_the_environment_or_the_process_kind(monkeypatch):
    import multiprocessing

    from audioclf.features.threads import THREADS_ENV, network_threads

    monkeypatch.setenv(THREADS_ENV["efficientat"], "3")
    assert network_threads("efficientat") == 3
    monkeypatch.setenv(THREADS_ENV["efficientat"], "lots")
    assert network_threads("efficientat") is None  # the main process keeps TensorFlow's own choice
    monkeypatch.delenv(THREADS_ENV["yamnet"], raising=False)
    assert network_threads("yamnet", main=4) == 4
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a pool worker: one thread
        assert pool.apply(network_threads, ("yamnet",), {"main": 4}) == 1
