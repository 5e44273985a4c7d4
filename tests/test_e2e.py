"""End to end: the real server, Debian's chromium driven by Playwright, every page.

Saves a screenshot of each page into $AUDIOCLF_SCREENSHOTS (e.g. docs/screenshots)
when set, otherwise into the test's tmp folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from appserver import ServerDidNotStart, have_chromium, launch_chromium, start_app, streamlit_app

pytestmark = pytest.mark.e2e

START_TIMEOUT = 60
PAGE_TIMEOUT = 90_000  # ms; the first Explore render compiles librosa's numba code
TRAIN_TIMEOUT = 300_000
VIEWPORT = {"width": 1440, "height": 1000}
# Few epochs keep the test short; the README's screenshots were made with the default 40 (AUDIOCLF_E2E_EPOCHS=40).
EPOCHS = os.environ.get("AUDIOCLF_E2E_EPOCHS", "3")


@pytest.fixture(scope="module")
def server(tmp_path_factory, yamnet_tflite):
    """`streamlit run app.py` on a free port with its own workspace; yields (url, home)."""
    home = tmp_path_factory.mktemp("e2e_home")
    env = {**os.environ, "AUDIOCLF_HOME": str(home), "AUDIOCLF_YAMNET": str(yamnet_tflite)}
    try:
        app = start_app(streamlit_app(), home=home, env=env, timeout=START_TIMEOUT)
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))
    yield app.url, home
    app.stop()


@pytest.fixture(scope="module")
def browser():
    if not have_chromium():
        pytest.skip("install Debian's chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 2 s siren-like sweep (real audio, written with soundfile)."""
    sr = 16000
    t = np.arange(2 * sr) / sr
    freq = 800 + 300 * np.sin(2 * np.pi * 0.5 * t)
    y = 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / sr)
    path = tmp_path_factory.mktemp("e2e_clip") / "my_siren.wav"
    sf.write(path, y.astype(np.float32), sr)
    return path


def settle(page) -> None:
    """Wait until Streamlit has finished running the script."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=PAGE_TIMEOUT)
    page.wait_for_timeout(300)


def go(page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
    page.locator("h1", has_text=name).wait_for(timeout=PAGE_TIMEOUT)
    settle(page)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_whole_app_in_a_real_browser(server, browser, shots, clip):
    url, home = server
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PAGE_TIMEOUT)

    # Data: opens on the demo data set; upload a clip into class "siren".
    page.goto(url)
    page.locator("h1", has_text="Data").wait_for()
    page.get_by_text("Clips per class").first.wait_for()
    settle(page)
    no_exception(page)
    page.screenshot(path=shots / "data.png")
    page.get_by_role("tab", name="Add clips").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(clip))
    page.get_by_role("button", name="Add 1 file").wait_for()
    settle(page)
    page.get_by_role("button", name="Add 1 file").click()
    page.get_by_text("Added 1 clip to").wait_for()
    no_exception(page)
    assert len(list(home.glob("datasets/demo/*/my_siren.wav"))) == 1

    # Explore: every plotly figure renders.
    go(page, "Explore")
    page.locator(".js-plotly-plot").nth(6).wait_for(state="visible")
    page.get_by_text("What YAMNet hears").wait_for()
    page.locator(".js-plotly-plot").nth(7).wait_for(state="visible")  # YAMNet's classes
    settle(page)
    no_exception(page)
    assert page.locator(".js-plotly-plot").count() >= 8
    page.screenshot(path=shots / "explore.png")

    # Train: a tiny model (few epochs) trains in the background and finishes.
    go(page, "Train")
    epochs = page.get_by_label("Epochs (maximum)")
    epochs.fill(EPOCHS)
    epochs.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=TRAIN_TIMEOUT)
    page.get_by_text("Training finished").wait_for(timeout=TRAIN_TIMEOUT)
    settle(page)
    no_exception(page)
    page.screenshot(path=shots / "train.png")

    # Runs: the run with its confusion matrix.
    go(page, "Runs")
    page.locator(".js-plotly-plot", has_text="Confusion matrix").wait_for(state="visible")
    settle(page)
    page.wait_for_timeout(1000)  # let the data grids draw their canvas
    no_exception(page)
    page.screenshot(path=shots / "runs.png")

    # Predict: upload -> class probabilities.
    go(page, "Predict")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(clip))
    page.get_by_text("Predicted class").wait_for()
    page.locator(".js-plotly-plot", has_text="Class probabilities").first.wait_for(state="visible")
    settle(page)
    no_exception(page)
    page.screenshot(path=shots / "predict.png")
    page.close()


def test_a_double_click_on_delete_deletes_one_clip(server, browser, shots):
    """Issue 21, major 9: after a delete the confirmation must not reopen on the next clip."""
    url, home = server
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PAGE_TIMEOUT)
    page.goto(url)
    page.locator("h1", has_text="Data").wait_for()
    settle(page)
    page.get_by_role("tab", name="Browse and edit").click()
    settle(page)
    clips = lambda: sorted(p for p in (home / "datasets").rglob("*.wav"))  # noqa: E731
    before = clips()
    page.locator('[data-testid="stPopover"] button').first.click()  # the first clip's bin
    confirm = page.get_by_role("button", name="Delete", exact=True)
    confirm.wait_for()
    confirm.dblclick()
    settle(page)
    page.wait_for_timeout(1500)
    settle(page)
    after = clips()
    assert len(after) == len(before) - 1, f"{len(before) - len(after)} clips deleted by one double click"
    assert page.get_by_role("button", name="Delete", exact=True).count() == 0  # the confirmation closed
    no_exception(page)
    page.close()
