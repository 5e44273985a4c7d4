"""What defines a training run: TrainConfig (optimiser and schedule) and RunConfig.

    from audioclf.training.config import RunConfig, TrainConfig
    cfg = RunConfig(dataset="fsdd", split=SplitConfig(), features=MFCCConfig(),
                    model=ModelConfig(), train=TrainConfig(epochs=20))
    RunConfig.from_dict(cfg.to_dict()) == cfg

Plain frozen dataclasses, checked on construction; no TensorFlow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from ..errors import AudioclfError
from ..model.configs import ModelConfig
from .defaults import AUTO, AutoFeatures, model_defaults, train_values



FINETUNE_ALL = 16  # finetune_blocks that trains the whole network: its 15 blocks and the stem
FINETUNE_SEQUENCE = "mel"  # a fine-tuning run's EfficientAT features: the network's own input
MAX_AVERAGE_EPOCHS = 25  # TrainConfig.average_epochs: each kept epoch holds a copy of the weights
MAX_MIXUP = 10.0  # Beta(10, 10) already blends nearly half and half; more means nothing new


class TrainingError(AudioclfError):
    """A training run that cannot start or go on; message is for people."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule: Adam learning rate, batch size, epochs, early stopping."""

    learning_rate: float = 3e-3
    batch_size: int = 32
    epochs: int = 40
    patience: int | None = 10  # None: no early stopping, keep the last epoch
    # Early stopping neither stops nor picks its best epoch before this one: on small
    # validation sets the loss often bottoms out in the first epochs while held-out
    # F1 still rises (docs/RESULTS.md, "Spoken digits (FSDD), the MFCC defaults").
    min_epochs: int = 15
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
    # EfficientAT features only: train the network's last N blocks (and its last
    # convolution) with the model, at backbone_learning_rate (a pretrained network
    # wants smaller steps than a new head); 0 keeps it frozen, FINETUNE_ALL trains all of it.
    finetune_blocks: int = 0
    backbone_learning_rate: float = 1e-4
    # The final weights are the mean of this many epochs' weights centred on the best
    # epoch (0: the best epoch's alone). Which epoch scores best on a few validation
    # clips is partly chance; an average of its neighbours sits nearer the middle of
    # the basin they share. Needs validation and early stopping; kept only when it
    # scores no worse on the validation clips than the best epoch.
    average_epochs: int = 0
    # Mixup: every training batch blends each clip with another one of the batch, targets
    # alike, the blend weight drawn from Beta(mixup, mixup) (0: off). Teaches the head that
    # between two sounds lies a mixture, not a sharp edge; EfficientAT's networks were
    # themselves trained with it. With fine-tuning the frozen part's outputs are blended.
    mixup: float = 0.0

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
        if not 0 <= int(self.finetune_blocks) <= FINETUNE_ALL:
            raise TrainingError(f"Fine-tune 0 (the network frozen) to {FINETUNE_ALL - 1} of EfficientAT's blocks, "
                                f"or {FINETUNE_ALL} for all of it; got {self.finetune_blocks}.")
        object.__setattr__(self, "finetune_blocks", int(self.finetune_blocks))
        if not 0 < float(self.backbone_learning_rate) <= 1:
            raise TrainingError(f"Backbone learning rate must be in (0, 1], got {self.backbone_learning_rate}.")
        if not 0 <= int(self.average_epochs) <= MAX_AVERAGE_EPOCHS:
            raise TrainingError(f"Weight averaging takes 0 (off) to {MAX_AVERAGE_EPOCHS} epochs, "
                                f"got {self.average_epochs}.")
        object.__setattr__(self, "average_epochs", int(self.average_epochs))
        try:
            mixup = float(self.mixup)
        except (TypeError, ValueError):
            mixup = -1.0
        if not 0 <= mixup <= MAX_MIXUP:
            raise TrainingError(f"Mixup's alpha must be 0 (off) to {MAX_MIXUP:g}, got {self.mixup!r}.")
        object.__setattr__(self, "mixup", mixup)
        if self.reduce_lr is not None and int(self.reduce_lr) < 1:
            raise TrainingError(f"Reduce-LR patience must be at least 1 epoch (or none), got {self.reduce_lr}.")


def train_defaults(feature_kind: str, **overrides: Any) -> TrainConfig:
    """The TrainConfig a `feature_kind` run starts from (`overrides` on top, e.g. seed=1)."""
    return TrainConfig(**{**train_values(feature_kind), **overrides})


