"""The health check, the data set map and class profiles, on real audio.

The headline test runs `audioclf check` with the real YAMNet TFLite on a copy of
ESC-10 with 10 flipped labels and 5 re-encoded duplicates under other names.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from test_cli import run_cli

N_FLIPS, N_DUPES, TOP = 10, 5, 20


@pytest.fixture(scope="module")
def noisy_esc10(esc10_dir, tmp_path_factory) -> dict:
    """ESC-10 as symlinks, 10 of them in a wrong class folder, 5 clips copied as WAV under new names."""
    src = esc10_dir
    dst = tmp_path_factory.mktemp("esc10_noisy")
    classes = sorted(p.name for p in src.iterdir() if p.is_dir())
    files = sorted(src.rglob("*.flac"))
    rng = random.Random(14)
    picked = rng.sample(files, N_FLIPS + N_DUPES)
    flips = {f: rng.choice([c for c in classes if c != f.parent.name]) for f in picked[:N_FLIPS]}
    for c in classes:
        (dst / c).mkdir()
    for f in files:
        (dst / flips.get(f, f.parent.name) / f.name).symlink_to(f)
    dupes = []
    for i, f in enumerate(picked[N_FLIPS:]):
        # Re-encoded (FLAC -> 16-bit WAV) and renamed: only the decoded samples are the same.
        y, sr = sf.read(f, dtype="int16")
        copy = dst / f.parent.name / f"recording_{i:02d}.wav"
        sf.write(copy, y, sr, subtype="PCM_16")
        dupes.append({str(dst / f.parent.name / f.name), str(copy)})
    return {"root": dst, "flipped": {str(dst / c / f.name) for f, c in flips.items()}, "dupes": dupes}


@pytest.fixture(scope="module")
def esc10_report(noisy_esc10, yamnet_tflite, monkeypatch_module) -> dict:
    monkeypatch_module.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    code, out, err = run_cli("check", noisy_esc10["root"], "--features", "yamnet", "--format", "json",
                             "--top", TOP)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_check_lists_every_duplicate(esc10_report, noisy_esc10):
    found = [set(f["paths"]) for f in esc10_report["findings"] if f["kind"] == "duplicate"]
    assert len(found) == N_DUPES
    assert all(pair in found for pair in noisy_esc10["dupes"])
    # The fix keeps one copy and deletes the other.
    assert all(len(f["targets"]) == 1 and f["action"] == "delete"
               for f in esc10_report["findings"] if f["kind"] == "duplicate")


def test_check_finds_flipped_labels_among_top_suspects(esc10_report, noisy_esc10):
    suspects = [f for f in esc10_report["findings"] if f["kind"] == "mislabelled"]
    assert len(suspects) <= TOP
    flipped = noisy_esc10["flipped"]
    hits = [f for f in suspects if f["paths"][0] in flipped]
    high = [f for f in suspects if f["severity"] == "high"]
    high_hits = [f for f in high if f["paths"][0] in flipped]
    print(f"\nflipped found in top {TOP}: {len(hits)}/{N_FLIPS}; precision {len(hits)}/{len(suspects)}; "
          f"high-severity precision {len(high_hits)}/{len(high)}")
    assert len(hits) >= 8
    # Each suggestion for a flipped clip names a class; most name its true one.
    src = {Path(p).name: Path(p).resolve().parent.name for p in flipped}
    right = sum(f["label"] == src[Path(f["paths"][0]).name] for f in hits)
    assert right >= len(hits) - 2


def _write(path: Path, y: np.ndarray, sr: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, **kw)
    return path


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> dict:
    """A fixed-split data set with leakage, a silent, a clipped, a short and an odd-rate clip, a broken file."""
    root = tmp_path_factory.mktemp("messy")
    rng = np.random.default_rng(0)
    out = {"root": root}
    for split, n in (("train", 8), ("test", 3)):
        for label, base in (("low", 300.0), ("high", 2000.0)):
            for i in range(n):
                y = tone(base * (1 + 0.05 * i), 1.0) + 0.01 * rng.standard_normal(16000).astype(np.float32)
                _write(root / split / label / f"{label}_{i}.wav", y)
    leak = root / "test" / "low" / "copy_of_low_0.wav"
    shutil.copy(root / "train" / "low" / "low_0.wav", leak)
    out["leak"] = {str(root / "train" / "low" / "low_0.wav"), str(leak)}
    out["silent"] = str(_write(root / "train" / "high" / "quiet.wav", np.zeros(16000, np.float32)))
    out["clipped"] = str(_write(root / "train" / "high" / "loud.wav", np.clip(4 * tone(2100.0, 1.0), -1, 1)))
    out["short"] = str(_write(root / "train" / "low" / "blip.wav", tone(300.0, 0.05)))
    out["rate"] = str(_write(root / "train" / "low" / "odd_rate.wav", tone(310.0, 1.0, sr=8000), sr=8000))
    (root / "train" / "low" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    out["broken"] = str(root / "train" / "low" / "broken.wav")
    return out


def test_check_finds_each_kind_of_problem(messy):
    from audioclf.datasets import load_dataset
    from audioclf.features import MFCCConfig
    from audioclf.insight import check_dataset

    stages = set()
    report = check_dataset(load_dataset(messy["root"]), MFCCConfig(),
                           progress=lambda stage, done, total: stages.add(stage))
    assert stages == {"reading", "features", "checking"}
    by_kind = {}
    for f in report.findings:
        by_kind.setdefault(f.kind, []).append(f)
    leak = by_kind["leakage"][0]
    assert set(leak.paths) == messy["leak"] and leak.severity == "high"
    assert leak.targets == (str(Path(messy["root"]) / "test" / "low" / "copy_of_low_0.wav"),)  # train copy kept
    assert by_kind["silent"][0].paths == (messy["silent"],) and by_kind["silent"][0].action == "delete"
    assert by_kind["clipped"][0].paths == (messy["clipped"],)
    assert by_kind["too_short"][0].paths == (messy["short"],)
    assert by_kind["sample_rates"][0].paths == (messy["rate"],)
    assert by_kind["unreadable"][0].paths == (messy["broken"],)
    assert "imbalance" not in by_kind or by_kind["imbalance"][0].severity == "low"
    # Worst first.
    order = ["high", "medium", "low"]
    assert [order.index(f.severity) for f in report.findings] == sorted(order.index(f.severity)
                                                                        for f in report.findings)


def test_one_class_and_imbalance(tmp_path):
    from audioclf.datasets import Dataset, Item
    from audioclf.insight import check_dataset

    paths = [_write(tmp_path / "a" / f"{i}.wav", tone(200.0 + 40 * i, 0.5)) for i in range(4)]
    one = Dataset("one", tmp_path, [Item(p, "a") for p in paths])
    report = check_dataset(one)
    assert [f.kind for f in report.findings if f.severity == "high"] == ["one_class"]
    assert any("two classes" in n for n in report.notes)
    more = [_write(tmp_path / "b" / f"{i}.wav", tone(900.0 + 40 * i, 0.5)) for i in range(40)]
    skewed = Dataset("skewed", tmp_path, [Item(p, "a") for p in paths] + [Item(p, "b") for p in more])
    kinds = {f.kind: f for f in check_dataset(skewed).findings}
    assert kinds["imbalance"].severity == "high" and "10.0x" in kinds["imbalance"].message
    assert kinds["few_clips"].message.startswith("a has only 4")


def test_check_cli_table_and_fixes_in_workspace(messy):
    from audioclf import datasets
    from audioclf.features import MFCCConfig
    from audioclf.insight import health

    code, out, err = run_cli("check", messy["root"], "--format", "table", "-q")
    assert code == 0, err
    assert "leakage" in out and "silent" in out and "unreadable" in out and not err
    # Fixes act on workspace data sets: copy the messy one in, apply two.
    root = datasets.create_dataset("messy_fix")
    shutil.rmtree(root)
    shutil.copytree(messy["root"], root)
    report = health.check_dataset(datasets.load_dataset(root), MFCCConfig())
    silent = report.of_kind("silent")[0]
    assert health.apply_fix(silent).startswith("Deleted quiet.wav")
    assert not Path(silent.targets[0]).exists()
    with pytest.raises(health.HealthError, match="no one-click fix"):
        health.apply_fix(report.of_kind("sample_rates")[0])
    fake = health.Finding("mislabelled", "high", (str(root / "train" / "low" / "low_1.wav"),), "", "",
                          "relabel", (str(root / "train" / "low" / "low_1.wav"),), label="high")
    # Issue 21, cosmetic: it read "Moved low_1.wav to high (low_1.wav)".
    assert health.apply_fix(fake) == "Moved low_1.wav to high."
    assert (root / "train" / "high" / "low_1.wav").is_file()
    clash = root / "train" / "low" / "low_1.wav"  # another clip of that name, moved there too
    shutil.copy(root / "train" / "high" / "low_1.wav", clash)
    again = health.Finding("mislabelled", "high", (str(clash),), "", "", "relabel", (str(clash),), label="high")
    assert health.apply_fix(again) == "Moved low_1.wav to high as low_1-1.wav (a clip named low_1.wav is there already)."


def test_map_vectors_and_projections(fsdd_small):
    from audioclf.datasets import load_dataset
    from audioclf.features import MFCCConfig
    from audioclf.insight import MappingError, clip_vectors, plotting, project

    calls = []
    vecs = clip_vectors(load_dataset(fsdd_small), MFCCConfig(), progress=lambda d, t: calls.append((d, t)))
    assert vecs.values.shape == (36, 40) and calls[-1] == (36, 36)
    for method in ("pca", "tsne"):
        xy = project(vecs.values, method)
        assert xy.shape == (36, 2) and np.isfinite(xy).all()
    # PCA separates the digits a little: class centroids are apart.
    xy = project(vecs.values, "pca")
    labels = np.array(vecs.labels)
    centres = np.stack([xy[labels == c].mean(axis=0) for c in ("0", "1", "2")])
    assert np.linalg.norm(centres[0] - centres[1]) > 0.5
    fig = plotting.clip_map(xy, vecs.labels, [p.name for p in vecs.paths], highlight=[3])
    assert len(fig.data) == 4 and sorted(int(i) for t in fig.data[:3] for i in t.customdata) == list(range(36))
    with pytest.raises(MappingError, match="at least 3"):
        project(vecs.values[:2])
    with pytest.raises(MappingError, match="Unknown projection"):
        project(vecs.values, "mds")


def test_class_profiles_rank_features(fsdd_small):
    from audioclf.datasets import load_dataset
    from audioclf.insight import class_profiles, plotting
    from audioclf.insight.profiles import PROFILE_FRAMES, PROFILE_MELS

    prof = class_profiles(load_dataset(fsdd_small), max_per_class=4)
    assert prof.labels == ["0", "1", "2"] and prof.counts == {"0": 12, "1": 12, "2": 12}
    assert all(m.shape == (PROFILE_MELS, PROFILE_FRAMES) for m in prof.mel.values())
    assert prof.means.shape == (3, len(prof.feature_names))
    f = [s.f_score for s in prof.ranking]
    assert f == sorted(f, reverse=True) and f[0] > 5 and prof.ranking[0].mutual_info > 0
    plotting.class_mel_profiles(prof.mel, prof.mel_freqs)
    plotting.feature_ranking([s.name for s in prof.ranking], f, [s.mutual_info for s in prof.ranking])
    plotting.class_feature_means(prof.means, prof.labels, prof.feature_names)
