"""End to end in a real browser: a 'not sure' answer, a long clip's segment timeline, and the
Runs page's portable bundle download. Screenshots go to $AUDIOCLF_SCREENSHOTS when set:
predict_unknown.png, predict_timeline.png, runs_export.png."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
import soundfile as sf

from test_e2e import VIEWPORT, browser, go, no_exception, server, settle  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e
EPOCHS = int(os.environ.get("AUDIOCLF_E2E_EPOCHS", "6"))  # the screenshots: 30


@pytest.fixture(scope="module")
def demo_run(server, monkeypatch_module):
    """A small MFCC + GRU run on the app's demo data set, trained in this process into its workspace."""
    url, home = server
    monkeypatch_module.setenv("AUDIOCLF_HOME", str(home))
    from audioclf.datasets import SplitConfig, demo
    from audioclf.features import MFCCConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig, train

    root = demo.ensure_demo_dataset()
    cfg = RunConfig(dataset=str(root), split=SplitConfig(val=0.2, test=0.2, seed=0), features=MFCCConfig(),
                    model=ModelConfig(kind="gru", rnn_units=(32,), dense_units=(32,)), name="showcase",
                    train=TrainConfig(epochs=EPOCHS, patience=None, batch_size=16, learning_rate=3e-3,
                                      warp_augment=()))
    return train(cfg), root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def long_clip(root, folder) -> bytes:
    """Three demo classes one after another (about 9 s)."""
    from audioclf.audio import load_audio

    parts = [load_audio(p, sr=16000).samples for c in ("siren", "rain", "bird_chirps")
             for p in sorted((root / c).glob("*.wav"))[:2]]
    path = folder / "three_sounds.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


def test_not_sure_timeline_and_bundle_download_in_a_real_browser(server, browser, shots, demo_run,  # noqa: F811
                                                                  fsdd_dir, tmp_path):
    voice = tmp_path / "spoken_seven.wav"
    voice.write_bytes((fsdd_dir / "7" / "7_theo_0.wav").read_bytes())
    url, _home = server
    run_id, root = demo_run
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(90_000)
    page.goto(url)
    page.locator("h1", has_text="Data").wait_for()
    settle(page)

    # Predict a long clip: the segment timeline, the several-classes headline's place, the CSV.
    go(page, "Predict")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        str(long_clip(root, tmp_path)))
    timeline = page.locator(".js-plotly-plot", has_text="Which class when")
    timeline.wait_for(state="visible")
    page.get_by_text("Download segments (CSV)").wait_for()
    settle(page)
    no_exception(page)
    timeline.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=shots / "predict_timeline.png")

    # "Not sure": a spoken word is none of the demo's classes. With the run's suggested threshold
    # the answer should be "unknown"; if this small model is sure anyway, the slider goes to the top.
    page.evaluate("window.scrollTo(0, 0)")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(voice))
    page.locator(".js-plotly-plot", has_text="Class probabilities").first.wait_for(state="visible")
    settle(page)
    unsure = page.get_by_text("Not sure: it fits none of the classes well")
    if not unsure.count():
        thumb = page.get_by_role("slider").first
        thumb.focus()
        thumb.press("End")
    unsure.wait_for()
    settle(page)
    page.get_by_text("Likeliest class", exact=True).wait_for()
    no_exception(page)
    page.evaluate("window.scrollTo(0, 250)")  # the threshold and the answer in one view
    page.wait_for_timeout(1500)
    page.screenshot(path=shots / "predict_unknown.png")

    # Runs: prepare the bundle, download it, check it holds the standalone classifier.
    go(page, "Runs")
    page.get_by_role("button", name="Prepare a portable bundle").click()
    button = page.get_by_role("button", name="Portable bundle (.zip)")
    button.wait_for(timeout=180_000)
    settle(page)
    no_exception(page)
    with page.expect_download() as info:
        button.click()
    data = open(info.value.path(), "rb").read()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert f"audioclf-{run_id}/predict.py" in names and f"audioclf-{run_id}/model.tflite" in names
    assert page.get_by_role("button", name="Prepare a portable bundle").count() == 0
    button.scroll_into_view_if_needed()
    page.mouse.move(5, 5)  # no tooltip over the page
    page.wait_for_timeout(800)
    page.screenshot(path=shots / "runs_export.png")
    page.close()
