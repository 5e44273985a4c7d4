"""Data sets: every layout, problems listed not crashed on, splits, k folds, editing."""
from __future__ import annotations

import shutil

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf import workspace
from audioclf.audio import AudioError, load_audio
from audioclf.datasets import (
    FSDD_SPEAKER_PATTERN,
    DatasetError,
    SplitConfig,
    add_clip,
    check_trainable,
    create_dataset,
    delete_clip,
    kfold_splits,
    list_datasets,
    load_dataset,
    relabel_clip,
    split_dataset,
    summarize_dataset,
)

SR = 8000


def write_tone(path: Path, freq: float = 440.0, seconds: float = 0.3, sr: int = SR, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.stack([y] * channels, axis=1) if channels > 1 else y, sr)
    return path


def make_class_folders(root: Path, classes=("a", "b"), n=6, fmt="wav") -> Path:
    for c, label in enumerate(classes):
        for i in range(n):
            write_tone(root / label / f"{label}_{i}.{fmt}", 300 + 200 * c + 10 * i)
    return root


def wav_bytes(freq: float = 440.0, seconds: float = 0.3) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * SR)) / SR
    sf.write(buf, 0.3 * np.sin(2 * np.pi * freq * t), SR, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def fsdd(fsdd_dir):
    return load_dataset(fsdd_dir, group_pattern=FSDD_SPEAKER_PATTERN)


# ---------------------------------------------------------------- layouts


def test_class_folders_with_problems_listed(tmp_path):
    root = make_class_folders(tmp_path / "ds")
    write_tone(root / "b" / "LOUD.WAV")  # extension case does not matter
    sf.write(root / "a" / "c.flac", np.zeros(800) + 0.1, SR)
    (root / "a" / "notes.txt").write_text("not audio")
    (root / "a" / ".DS_Store").write_text("hidden")
    (root / "stray.wav").write_bytes(wav_bytes())
    (root / "empty_class").mkdir()
    ds = load_dataset(root)
    assert ds.name == "ds" and ds.labels == ["a", "b"]
    assert ds.counts == {"a": 7, "b": 7}
    assert not ds.has_fixed_split
    reasons = dict(ds.problems)
    assert "not an audio file" in reasons[str(root / "a" / "notes.txt")]
    assert "not in a class folder" in reasons[str(root / "stray.wav")]
    assert "no audio files" in reasons[str(root / "empty_class")]
    assert not any(".DS_Store" in p for p, _ in ds.problems)


def test_fixed_split_folders(tmp_path):
    root = tmp_path / "fixed"
    for split_dir, n in (("train", 4), ("validation", 1), ("test", 2)):
        make_class_folders(root / split_dir, n=n)
    ds = load_dataset(root)
    assert ds.has_fixed_split
    assert {i.split for i in ds.items} == {"train", "val", "test"}
    split = split_dataset(ds, SplitConfig("fixed"))
    assert (len(split.train), len(split.val), len(split.test)) == (8, 2, 4)
    assert all(i.split == "test" for i in split.test)


def test_fixed_split_without_val_folder_holds_out_from_train(tmp_path):
    root = tmp_path / "fixed2"
    make_class_folders(root / "train", n=8)
    make_class_folders(root / "test", n=2)
    split = split_dataset(load_dataset(root), SplitConfig("fixed", val=0.2))
    assert {i.label for i in split.val} == {"a", "b"}
    assert all(i.split == "train" for i in split.val)
    assert len(split.train) + len(split.val) == 16


def test_fixed_split_requested_but_absent(tmp_path):
    ds = load_dataset(make_class_folders(tmp_path / "nosplit"))
    with pytest.raises(DatasetError, match="fixed split"):
        split_dataset(ds, SplitConfig("fixed"))


def test_zip_of_class_folders_extracted_into_workspace(tmp_path):
    root = make_class_folders(tmp_path / "src", n=3)
    zpath = tmp_path / "my clips.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(root.rglob("*.wav")):
            zf.write(f, Path("wrapper") / f.relative_to(root))  # zips often wrap a folder
    ds = load_dataset(zpath)
    assert ds.labels == ["a", "b"] and len(ds) == 6
    assert ds.root.is_relative_to(workspace.datasets_dir())
    assert ds.name == "my clips"
    assert load_dataset(zpath).root == ds.root  # unchanged zip: not unpacked twice
    other = tmp_path / "other" / "my clips.zip"  # same name, other content: no clash
    other.parent.mkdir()
    with zipfile.ZipFile(other, "w") as zf:
        for f in sorted(root.rglob("a_*.wav")) + sorted(root.rglob("b_0.wav")):
            zf.write(f, f.relative_to(root))
    ds2 = load_dataset(other)
    assert ds2.name == "my clips-2" and len(ds2) == 4 and len(load_dataset(zpath)) == 6


def test_same_zip_loaded_concurrently(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    root = make_class_folders(tmp_path / "src", n=2)
    zpath = tmp_path / "together.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(root.rglob("*.wav")):
            zf.write(f, f.relative_to(root))
    with ThreadPoolExecutor(3) as pool:
        roots = {ds.root for ds in pool.map(lambda _: load_dataset(zpath), range(3))}
    assert roots == {workspace.datasets_dir() / "together"}
    assert not [p for p in workspace.datasets_dir().iterdir() if p.name.startswith(".together")]


def test_corrupt_zip_is_a_dataset_error(tmp_path):
    zpath = tmp_path / "broken.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a/x.wav", wav_bytes())
    raw = bytearray(zpath.read_bytes())
    raw[200] ^= 0xFF  # flip a byte inside the stored wav data: CRC mismatch
    zpath.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="not a valid zip"):
        load_dataset(zpath)


