"""End to end: click a point of the Map in a real browser and get its player; run the Health check.

Same server and browser set-up as tests/test_e2e.py (Debian's chromium, Playwright).
Saves map.png and health.png into $AUDIOCLF_SCREENSHOTS when set.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from test_e2e import PAGE_TIMEOUT, VIEWPORT, browser, go, no_exception, server, settle, shots  # noqa: F401

pytestmark = pytest.mark.e2e


def spoil_demo(home) -> dict:
    """A copy under another name, a clip in the wrong class and a silent clip, inside the demo."""
    root = home / "datasets" / "demo"
    original = sorted((root / "siren").glob("*.wav"))[0]
    copy = root / "siren" / "siren_again.wav"
    shutil.copy(original, copy)
    wrong = sorted((root / "rain").glob("*.wav"))[0]
    moved = root / "bird_chirps" / wrong.name
    wrong.rename(moved)
    sf.write(root / "clock_ticks" / "nothing.wav", np.zeros(16000, np.float32), 16000)
    return {"copy": copy, "moved": moved}


def test_click_a_point_to_hear_it_and_check_health(server, browser, shots):  # noqa: F811
    url, home = server
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PAGE_TIMEOUT)
    page.goto(url)
    page.locator("h1", has_text="Data").wait_for()  # the demo data set now exists
    settle(page)
    spoil_demo(home)

    go(page, "Map")
    point = page.locator(".js-plotly-plot .scatterlayer .trace path.point").nth(7)
    point.wait_for(state="visible")
    assert page.locator("audio").count() == 0
    box = point.bounding_box()
    # Plotly listens on a drag layer above the points: click where the point is drawn.
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.locator("audio").first.wait_for(state="attached")
    page.locator(".js-plotly-plot", has_text="mel spectrogram").wait_for(state="visible")
    settle(page)
    no_exception(page)
    assert page.locator("audio").count() == 1
    page.screenshot(path=shots / "map.png")

    go(page, "Data")
    page.get_by_role("tab", name="Health").click()
    page.get_by_role("button", name="Run the health check").click()
    page.get_by_role("button", name="Delete the copy").first.wait_for()
    settle(page)
    no_exception(page)
    body = page.locator("section.main, [data-testid='stMain']").first.inner_text()
    assert "siren_again.wav" in body and "silent" in body
    page.screenshot(path=shots / "health.png", full_page=False)
    page.close()
