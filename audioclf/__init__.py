"""audioclf: classify sounds without writing code.

The front door names what a library user needs first; each is imported on
first use, so ``import audioclf`` stays light (no TensorFlow, no librosa)::

    import audioclf
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig

    ds = audioclf.load_dataset("fsdd/")                     # a folder of class folders, a zip, a CSV...
    report = audioclf.check_dataset(ds)                     # duplicates, leakage, likely mislabelled clips
    run_id = audioclf.train(audioclf.RunConfig(dataset="fsdd/", split=SplitConfig(), features=MFCCConfig()))
    audioclf.Predictor.load(run_id).predict_files(["dog.wav"])

The packages, one per capability: `audio`, `features`, `datasets`, `model`,
`training`, `evaluation`, `tuning`, `inference`, `export`, `insight` and the
command line `cli` (docs/ARCHITECTURE.md maps them). The library never imports
Streamlit; TensorFlow is imported only where a model is needed.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_FRONT_DOOR = {
    "load_dataset": "audioclf.datasets.loading",
    "RunConfig": "audioclf.training.config",
    "train": "audioclf.training.run",
    "Predictor": "audioclf.inference.predict",
    "check_dataset": "audioclf.insight.health",
}

__all__ = ["__version__", *_FRONT_DOOR]


def __getattr__(name: str) -> Any:
    if name in _FRONT_DOOR:
        value = getattr(importlib.import_module(_FRONT_DOOR[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'audioclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FRONT_DOOR])
