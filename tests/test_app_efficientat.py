"""EfficientAT in the app (Streamlit's AppTest): the Train form's offer and its disabled state, Explore's panel."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180
EAT = "EfficientAT embeddings (pretrained, AudioSet)"
SUBMIT = "FormSubmitter:train_form-Start training"


@pytest.fixture(scope="module", autouse=True)
def app_home(tmp_path_factory, efficientat_pt):
    """A workspace of its own; YAMNet left out, EfficientAT's weights where the test puts them."""
    home = tmp_path_factory.mktemp("app_eat")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOCLF_HOME", str(home))
        mp.setenv("AUDIOCLF_YAMNET", str(home / "no-yamnet.tflite"))
        mp.delenv("AUDIOCLF_EFFICIENTAT", raising=False)
        from audioclf.datasets import ensure_demo_dataset

        ensure_demo_dataset()
        yield home


def new_app(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements).replace("\\_", "_")  # markdown-escaped names


def test_train_offers_efficientat_with_its_checkpoint_and_its_defaults(monkeypatch, efficientat_pt):
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt))
    at = new_app("train")
    assert at.selectbox(key="tr_feat").value.startswith("Auto")  # EfficientAT alone is a pretrained model
    at.selectbox(key="tr_feat").set_value(EAT).run()
    assert not at.exception, at.exception
    picker = at.selectbox(key="tr_eat_model")
    assert picker.value == "mn04_as" and "mn40_as" in picker.options[-1]
    assert "mn04_as (AudioSet mAP 0.432)" in picker.options
    assert at.selectbox(key="tr_eat_seq").value == "frames"
    assert not at.button(key=SUBMIT).disabled and not at.warning
    assert at.checkbox(key="tr_warp").disabled and not at.checkbox(key="tr_clip_norm").value
    # A checkpoint that is not here: the reason, a download offered, and nothing can start.
    picker.set_value("mn10_as").run()
    assert not at.exception, at.exception
    assert "mn10_as" in texts(at.warning) and "mn10_as_mAP_471.pt" in texts(at.warning)
    assert at.button(key=SUBMIT).disabled
    assert any("Download mn10_as" in b.label for b in at.button)


def test_hearing_through_yamnet_too_is_offered_only_with_yamnet(monkeypatch, efficientat_pt, yamnet_tflite):
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt))
    at = new_app("train")
    at.selectbox(key="tr_feat").set_value(EAT).run()
    both = at.checkbox(key="tr_eat_yamnet")
    assert both.disabled and not both.value  # this module's YAMNet is missing: the box says why
    assert "no-yamnet.tflite" in both.help
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    at = new_app("train")
    at.selectbox(key="tr_feat").set_value(EAT).run()
    assert not at.exception, at.exception
    assert not at.checkbox(key="tr_eat_yamnet").disabled and not at.button(key=SUBMIT).disabled


def test_train_without_any_pretrained_weights_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(tmp_path / "gone.pt"))
    at = new_app("train")
    # Nothing pretrained: Auto still is the default, and says it can only train MFCC here.
    assert at.selectbox(key="tr_feat").value.startswith("Auto")
    assert "Auto can only try MFCC here" in texts(at.info)
    assert not any("Download" in b.label for b in at.button)  # the path set wins over a download
    at.selectbox(key="tr_feat").set_value(EAT).run()
    assert not at.exception, at.exception
    assert "gone.pt" in texts(at.warning) and "which does not exist" in texts(at.warning)
    assert at.button(key=SUBMIT).disabled
    assert not any("Download" in b.label for b in at.button)  # a download would not be used: the path wins


def test_explore_shows_what_efficientat_hears(monkeypatch, efficientat_pt):
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt))
    at = new_app("explore")
    assert "What EfficientAT hears" in texts(at.subheader)
    charts = at.get("plotly_chart")
    assert len(charts) == 7 + 2, texts(at.error)  # the feature figures, then EfficientAT's two
    titles = " ".join(str(c.proto.spec) for c in charts[-2:])
    assert "EfficientAT: top AudioSet classes" in titles and "every 0.32 s" in titles
    assert '"Bird"' in titles  # the demo's first clip: synthesised bird chirps


