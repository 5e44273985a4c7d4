"""The labelling loop: how well grouping recovers true classes, and how fast a correction retrains.

    python benchmarks/labelling.py                       # everything
    python benchmarks/labelling.py --parts esc10         # ARI on ESC-10 only
    python benchmarks/labelling.py --parts demo loop

Parts:

- ``esc10``: all 400 ESC-10 clips, labels removed (each file one clip), grouped with
  the true k = 10 by every embedder available here and both methods (spectral, k-means),
  plus k estimated; adjusted Rand index against the true classes. The plain way beside
  it: the map's clip vectors (standardised) -> PCA -> k-means, no unit-length rows.
- ``f1``: the data set a grouping gives, against the original labels: ESC-10 folds 2-5
  are grouped (k = 10) by each pretrained embedder, each group named after its majority
  true class (what a person listening to it would call it), saved with ``save_dataset``
  and trained (YAMNet features, their defaults); fold 1 tests it against the true labels.
  The same training on the true labels of the same clips is the comparison.
- ``demo``: a 10-minute synthesised recording (the demo's five sound kinds at known
  times): events cut, grouped with k = 5 and with k estimated; ARI and seconds.
- ``loop``: the correction loop on the demo data set with YAMNet features cached (frozen):
  a run with the defaults, then one wrong answer corrected (``add_correction``) and
  ``retrain`` (warm start) to a finished run, in seconds; beside it, the plain baseline
  measured in the same run: a from-scratch train of the same grown data set.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
YAMNET = SHARED / "models" / "yamnet" / "yamnet.tflite"
EFFICIENTAT = SHARED / "models" / "efficientat" / "mn04_as_mAP_432.pt"
ESC10 = SHARED / "datasets" / "esc10"
DEFAULT_HOME = ROOT / "workspace" / "benchmarks"
PARTS = ("esc10", "f1", "demo", "loop")


def header() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores {cores}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


def ari(truth, pred) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth, pred))


def esc10_items(folds=None):
    from audioclf.datasets import load_dataset

    ds = load_dataset(ESC10)
    return [it for it in ds.items if folds is None or int(it.path.name[0]) in folds]


# ---------------------------------------------------------------- ESC-10 grouping

def part_esc10(seeds: int) -> None:
    from audioclf.features import YAMNetConfig
    from audioclf.insight.mapping import standardize
    from audioclf.labelling import grouping

    items = esc10_items()
    paths, truth = [str(it.path) for it in items], [it.label for it in items]
    print(f"\nESC-10 grouping: {len(paths)} clips, labels removed, true k = 10; ARI (mean over {seeds} seeds)")
    for kind in grouping.available_embedders():
        config = YAMNetConfig(model=str(YAMNET)) if kind == "yamnet" else None
        t0 = time.perf_counter()
        emb = grouping.embed_clips(paths, kind, config=config)
        t_emb = time.perf_counter() - t0
        assert emb.paths == paths, "every ESC-10 clip should embed"
        for method in grouping.GROUPING_METHODS:
            t0 = time.perf_counter()
            scores = [ari(truth, grouping.group_vectors(emb.values, 10, method=method, seed=s).assignments)
                      for s in range(seeds)]
            t_g = (time.perf_counter() - t0) / seeds
            print(f"  {kind:12s} {method:9s} ARI {np.mean(scores):.3f} ± {np.std(scores):.3f}"
                  f"  (embedding {t_emb:.1f} s, grouping {t_g:.2f} s)", flush=True)
        est = grouping.group_vectors(emb.values, None, method="spectral")
        print(f"  {kind:12s} spectral, k estimated: k={est.k}, ARI {ari(truth, est.assignments):.3f}")
        # The plain way: standardised vectors -> PCA -> k-means (no unit-length rows, no graph).
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        dims = min(grouping.GROUPING_PCA_DIMS, emb.values.shape[1])
        z = PCA(dims, random_state=0).fit_transform(standardize(emb.values))
        plain = [ari(truth, KMeans(10, n_init=10, random_state=s).fit_predict(z)) for s in range(seeds)]
        print(f"  {kind:12s} plain PCA + k-means ARI {np.mean(plain):.3f} ± {np.std(plain):.3f}", flush=True)


# ---------------------------------------------------------------- data set from a grouping vs true labels

def _train_manifest(rows, name: str, seed: int) -> dict:
    import csv

    from audioclf.datasets import SplitConfig
    from audioclf.features import YAMNetConfig
    from audioclf.training import RunConfig, runs, train

    folder = Path(tempfile.mkdtemp(prefix="labbench-"))
    manifest = folder / f"{name}.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    cfg = RunConfig(dataset=str(manifest), split=SplitConfig(method="fixed", val=0.15, seed=seed),
                    features=YAMNetConfig(model=str(YAMNET)), name=f"bench labelling {name}",
                    overrides={"train.seed": seed})
    run_id = train(cfg)
    m = runs.load_run(run_id).metrics
    runs.delete_run(run_id)
    shutil.rmtree(folder, ignore_errors=True)
    return m


def part_f1(seed: int) -> None:
    from scipy.optimize import linear_sum_assignment

    from audioclf.datasets import load_dataset
    from audioclf.features import YAMNetConfig
    from audioclf.labelling import grouping, session as lab
    from audioclf.labelling.saving import save_dataset
    from audioclf.labelling.segmenting import CutConfig

    train_items, test_items = esc10_items({2, 3, 4, 5}), esc10_items({1})
    print(f"\nSaved data set vs original labels: group ESC-10 folds 2-5 ({len(train_items)} clips, k = 10), "
          f"name each group by its majority class, train (YAMNet features, their defaults); test on fold 1 "
          f"({len(test_items)} clips, true labels)")
    src = Path(tempfile.mkdtemp(prefix="esc10-unlabelled-"))
    for it in train_items:  # no class folders: the grouping sees files only
        (src / it.path.name).symlink_to(it.path)
    truth = {it.path.name: it.label for it in train_items}
    by_stem = {Path(k).stem: v for k, v in truth.items()}
    test_rows = [[str(it.path), it.label, "test"] for it in test_items]
    original = _train_manifest([[str(it.path), it.label, "train"] for it in train_items] + test_rows,
                               "original", seed)["test"]["macro_f1"]
    print(f"  original labels: test macro F1 {original:.3f}")
    for kind in grouping.available_embedders():
        if kind == "mfcc":
            continue  # no pretrained tagger: not what a user would group with
        name = f"bench-esc10-{kind}-{os.getpid()}"
        t0 = time.perf_counter()
        s = lab.create_session(name, [src], cut=CutConfig("whole"), embedder=kind, k=10,
                               features=YAMNetConfig(model=str(YAMNET)) if kind == "yamnet" else None)
        took = time.perf_counter() - t0
        classes = sorted(set(truth.values()))
        cost = np.zeros((len(s.groups), len(classes)))
        for c in s.clips:
            cost[[g.id for g in s.groups].index(c.group), classes.index(truth[Path(c.source).name])] -= 1
        for r, k in zip(*linear_sum_assignment(cost)):
            lab.name_group(s, s.groups[r].id, classes[k])
        saved = save_dataset(s, name)
        ds = load_dataset(saved.path, group_pattern=saved.group_pattern)
        wrong = sum(1 for it in ds.items if by_stem[it.group] != it.label)
        grouped = _train_manifest([[str(it.path), it.label, "train"] for it in ds.items] + test_rows,
                                  f"grouped-{kind}", seed)["test"]["macro_f1"]
        print(f"  grouped by {kind}: ARI {ari([truth[Path(c.source).name] for c in s.clips], [c.group for c in s.clips]):.3f} "
              f"({took:.1f} s), {wrong}/{len(ds.items)} clips saved under another class than their true one; "
              f"test macro F1 {grouped:.3f}, {100 * (original - grouped):.1f} points below the original labels", flush=True)
        lab.delete_session(name)
        shutil.rmtree(saved.path, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)


# ---------------------------------------------------------------- a 10-minute recording

def part_demo(seconds: float) -> None:
    from audioclf.features import YAMNetConfig
    from audioclf.labelling import session as lab, synth
    from audioclf.labelling.segmenting import CutConfig

    folder = Path(tempfile.mkdtemp(prefix="labdemo-"))
    events = synth.write_demo_recording(folder / "long.wav", seconds, seed=7)
    print(f"\nA {seconds / 60:.0f}-minute synthesised recording with {len(events)} events of 5 kinds")
    for k in (5, None):
        name = f"bench-demo-{os.getpid()}-{k or 'auto'}"
        t0 = time.perf_counter()
        s = lab.create_session(name, [folder], cut=CutConfig("events"), features=YAMNetConfig(model=str(YAMNET)), k=k)
        took = time.perf_counter() - t0
        truth = synth.true_labels([(c.start, c.end) for c in s.clips], events)
        print(f"  k={'estimated' if k is None else k}: {len(s.clips)} clips cut, {len(s.groups)} groups, "
              f"ARI {ari(truth, [c.group for c in s.clips]):.3f}, {took:.1f} s (cut + embed + group); "
              f"names {', '.join(g.suggested for g in s.groups)}")
        lab.delete_session(name)
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- the correction loop

def part_loop(seed: int) -> None:
    from audioclf import workspace
    from audioclf.datasets import SplitConfig
    from audioclf.datasets.demo import make_demo_dataset, synth_clip
    from audioclf.features import YAMNetConfig
    from audioclf.labelling.corrections import add_correction, retrain
    from audioclf.training import RunConfig, runs, train

    root = make_demo_dataset(workspace.datasets_dir() / f"demo-loop-{os.getpid()}")
    cfg = RunConfig(dataset=str(root), split=SplitConfig(seed=seed), features=YAMNetConfig(model=str(YAMNET)),
                    name="bench correction loop", overrides={"train.seed": seed})
    t0 = time.perf_counter()
    first = train(cfg)  # features extracted here; the loop below finds them cached
    print(f"\nCorrection loop on the demo set ({sum(1 for _ in root.rglob('*.wav'))} clips), YAMNet features "
          f"cached; first run {time.perf_counter() - t0:.1f} s ({runs.load_run(first).metrics['epochs_trained']} epochs)")
    rng = np.random.default_rng([seed, 99])
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, synth_clip("siren", rng), 16000, format="WAV")
    t0 = time.perf_counter()
    add_correction(first, "siren", buf.getvalue(), predicted="dial_tone")
    warm = retrain(first)
    t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    scratch = retrain(first, warm=False)
    t_scratch = time.perf_counter() - t0
    for label, r, t in (("warm (audioclf)", warm, t_warm), ("from scratch (baseline)", scratch, t_scratch)):
        m = runs.load_run(r.run_id).metrics
        print(f"  {label:24s} {t:5.1f} s to a finished run ({m['epochs_trained']} epochs, fit {m['train_seconds']} s); "
              f"{r.why}; test macro F1 before {r.before.macro_f1:.3f} after {r.after.macro_f1:.3f} on the same "
              f"{r.after.n} clips; corrections right {r.after.corrected[0]}/{r.after.corrected[1]}")
    print(f"  wrong answer -> retrained run: {t_warm:.1f} s warm vs {t_scratch:.1f} s from scratch "
          f"({t_scratch / max(t_warm, 1e-9):.2f}x)")
    for r in (warm.run_id, scratch.run_id, first):
        runs.delete_run(r)
    shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--home", default=os.environ.get("AUDIOCLF_HOME") or str(DEFAULT_HOME))
    ap.add_argument("--seeds", type=int, default=3, help="grouping seeds averaged on ESC-10")
    ap.add_argument("--seconds", type=float, default=600.0, help="length of the synthesised recording")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ["AUDIOCLF_HOME"] = args.home
    os.environ.setdefault("AUDIOCLF_YAMNET", str(YAMNET))
    if EFFICIENTAT.is_file():
        os.environ.setdefault("AUDIOCLF_EFFICIENTAT", str(EFFICIENTAT))
    header()
    if "esc10" in args.parts:
        part_esc10(args.seeds)
    if "f1" in args.parts:
        part_f1(args.seed)
    if "demo" in args.parts:
        part_demo(args.seconds)
    if "loop" in args.parts:
        part_loop(args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
