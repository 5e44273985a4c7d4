"""The live microphone and the presentation page in a real browser, in read-only mode.

`audioclf app --readonly` serves a real demo run; Debian's chromium gets a fake
microphone that plays a siren file (`--use-file-for-fake-audio-capture`), and
the Live page must show "siren" as its live label. Saves live.png and
present.png into $AUDIOCLF_SCREENSHOTS (e.g. docs/screenshots) when set.

WebRTC connects browser and server over their hosts' network addresses, not
over loopback (neither chromium nor aiortc offers loopback candidates). So that
this traffic never leaves the test, server and browser run in a network
namespace of their own (`unshare -n`, root) whose only non-loopback address is
on a veth pair inside it.

The server's first-start work (TensorFlow, the run's model, YAMNet and the live
classifier's warm-up, all on first use) is done by a warm-up visit in the
`browser` fixture, with its own budget: without it that work fell inside the
test's first steps, and on a 2-core machine shared with other jobs (load 10-35)
the first page alone could take longer than a step may (issue 21). A failure
saves a screenshot and prints how long each step took and the server log.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.datasets.demo import CLASSES as DEMO_CLASSES
from appserver import (FAKE_MIC_ARGS, AppServer, NetNamespace, ServerDidNotStart, have_chromium, launch_chromium,
                       start_app)

pytestmark = pytest.mark.e2e

PORT = 8765  # the namespace is private, so any port is free
START_TIMEOUT = 90
WARM_TIMEOUT = 300  # s for the server's first-start work (the warm-up visit)
PAGE_TIMEOUT = 90_000  # ms
STEADY_SECONDS = 20  # the siren must stay "siren" this long once it shows...
SLIP_SHARE = 0.1  # ... but for at most this share of the looks at another class (never "unknown"),
SLIP_SECONDS = 2.0  # none of them longer than this
# From Start to the first label wanted (with its event logged): a guard against a hang, not a
# speed claim.
LIVE_TIMEOUT = 90_000  # ms
VIEWPORT = {"width": 1440, "height": 1350}  # tall enough for the answer and the event log


def netns() -> NetNamespace:
    """A network namespace for server and browser (skips the test where none can be made)."""
    problem = NetNamespace.problem()
    if problem:
        pytest.skip(problem)
    try:
        return NetNamespace()
    except OSError as exc:
        pytest.skip(str(exc))


def serve_in_netns(home: Path, env: dict) -> tuple[AppServer, NetNamespace]:
    """`audioclf app --readonly` serving `home` inside a new network namespace; `env` adds to this
    process's environment (None removes a variable)."""
    if not have_chromium():
        pytest.skip("install Debian's chromium: apt-get install -y chromium")
    ns = netns()
    env = {**os.environ, "AUDIOCLF_HOME": str(home), "AUDIOCLF_READONLY": None, **env}  # the flag must do it
    env = {k: v for k, v in env.items() if v is not None}
    try:
        app = start_app(["audioclf", "app", "--readonly", "--headless", "--port", "{port}",
                         "--address", "127.0.0.1"], home=home, port=PORT, env=env, netns=ns,
                        timeout=START_TIMEOUT, poll=0.5)
    except ServerDidNotStart as exc:
        ns.close()
        pytest.fail(str(exc))
    return app, ns


@pytest.fixture(scope="module")
def siren_wav(tmp_path_factory, workspace_home, demo_run) -> Path:
    """The file the fake microphone plays (and loops): 8 s of a held-out demo siren.

    The siren the run classified right with most confidence among the clips it did not
    train on (runs.example_clips), looped to 8 s.
    """
    from audioclf.training import runs

    y, sr = sf.read(runs.example_clips(demo_run)["siren"], dtype="float32")
    path = tmp_path_factory.mktemp("fake_mic") / "siren.wav"
    sf.write(path, np.resize(y, 8 * sr), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, workspace_home, demo_run, yamnet_tflite):
    """`audioclf app --readonly` in a private network namespace, serving a copy of the demo run."""
    home = tmp_path_factory.mktemp("live_e2e_home")
    shutil.copytree(workspace_home / "runs" / demo_run, home / "runs" / demo_run)
    app, ns = serve_in_netns(home, {"AUDIOCLF_YAMNET": str(yamnet_tflite)})
    yield app.url, home, ns
    app.stop()
    ns.close()


@pytest.fixture(scope="module")
def browser(server, siren_wav, tmp_path_factory):
    """Chromium inside the server's network namespace, its microphone playing the siren file."""
    from playwright.sync_api import sync_playwright

    _, _, ns = server
    with sync_playwright() as p:
        b = launch_chromium(p, netns=ns, wrapper_dir=tmp_path_factory.mktemp("chromium"),
                            extra_args=(*FAKE_MIC_ARGS, f"--use-file-for-fake-audio-capture={siren_wav}"))
        warm_up(b, *server[:2])
        yield b
        b.close()


