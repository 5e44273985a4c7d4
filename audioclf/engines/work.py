"""The unit of extraction work, the same on every engine: decode clips, extract a batch, keep errors.

Ray-free: the local engine and the Ray actors both call these, so a clip gives the
same numbers wherever it is computed.
"""
from __future__ import annotations

from dataclasses import dataclass

from audioclf.audio import AudioError, Clip, fingerprint, load_audio
from audioclf.features import FeatureConfig, FeatureError, Features, extract, target_rate


@dataclass
class Decoded:
    """One manifest row after reading and decoding: a Clip, or the AudioError saying why not."""

    path: str
    clip: Clip | AudioError
    hash: str | None = None
    size: int | None = None
    mtime_ns: int | None = None


def decode(path: str, config: FeatureConfig) -> Decoded:
    """Read a clip (local or URI) once: content hash, size, mtime, samples at the config's rate."""
    from audioclf import limits
    from audioclf.engines.manifest import FileTooLarge, read_clip_bytes

    try:
        # Read whole (one request on object stores): nothing larger than any audio file we accept.
        data, size, mtime = read_clip_bytes(path, max_bytes=limits.ZIP_MAX_MEMBER_BYTES)
    except FileTooLarge as exc:
        return Decoded(path, AudioError(f"'{path}' is {limits.mb(exc.args[0])}, larger than any audio file audioclf reads "
                                        f"({limits.mb(limits.ZIP_MAX_MEMBER_BYTES)}); split it into clips."))
    except FileNotFoundError:
        return Decoded(path, AudioError(f"'{path}' does not exist; check the path."))
    except IsADirectoryError:
        return Decoded(path, AudioError(f"'{path}' is a folder, not an audio file."))
    except OSError as exc:
        return Decoded(path, AudioError(f"'{path}' could not be opened ({exc}); check its permissions."))
    digest = fingerprint(data)
    try:
        clip: Clip | AudioError = load_audio(data, sr=target_rate(config), name=path)
    except AudioError as exc:
        clip = exc
    return Decoded(path, clip, digest, size, mtime)


def extract_clips(clips: list[Clip | AudioError], config: FeatureConfig) -> list[Features | AudioError]:
    """Features of decoded clips, in order; an AudioError (from decoding or extracting) stays one.

    YAMNet and EfficientAT batch all clips in one model call, as the local pool does
    (``load_audio`` has refused empty clips already).
    """
    good = [c for c in clips if isinstance(c, Clip)]
    if config.kind in ("yamnet", "efficientat") and good:
        if config.kind == "yamnet":
            from audioclf.features.yamnet import extract_yamnet_many as extract_batch
        else:
            from audioclf.features.efficientat.features import extract_efficientat_many as extract_batch

        feats = iter(extract_batch(good, config))
        return [c if isinstance(c, AudioError) else next(feats) for c in clips]
    return [c if isinstance(c, AudioError) else extract_one(c, config) for c in clips]


def extract_one(clip: Clip, config: FeatureConfig) -> Features | AudioError:
    """One clip's features, or an AudioError for this clip (a bad config still raises)."""
    try:
        return extract(clip, config)
    except AudioError as exc:
        return exc
    except FeatureError:
        raise
    except Exception as exc:  # noqa: BLE001
        if config.kind in ("yamnet", "efficientat"):
            raise  # a model problem concerns every clip: say it once
        return AudioError(f"'{clip.name}' could not be analysed ({type(exc).__name__}: {exc}); skipping it.")
