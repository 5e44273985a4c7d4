"""Feature extraction: configs, the :class:`Features` result, ``extract`` and the cached ``extract_many``.

This package only re-exports: configs live in :mod:`~audioclf.features.configs`,
extraction in :mod:`~audioclf.features.extract`, the feature cache in
:mod:`~audioclf.features.cache`; librosa frame features in ``spectral`` and
YAMNet in ``yamnet``, EfficientAT in ``efficientat`` (imported when a feature is computed)::

    from audioclf.audio import load_audio
    from audioclf.features import MFCCConfig, extract, summarize

    feats = extract(load_audio("dog.wav"), MFCCConfig())
    summarize(feats.values)   # (40,) clip-level mean and std
"""
from audioclf.audio import AudioError
from audioclf.features.configs import (CONFIG_TYPES, FEATURE_VERSION, EfficientATConfig, FeatureConfig, FeatureError,
                                       MFCCConfig, SpectralConfig, YAMNetConfig, config_from_dict, config_key,
                                       config_to_dict)
from audioclf.features.extract import Features, extract, extract_file, summarize, summary_names, target_rate
# Last: cache and parallel import the names above from this package.
from audioclf.features.cache import CacheStats, extract_many  # noqa: E402

__all__ = [
    "AudioError",
    "CacheStats",
    "CONFIG_TYPES",
    "EfficientATConfig",
    "FEATURE_VERSION",
    "FeatureConfig",
    "FeatureError",
    "Features",
    "MFCCConfig",
    "SpectralConfig",
    "YAMNetConfig",
    "config_from_dict",
    "config_key",
    "config_to_dict",
    "extract",
    "extract_file",
    "extract_many",
    "summarize",
    "summary_names",
    "target_rate",
]