def warm_up(b, url: str, home: Path) -> None:
    """One visit that makes the server do its first-start work: the Present page loads the
    run's model and builds the Live tab's classifier (TensorFlow, YAMNet) in the server
    process, where every later session finds them."""
    page = b.new_page(viewport=VIEWPORT)
    start = time.time()
    try:
        page.goto(url, timeout=WARM_TIMEOUT * 1000)
        page.get_by_role("tab", name="Live microphone").wait_for(timeout=WARM_TIMEOUT * 1000)
        page.locator('[data-testid="stStatusWidget"]').wait_for(
            state="hidden", timeout=max(1.0, WARM_TIMEOUT - (time.time() - start)) * 1000)
    except Exception as exc:  # noqa: BLE001 - the reason is the message below
        print((home / "server.log").read_text()[-5000:])
        pytest.fail(f"the app's first page did not finish within {WARM_TIMEOUT} s (load average "
                    f"{os.getloadavg()[0]:.1f}): {type(exc).__name__}")
    finally:
        page.close()
    print(f"warm-up: {time.time() - start:.1f} s (load average {os.getloadavg()[0]:.1f})")


def settle(page) -> None:
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=PAGE_TIMEOUT)
    page.wait_for_timeout(300)


def find_in_frames(page, make):
    """The first match of `make(frame)` over the page's frames (components live in iframes), or None."""
    for frame in page.frames:
        loc = make(frame)
        if loc.count():
            return loc.first
    return None


def in_frames(page, make, timeout: float = PAGE_TIMEOUT / 1000):
    """Like find_in_frames, waiting up to `timeout` s for a match."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = find_in_frames(page, make)
        if found is not None:
            return found
        page.wait_for_timeout(250)
    raise AssertionError(f"not found in any frame: {[f.url for f in page.frames]}")


def live_labels(page) -> list[tuple[str, str]]:
    """(text, state) of each big live label: state live, paused (this stream's last label, no
    newer one for a while: dimmed), stopped (after Stop, or an earlier stream's), waiting (a
    stream that has not labelled yet) or idle (before Start)."""
    return [(e.inner_text().strip(), e.get_attribute("data-state") or "")
            for e in page.locator('[data-testid="live-label"]').all()]


def live_label_is(page, text: str) -> bool:
    """The label reads `text` and is of the current stream (not the last one heard before it)."""
    return any(label == (text, state) for label in live_labels(page) for state in ("live", "paused"))


def stream_seconds(page) -> float:
    """The stream time the Live page's caption states ("Stream 12.3 s; ...")."""
    caption = page.get_by_text(re.compile(r"^Stream [0-9.]+ s;")).first
    caption.wait_for()
    return float(re.match(r"Stream ([0-9.]+) s;", caption.inner_text()).group(1))


def event_logged(page) -> bool:
    """The Live page's event log has a row (a table; "None yet" before the first event)."""
    return page.locator('[data-testid="stDataFrame"]').count() > 0


def start_stream(page, heard, what: str, shots: Path, home: Path) -> float:
    """Press Start once and wait until `heard(page)` is true; returns the seconds it took.

    One press, no second try: a stream that does not connect, or ends by itself (the
    component shows Start again), fails the test with the server log. Both happened while
    the server's event loop, which answers WebRTC, was starved by a full garbage collection
    after every rerun (issue 21; see app_pages.common.freeze_loaded_objects).
    """
    in_frames(page, lambda f: f.get_by_role("button", name="Start listening")).click()
    pressed = time.time()
    deadline, playing = pressed + LIVE_TIMEOUT / 1000, False
    while time.time() < deadline:
        if heard(page):
            return time.time() - pressed
        stop = find_in_frames(page, lambda f: f.get_by_role("button", name="Stop"))
        playing = playing or stop is not None
        if playing and stop is None and find_in_frames(
                page, lambda f: f.get_by_role("button", name="Start listening")) is not None:
            fail_with_log(page, shots, home, f"the stream ended by itself {time.time() - pressed:.1f} s after "
                                             f"Start, before {what}")
        page.wait_for_timeout(250)
    fail_with_log(page, shots, home, f"no {what} within {LIVE_TIMEOUT / 1000:.0f} s of Start "
                                     f"({'connected' if playing else 'never connected'})")


def fail_with_log(page, shots: Path, home: Path, message: str):
    page.screenshot(path=shots / "live_failed.png", full_page=True)
    print((home / "server.log").read_text()[-5000:])
    raise AssertionError(message)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Something went wrong").count() == 0


class Steps:
    """How long each step took; on a failure, a screenshot and the server log's tail."""

    def __init__(self, page, shots: Path, home: Path) -> None:
        self.page, self.shots, self.home = page, shots, home
        self.start, self.done = time.time(), []

    def __call__(self, what: str) -> None:
        self.done.append(f"{time.time() - self.start:6.1f} s  {what} (load {os.getloadavg()[0]:.1f})")

    def __enter__(self) -> "Steps":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        print("steps:\n  " + "\n  ".join(self.done))
        if exc is not None:
            self.page.screenshot(path=self.shots / "live_e2e_failed.png", full_page=True)
            print(f"failed after the steps above; screenshot {self.shots / 'live_e2e_failed.png'}")
            print((self.home / "server.log").read_text()[-5000:])


