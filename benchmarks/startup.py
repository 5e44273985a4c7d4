"""App start: `streamlit run app.py` to the first page rendered in a real browser.

    python benchmarks/startup.py              # 3 starts (the first warms the disk cache)
    python benchmarks/startup.py --repeat 5

Each start: a fresh `streamlit run app.py` (headless, a free port, a temporary
workspace); the clock runs from launching the server to the first page's
heading being visible in headless chromium (playwright), with the browser
already running so its own start is not counted. Also reports whether the
server process had TensorFlow loaded after the first page (its shared
libraries in /proc/<pid>/maps, so the app needs no debug hook), beside the
plain cost of `python -c "import tensorflow"`. Target: <= 3 s warm.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from appserver import launch_chromium, start_app, streamlit_app  # noqa: E402  (the tests' server helper)

HEADING = "h1"  # the first page (Data) starts with a title
TIMEOUT = 120.0
TARGET_S = 3.0
TF_LIBS = ("_pywrap_tensorflow_internal", "libtensorflow_framework", "libtensorflow_cc")


def tensorflow_loaded(pid: int) -> bool:
    """True if process `pid` has TensorFlow's shared libraries mapped (i.e. imported it)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any(lib in maps for lib in TF_LIBS)


def one_start(browser, home: Path) -> dict:
    env = {**os.environ, "AUDIOCLF_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    page = browser.new_page()
    # The health check is polled every 20 ms: the time to health is part of what is measured.
    server = start_app(streamlit_app("--server.fileWatcherType", "none"), home=home, env=env,
                       timeout=TIMEOUT, poll=0.02)
    try:
        page.goto(f"{server.url}/", timeout=TIMEOUT * 1000)
        page.wait_for_selector(HEADING, state="visible", timeout=TIMEOUT * 1000)
        rendered = time.perf_counter()
        title = page.inner_text(HEADING).strip().splitlines()[0]
        time.sleep(0.5)  # let the first script run finish its imports before looking
        tf = tensorflow_loaded(server.pid)
    finally:
        page.close()
        server.stop()
    return {"health_s": server.healthy - server.started, "render_s": rendered - server.started,
            "heading": title, "tf_loaded": tf}


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="starts to time (default: %(default)s)")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    print(f"load: {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="audioclf-startup-") as home, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            for i in range(args.repeat):
                r = one_start(browser, Path(home))
                rows.append(r)
                print(f"start {i + 1}: server healthy {r['health_s']:.2f} s, first page "
                      f"'{r['heading']}' rendered {r['render_s']:.2f} s, "
                      f"TensorFlow loaded: {'yes' if r['tf_loaded'] else 'no'}", flush=True)
        finally:
            browser.close()
    warm = [r["render_s"] for r in rows[1:]] or [rows[0]["render_s"]]
    tf_s = import_seconds("tensorflow")
    lib_s = import_seconds("audioclf.features, audioclf.datasets, audioclf.training, audioclf.insight.plotting")
    print(f"\n{'':38} {'seconds':>8}")
    print(f"{'first page, cold (start 1)':38} {rows[0]['render_s']:8.2f}")
    print(f"{'first page, warm (median of the rest)':38} {statistics.median(warm):8.2f}")
    print(f"{'plain: python -c ' + repr('import tensorflow'):38} {tf_s:8.2f}")
    print(f"{'import of the library the pages use':38} {lib_s:8.2f}")
    print(f"\nratio import tensorflow / warm first page: {tf_s / statistics.median(warm):.2f}x")
    print(f"TensorFlow imported by the first page: {'yes' if any(r['tf_loaded'] for r in rows) else 'no'}")
    ok = statistics.median(warm) <= TARGET_S
    print(f"target warm first page <= {TARGET_S:.0f} s: {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
