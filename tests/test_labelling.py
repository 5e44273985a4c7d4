"""The labelling loop on real audio: cut, group, name, save, train, correct, retrain, read-only."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from audioclf.labelling import grouping, naming, segmenting, synth
from audioclf.labelling.segmenting import CutConfig, SegmentError


def _ari(truth, pred) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth, pred))


# ---------------------------------------------------------------- pure functions

def test_fixed_windows_cover_the_recording():
    assert segmenting.fixed_windows(5.0, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert segmenting.fixed_windows(4.5, 2.0) == [(0.0, 2.0), (2.0, 4.0)]  # a last 0.5 s piece is dropped
    assert segmenting.fixed_windows(1.2, 2.0) == [(0.0, 1.2)]  # a short recording stays whole
    assert segmenting.fixed_windows(4.0, 2.0, 1.0) == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    assert segmenting.fixed_windows(0.0, 2.0) == []


def test_event_spans_merge_drop_and_split():
    fs = 0.1
    db = np.full(200, -60.0, np.float32)  # 20 s of room noise
    db[10:20] = -10  # 1.0-2.0 s
    db[25:30] = -10  # 2.5-3.0 s: 0.5 s after the first, merged with it
    db[50:51] = -10  # a 0.1 s click: too short, dropped
    db[100:190] = -10  # 9 s: cut into two pieces of at most 5 s
    cfg = CutConfig(min_len=0.25, max_len=5.0, merge_gap=1.0, pad=0.0)
    spans = segmenting.event_spans(db, fs, cfg)
    assert spans == [(1.0, 3.0), (10.0, 14.5), (14.5, 19.0)]
    padded = segmenting.event_spans(db, fs, CutConfig(pad=0.5, merge_gap=1.0))
    assert padded[0] == (0.5, 3.5)


def test_cut_settings_are_checked():
    with pytest.raises(SegmentError, match="method"):
        CutConfig(method="magic")
    with pytest.raises(SegmentError, match="min_len"):
        CutConfig(min_len=6.0, max_len=5.0)
    with pytest.raises(SegmentError, match="length"):
        CutConfig(length=0)


def test_suggested_names_are_distinct_and_skip_generic_tags():
    names = ["Silence", "Siren", "Alarm", "Rain", "Inside, small room"]
    tags = np.array([[0.9, 0.8, 0.3, 0.0, 0.9], [0.9, 0.7, 0.5, 0.0, 0.9], [0.1, 0.0, 0.1, 0.6, 0.0]], np.float32)
    out = naming.suggest_names(tags, names, np.array([0, 1, 2]), 3)
    assert [s.name for s in out] == ["siren", "alarm", "rain"]  # the weaker siren group takes its next tag
    assert out[0].tags[0] == ("Siren", pytest.approx(0.8))
    assert [s.name for s in naming.suggest_names(None, None, np.array([0, 1]), 2)] == ["group_1", "group_2"]
    assert naming.folder_name("Civil defense siren") == "civil_defense_siren"


# ---------------------------------------------------------------- a long recording with known events

@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three 50 s synthesised recordings holding the demo's five sound kinds at known times."""
    folder = tmp_path_factory.mktemp("recordings")
    events = {}
    for k in range(3):
        path = folder / f"field-{k}.wav"
        events[path.name] = synth.write_demo_recording(path, 50.0, seed=10 + k)
    return folder, events


def test_segmentation_finds_the_events(recordings):
    folder, events = recordings
    segs = segmenting.cut_recording(folder / "field-0.wav", CutConfig("events"))
    truth = events["field-0.wav"]
    assert len(segs) == len(truth)
    for seg, ev in zip(segs, truth):
        assert abs(seg.start - ev.start) < 0.3 and abs(seg.end - ev.end) < 0.3, (seg, ev)
    clip = segmenting.read_segment(segs[0], sr=8000)
    assert clip.sr == 8000 and abs(clip.duration - segs[0].duration) < 0.01
    fixed = segmenting.cut_recording(folder / "field-0.wav", CutConfig("fixed", length=5.0))
    assert len(fixed) == 10 and fixed[-1].end == pytest.approx(50.0)


