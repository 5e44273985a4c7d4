"""TrainConfig.average_epochs: the mean of the weights around the best epoch, kept only if no worse."""
from __future__ import annotations

import json

import numpy as np
import pytest

from audioclf.cli import build_parser, train_config
from audioclf.datasets import SplitConfig
from audioclf.features import MFCCConfig
from audioclf.model import ModelConfig
from audioclf.model.sequences import SplitData
from audioclf.training import RunConfig, TrainConfig, TrainingError
from audioclf.training.config import MAX_AVERAGE_EPOCHS


def test_average_epochs_is_checked_round_trips_and_has_a_cli_option():
    for bad in (-1, MAX_AVERAGE_EPOCHS + 1):
        with pytest.raises(TrainingError, match="Weight averaging"):
            TrainConfig(average_epochs=bad)
    cfg = RunConfig(dataset="x", split=SplitConfig(), features=MFCCConfig(), model=ModelConfig(),
                    train=TrainConfig(average_epochs=5))
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    args = build_parser().parse_args(["train", "somewhere", "--features", "mfcc", "--average-epochs", "3"])
    assert train_config(args).average_epochs == 3
    old = cfg.to_dict()
    del old["train"]["average_epochs"]  # a run saved before the option: the best epoch's weights
    assert RunConfig.from_dict(old).train.average_epochs == 0


def _line_model():
    """y = w * x with a squared-error loss: the validation loss is (w - 2)^2 * mean(x^2)."""
    import keras

    from audioclf.model.building import configure_tensorflow

    configure_tensorflow()
    inp = keras.Input((1,))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False)(inp))
    model.compile(loss="mse")
    x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]
    import tensorflow as tf

    return model, tf.data.Dataset.from_tensor_slices((x, 2 * x)).batch(8)


def _keep_all(avg, model, ws_by_epoch, losses):
    for epoch, (w, loss) in enumerate(zip(ws_by_epoch, losses), start=1):
        model.layers[-1].kernel.assign([[w]])
        avg.keep(epoch, loss, model)


@pytest.mark.parametrize("around, used", [((1.0, 3.0), True),   # either side of the optimum: the mean is nearer
                                          ((4.0, 5.0), False)])  # both beyond the best: the mean is worse
def test_the_mean_of_the_window_is_installed_only_when_it_scores_no_worse(around, used):
    from audioclf.training.fit import EpochWeights

    model, val = _line_model()
    avg = EpochWeights(3, min_epochs=0)
    best_w = 2.6  # epoch 3 is the best; epochs 2 and 4 sit either side of it
    ws = [9.0, around[0], best_w, around[1], 8.0]
    _keep_all(avg, model, ws, [(w - 2) ** 2 for w in ws])
    model.layers[-1].kernel.assign([[best_w]])  # what early stopping restored
    record = avg.install(model, 3, val, "val_loss")
    w = float(model.layers[-1].kernel.numpy()[0, 0])
    assert record["epochs"] == 3 and record["used"] is used
    assert w == pytest.approx(np.mean([around[0], best_w, around[1]]) if used else best_w)
    assert (record["averaged"] <= record["best"]) is used


def test_only_epochs_that_can_fall_in_a_window_are_kept():
    from audioclf.training.fit import EpochWeights

    model, _ = _line_model()
    avg = EpochWeights(5, min_epochs=4)
    ws = [9.0, 8.0, 7.0, 6.0, 3.0, 2.5, 2.1, 2.4, 2.8, 3.0, 3.5, 4.0, 5.0]
    _keep_all(avg, model, ws, [(w - 2) ** 2 for w in ws])
    assert avg.best_epoch == 7  # never before min_epochs
    assert sorted(avg.kept) == list(range(5, 14))  # from best - 2 on: later bests' windows start later


def _task(seed, n=48):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = [(rng.normal(size=(10, 4)) + y[i]).astype(np.float32) for i in range(n)]
    return SplitData(x, y, [str(i) for i in range(n)])


def test_fit_reports_the_average_and_the_model_holds_what_it_says():
    from audioclf.model.building import predict_proba
    from audioclf.training import fit

    tiny = ModelConfig(kind="gru", rnn_units=(8,), dense_units=(), time_mask=0, feature_mask=0)
    train, val = _task(0), _task(1)
    cfg = TrainConfig(epochs=12, patience=4, min_epochs=3, batch_size=16, average_epochs=3)
    model, info = fit(tiny, cfg, train, val, 3)
    record = info["weight_average"]
    assert record["epochs"] >= 2 and isinstance(record["used"], bool)
    probs = predict_proba(model, val.x)
    loss = float(-np.mean(np.log(probs[np.arange(len(val.y)), val.y])))
    assert loss == pytest.approx(record["averaged"] if record["used"] else record["best"], rel=1e-3)
    # Without validation clips there is nothing to check an average on: the best epoch's weights.
    _, info = fit(tiny, cfg, train, None, 3)
    assert "weight_average" not in info