def test_live_microphone_and_presentation_in_a_real_browser(server, browser, shots, siren_wav):
    url, home, _ = server
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PAGE_TIMEOUT)
    with Steps(page, shots, home) as step:
        walk(page, url, home, shots, siren_wav, step)
    page.close()


def walk(page, url: str, home: Path, shots: Path, siren_wav: Path, step: Steps) -> None:
    """The visitor's walk: the presentation, an upload, the live microphone."""
    # Read-only: opens on the presentation; no Train page in the navigation.
    page.goto(url)
    page.get_by_text("demo yamnet").first.wait_for()  # the run's name, under the headline
    step('the presentation')
    settle(page)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Present" in nav and "Live" in nav and "Train" not in nav
    # An upload gets a large answer.
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(siren_wav))
    answer = page.locator('[data-testid="present-answer"]')
    answer.wait_for()
    assert answer.inner_text().strip() == "siren"
    step('its answer to an upload')
    settle(page)
    no_exception(page)
    page.screenshot(path=shots / "present.png", full_page=True)

    # Live: start the (fake) microphone; the siren must become the live label.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Live").first.click()
    page.locator("h1", has_text="Live").wait_for()
    step('the Live page')
    settle(page)
    # Before Start the label says what to do (issue 21, minor: it said "listening...").
    page.locator('[data-testid="live-label"][data-state="idle"]').wait_for()  # after the model's warm-up
    assert live_labels(page) == [("Press Start listening", "idle")]
    first_label_s = start_stream(page, lambda p: live_label_is(p, "siren") and event_logged(p),
                                 "a 'siren' label with its event logged", shots, home)
    step('the live siren label, logged as an event')
    # Issue 21, major 11: with the run's suggested threshold a clean siren stays "siren" (not
    # "unknown") for 20 s: the threshold is set on live-length windows, not whole clips.
    # Once shown, a label never gives way to "listening..." (issue 21): a pause in the stream
    # shows the last one heard, dimmed ("paused"); the stream must still be labelling at the end.
    # About one look per label refresh (app_pages.mic.REFRESH); the stream's own clock must advance
    # by the watch's length, so the labels seen are of 20 s of audio, not of a stream that paused
    # or fell behind.
    seen, began = [], stream_seconds(page)
    end = time.time() + STEADY_SECONDS
    while time.time() < end:
        page.wait_for_timeout(250)
        seen.append(live_labels(page))
    heard = stream_seconds(page) - began
    texts = [text for labels in seen for text, _ in labels]
    states = [state for labels in seen for _, state in labels]
    # What the threshold and the page decide is checked strictly: never "unknown", never
    # "listening...", always this stream's label. What the small demo model hears is its own
    # business: on some CPUs its weights hear a second of the held-out siren as another class
    # (tests/test_confidence.py measures that apart), so a short slip to a class is allowed.
    assert set(texts) <= set(DEMO_CLASSES), f"the live label was not a class: {seen}"
    assert texts.count("siren") >= (1 - SLIP_SHARE) * len(texts), f"the live label left 'siren': {seen}"
    longest = max((len(run) for run in "".join("s" if t == "siren" else "x" for t in texts).split("s")), default=0)
    assert longest * STEADY_SECONDS / len(texts) <= SLIP_SECONDS, f"the live label left 'siren' for long: {seen}"
    assert set(states) <= {"live", "paused"}, f"the live label left this stream: {seen}"
    assert heard >= STEADY_SECONDS - 2, f"the stream's clock advanced {heard:.1f} s in a {STEADY_SECONDS} s watch"
    step(f"{STEADY_SECONDS} s of 'siren' over {heard:.1f} s of stream ({len(texts) - texts.count('siren')} of "
         f"{len(texts)} looks at another class, {states.count('paused')} at a paused label)")
    stop = find_in_frames(page, lambda f: f.get_by_role("button", name="Stop"))
    no_exception(page)
    page.screenshot(path=shots / "live.png", full_page=True)
    assert stop is not None, "the stream stopped by itself during the watch"
    stop.click()
    in_frames(page, lambda f: f.get_by_role("button", name="Start listening"))
    # After Stop the last label stays, marked as such (once the server has rerun the page).
    page.locator('[data-testid="live-label"][data-state="stopped"]').wait_for()
    ((text, state),) = live_labels(page)
    assert state == "stopped" and text in DEMO_CLASSES, live_labels(page)
    assert page.get_by_text("last heard").count() == 1
    no_exception(page)
    step(f"stopped; first siren label {first_label_s:.1f} s after Start")