def test_unreadable_and_silent_recordings_are_listed_not_raised(tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVEnot really")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    segs, problems = segmenting.cut_all([tmp_path / "broken.wav", tmp_path / "silent.wav"])
    assert segs == []
    assert {p.split("/")[-1] for p, _ in problems} == {"broken.wav", "silent.wav"}


@pytest.fixture(scope="module")
def session(recordings, yamnet_tflite, workspace_home):
    from audioclf.features import YAMNetConfig
    from audioclf.labelling import session as lab

    folder, _ = recordings
    return lab.create_session("field", [folder], cut=CutConfig("events"),
                              features=YAMNetConfig(model=str(yamnet_tflite)), k=None)


def _truth(session, events):
    return [synth.true_labels([(c.start, c.end)], events[c.source.split("/")[-1]])[0] for c in session.clips]


def test_grouping_recovers_the_events(session, recordings):
    _, events = recordings
    truth = _truth(session, events)
    score = _ari(truth, [c.group for c in session.clips])
    print(f"\nsynthesised recordings: {len(session.clips)} clips, k estimated {len(session.groups)} "
          f"({session.settings['k_reason']}), ARI {score:.3f}")
    assert score >= 0.8
    assert 4 <= len(session.groups) <= 6
    sirens = [g for g in session.groups if sum(t == "siren" for c, t in zip(session.clips, truth)
                                                if c.group == g.id) > len(session.members(g.id)) / 2]
    assert sirens and sirens[0].suggested == "siren"
    for g in session.groups:
        assert 0 < g.spread < 2 and g.examples and all(session.clip(e).group == g.id for e in g.examples)


def test_esc10_folder_grouped_with_the_true_k(esc10_dir, yamnet_tflite, tmp_path):
    from audioclf.features import YAMNetConfig

    files = sorted(p for c in sorted(esc10_dir.iterdir()) for p in sorted(c.glob("*.flac"))[:8])
    for p in files:  # labels removed: no class folders
        (tmp_path / p.name).symlink_to(p)
    emb = grouping.embed_clips(sorted(str(p) for p in tmp_path.iterdir()), config=YAMNetConfig(model=str(yamnet_tflite)))
    truth = [next(p.parent.name for p in files if p.name == q.split("/")[-1]) for q in emb.paths]
    groups = grouping.group_vectors(emb.values, 10)
    score = _ari(truth, groups.assignments)
    print(f"\nESC-10 subset ({len(files)} clips, true k = 10), YAMNet: ARI {score:.3f}")
    assert score >= 0.5


def test_efficientat_embeds_and_is_preferred(esc10_dir, efficientat_pt, monkeypatch):
    from audioclf.features import EfficientATConfig

    files = [p for c in ("dog", "rain", "rooster") for p in sorted((esc10_dir / c).glob("*.flac"))[:4]]
    emb = grouping.embed_clips([str(p) for p in files], config=EfficientATConfig(model=str(efficientat_pt)))
    assert emb.values.shape == (12, 384) and emb.tags.shape == (12, 527) and len(emb.tag_names) == 527
    groups = grouping.group_vectors(emb.values, 3)
    score = _ari([p.parent.name for p in files], groups.assignments)
    names = naming.suggest_names(emb.tags, emb.tag_names, groups.assignments, 3)
    print(f"\nESC-10 dog/rain/rooster (12 clips), EfficientAT: ARI {score:.3f}, names {[n.name for n in names]}")
    assert score >= 0.7
    assert "rooster" in " ".join(n.name for n in names) or "chicken" in " ".join(n.name for n in names)
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt))
    assert grouping.resolve_embedder("auto") == "efficientat"
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt.parent / "missing.pt"))
    assert grouping.resolve_embedder("auto") != "efficientat"
    with pytest.raises(grouping.GroupingError, match="not available"):
        grouping.resolve_embedder("efficientat")


