"""Audio in: load wav/flac/ogg/mp3 from a path or bytes as mono float32 at a chosen rate.

This package only re-exports: opening a file and what can be wrong with it before
decoding live in :mod:`~audioclf.audio.files`; decoding in bounded blocks, mono
mixing, resampling and the silence check in :mod:`~audioclf.audio.decoding`.
What a file may cost is :mod:`audioclf.limits` (``limits.MAX_SECONDS`` and the rest)::

    from audioclf.audio import load_audio

    clip = load_audio("dog.wav", sr=16000)   # Clip(samples=float32 mono in [-1, 1], sr=16000)
"""
from audioclf.audio.decoding import (RESAMPLE_QUALITY, SILENCE_BLOCK, SILENCE_DB, TRUNCATED_MIN_SECONDS,
                                     TRUNCATED_SHARE, Clip, Scan, check_audio, is_silent, is_silent_power,
                                     load_audio, loudest_block_power, resample, stream_audio, stream_pieces)
from audioclf.audio.files import (CONVERT_HINT, KNOWN_UNSUPPORTED, SUPPORTED_EXTENSIONS, AudioError, AudioInfo,
                                  Source, fingerprint, is_utf8_path, printable_path, probe)

__all__ = [
    "CONVERT_HINT", "KNOWN_UNSUPPORTED", "RESAMPLE_QUALITY", "SILENCE_BLOCK", "SILENCE_DB", "SUPPORTED_EXTENSIONS",
    "TRUNCATED_MIN_SECONDS", "TRUNCATED_SHARE", "AudioError", "AudioInfo", "Clip", "Scan", "Source", "check_audio",
    "fingerprint", "is_silent", "is_silent_power", "is_utf8_path", "load_audio", "loudest_block_power",
    "printable_path", "probe", "resample", "stream_audio", "stream_pieces",
]
