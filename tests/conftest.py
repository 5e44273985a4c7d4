"""Shared pytest fixtures: the workspace, ../shared, and small synthesised audio."""
from __future__ import annotations

import os
from pathlib import Path

try:
    # Before anything loads TensorFlow: pylibsrtp (WebRTC, imported by the app's Live page in
    # AppTest's process) crashes when it initialises after TensorFlow. app.py does the same.
    import pylibsrtp  # noqa: F401
except ImportError:
    pass
import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


SHARED_HELP = (
    "needs ../shared (models/yamnet, datasets/fsdd, datasets/esc10) beside the repository, "
    "or AUDIOCLF_SHARED set to a folder holding them"
)


def _shared_dir() -> Path:
    return Path(os.environ.get("AUDIOCLF_SHARED", ROOT.parent / "shared")).resolve()


def _shared(*parts: str) -> Path:
    """A path in ../shared; the test is skipped, saying how to get it, when it is not there."""
    path = _shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{SHARED_HELP}; {path} not found")
    return path


def _train_in(home: Path, cfg) -> str:
    """Train `cfg` into the session workspace `home`, whatever AUDIOCLF_HOME the module that first
    asks for a session run has set: later modules look for the session's runs there."""
    from audioclf.training import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOCLF_HOME", str(home))
        return train(cfg)


@pytest.fixture(scope="session", autouse=True)
def workspace_home(tmp_path_factory) -> Path:
    """Every test session writes into its own workspace, never ./workspace."""
    home = tmp_path_factory.mktemp("workspace")
    os.environ["AUDIOCLF_HOME"] = str(home)
    return home


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where browser tests save screenshots: $AUDIOCLF_SCREENSHOTS (e.g. docs/screenshots) or a tmp folder."""
    folder = os.environ.get("AUDIOCLF_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $AUDIOCLF_SHARED); tests that need it are skipped without it."""
    return _shared()


@pytest.fixture(scope="session")
def fsdd_dir(shared_dir) -> Path:
    """The Free Spoken Digit Dataset: <digit>/<digit>_<speaker>_<take>.wav, 3,000 clips at 8 kHz."""
    return _shared("datasets", "fsdd")


@pytest.fixture(scope="session")
def esc10_dir(shared_dir) -> Path:
    """ESC-10: <class>/<fold>-<freesound id>-<take>-<target>.flac, 400 clips of 5 s at 44.1 kHz."""
    return _shared("datasets", "esc10")


@pytest.fixture(scope="session")
def yamnet_tflite(shared_dir, workspace_home) -> Path:
    """The YAMNet TFLite model, linked (with its class map) into the session workspace's models folder.

    A config may name a YAMNet model only there, as $AUDIOCLF_YAMNET or on TF Hub (issue 21, major 7),
    as an owner would put it; not at models/yamnet/, so YAMNet's default stays "not set up".
    """
    source = _shared("models", "yamnet", "yamnet.tflite")
    folder = workspace_home / "models" / "shared-yamnet"
    folder.mkdir(parents=True, exist_ok=True)
    for file in (source, source.with_name("yamnet_class_map.csv")):
        if not (folder / file.name).is_symlink():
            (folder / file.name).symlink_to(file)
    return folder / source.name


@pytest.fixture(scope="session")
def efficientat_pt(shared_dir, workspace_home) -> Path:
    """The official EfficientAT mn04_as checkpoint (a torch.save zip, MIT licence), linked into the
    session workspace's models folder: a config may name a checkpoint only there (issue 21, major 7)."""
    source = _shared("models", "efficientat", "mn04_as_mAP_432.pt")
    folder = workspace_home / "models" / "shared-efficientat"
    folder.mkdir(parents=True, exist_ok=True)
    for file in source.parent.iterdir():  # its label list and licence beside it, as in the release
        if file.is_file() and not (folder / file.name).is_symlink():
            (folder / file.name).symlink_to(file)
    return folder / source.name


@pytest.fixture(scope="session")
def efficientat_reference(efficientat_pt) -> Path:
    """What the official PyTorch EfficientAT gives for six inputs (index.json lists them)."""
    return _shared("models", "efficientat", "reference")


@pytest.fixture(scope="session")
def fsdd_small(fsdd_dir, tmp_path_factory) -> Path:
    """A small FSDD subset (3 digits x 3 speakers x 4 takes) as a class-folder data set."""
    dest = tmp_path_factory.mktemp("fsdd_small")
    for digit in ("0", "1", "2"):
        (dest / digit).mkdir()
        for speaker in ("george", "jackson", "lucas"):
            for take in range(4):
                name = f"{digit}_{speaker}_{take}.wav"
                (dest / digit / name).symlink_to(fsdd_dir / digit / name)
    return dest


def tone(freq: float, seconds: float = 1.0, sr: int = 16000, amp: float = 0.5) -> np.ndarray:
    """A sine tone, float32."""
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def wav_file(tmp_path) -> Path:
    """A 1 s 440 Hz mono wav at 16 kHz."""
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440.0), 16000)
    return path


@pytest.fixture(scope="session")
def trained_run(fsdd_small, workspace_home) -> str:
    """One small real training run (MFCC + GRU on `fsdd_small`), shared by the engine tests."""
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig

    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=MFCCConfig(), name="fixture",
                    model=ModelConfig(kind="gru", rnn_units=(16,), dense_units=(16,)),
                    train=TrainConfig(epochs=4, patience=None, batch_size=8, learning_rate=3e-3,
                                      warp_augment=()))  # no warped copies: 3x the data
    return _train_in(workspace_home, cfg)


@pytest.fixture(scope="session")
def eat_demo_run(workspace_home, efficientat_pt, tmp_path_factory) -> str:
    """A small real run on the synthesised demo set (8 clips per class): EfficientAT + dense baseline."""
    from audioclf.datasets import SplitConfig, make_demo_dataset
    from audioclf.features import EfficientATConfig
    from audioclf.training import RunConfig

    root = make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo8", clips_per_class=8)
    cfg = RunConfig(dataset=str(root), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=EfficientATConfig(model=str(efficientat_pt)), name="demo efficientat",
                    overrides={"model.kind": "baseline", "train.epochs": 15, "train.patience": None})
    return _train_in(workspace_home, cfg)


@pytest.fixture(scope="session")
def demo_run(workspace_home, yamnet_tflite) -> str:
    """A small real run on the synthesised demo data set (8 clips per class): YAMNet + dense baseline.

    YAMNet hears the demo's sirens, tones and rain at once, so a few epochs make a
    confident model in seconds; the live, presentation and read-only tests share it.
    """
    from audioclf.datasets import SplitConfig, make_demo_dataset
    from audioclf.features import YAMNetConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig

    root = make_demo_dataset(workspace_home / "datasets" / "demo8", clips_per_class=8)
    cfg = RunConfig(dataset=str(root), split=SplitConfig(val=0.25, test=0.25, seed=0),
                    features=YAMNetConfig(model=str(yamnet_tflite)), name="demo yamnet",
                    model=ModelConfig(kind="baseline", dense_units=(32,)),
                    train=TrainConfig(epochs=15, patience=None, batch_size=8, learning_rate=3e-3))
    return _train_in(workspace_home, cfg)