def test_session_operations_persist(session):
    from audioclf.labelling import session as lab

    s = lab.load_session("field")
    g0, g1 = s.groups[0].id, s.groups[1].id
    n0, n1 = len(s.members(g0)), len(s.members(g1))
    lab.name_group(s, g0, "Sirens!")
    assert lab.load_session("field").group(g0).name == "Sirens"
    lab.merge_groups(s, [g0, g1])
    s = lab.load_session("field")
    assert len(s.members(g0)) == n0 + n1 and g1 not in [g.id for g in s.groups]
    lab.split_group(s, g0, 2)
    s = lab.load_session("field")
    assert len(s.members(g0)) < n0 + n1 and len(s.groups) == len(session.groups)
    moved = s.members(s.groups[-1].id)[0].id
    lab.move_clips(s, [moved], "odd_one")
    s = lab.load_session("field")
    assert s.group(s.clip(moved).group).name == "odd_one"
    lab.discard_groups(s, [s.clip(moved).group])
    assert lab.load_session("field").group(s.clip(moved).group).discarded
    with pytest.raises(lab.LabellingError, match="no group"):
        lab.merge_groups(s, [g0, 999])
    with pytest.raises(lab.LabellingError, match="already exists"):
        lab.create_session("field", [session.path / "clips"])


@pytest.fixture(scope="module")
def saved(session, recordings):
    """A fresh copy of the grouping (the operations test edits 'field'), named by majority event kind."""
    from collections import Counter

    from audioclf.labelling import session as lab

    from audioclf.labelling.saving import save_dataset

    _, events = recordings
    s = lab.load_session("field")
    truth = dict(zip([c.id for c in session.clips], _truth(session, events)))
    for g in s.groups:
        votes = Counter(truth[c.id] for c in s.members(g.id))
        lab.name_group(s, g.id, votes.most_common(1)[0][0])
        lab.discard_groups(s, [g.id], discarded=False)
    return save_dataset(s, "field_sounds")


def test_saved_dataset_keeps_recordings_as_groups_and_trains(saved, yamnet_tflite):
    from audioclf.datasets import SplitConfig, load_dataset, split_dataset
    from audioclf.features import YAMNetConfig
    from audioclf.model import ModelConfig
    from audioclf.training.runs import load_run
    from audioclf.training import RunConfig, TrainConfig, train

    ds = load_dataset(saved.path)  # the data set's own settings carry the pattern
    assert ds.groups == ["field-0", "field-1", "field-2"] and not ds.problems
    assert set(ds.labels) <= set(synth.CLASSES) and sum(saved.counts.values()) == len(ds.items)
    settings = json.loads((saved.path / ".audioclf-dataset.json").read_text())
    assert settings["group_pattern"] == saved.group_pattern
    split = split_dataset(ds, SplitConfig(method="group", group_pattern=saved.group_pattern, val=0.3, test=0.3))
    assert not {i.group for i in split.train} & {i.group for i in split.test}
    cfg = RunConfig(dataset=str(saved.path), split=SplitConfig(val=0.2, test=0.2, seed=0),
                    features=YAMNetConfig(model=str(yamnet_tflite)), name="from labelling",
                    model=ModelConfig(kind="baseline", dense_units=(32,)),
                    train=TrainConfig(epochs=12, patience=None, batch_size=8, learning_rate=3e-3))
    run = load_run(train(cfg))
    print(f"\nsaved data set: {dict(saved.counts)}; test macro F1 {run.metrics['test']['macro_f1']:.3f}")
    assert run.info.state == "done" and run.metrics["test"]["macro_f1"] >= 0.6


def test_next_most_useful_orders_unnamed_clips_by_margin(session, demo_run):
    from audioclf.labelling import session as lab

    s = lab.load_session("field")
    out = lab.next_most_useful(s, demo_run, n=100, include_named=True)
    assert out and len(out) <= len(s.clips)
    margins = [u.margin for u in out]
    assert margins == sorted(margins) and all(0 <= m <= 1 for m in margins)
    named = {g.id for g in s.groups if g.name}
    assert all(u.group not in named for u in lab.next_most_useful(s, demo_run, n=100))


# ---------------------------------------------------------------- corrections

