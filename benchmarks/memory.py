"""Peak memory of what one long upload costs the server: decoding it and Explore's
analysis of it, each beside the plain way, in fresh processes.

    .venv/bin/python benchmarks/memory.py                # a 3-minute 44.1 kHz stereo FLAC
    .venv/bin/python benchmarks/memory.py --minutes 10   # the plain analysis then takes ~6 GB

Every case runs in its own child process and reports its high-water mark (VmHWM)
above the child's import baseline, so the numbers are what that work adds to a
server. The plain ways are what audioclf did before issue 21:

* decode: ``soundfile.read`` of the whole file, mean over channels, ``soxr.resample``;
* analysis: the clip at its own rate, every frame at hop 64 (features, linear and mel
  spectrograms at full resolution, as the Explore page computed and cached them).

The Predict page's numbers come from tests/test_hostile_inputs.py (it needs a trained run).

Nothing here is part of the test suite; tests/test_hostile_inputs.py holds the bounds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20

CHILD_END = """
import json as _json
with open("/proc/self/status") as _f:
    _peak = next(int(ln.split()[1]) * 1024 for ln in _f if ln.startswith("VmHWM:"))
print("@@" + _json.dumps({"peak": _peak, "base": _base, "out": out}))
"""
BASE = """
with open("/proc/self/status") as _f:
    _base = next(int(ln.split()[1]) * 1024 for ln in _f if ln.startswith("VmRSS:"))
"""


def child(imports: str, work: str, env: dict | None = None) -> dict:
    code = textwrap.dedent(imports) + BASE + textwrap.dedent(work) + CHILD_END
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@")), None)
    if line is None:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(line[2:])


def long_flac(path: Path, minutes: float) -> Path:
    sr, rng = 44100, np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 2, "PCM_16", format="FLAC") as f:
        for start in range(0, int(minutes * 60), 10):
            t = np.arange(start * sr, (start + 10) * sr) / sr
            tone = 3000 * np.sin(2 * np.pi * (300 + (start % 50) * 20) * t)
            f.write((tone[:, None] + rng.integers(-6, 6, (len(t), 2))).astype(np.int16))
    return path


def report(name: str, ours: dict, plain: dict) -> None:
    a, b = (ours["peak"] - ours["base"]) / MB, (plain["peak"] - plain["base"]) / MB
    print(f"{name:<34} ours {a:8.0f} MB   plain {b:8.0f} MB   plain/ours {b / max(a, 1):6.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0, help="length of the synthesised clip")
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; a {args.minutes:g}-minute 44.1 kHz stereo FLAC")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(long_flac(Path(tmp) / "long.flac", args.minutes))
        imports = "import numpy, soundfile, soxr, audioclf.audio\n"
        for sr in (16000, None):
            ours = child(imports, f"""
                from audioclf.audio import load_audio
                out = load_audio({path!r}, sr={sr}).duration
            """)
            plain = child(imports, f"""
                import soundfile as sf, soxr
                data, native = sf.read({path!r}, dtype="float32", always_2d=True)
                y = data.mean(axis=1)
                y = soxr.resample(y, native, {sr}, quality="HQ") if {sr} else y
                out = len(y) / ({sr} or native)
            """)
            report(f"decode at {sr or 'native'} Hz", ours, plain)
        imports = "import audioclf.features.spectral, audioclf.insight.analysis\n"
        ours = child(imports, f"""
            from audioclf.insight.analysis import analyse_clip
            a = analyse_clip({path!r}, n_fft=1024, hop_length=64)
            out = [a.sr, a.hop_length, a.nbytes]
        """)
        plain = child(imports, f"""
            from audioclf.audio import load_audio
            from audioclf.features import SpectralConfig, extract
            from audioclf.features.spectral import mel_spectrogram_db, spectrogram_db
            clip = load_audio({path!r})
            feats = extract(clip, SpectralConfig(sr=clip.sr, n_fft=1024, hop_length=64, n_mfcc=20, n_mels=128))
            kept = [clip.samples, feats.values, spectrogram_db(clip.samples, clip.sr, 1024, 64).db,
                    mel_spectrogram_db(clip.samples, clip.sr, 1024, 64, 128).db]
            out = [clip.sr, 64, sum(k.nbytes for k in kept)]
        """)
        report("Explore analysis, hop 64 asked", ours, plain)
        print(f"{'':<34} kept (cached): ours {ours['out'][2] / MB:.1f} MB, plain {plain['out'][2] / MB:.0f} MB; "
              f"ours analysed at {ours['out'][0]} Hz hop {ours['out'][1]}")


if __name__ == "__main__":
    main()
