"""EfficientAT's constants: the front end, the MobileNetV3 block table, the official checkpoints.

EfficientAT (F. Schmid, K. Koutini, G. Widmer, "Efficient Large-Scale Audio
Tagging via Transformer-to-CNN Knowledge Distillation", ICASSP 2023;
github.com/fschmid56/EfficientAT, MIT licence) distils PaSST into MobileNetV3
CNNs trained on AudioSet. Everything here is a fact about the published models,
so that the front end, the network and the weights agree with them.
"""
from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------- front end (models/preprocess.py, eval mode)
SAMPLE_RATE = 32000
N_FFT = 1024
WIN_LENGTH = 800  # 25 ms, a symmetric Hann window zero-padded to N_FFT in the middle
HOP_LENGTH = 320  # 10 ms per mel frame
N_MELS = 128
FMIN = 0.0
FMAX = 15000.0
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
NORM_SHIFT = 4.5  # the official "fast normalisation": (log_mel + 4.5) / 5
NORM_SCALE = 5.0

# ---------------------------------------------------------------- network (models/mn/*.py)
NUM_CLASSES = 527  # AudioSet
BN_EPSILON = 1e-3
SE_REDUCTION = 4  # squeeze-excitation bottleneck = channels / 4, rounded to a multiple of 8
CHANNEL_DIVISOR = 8
STEM_CHANNELS = 16
STEM_KERNEL = 3
STEM_STRIDE = 2
LAST_CONV_EXPANSION = 6  # features.16 has 6x the last block's channels
HEAD_CHANNELS = 1280  # hidden units of the head at width 1.0
DROPOUT = 0.2

# MobileNetV3-large's inverted residual blocks (features.1 ... features.15) at width 1.0:
# (input channels, kernel, expanded channels, output channels, squeeze-excitation, activation, stride)
BLOCKS = (
    (16, 3, 16, 16, False, "relu", 1),
    (16, 3, 64, 24, False, "relu", 2),
    (24, 3, 72, 24, False, "relu", 1),
    (24, 5, 72, 40, True, "relu", 2),
    (40, 5, 120, 40, True, "relu", 1),
    (40, 5, 120, 40, True, "relu", 1),
    (40, 3, 240, 80, False, "hard_swish", 2),
    (80, 3, 200, 80, False, "hard_swish", 1),
    (80, 3, 184, 80, False, "hard_swish", 1),
    (80, 3, 184, 80, False, "hard_swish", 1),
    (80, 3, 480, 112, True, "hard_swish", 1),
    (112, 3, 672, 112, True, "hard_swish", 1),
    (112, 5, 672, 160, True, "hard_swish", 2),
    (160, 5, 960, 160, True, "hard_swish", 1),
    (160, 5, 960, 160, True, "hard_swish", 1),
)
# The stem and four blocks halve both axes: one sequence step per 32 mel frames (0.32 s).
TIME_REDUCTION = 32
SEQUENCE_HOP_SECONDS = TIME_REDUCTION * HOP_LENGTH / SAMPLE_RATE

# ---------------------------------------------------------------- checkpoints (release v0.0.1)
RELEASE_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
DEFAULT_MODEL = "mn04_as"


@dataclass(frozen=True)
class Checkpoint:
    """One official AudioSet checkpoint: its name, width multiplier, release file and mAP.

    ``sha256`` is None where no checksum has been published or measured here: such
    a download is accepted when it reads as a checkpoint whose tensors fit the
    network at ``width`` (see ``weights.verify``), not by checksum.
    """

    name: str
    width: float
    filename: str
    audioset_map: float
    sha256: str | None = None

    @property
    def url(self) -> str:
        return RELEASE_URL + self.filename


CHECKPOINTS = {c.name: c for c in (
    Checkpoint("mn01_as", 0.1, "mn01_as_mAP_298.pt", 0.298),
    Checkpoint("mn02_as", 0.2, "mn02_as_mAP_378.pt", 0.378),
    Checkpoint("mn04_as", 0.4, "mn04_as_mAP_432.pt", 0.432,
               "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"),
    Checkpoint("mn05_as", 0.5, "mn05_as_mAP_443.pt", 0.443),
    Checkpoint("mn10_as", 1.0, "mn10_as_mAP_471.pt", 0.471),
    Checkpoint("mn20_as", 2.0, "mn20_as_mAP_478.pt", 0.478),
    Checkpoint("mn30_as", 3.0, "mn30_as_mAP_482.pt", 0.482),
    Checkpoint("mn40_as", 4.0, "mn40_as_mAP_484.pt", 0.484),
)}
WIDTHS = tuple(sorted({c.width for c in CHECKPOINTS.values()}))
LABELS_FILE = "class_labels_indices.csv"  # index,mid,display_name of the 527 AudioSet classes