@pytest.fixture(scope="module")
def small_run(workspace_home, yamnet_tflite):
    """A small YAMNet run on a demo data set of its own (corrections grow it)."""
    from audioclf.datasets import SplitConfig
    from audioclf.datasets.demo import make_demo_dataset
    from audioclf.features import YAMNetConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, train

    root = make_demo_dataset(workspace_home / "datasets" / "demo_corrections", clips_per_class=6)
    cfg = RunConfig(dataset=str(root), split=SplitConfig(val=0.2, test=0.3, seed=1),
                    features=YAMNetConfig(model=str(yamnet_tflite)), name="to correct",
                    model=ModelConfig(kind="baseline", dense_units=(32,)),
                    train=TrainConfig(epochs=10, patience=None, batch_size=8, learning_rate=3e-3))
    return train(cfg)


def _wav(label: str, seed: int) -> bytes:
    from audioclf.datasets.demo import synth_clip

    buf = io.BytesIO()
    sf.write(buf, synth_clip(label, np.random.default_rng([seed, 5])), 16000, format="WAV")
    return buf.getvalue()


def test_correction_then_retrain_reports_before_and_after(small_run, tmp_path):
    import csv

    from audioclf.training import runs
    from audioclf.labelling import corrections

    folder = corrections.dataset_folder(small_run)
    c1 = corrections.add_correction(small_run, "siren", _wav("siren", 1), predicted="rain")
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([np.zeros(8000, np.float32), synth.demo_recording(6.0, seed=3)[0]]), 16000)
    c2 = corrections.add_correction(small_run, "rain", long, start=0.5, end=3.0)
    assert c1.path.parent == folder / "siren" and c2.path.parent == folder / "rain"
    assert abs(sf.info(c2.path).duration - 2.5) < 0.01
    result = corrections.retrain(small_run)
    print(f"\nretrain: {result.why}; before {result.before}; after {result.after}; {result.seconds} s")
    assert result.warm and "warm start" in result.why
    assert result.corrections == 2 and result.after.corrected[1] == 2
    original_test = {r["path"] for r in csv.DictReader(open(runs.run_dir(small_run) / runs.PREDICTIONS))
                     if r["split"] == "test"}
    new_test = {r["path"] for r in csv.DictReader(open(runs.run_dir(result.run_id) / runs.PREDICTIONS))
                if r["split"] == "test"}
    assert new_test == original_test and result.before.n == result.after.n == len(original_test)
    assert runs.load_run(result.run_id).metrics["warm_start"]["used"] is True
    assert corrections.retrain_record(result.run_id)["parent"] == small_run
    assert corrections.dataset_folder(result.run_id) == folder  # the next correction goes to the same folder

    # A new class changes the model's output: the retrain starts from scratch and says so.
    corrections.add_correction(result.run_id, "whistle", _wav("bird_chirps", 2))
    corrections.add_correction(result.run_id, "whistle", _wav("bird_chirps", 3))
    corrections.add_correction(result.run_id, "whistle", _wav("bird_chirps", 4))
    again = corrections.retrain(result.run_id)
    assert not again.warm and "classes changed" in again.why and "whistle" in runs.load_run(again.run_id).labels


def test_a_live_event_can_be_corrected_while_its_audio_is_held(small_run):
    from audioclf.inference import LiveClassifier, Predictor
    from audioclf.labelling import corrections

    live = LiveClassifier(Predictor.load(small_run), keep_seconds=3.0)
    y = synth.demo_recording(6.0, seed=4)[0]
    stream = np.round(y * 32767).astype(np.int16)
    for start in range(0, len(stream), 320):  # 20 ms blocks of int16
        live.feed(stream[start:start + 320], 16000)
    assert live.recent_audio(0.0, 1.0) is None  # older than the 3 s held
    clip = live.recent_audio(4.0, 5.5)
    assert clip.sr == 16000 and abs(clip.duration - 1.5) < 0.01
    np.testing.assert_allclose(clip.samples, y[64000:88000], atol=1e-4)  # exactly that stretch
    added = corrections.add_correction(small_run, "rain", clip, predicted="siren")
    assert abs(sf.info(added.path).duration - 1.5) < 0.01