def test_hostile_zip_refused(tmp_path):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("a/ok.wav", wav_bytes())
        zf.writestr("../evil.wav", wav_bytes())
    with pytest.raises(DatasetError, match="evil.wav"):
        load_dataset(zpath)
    assert not (workspace.datasets_dir().parent / "evil.wav").exists()


def test_csv_manifest_with_split_and_group(tmp_path):
    root = make_class_folders(tmp_path / "m", n=4)
    rows = ["path,label,split,group"]
    for i, f in enumerate(sorted(root.rglob("*.wav"))):
        rows.append(f"{f.relative_to(root)},{f.parent.name}_x,{'test' if i % 4 == 0 else 'train'},g{i % 3}")
    rows += ["missing.wav,a_x,train,g0", "a/a_0.wav,,train,g0", "a/a_1.wav,a_x,holdout,g0"]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(root / "manifest.csv")
    assert ds.labels == ["a_x", "b_x"] and len(ds) == 8
    assert {i.group for i in ds.items} == {"g0", "g1", "g2"}
    reasons = " ".join(r for _, r in ds.problems)
    assert "file not found" in reasons and "missing path or label" in reasons and "unknown split" in reasons
    split = split_dataset(ds, SplitConfig("fixed", val=0))
    assert len(split.test) == 2 and not split.val


def test_csv_manifest_needs_header(tmp_path):
    (tmp_path / "bad.csv").write_text("file_name,klass\nx.wav,a\n")
    with pytest.raises(DatasetError, match="path and label"):
        load_dataset(tmp_path / "bad.csv")


