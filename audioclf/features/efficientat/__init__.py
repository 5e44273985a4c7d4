"""EfficientAT (Schmid et al., ICASSP 2023): AudioSet MobileNets rebuilt in Keras from the official weights.

    params.py        constants: front end, block table, the official checkpoints
    frontend.py      NumPy front end: 32 kHz waveform -> normalised log-mel (128 x frames)
    checkpoint.py    safe reader of torch.save'd state dicts (no PyTorch): arrays by name
    architecture.py  channel counts and state-dict shapes at a width multiplier (no TensorFlow)
    network.py       the Keras 3 network and loading a state dict into it (imports Keras)

Importing this package does not import TensorFlow.
"""