def test_bad_corrections_are_refused_with_a_message(small_run):
    from audioclf.audio import AudioError
    from audioclf.labelling import corrections

    with pytest.raises(AudioError):
        corrections.add_correction(small_run, "siren", b"not audio at all")
    with pytest.raises(corrections.CorrectionError, match="which class"):
        corrections.add_correction(small_run, " ", _wav("siren", 9))


# ---------------------------------------------------------------- read-only mode

def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def test_read_only_mode_changes_nothing(session, small_run, monkeypatch, workspace_home, recordings):
    from audioclf.training import runs
    from audioclf.features import YAMNetConfig
    from audioclf.labelling import corrections, session as lab
    from audioclf.labelling.saving import save_dataset
    from audioclf.workspace import ReadOnlyError

    before = _snapshot(workspace_home / "datasets"), _snapshot(workspace_home / "labelling"), \
        sorted(r.id for r in runs.list_runs())
    monkeypatch.setenv("AUDIOCLF_READONLY", "1")
    s = lab.load_session("field")
    gid = s.groups[0].id
    attempts = [
        lambda: lab.create_session("other", [recordings[0]], features=YAMNetConfig()),
        lambda: lab.name_group(s, gid, "x"), lambda: lab.merge_groups(s, [gid, s.groups[1].id]),
        lambda: lab.split_group(s, gid, 2), lambda: lab.discard_groups(s, [gid]),
        lambda: lab.move_clips(s, [s.clips[0].id], "y"), lambda: save_dataset(s, "ro_set"),
        lambda: lab.delete_session("field"),
        lambda: corrections.add_correction(small_run, "siren", _wav("siren", 7)),
        lambda: corrections.retrain(small_run),
    ]
    for attempt in attempts:
        with pytest.raises(ReadOnlyError):
            attempt()
    after = _snapshot(workspace_home / "datasets"), _snapshot(workspace_home / "labelling"), \
        sorted(r.id for r in runs.list_runs())
    assert after == before


def test_the_owner_can_allow_corrections_and_only_them(small_run, monkeypatch, workspace_home, recordings):
    from audioclf.training import runs
    from audioclf.labelling import corrections, session as lab
    from audioclf.training import RunConfig, train
    from audioclf.workspace import ReadOnlyError, require_writable

    monkeypatch.setenv("AUDIOCLF_READONLY", "1")
    monkeypatch.setenv("AUDIOCLF_READONLY_ALLOW", "corrections")
    added = corrections.add_correction(small_run, "siren", _wav("siren", 11))
    assert added.path.is_file()
    result = corrections.retrain(small_run)
    assert runs.load_run(result.run_id).info.state == "done"
    with pytest.raises(ReadOnlyError):  # outside the correction loop everything stays refused
        require_writable("delete a clip")
    with pytest.raises(ReadOnlyError):
        train(RunConfig.from_dict(runs.load_run(small_run).config))
    with pytest.raises(ReadOnlyError):
        lab.create_session("not_allowed", [recordings[0]])
    with pytest.raises(ReadOnlyError):
        runs.delete_run(result.run_id)


# ---------------------------------------------------------------- the command line

def test_cli_label_groups_and_saves(recordings, yamnet_tflite, monkeypatch):
    from test_cli import run_cli

    from audioclf.datasets import load_dataset
    from audioclf.workspace import datasets_dir

    folder, _ = recordings
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    code, out, err = run_cli("label", folder, "--k", "5", "--embedder", "yamnet", "--out", "cli_sounds",
                             "--format", "json", "-q")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["group"] for r in rows] == [0, 1, 2, 3, 4] and sum(r["clips"] for r in rows) >= 20
    assert all(r["suggested"] and r["examples"] for r in rows)
    assert f"session {folder.name}" in err and "saved" in err
    ds = load_dataset(datasets_dir() / "cli_sounds")
    assert len(ds.labels) == 5 and ds.groups == ["field-0", "field-1", "field-2"]

    code, out, err = run_cli("label", folder / "nowhere")
    assert code == 1 and out == "" and err.count("\n") == 1 and "does not exist" in err
    monkeypatch.setenv("AUDIOCLF_READONLY", "1")
    code, out, err = run_cli("label", folder, "--embedder", "yamnet")
    assert code == 1 and "read-only" in err and err.count("\n") == 1
