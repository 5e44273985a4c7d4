"""Time to draw the data set map of 2,000 FSDD clips once their MFCC features are cached.

    python benchmarks/map.py                   # 2,000 clips, MFCC summaries
    python benchmarks/map.py --clips 3000 --repeat 5

Measured in one process, after one call that fills the feature cache (not timed):
  map     cached features -> clip vectors -> PCA -> plotly figure -> the JSON the browser gets
          (what the Map page does on a visit; median of --repeat runs)
  t-SNE   the same with scikit-learn's t-SNE in place of PCA (the usual notebook projection)
  cold    the same map from an empty cache (features computed), for scale
Prints each time and the ratio to the map. Target: map < 2 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared"))
TARGET_S = 2.0


def draw(ds, cfg, method: str) -> tuple[float, int]:
    """Seconds from the data set to the serialised figure, and the number of points."""
    from audioclf.insight import clip_vectors, plotting, project

    t = time.perf_counter()
    vecs = clip_vectors(ds, cfg)
    xy = project(vecs.values, method)
    fig = plotting.clip_map(xy, vecs.labels, [p.name for p in vecs.paths])
    fig.to_json()
    return time.perf_counter() - t, len(vecs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--home", help="workspace (default: workspace/benchmarks)")
    ap.add_argument("--no-cold", action="store_true", help="skip the empty-cache run")
    ap.add_argument("--no-tsne", action="store_true", help="skip t-SNE (minutes on a busy machine)")
    args = ap.parse_args()
    os.environ["AUDIOCLF_HOME"] = args.home or os.environ.get("AUDIOCLF_HOME") or str(ROOT / "workspace" / "benchmarks")
    from audioclf.datasets import load_dataset
    from audioclf.features import MFCCConfig

    print(f"load average {os.getloadavg()[0]:.1f}")
    full = load_dataset(SHARED / "datasets" / "fsdd")
    # Evenly spaced clips: every digit and speaker, not the first classes only.
    keep = {int(round(i)) for i in np.linspace(0, len(full.items) - 1, min(args.clips, len(full.items)))}
    ds = full.without([it.path for i, it in enumerate(full.items) if i not in keep])
    cfg = MFCCConfig()
    draw(ds, cfg, "pca")  # fills the cache and imports sklearn/plotly
    maps = [draw(ds, cfg, "pca") for _ in range(args.repeat)]
    t_map, n = statistics.median(t for t, _ in maps), maps[0][1]
    rows = [("map (PCA)", t_map)]
    if not args.no_tsne:
        rows.append(("t-SNE", draw(ds, cfg, "tsne")[0]))
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as home:
            os.environ["AUDIOCLF_HOME"] = home
            rows.append(("cold (empty cache)", draw(ds, cfg, "pca")[0]))
    print(f"{n} clips, {len(ds.labels)} classes, MFCC summaries")
    for name, t in rows:
        print(f"{name:<20} {t:7.2f} s   {t / t_map:6.1f}x the map")
    print(f"map {'meets' if t_map < TARGET_S else 'MISSES'} the {TARGET_S:g} s target")


if __name__ == "__main__":
    main()
