"""A warm start: a new model that begins where a trained one of the same architecture ended.

    model, warm = warm_model(lambda m, v: build_model(cfg, dims, k, mean=m, variance=v), mean, var, initial)

Used by ``fit`` (a retrain on a grown data set) and ``finetune`` (a retrain of a
fine-tuned run). Keras is only touched through the models it is given.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def warm_model(build: Callable, mean: np.ndarray, var: np.ndarray, initial):
    """(model, warm): `build(mean, var)` started from `initial` where it fits, else as new.

    `mean`/`var` are the standardisation of a new model (their shape says whether
    `initial`'s fits); a warm start keeps `initial`'s instead (a Normalization's
    statistics are part of its config, not its weights), so the retrained model reads
    its inputs the way the weights it starts from learned them. `warm` is None
    without `initial`, else :func:`warm_start`'s record.
    """
    if initial is None:
        return build(mean, var), None
    old = standardisation(initial)
    if old is not None and old[0].shape == np.shape(mean):
        model = build(*old)
        warm = warm_start(model, initial)
        if warm["used"]:
            return model, warm
    else:
        warm = {"used": False, "why": "from scratch: the current model's layers do not match this "
                                      "configuration's"}
    return build(mean, var), warm


def standardisation(model) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, variance) of the "standardize" layer of a model ``build_model`` made (nested too), or None."""
    import keras

    for layer in model.layers:
        if layer.name == "standardize" and getattr(layer, "input_mean", None) is not None:
            return (np.asarray(layer.input_mean, np.float32).reshape(-1),
                    np.asarray(layer.input_variance, np.float32).reshape(-1))
        if isinstance(layer, keras.Model):
            found = standardisation(layer)
            if found is not None:
                return found
    return None


def warm_start(model, initial) -> dict:
    """Copy `initial`'s weights into `model` when every weight has the same shape.

    Weights only: :func:`warm_model` builds `model` with `initial`'s standardisation.
    Returns {"used", "why"}.
    """
    new, old = [tuple(w.shape) for w in model.weights], [tuple(w.shape) for w in initial.weights]
    if new != old:
        return {"used": False, "why": "from scratch: the current model's layers do not match this "
                                      "configuration's"}
    model.set_weights(initial.get_weights())
    return {"used": True, "why": "warm start from the current model's weights"}
