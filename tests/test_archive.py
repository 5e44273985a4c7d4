"""The one safe unzip: hostile zips built here are refused with a clear message and leave
nothing behind; real data-set zips (even of silent clips, which compress ~1000x) unpack."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf import limits, workspace
from audioclf.datasets import ArchiveError, DatasetError, archive, load_dataset, safe_extract


def _wav(freq: float = 440.0, seconds: float = 0.2, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, 0.3 * np.sin(2 * np.pi * freq * t), sr, format="WAV")
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _refused(zpath: Path, dest: Path, match: str) -> None:
    """safe_extract refuses and `dest` gains nothing."""
    before = sorted(dest.rglob("*")) if dest.exists() else None
    with pytest.raises(ArchiveError, match=match):
        safe_extract(zpath, dest)
    after = sorted(dest.rglob("*")) if dest.exists() else None
    assert after == before


def test_a_data_set_zip_unpacks_including_silent_clips(tmp_path):
    silent = io.BytesIO()
    sf.write(silent, np.zeros(8000 * 5, dtype=np.float32), 8000, format="WAV", subtype="PCM_16")
    zpath = _zip(tmp_path / "ok.zip", {"ok/dog/a.wav": _wav(300), "ok/dog/quiet.wav": silent.getvalue(),
                                       "ok/cat/b.wav": _wav(900)})
    with zipfile.ZipFile(zpath) as zf:  # silence compresses far beyond MAX_RATIO: small, so allowed
        quiet = zf.getinfo("ok/dog/quiet.wav")
        assert quiet.file_size / quiet.compress_size > limits.ZIP_MAX_RATIO
    out = safe_extract(zpath, tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == [
        "ok/cat/b.wav", "ok/dog/a.wav", "ok/dog/quiet.wav"]
    assert (out / "ok/dog/quiet.wav").read_bytes() == silent.getvalue()


@pytest.mark.parametrize("member, why", [
    ("../evil.wav", "climbs out"), ("ok/../../evil.wav", "climbs out"), ("..\\evil.wav", "climbs out"),
    ("/tmp/audioclf-evil.wav", "absolute path"), ("C:/evil.wav", "absolute path"),
])
def test_path_traversal_and_absolute_paths_refused(tmp_path, member, why):
    zpath = _zip(tmp_path / "evil.zip", {"data/dog/a.wav": _wav(), member: _wav(500)})
    _refused(zpath, tmp_path / "out", why)
    assert not (tmp_path / "evil.wav").exists() and not Path("/tmp/audioclf-evil.wav").exists()


def test_symlinks_devices_and_encrypted_members_refused(tmp_path):
    for name, mode, flags, why in [("link.wav", 0o120777, 0, "symbolic link"),
                                   ("fifo.wav", 0o010644, 0, "not a regular file"),
                                   ("secret.wav", 0o100644, 0x1, "encrypted")]:
        zpath = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.writestr("dog/a.wav", _wav())
            info = zipfile.ZipInfo(f"dog/{name}")
            info.external_attr = mode << 16
            zf.writestr(info, "/etc/passwd")
        if flags:  # zipfile cannot write encrypted members: set the flag in both headers
            raw = bytearray(zpath.read_bytes())
            for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
                at = raw.rfind(sig)
                raw[at + offset] |= flags
            zpath.write_bytes(bytes(raw))
        _refused(zpath, tmp_path / "out", why)


def test_zip_bomb_by_ratio_refused(tmp_path):
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("dog/huge.wav", bytes(limits.ZIP_RATIO_FREE_BYTES + (1 << 20)))
    assert zpath.stat().st_size < 1 << 20
    _refused(zpath, tmp_path / "out", "zip bomb")


def test_zip_bomb_by_total_size_and_member_count_refused(tmp_path, monkeypatch):
    noise = np.random.default_rng(0).bytes(300_000)  # incompressible: no ratio to catch
    zpath = _zip(tmp_path / "big.zip", {f"dog/{k}.wav": noise for k in range(4)})
    monkeypatch.setattr(limits, "ZIP_MAX_TOTAL_BYTES", 1_000_000)
    _refused(zpath, tmp_path / "out", r"expand to 1.1 MB, more than 1.0 MB")
    monkeypatch.setattr(limits, "ZIP_MAX_TOTAL_BYTES", 8 << 30)
    monkeypatch.setattr(limits, "ZIP_MAX_MEMBERS", 3)
    _refused(zpath, tmp_path / "out", "holds 4 files, more than the 3 allowed")


def test_member_larger_than_declared_refused_and_removed(tmp_path):
    """A member whose headers understate its size (the classic bomb trick) fails its check
    while copying; what was written before it is removed again, `dest` keeps what it had."""
    zpath = _zip(tmp_path / "liar.zip", {"dog/a.wav": _wav(300), "dog/b.wav": _wav(600)})
    raw = bytearray(zpath.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.rfind(sig)  # the last member, dog/b.wav
        struct.pack_into("<I", raw, at + offset, 100)
    zpath.write_bytes(bytes(raw))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("kept")
    with pytest.raises(ArchiveError, match="liar.zip"):
        safe_extract(zpath, dest)
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


def test_not_a_zip_and_missing_zip(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip")
    _refused(bad, tmp_path / "out", "not a valid zip")
    _refused(tmp_path / "missing.zip", tmp_path / "out", "Archive not found")


def test_load_dataset_refuses_a_hostile_zip_and_keeps_nothing(tmp_path):
    zpath = _zip(tmp_path / "sneaky.zip", {"dog/a.wav": _wav(), "cat/b.wav": _wav(900),
                                           "../../escape.wav": _wav()})
    with pytest.raises(DatasetError, match="Refusing to unpack sneaky.zip: member '../../escape.wav'"):
        load_dataset(zpath)
    assert not list(workspace.datasets_dir().glob("*sneaky*"))
    assert not list(workspace.datasets_dir().glob(".sneaky*"))
