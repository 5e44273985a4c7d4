"""Training from the feature store within a memory budget vs in-memory training: the same macro F1?

    python benchmarks/store_training.py                       # FSDD, MFCC, test speaker "theo"
    python benchmarks/store_training.py --budgets 200MB 2MB --epochs 40

The 3,000 FSDD clips are extracted once into a feature store (local engine).
The split holds one speaker out for testing (the honest test on FSDD) and
validates on a stratified share of the others. Then the same model (MFCC
defaults, no warped copies, so both sides see exactly the same clips) is
trained with the same seed:

  memory     every sequence in memory (`SplitData`), as `audioclf train` does
  store:B    `StoreSplit` from the store: row groups in a new random order each epoch,
             shuffled and batched in buffers of at most B bytes of features

and scored on the held-out speaker (streamed for the store rows). The line to
meet: store within 1 point of macro F1 of memory. Printed beside it: the bytes
of features of the training part and the most one buffer held.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budgets", nargs="+", default=["200MB", "2MB"])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--test-speaker", default="theo")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("AUDIOCLF_HOME", tempfile.mkdtemp(prefix="store-training-"))
    import numpy as np
    from sklearn.metrics import f1_score

    from audioclf.audio import fingerprint
    from audioclf.datasets import FSDD_SPEAKER_PATTERN, SplitConfig, load_dataset, split_dataset
    from audioclf.engines import get_engine
    from audioclf.features import MFCCConfig
    from audioclf.features.store import FeatureStore
    from audioclf.model import predict_proba
    from audioclf.training.config import resolve_settings
    from audioclf.training.fit import fit
    from audioclf.model.sequences import SplitData
    from audioclf.training.streaming import StoreSplit, parse_bytes

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    ds = load_dataset(SHARED / "datasets" / "fsdd", group_pattern=FSDD_SPEAKER_PATTERN)
    test = [it for it in ds.items if it.group == args.test_speaker]
    rest = ds.without([it.path for it in test])
    split = split_dataset(rest, SplitConfig(method="stratified", val=0.15, test=0.0, seed=args.seed))
    labels = ds.labels
    parts = {"train": split.train, "val": split.val, "test": test}
    cfg = MFCCConfig()
    store_root = tempfile.mkdtemp(prefix="store-")
    t0 = time.perf_counter()
    result = get_engine("local").extract(ds, cfg, store=store_root)
    print(f"extracted {result.extracted} clips into {store_root} in {time.perf_counter() - t0:.1f} s")
    store = FeatureStore(store_root)
    feats = store.read(cfg)
    hashes = {name: [fingerprint(it.path) for it in items] for name, items in parts.items()}
    ys = {name: np.array([labels.index(it.label) for it in items], np.int64) for name, items in parts.items()}
    memory = {name: SplitData([feats[h].values for h in hashes[name]], ys[name], [str(it.path) for it in items])
              for name, items in parts.items()}
    model_cfg, train_cfg = resolve_settings("mfcc")
    train_cfg = replace(train_cfg, epochs=args.epochs, warp_augment=(), seed=args.seed)
    train_bytes = sum(x.nbytes for x in memory["train"].x)
    n = len(labels)

    def macro_f1(y, probs) -> float:
        return float(f1_score(y, probs.argmax(1), labels=list(range(n)), average="macro", zero_division=0))

    rows = []
    t0 = time.perf_counter()
    model, info = fit(model_cfg, train_cfg, memory["train"], memory["val"], n)
    f1 = macro_f1(memory["test"].y, predict_proba(model, memory["test"].x))
    rows.append(("memory", f1, info["epochs_trained"], time.perf_counter() - t0, train_bytes))
    print(f"  memory      macro F1 {f1:.4f}  ({info['epochs_trained']} epochs, {rows[-1][3]:.0f} s)", flush=True)
    for text in args.budgets:
        budget = parse_bytes(text)
        t0 = time.perf_counter()
        sp = {name: StoreSplit.of(store, cfg, hashes[name], ys[name], budget) for name in parts}
        model, info = fit(model_cfg, train_cfg, sp["train"], sp["val"], n)
        probs, y, _ = sp["test"].predict(model)
        f1 = macro_f1(y, probs)
        rows.append((f"store:{text}", f1, info["epochs_trained"], time.perf_counter() - t0, sp["train"].peak_bytes))
        print(f"  store:{text:<6} macro F1 {f1:.4f}  ({info['epochs_trained']} epochs, {rows[-1][3]:.0f} s, "
              f"largest buffer {sp['train'].peak_bytes / 1e6:.1f} MB)", flush=True)
    base = rows[0][1]
    print(f"\nFSDD, test speaker {args.test_speaker} ({len(test)} clips), {len(split.train)} training clips: "
          f"{train_bytes / 1e6:.1f} MB of MFCC features")
    print("| training data | macro F1 (test speaker) | vs memory (points) | epochs | seconds | features held at once |")
    print("|---|---|---|---|---|---|")
    for name, f1, epochs, secs, held in rows:
        print(f"| {name} | {f1:.3f} | {100 * (f1 - base):+.1f} | {epochs} | {secs:.0f} | {held / 1e6:.1f} MB |")
    import shutil

    shutil.rmtree(store_root, ignore_errors=True)


if __name__ == "__main__":
    main()