def test_esc50_layout_uses_category_and_fold(tmp_path):
    root = tmp_path / "ESC-50-master"
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for k, (cat, target) in enumerate((("dog", 0), ("rain", 10)) * 4):
        name = f"{k % 4 + 1}-{1000 + k}-A-{target}.wav"
        write_tone(root / "audio" / name, 300 + 100 * target)
        rows.append(f"{name},{k % 4 + 1},{target},{cat},True,{1000 + k},A")
    rows.append("9-missing-A-0.wav,5,0,dog,True,1,A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(root)
    assert ds.labels == ["dog", "rain"] and len(ds) == 8
    assert ds.groups == ["fold1", "fold2", "fold3", "fold4"]
    assert "missing" in ds.problems[0][1]


@pytest.mark.parametrize("what", ["empty", "no_audio", "missing", "not_a_dataset"])
def test_load_errors_are_human(tmp_path, what):
    target = tmp_path / what
    if what == "empty":
        target.mkdir()
    elif what == "no_audio":
        (target / "a").mkdir(parents=True)
        (target / "a" / "readme.txt").write_text("hi")
    elif what == "not_a_dataset":
        target = tmp_path / "song.wav"
        target.write_bytes(wav_bytes())
    with pytest.raises(DatasetError) as err:
        load_dataset(target)
    assert str(target.name) in str(err.value) or "does not exist" in str(err.value)


def test_group_pattern_from_file_names(fsdd_small):
    ds = load_dataset(fsdd_small, group_pattern=FSDD_SPEAKER_PATTERN)
    assert ds.groups == ["george", "jackson", "lucas"]
    with pytest.raises(DatasetError, match="regular expression"):
        load_dataset(fsdd_small, group_pattern="([a-z")


# ---------------------------------------------------------------- summary


def test_summary_counts_rates_and_unreadable(tmp_path):
    root = make_class_folders(tmp_path / "s", n=3)
    write_tone(root / "b" / "stereo.wav", sr=16000, channels=2, seconds=1.0)
    (root / "a" / "text.wav").write_text("this is not audio")
    full = wav_bytes(seconds=1.0)
    (root / "a" / "cut.wav").write_bytes(full[: len(full) // 2])  # truncated in the data
    (root / "a" / "stub.wav").write_bytes(full[:30])  # truncated in the header
    summary = summarize_dataset(load_dataset(root))
    assert summary.counts == {"a": 3, "b": 4}
    assert summary.sample_rates == {8000: 6, 16000: 1}
    assert summary.channels == {1: 6, 2: 1}
    assert summary.formats == {"WAV": 7}
    assert summary.total_duration == pytest.approx(6 * 0.3 + 1.0)
    assert sorted(summary.durations["b"])[-1] == pytest.approx(1.0)
    bad = dict(summary.unreadable)
    assert set(bad) == {str(root / "a" / n) for n in ("text.wav", "cut.wav", "stub.wav")}
    assert "truncated" in bad[str(root / "a" / "cut.wav")]
    assert all(reason for reason in bad.values())


def test_summary_of_fsdd_is_quick(fsdd):
    import time

    start = time.perf_counter()
    summary = summarize_dataset(fsdd)
    elapsed = time.perf_counter() - start
    assert summary.n_clips == 3000 and summary.sample_rates == {8000: 3000}
    assert summary.n_groups == 6 and not summary.unreadable
    assert 0.1 < min(summary.all_durations) and max(summary.all_durations) < 2.5
    assert elapsed < 10, f"summary of 3000 files took {elapsed:.1f} s"


# ---------------------------------------------------------------- splits


def _groups(items):
    return {i.group for i in items}


def test_group_split_never_shares_a_speaker(fsdd):
    for seed in (0, 1, 2):
        split = split_dataset(fsdd, SplitConfig("group", seed=seed))
        train, val, test = _groups(split.train), _groups(split.val), _groups(split.test)
        assert train and val and test
        assert not (train & val) and not (train & test) and not (val & test)
        assert len(split.train) + len(split.val) + len(split.test) == 3000


def test_esc10_folds_as_groups_never_straddle_splits(esc10_dir):
    """ESC-10's official fold is the first digit of each file name: a group split by fold
    keeps clips cut from one recording out of two splits."""
    ds = load_dataset(esc10_dir, group_pattern=r"^(\d)-")
    assert (len(ds), len(ds.labels), ds.groups) == (400, 10, ["1", "2", "3", "4", "5"])
    split = split_dataset(ds, SplitConfig("group", val=0.2, test=0.2, seed=0))
    folds = [_groups(part) for part in (split.train, split.val, split.test)]
    assert [len(f) for f in folds] == [3, 1, 1] and not (folds[0] & folds[1] | folds[0] & folds[2])


def test_group_split_from_config_pattern(fsdd_small):
    ds = load_dataset(fsdd_small)  # no groups on the items
    with pytest.raises(DatasetError, match="group"):
        split_dataset(ds, SplitConfig("group"))
    split = split_dataset(ds, SplitConfig("group", group_pattern=FSDD_SPEAKER_PATTERN))
    speakers = [{i.path.name.split("_")[1] for i in part} for part in (split.train, split.val, split.test)]
    assert all(len(s) == 1 for s in speakers) and len(set.union(*speakers)) == 3


def test_group_split_with_too_few_groups(fsdd_small):
    ds = load_dataset(fsdd_small, group_pattern=r"^\d+_(george|jackson)")
    ds = ds.without(i.path for i in ds.items if i.group is None)
    with pytest.raises(DatasetError, match="at least 3 groups"):
        split_dataset(ds, SplitConfig("group"))


def test_stratified_keeps_every_class_in_every_split(fsdd_small):
    ds = load_dataset(fsdd_small)
    split = split_dataset(ds, SplitConfig(val=0.2, test=0.2))
    for part in (split.train, split.val, split.test):
        assert {i.label for i in part} == {"0", "1", "2"}
    assert split.counts()["test"] == {"0": 2, "1": 2, "2": 2}
    everything = split.train + split.val + split.test
    assert sorted(map(str, (i.path for i in everything))) == sorted(str(i.path) for i in ds.items)


def test_same_seed_same_split_other_seed_other_split(fsdd):
    def paths(split):
        return [tuple(i.path for i in part) for part in (split.train, split.val, split.test)]

    for method in ("stratified", "group"):
        a = split_dataset(fsdd, SplitConfig(method, seed=3))
        b = split_dataset(fsdd, SplitConfig(method, seed=3))
        c = split_dataset(fsdd, SplitConfig(method, seed=4))
        assert paths(a) == paths(b)
        assert paths(a) != paths(c)


@pytest.mark.parametrize("by_group", [False, True])
def test_kfold_covers_each_item_once(fsdd_small, by_group):
    ds = load_dataset(fsdd_small, group_pattern=FSDD_SPEAKER_PATTERN)
    folds = kfold_splits(ds, k=3, seed=0, by_group=by_group)
    assert len(folds) == 3
    tested = [i.path for _, test in folds for i in test]
    assert sorted(tested) == sorted(i.path for i in ds.items)
    for train, test in folds:
        assert not {i.path for i in train} & {i.path for i in test}
        if by_group:
            assert not _groups(train) & _groups(test)
    again = kfold_splits(ds, k=3, seed=0, by_group=by_group)
    assert [[i.path for i in te] for _, te in again] == [[i.path for i in te] for _, te in folds]


def test_kfold_needs_enough_clips(fsdd_small):
    ds = load_dataset(fsdd_small)
    with pytest.raises(DatasetError, match="Class '0' has 12 clips; 13-fold"):
        kfold_splits(ds, k=13)


def test_one_class_is_not_trainable(tmp_path):
    ds = load_dataset(make_class_folders(tmp_path / "one", classes=("dog",)))
    with pytest.raises(DatasetError, match="at least two classes"):
        check_trainable(ds)
    with pytest.raises(DatasetError, match="add clips of another class"):
        split_dataset(ds)


def test_too_few_clips_names_the_class(tmp_path):
    root = make_class_folders(tmp_path / "few", n=5)
    for f in sorted((root / "b").iterdir())[2:]:
        f.unlink()
    ds = load_dataset(root)
    with pytest.raises(DatasetError, match="Class 'b' has 2 clips.*at least 3"):
        split_dataset(ds)
    split = split_dataset(ds, SplitConfig(val=0, test=0.3))  # 2 clips are enough for train/test
    assert {i.label for i in split.test} == {"a", "b"} and split.val == []


@pytest.mark.parametrize("kwargs", [{"method": "random"}, {"val": 0.6, "test": 0.5}, {"test": -0.1}])
def test_bad_split_config(kwargs):
    with pytest.raises(DatasetError):
        SplitConfig(**kwargs)


# ---------------------------------------------------------------- editing


def test_create_add_relabel_delete():
    root = create_dataset("My sounds")
    assert root in list_datasets()
    with pytest.raises(DatasetError, match="already exists"):
        create_dataset("My sounds")
    first = add_clip(root, "dog bark", "../../etc/passwd.wav", wav_bytes(300))
    assert first.parent == root / "dog bark" and first.name == "passwd.wav"
    second = add_clip(root, "dog bark", "passwd.wav", wav_bytes(350))
    assert second.name == "passwd-1.wav" and first.read_bytes() == wav_bytes(300)  # no overwrite
    rec = add_clip(root, "cat", "recording", wav_bytes(500))  # browser recordings may lack a name
    assert rec.suffix == ".wav"
    assert load_audio(rec).sr == SR
    assert not list(root.rglob(".upload-*"))

    moved = relabel_clip(second, "cat")
    assert moved == root / "cat" / "passwd-1.wav" and not second.exists()
    assert load_dataset(root).counts == {"cat": 2, "dog bark": 1}
    delete_clip(first)
    assert not (root / "dog bark").exists()  # empty class folder removed with its last clip
    assert load_dataset(root).counts == {"cat": 2}


def test_add_clip_rejects_bad_audio_before_writing():
    root = create_dataset("bad uploads")
    with pytest.raises(AudioError):
        add_clip(root, "x", "fake.wav", b"definitely not a wav file")
    assert not any(root.rglob("*"))


@pytest.mark.parametrize("name", ["", "..", "a/b", "..\\x", ".hidden"])
def test_create_dataset_rejects_bad_names(name):
    with pytest.raises(DatasetError):
        create_dataset(name)


def test_editing_outside_workspace_refused(fsdd_small):
    clip = next((fsdd_small / "0").iterdir())
    with pytest.raises(DatasetError, match="workspace"):
        relabel_clip(clip, "1")
    with pytest.raises(DatasetError, match="workspace"):
        delete_clip(clip)
    with pytest.raises(DatasetError, match="workspace"):
        add_clip(fsdd_small, "0", "x.wav", wav_bytes())
    assert clip.exists()


def test_an_added_clip_is_readable_like_the_demo_clips():
    """Issue 21, minor: uploads were saved 0600 (mkstemp) while demo clips are 0644."""
    root = create_dataset("Modes")
    try:
        path = add_clip(root, "dog", "bark.wav", wav_bytes(300))
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        shutil.rmtree(root)