def test_explore_without_efficientat_says_how_to_get_it():
    at = new_app("explore")
    assert "What EfficientAT hears" in texts(at.subheader)
    assert "is not downloaded yet" in texts(at.info)
    assert any("Download mn04_as" in b.label for b in at.button)
    assert len(at.get("plotly_chart")) == 7 and not at.error


def test_train_fine_tunes_efficientat_from_the_form(monkeypatch, efficientat_pt):
    """The form offers fine-tuning with EfficientAT only; a run started with it trains the last block
    (with mixup from the form too: the fine-tuned blocks' outputs are blended)."""
    import time

    from audioclf.training import run_status, runs

    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt))
    at = new_app("train")
    at.selectbox(key="tr_feat").set_value("MFCC sequence").run()
    assert "tr_finetune" not in [w.key for w in at.selectbox]  # only EfficientAT has blocks to fine-tune
    at.selectbox(key="tr_feat").set_value(EAT).run()
    at.selectbox(key="tr_model").set_value("baseline").run()
    assert at.selectbox(key="tr_finetune").value == 0 and at.select_slider(key="tr_backbone_lr").value == 1e-4
    at.selectbox(key="tr_finetune").set_value(1)
    at.select_slider(key="tr_backbone_lr").set_value(3e-4)
    assert at.selectbox(key="tr_mixup").value == 0.0  # off unless asked for
    at.selectbox(key="tr_mixup").set_value(0.4)
    at.number_input(key="tr_epochs").set_value(1)
    at.button(key=SUBMIT).click().run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    run_id = at.session_state["active_run"]
    deadline = time.time() + 600
    while not (status := run_status(run_id)).final:
        assert time.time() < deadline, f"training did not finish: {status}"
        time.sleep(1)
    assert status.state == "done", status.message
    run = runs.load_run(run_id)
    assert run.config["train"]["finetune_blocks"] == 1 and run.config["features"]["sequence"] == "mel"
    assert run.config["train"]["backbone_learning_rate"] == 3e-4 and run.config["train"]["mixup"] == 0.4
    assert run.metrics["finetune"]["changed_share"] > 0
    at.run()  # the finished run on the Train page, then on the Runs page
    assert not at.exception, at.exception
    assert "Fine-tuning EfficientAT's last block" in texts(at.caption)
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, at.exception
    assert "Fine-tuned EfficientAT's last block" in texts(at.caption), texts(at.caption)


def test_tune_offers_fine_tuning_for_efficientat_unticked(monkeypatch, efficientat_pt):
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt))
    at = new_app("tune")
    at.selectbox(key="tu_feat").set_value("efficientat").run()
    assert not at.exception, at.exception
    space = next(d.value for d in at.dataframe if "setting" in getattr(d.value, "columns", ()))
    rows = {r["setting"]: r for r in space.to_dict("records")}
    assert rows["train.finetune_blocks"]["values"] == "0,1,2" and not rows["train.finetune_blocks"]["vary"]
    assert not rows["train.backbone_learning_rate"]["vary"]


def test_what_efficientat_hears_streams_a_long_clip(monkeypatch, efficientat_pt):
    """Explore's EfficientAT panel ran a long clip through the network whole (issue 21);
    past limits.PREDICT_WHOLE_MAX_SECONDS it goes a piece at a time, like Predict."""
    import io

    import numpy as np
    import soundfile as sf

    from audioclf import limits
    from app_pages import efficientat_panel

    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(efficientat_pt))
    monkeypatch.setattr(limits, "PREDICT_WHOLE_MAX_SECONDS", 2.0)
    monkeypatch.setattr(limits, "PREDICT_PIECE_SECONDS", 2.0)

    def whole(*args, **kwargs):
        raise AssertionError("the long clip was decoded whole")

    monkeypatch.setattr(efficientat_panel, "load_audio", whole)
    t = np.arange(7 * 16000) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.4 * np.sin(2 * np.pi * 880 * t)).astype(np.float32), 16000, format="WAV")
    efficientat_panel.hears.clear()
    got = efficientat_panel.hears(buf.getvalue(), "long.wav")
    assert len(got["names"]) == efficientat_panel.TOP_K and 0 <= min(got["probs"])
    assert len(got["times"]) == len(got["scores"]) and 6.0 < got["times"][-1] < 7.5  # the whole clip
    assert np.all(np.diff(got["times"]) > 0)