def resolve_settings(feature_kind: str, overrides: Mapping[str, Any] = ()) -> tuple[ModelConfig, TrainConfig]:
    """The defaults of `feature_kind` with the values a user set by hand on top.

    `overrides` maps "model.<field>" / "train.<field>" to values ("model.kind"
    picks the model kind, whose defaults come first); they are kept whatever the
    feature type, so switching features never undoes a user's choice.
    """
    overrides = dict(overrides)
    model_over = {k[6:]: v for k, v in overrides.items() if k.startswith("model.")}
    train_over = {k[6:]: v for k, v in overrides.items() if k.startswith("train.")}
    bad = sorted([k for k in overrides if not k.startswith(("model.", "train."))]
                 + [f"model.{k}" for k in model_over if k not in {f.name for f in fields(ModelConfig)}]
                 + [f"train.{k}" for k in train_over if k not in {f.name for f in fields(TrainConfig)}])
    if bad:
        raise TrainingError(f"Unknown setting(s) {', '.join(bad)}; names are 'model.<field>' of ModelConfig "
                            "or 'train.<field>' of TrainConfig.")
    base = model_defaults(feature_kind, model_over.pop("kind", None))
    return replace(base, **model_over), train_defaults(feature_kind, **train_over)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; JSON round-trips with to_dict/from_dict.

    `model` / `train` left as None take the defaults of the feature type
    (:mod:`audioclf.training.defaults`) with `overrides` ({"model.dropout": 0.3, ...}, the
    values a user set by hand) on top. With ``features=AutoFeatures()`` they stay
    None until training has chosen the feature type (see :meth:`resolved`).
    """

    dataset: str
    split: Any  # datasets.SplitConfig
    features: Any  # features.FeatureConfig or defaults.AutoFeatures
    model: ModelConfig | None = None
    train: TrainConfig | None = None
    name: str = ""
    overrides: Any = ()  # {"model.<field>" | "train.<field>": value}; stored as sorted pairs

    def __post_init__(self) -> None:
        pairs = self.overrides.items() if isinstance(self.overrides, Mapping) else (self.overrides or ())
        object.__setattr__(self, "overrides", tuple(sorted((str(k), _frozen(v)) for k, v in pairs)))
        if self.model is not None and not isinstance(self.model, ModelConfig):
            raise TrainingError("RunConfig.model must be a ModelConfig (or None for the feature type's defaults).")
        if self.train is not None and not isinstance(self.train, TrainConfig):
            raise TrainingError("RunConfig.train must be a TrainConfig (or None for the feature type's defaults).")
        if not self.is_auto:
            model, train = resolve_settings(self.features.kind, dict(self.overrides))
            object.__setattr__(self, "model", self.model or model)
            object.__setattr__(self, "train", self.train or train)
        self._check_finetune()

    def _check_finetune(self) -> None:
        """Fine-tuning needs EfficientAT, whose features are then its log-mels (the model holds the network)."""
        blocks = self.train.finetune_blocks if self.train is not None \
            else dict(self.overrides).get("train.finetune_blocks", 0)
        if not blocks:
            return
        kind = getattr(self.features, "kind", None)
        if kind != "efficientat":
            raise TrainingError("Fine-tuning trains EfficientAT's blocks: choose EfficientAT features "
                                f"(not {'Auto' if self.is_auto else kind}) or fine-tune 0 blocks.")
        if self.features.yamnet is not None:
            raise TrainingError("Fine-tuning trains EfficientAT on its own input: turn off hearing through "
                                "YAMNet as well, or fine-tune 0 blocks.")
        if self.features.sequence != FINETUNE_SEQUENCE:
            object.__setattr__(self, "features", replace(self.features, sequence=FINETUNE_SEQUENCE))

    @property
    def finetunes(self) -> bool:
        """True when the run trains EfficientAT's top blocks with its model."""
        return self.train is not None and self.train.finetune_blocks > 0

    @property
    def is_auto(self) -> bool:
        """True while the feature type is still to be chosen (features=AutoFeatures)."""
        return getattr(self.features, "kind", None) == AUTO

    def resolved(self, features) -> "RunConfig":
        """This config with a concrete feature config (the type Auto chose) and its defaults."""
        return replace(self, features=features)

    def to_dict(self) -> dict:
        from ..features import config_to_dict

        return {"name": self.name, "dataset": str(self.dataset), "split": asdict(self.split),
                "features": self.features.to_dict() if self.is_auto else config_to_dict(self.features),
                "model": self.model.to_dict() if self.model is not None else None,
                "train": ({**asdict(self.train), "warp_augment": list(self.train.warp_augment)}
                          if self.train is not None else None),
                "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides}}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        from ..datasets import SplitConfig
        from ..features import config_from_dict

        try:
            feats = d["features"]
            features = (AutoFeatures(**{k: v for k, v in feats.items() if k != "kind"})
                        if isinstance(feats, dict) and feats.get("kind") == AUTO else config_from_dict(feats))
            model = d.get("model", {})
            train = d.get("train", {})
            return cls(dataset=d["dataset"], split=SplitConfig(**d.get("split", {})), features=features,
                       model=ModelConfig.from_dict(model) if model is not None else None,
                       # A run saved before min_epochs existed watched every epoch: keep its meaning.
                       train=TrainConfig(**{"min_epochs": 0, **train}) if train is not None else None,
                       name=d.get("name", ""), overrides=d.get("overrides") or ())
        except KeyError as e:
            raise TrainingError(f"Run config is missing {e.args[0]!r}.") from None
        except TypeError as e:
            raise TrainingError(f"Run config has an unknown setting: {e}.") from None
