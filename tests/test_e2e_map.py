"""End to end: click a point of the Map in a real browser and get its player; run the Health check.

Same server and browser set-up as tests/test_e2e.py (Debian's chromium, Playwright).
Saves map.png and health.png into $AUDIOCLF_SCREENSHOTS when set.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from test_e2e import PAGE_TIMEOUT, VIEWPORT, browser, go, no_exception, server, settle  # noqa: F401

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
    page.locator(".js-plotly-plot .scatterlayer .trace path.point").nth(7).wait_for(state="visible")

    # A box over the whole plot area lists the clips with players and offers moving them.
    page.locator('.modebar-btn[data-title="Box Select"]').first.click()
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + 5, area["y"] + 5)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] / 2, area["y"] + area["height"] / 2, steps=12)
    page.mouse.move(area["x"] + area["width"] - 5, area["y"] + area["height"] - 5, steps=12)
    page.mouse.up()
    page.get_by_text("122 clips selected").wait_for()  # the demo's 120, a copy, a silent clip
    settle(page)
    no_exception(page)
    assert page.locator("audio").count() >= 2
    assert page.get_by_role("button", name="Move 122 clips").count() == 1

    # A fresh page (no selection): click one point, get its player and spectrogram.
    page.reload()
    page.locator("h1", has_text="Map").wait_for()
    point = page.locator(".js-plotly-plot .scatterlayer .trace path.point").nth(7)
    point.wait_for(state="visible")
    settle(page)
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
