"""Fine-tuning EfficientAT's top blocks together with the model on top of it.

    model, info = fit(ModelConfig(), TrainConfig(finetune_blocks=2), train_data, val_data, n_classes,
                      features=EfficientATConfig(sequence="mel"))    # fit() calls build_finetune

The run's features are the network's log-mels (``EfficientATConfig(sequence="mel")``;
``RunConfig`` sets it when ``train.finetune_blocks`` is on). The network's lower
stages stay frozen with their BatchNorm in inference mode, so their output is
computed once per clip and reused every epoch (exact, and the expensive part of the
network is never run backwards). Each epoch trains the top stages, initialised
from the official weights, and the model (the head), the top at
``train.backbone_learning_rate``, the head at ``train.learning_rate``; progress,
early stopping, reduce-LR and cancel are ``training.fit``'s, which trains what
:func:`build_finetune` builds.

The model it returns takes log-mel sequences (frames, 128) and holds the whole
network (lower part, fine-tuned top, head): the run predicts, lives and is
scored through the fine-tuned network. Its layers are registered
(``audioclf>NetworkPart``), so it loads in Keras's safe mode.

A retrain of a fine-tuned run (``initial``, that run's saved model) starts from
that run's fine-tuned top and head, not from the official weights again: a
retrain adds a few corrected clips, and starting over would throw away what the
first run learnt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.building import MODEL_PREFIX, input_stats
from ..model.configs import ModelConfig
from .config import FINETUNE_SEQUENCE, TrainConfig, TrainingError


def backbone_optimizer(learning_rate: float, backbone_learning_rate: float, prefix: str):
    """Adam whose variables under ``prefix`` (the network's trainable part) step at their own rate.

    Only the rate of one variable's update changes, so the schedule (reduce-LR)
    scales both rates alike.
    """
    import keras

    ratio = float(backbone_learning_rate) / float(learning_rate)

    class TwoRateAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            if (getattr(variable, "path", None) or variable.name).startswith(prefix):  # TF: name is path:0
                learning_rate = learning_rate * ratio
            return super().update_step(gradient, variable, learning_rate)

    return TwoRateAdam(float(learning_rate))


@dataclass
class FineTune:
    """What :func:`fit` trains when fine-tuning: the trainee, the model it saves, and the inputs per epoch."""

    trainee: object  # keras.Model: the lower part's output -> top -> head (an ensemble: every member's output)
    model: object  # keras.Model: log-mels -> lower -> top -> head probabilities; what the run saves
    top: object  # the trainable NetworkPart
    network: object  # the EfficientATModel it came from
    train_x: list  # the lower part's output per training clip (the log-mels with blocks=FINETUNE_ALL)
    val_x: list
    frozen_seconds: float  # running the lower part over every clip, once
    warm: dict | None = None  # with an earlier run's model: whether its weights were used, and why

    def record(self, train_cfg: TrainConfig, info: dict) -> dict:
        """metrics.json's "finetune": blocks, rates, the share of the top's weights that moved, timings."""
        from ..model import backbone as parts

        return {"blocks": int(train_cfg.finetune_blocks), "network": self.network.name,
                "backbone_learning_rate": float(train_cfg.backbone_learning_rate),
                "changed_share": round(parts.changed_share(self.top, self.network), 4),
                "frozen_part_seconds": round(self.frozen_seconds, 2),
                "seconds_per_epoch": round(info["train_seconds"] / max(info["epochs_trained"], 1), 2)}


def build_finetune(model_cfg: ModelConfig, train_cfg: TrainConfig, features_cfg, train, val,
                   n_classes: int, initial=None) -> FineTune:
    """Cut the network at ``train_cfg.finetune_blocks``, run its frozen part once, build the compiled trainee.

    `train`/`val` are ``SplitData`` of log-mel sequences (``EfficientATConfig(sequence="mel")``).
    `initial`, an earlier fine-tuned run's model, is where the network and head start when
    its weights fit (``FineTune.warm``: {"used", "why"} as ``warm.warm_start``).
    Keras is seeded and configured by the caller (:func:`fit`).
    """
    import time

    import keras

    from ..model import backbone as parts
    from ..features.efficientat import check_source, load_model
    from ..model.building import build_model, members_view
    from .warm import warm_model

    if getattr(features_cfg, "kind", "") != "efficientat" or features_cfg.sequence != FINETUNE_SEQUENCE:
        raise TrainingError("Fine-tuning trains on EfficientAT's log-mels: the features must be "
                            f"EfficientATConfig(sequence={FINETUNE_SEQUENCE!r}) (RunConfig sets it).")
    if not hasattr(train, "x"):
        raise TrainingError("Fine-tuning EfficientAT trains from the clips, not from a feature store.")
    check_source(features_cfg.model)  # a config may name only trusted checkpoints
    network = load_model(features_cfg.model)
    lower, top = parts.split_network(network, int(train_cfg.finetune_blocks))
    t0 = time.perf_counter()
    has_val = val is not None and len(val) > 0
    train_x = parts.run_part(lower, train.x) if lower is not None else list(train.x)
    val_x = (parts.run_part(lower, val.x) if lower is not None else list(val.x)) if has_val else []
    frozen_seconds = time.perf_counter() - t0
    mel = keras.Input((None, parts.stage_input(network.width, 0)[0]), name="mel")
    heads = {}

    def build(mean, var):  # the whole network; its head standardises the network's sequence
        heads["head"] = head = build_model(model_cfg, top.out_channels, n_classes, mean=mean, variance=var)
        return keras.Model(mel, head(top(lower(mel) if lower is not None else mel)),
                           name=f"{MODEL_PREFIX}_finetuned_{model_cfg.kind}")

    lower_before = lower.get_weights() if lower is not None else []
    mean, var = input_stats(model_cfg, parts.run_part(top, train_x))
    model, warm = warm_model(build, mean, var, initial)
    if lower is not None and not all(np.array_equal(a, b) for a, b in zip(lower_before, lower.get_weights())):
        # The lower part never trains, so an earlier run's is the official one; should the checkpoint
        # have changed since, the inputs are computed again through the lower part the model now holds.
        train_x = parts.run_part(lower, train.x)
        val_x = parts.run_part(lower, val.x) if has_val else []
    view, loss, accuracy = members_view(heads["head"], soft=bool(train_cfg.mixup))
    inputs = keras.Input((None, top.in_freq * top.in_channels), name="efficientat_map")
    trainee = keras.Model(inputs, view(top(inputs)), name=f"{MODEL_PREFIX}_finetune_trainee")
    trainee.compile(optimizer=backbone_optimizer(train_cfg.learning_rate, train_cfg.backbone_learning_rate,
                                                 top.name + "/"),
                    loss=loss, metrics=[accuracy])
    if warm is not None:  # what "new" means here: the official weights
        warm = {**warm, "why": "warm start from the fine-tuned run's network and head" if warm["used"]
                else warm["why"].replace("from scratch", "from the official weights", 1)}
    return FineTune(trainee, model, top, network, train_x, val_x, frozen_seconds, warm)
