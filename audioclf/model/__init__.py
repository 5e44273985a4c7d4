"""Models: configs (:mod:`~audioclf.model.configs`), the numpy input contract
(:mod:`~audioclf.model.sequences`), the Keras builders (:mod:`~audioclf.model.building`)
and the custom Keras layers (:mod:`~audioclf.model.layers`, not imported here: it imports TensorFlow)."""
from audioclf.model.building import build_model, configure_tensorflow, input_stats, members_view, predict_proba
from audioclf.model.configs import ModelConfig, ModelError
from audioclf.model.sequences import pad_sequences, padded_length

__all__ = ["ModelConfig", "ModelError", "build_model", "configure_tensorflow", "input_stats", "members_view",
           "pad_sequences", "padded_length", "predict_proba"]
