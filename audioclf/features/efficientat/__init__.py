"""EfficientAT (Schmid et al., ICASSP 2023): AudioSet MobileNets rebuilt in Keras 3 from the official weights.

No PyTorch anywhere: the official ``.pt`` files are read by a restricted
unpickler, and the network is Keras's::

    from audioclf.features import efficientat

    model = efficientat.load_model("mn04_as")          # official name or .pt path; "" = mn04_as
    emb, logits, seq = model.embed(waveform_32k)       # (384,), (527,), (steps, 384); 0.32 s per step
    efficientat.top_classes(logits, 3)                 # [("Dog", 0.93), ...]

    params.py        constants: front end, block table, the official checkpoints
    frontend.py      NumPy front end: 32 kHz waveform -> normalised log-mel (128 x frames)
    checkpoint.py    safe reader of torch.save'd state dicts: arrays by name
    architecture.py  channel counts and state-dict shapes at a width multiplier
    network.py       the Keras 3 network and loading a state dict into it (imports Keras)
    weights.py       where checkpoints come from: a path, $AUDIOCLF_EFFICIENTAT, the workspace, the release
    model.py         load_model (once per process), embed, labels

``class_labels_indices.csv`` (the 527 AudioSet class names, from the AudioSet
ontology, CC BY-SA 4.0, as distributed with EfficientAT) ships with the package:
the release's checkpoints come without it and every official one shares it.
Importing this package does not import TensorFlow.
"""
from audioclf.features.efficientat.checkpoint import CheckpointError, read_state_dict
from audioclf.features.efficientat.frontend import log_mel
from audioclf.features.efficientat.model import (
    Embedding,
    EfficientATModel,
    audioset_labels,
    embed,
    load_model,
    to_32k,
    top_classes,
)
from audioclf.features.efficientat.params import CHECKPOINTS, DEFAULT_MODEL, SAMPLE_RATE
from audioclf.features.efficientat.weights import (
    EfficientATUnavailable,
    UntrustedCheckpoint,
    availability,
    check_source,
    download_checkpoint,
    resolve_checkpoint,
)

__all__ = [
    "CHECKPOINTS", "DEFAULT_MODEL", "SAMPLE_RATE", "CheckpointError", "EfficientATModel", "EfficientATUnavailable",
    "Embedding", "UntrustedCheckpoint", "audioset_labels", "availability", "check_source", "download_checkpoint", "embed", "load_model", "log_mel",
    "read_state_dict", "resolve_checkpoint", "to_32k", "top_classes",
]
