"""Hostile inputs (issue 21): what a visitor of a shared demo could upload to take the
server down, made here, each refused with a clear message or handled in bounded memory.

Sections follow the issue's items; every test's docstring names its item. Big files are
built once per session (tmp) by the fixtures below. Peak memory is measured in a child
process (its own high-water mark), so one test's allocations cannot hide another's.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf import limits
from audioclf.audio import AudioError, check_audio, load_audio, probe

ROOT = Path(__file__).resolve().parents[1]
GB = 1 << 30
MB = 1 << 20
SERVER_BUDGET = 1.5 * GB  # issue 21: the server's peak stays under this


# ---------------------------------------------------------------- helpers

def measured(code: str, timeout: float = 300) -> tuple[object, float]:
    """Run `code` (which sets `result`) in a fresh Python; (result, its peak RSS in bytes).

    The peak is VmHWM, the high-water mark of the child's own memory since exec:
    ru_maxrss would carry over the parent's RSS from the fork (vfork) that started it.
    """
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json
        with open("/proc/self/status") as _f:
            _peak = next(int(ln.split()[1]) * 1024 for ln in _f if ln.startswith("VmHWM:"))
        print("@@RESULT@@" + _json.dumps({"result": result, "peak": _peak}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")), None)
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[len("@@RESULT@@"):])
    return out["result"], float(out["peak"])


def app_measured(steps: str, home: Path, timeout: float = 600, **env: str) -> tuple[object, float]:
    """Drive the real app (AppTest) in a child with workspace `home`; `steps` use `at` and set
    `result`. Returns (result, the child's peak RSS): the server's memory for those steps."""
    code = f"""
        import os
        os.environ["AUDIOCLF_HOME"] = {str(home)!r}
        os.environ.update({env!r})
        import pylibsrtp  # noqa: F401  (before TensorFlow, as app.py does)
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout={timeout})
        at.run()
        def texts(elements):
            return " ".join(str(e.value) for e in elements)
    """
    return measured(textwrap.dedent(code) + textwrap.dedent(steps), timeout=timeout)


def baseline_peak() -> float:
    """Peak RSS of a child that only imports what `measured` children import for audio."""
    return measured("import numpy, soundfile, soxr, audioclf.audio; result = None")[1]


def _crc_table(poly: int, bits: int) -> list[int]:
    top, mask, table = 1 << (bits - 1), (1 << bits) - 1, []
    for i in range(256):
        c = i << (bits - 8)
        for _ in range(8):
            c = ((c << 1) ^ poly) & mask if c & top else (c << 1) & mask
        table.append(c)
    return table


_CRC8, _CRC16 = _crc_table(0x07, 8), _crc_table(0x8005, 16)


def _utf8_number(n: int) -> bytes:
    """FLAC's frame number coding (UTF-8's scheme, extended to 36 bits)."""
    if n < 0x80:
        return bytes([n])
    tail, lead, room = [], 0x80, 0x3F
    while n > room >> 1:
        tail.append(0x80 | (n & 0x3F))
        n >>= 6
        lead = (lead >> 1) | 0x80
        room >>= 1
    return bytes([lead | n, *reversed(tail)])


def write_silent_flac(path: Path, sr: int, channels: int, seconds: float, block: int = 4096) -> Path:
    """A valid FLAC of digital silence: every subframe CONSTANT 0, as libFLAC writes silence.

    libsndfile takes ~20 s to encode the 599 s bomb; writing the same stream directly takes
    half a second. (test_crafted_flac_is_a_valid_stream checks libsndfile decodes it.)
    """
    total = int(round(sr * seconds))
    streaminfo = struct.pack(">HH", block, block) + bytes(6)
    streaminfo += ((sr << 44) | ((channels - 1) << 41) | (15 << 36) | total).to_bytes(8, "big") + bytes(16)
    subframes = bytes(3 * channels)  # header byte 0 (CONSTANT, no wasted bits) + a 16-bit 0
    with open(path, "wb") as f:
        f.write(b"fLaC" + bytes([0x80, 0, 0, len(streaminfo)]) + streaminfo)
        for i in range(-(-total // block)):
            size = min(block, total - i * block)
            # sync, fixed blocking; block size from the 16 bits after the number; rate from
            # STREAMINFO; independent channels; 16 bits per sample.
            head = bytes([0xFF, 0xF8, 0x70, ((channels - 1) << 4) | 0x08]) + _utf8_number(i)
            head += struct.pack(">H", size - 1)
            crc = 0
            for byte in head:
                crc = _CRC8[crc ^ byte]
            frame = head + bytes([crc]) + subframes
            crc = 0
            for byte in frame:
                crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
            f.write(frame + struct.pack(">H", crc))
    return path


def wav_header(sr: int, frames: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header with any sample rate (up to 2^32-1), for hostile headers."""
    data = frames * channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, sr, (sr * channels * 2) & 0xFFFFFFFF, channels * 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", data)


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="session")
def flac_bomb(hostile_dir) -> Path:
    """Issue 21's bomb: 3.4 MB, 8 channels, 655,350 Hz, 599 s of silence (11.7 GiB as float32)."""
    return write_silent_flac(hostile_dir / "bomb_599s.flac", 655_350, 8, 599)


@pytest.fixture(scope="session")
def flac_bomb_120(hostile_dir) -> Path:
    """Its 673 KB, 120 s variant (took the server from 771 MB to 3.8 GB)."""
    return write_silent_flac(hostile_dir / "bomb_120s.flac", 655_350, 8, 120)


@pytest.fixture(scope="session")
def flac_bomb_in_band(hostile_dir) -> Path:
    """The same trick at a rate audioclf accepts: 8 channels, 192 kHz, 599 s (920 M samples)."""
    return write_silent_flac(hostile_dir / "bomb_192k.flac", 192_000, 8, 599)


@pytest.fixture(scope="session")
def long_flac(hostile_dir) -> Path:
    """A 10-minute 44.1 kHz stereo FLAC (~28 MB): a tone sweeping in steps, and a little noise."""
    path, sr, rng = hostile_dir / "ten_minutes.flac", 44_100, np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 2, "PCM_16", format="FLAC") as f:
        for start in range(0, 600, 10):
            t = np.arange(start * sr, (start + 10) * sr) / sr
            tone = 3000 * np.sin(2 * np.pi * (300 + (start % 50) * 20) * t)
            f.write((tone[:, None] + rng.integers(-6, 6, (len(t), 2))).astype(np.int16))
    return path


def tone_file(path: Path, fmt: str, subtype: str, sr: int = 22050, seconds: float = 10.0) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format=fmt, subtype=subtype)
    return path


def cut_in_half(path: Path) -> Path:
    out = path.with_name(f"cut_{path.name}")
    data = path.read_bytes()
    out.write_bytes(data[:len(data) // 2])
    return out


# ---------------------------------------------------------------- Major 1: audio decompression bombs

def test_crafted_flac_is_a_valid_stream(hostile_dir):
    """Major 1 (fixture check): the hand-written silent FLAC is one libsndfile decodes in full."""
    path = write_silent_flac(hostile_dir / "small.flac", 44_100, 3, 2.5, block=1024)
    data, sr = sf.read(path, dtype="int16")
    assert sr == 44_100 and data.shape == (110_250, 3) and not data.any()
    clip = load_audio(path)
    assert clip.duration == pytest.approx(2.5) and clip.silent


def test_flac_bomb_is_refused_from_its_header_everywhere(flac_bomb, flac_bomb_120, tmp_path):
    """Major 1: the 3.4 MB 8-channel 655,350 Hz 599 s FLAC (and its 120 s variant) is refused
    before decoding by every entry point: load_audio (Predict, Present, Explore), check_audio
    and add_clip (Data), the health check, probe (data-set listing)."""
    from audioclf import datasets
    from audioclf.insight import clipstats

    assert flac_bomb.stat().st_size < 4 * MB
    for bomb in (flac_bomb, flac_bomb_120):
        for call in (lambda: load_audio(bomb), lambda: load_audio(bomb, sr=16000),
                     lambda: load_audio(bomb.read_bytes(), name=bomb.name), lambda: check_audio(bomb),
                     lambda: probe(bomb), lambda: clipstats.read_stats(bomb)):
            with pytest.raises(AudioError, match="655,350 Hz, outside the 1,000 to 384,000 Hz"):
                call()
    ds = datasets.create_dataset("hostile_bomb")
    with pytest.raises(AudioError, match=f"'{flac_bomb.name}' claims a sample rate"):
        datasets.add_clip(ds, "noise", flac_bomb.name, flac_bomb.read_bytes())
    assert not any(Path(ds).rglob("*.flac")), "nothing of a refused upload is written"


def test_flac_bomb_refusal_costs_no_memory(flac_bomb):
    """Major 1: refusing the bomb takes no more memory than importing audioclf.audio does
    (the old code asked for 11.7 GiB, and 3 GB for the 120 s variant)."""
    result, peak = measured(f"""
        from audioclf.audio import load_audio, AudioError
        try:
            load_audio({str(flac_bomb)!r}, sr=16000)
            result = "loaded"
        except AudioError as exc:
            result = str(exc)
    """)
    assert "outside the 1,000 to 384,000 Hz" in result
    assert peak < baseline_peak() + 32 * MB, f"peak {peak / MB:.0f} MB"


def test_a_bomb_at_an_accepted_rate_is_refused_by_its_sample_count(flac_bomb_in_band):
    """Major 1: limits count samples x channels, not seconds: 599 s of 8-channel 192 kHz
    (under the 600 s limit, 920 M samples) is refused from the header, in no memory."""
    with pytest.raises(AudioError, match=r"would decode to 920,064,000 samples .* more than the "
                                         r"268,435,456 audioclf decodes per file"):
        load_audio(flac_bomb_in_band, sr=16000)
    result, peak = measured(f"""
        from audioclf.audio import check_audio, AudioError
        try:
            check_audio({str(flac_bomb_in_band)!r})
            result = "accepted"
        except AudioError as exc:
            result = str(exc)
    """)
    assert "would decode to" in result
    assert peak < baseline_peak() + 32 * MB, f"peak {peak / MB:.0f} MB"


def test_a_clip_too_big_at_the_asked_rate_is_refused(hostile_dir):
    """Major 1: the decoded clip's memory at the asked rate is checked too (MAX_CLIP_BYTES):
    10 minutes at 384 kHz native would be 879 MB of float32; at 16 kHz it is fine."""
    path = write_silent_flac(hostile_dir / "ultrasonic.flac", 384_000, 1, 600)
    with pytest.raises(AudioError, match=r"would take 879 MB of memory at 384,000 Hz, more than the "
                                         r"256 MB one clip may use; choose a lower sample rate"):
        load_audio(path)
    assert load_audio(path, sr=16000).duration == pytest.approx(600.0)


def test_a_long_clip_decodes_in_blocks_within_a_small_multiple_of_its_size(long_flac):
    """Major 1: a 10-minute 44.1 kHz stereo FLAC is decoded block by block, mixed and
    resampled as it goes: peak memory is a small multiple of the mono clip at the target rate."""
    for sr, clip_bytes in ((16000, 600 * 16000 * 4), (None, 600 * 44100 * 4)):
        result, peak = measured(f"""
            from audioclf.audio import load_audio
            clip = load_audio({str(long_flac)!r}, sr={sr})
            result = [clip.duration, clip.sr, clip.silent]
        """)
        assert result == [pytest.approx(600.0), sr or 44100, False]
        extra = peak - baseline_peak()
        assert extra < 2 * clip_bytes + 24 * MB, f"sr {sr}: {extra / MB:.0f} MB over the baseline"


def test_streamed_decoding_gives_the_same_samples_as_decoding_at_once(tmp_path):
    """Major 1: block-wise decoding, mono mix and streamed resampling change no sample."""
    import soxr

    rng = np.random.default_rng(1)
    data = (0.2 * rng.standard_normal((44100 * 7 + 123, 3))).astype(np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, data, 44100, subtype="FLOAT")
    whole = soxr.resample(data.mean(axis=1), 44100, 16000, quality="HQ")
    assert np.array_equal(load_audio(path, sr=16000).samples, whole.astype(np.float32))
    assert np.array_equal(load_audio(path).samples, data.mean(axis=1))


def test_a_wav_claiming_2_147_483_647_hz_is_refused(tmp_path):
    """Major 1 / Minor: a WAV header claiming 2,147,483,647 Hz was accepted as a 0 s clip."""
    path = tmp_path / "rate.wav"
    path.write_bytes(wav_header(2**31 - 1, 16000) + bytes(32000))
    assert sf.info(path).samplerate == 2**31 - 1  # libsndfile itself takes it
    for call in (lambda: load_audio(path), lambda: probe(path), lambda: check_audio(path)):
        with pytest.raises(AudioError, match="claims a sample rate of 2,147,483,647 Hz"):
            call()
    slow = tmp_path / "slow.wav"
    slow.write_bytes(wav_header(500, 1000) + bytes(2000))
    with pytest.raises(AudioError, match="claims a sample rate of 500 Hz, outside"):
        load_audio(slow)


@pytest.mark.parametrize("fmt,subtype,ext", [("MP3", "MPEG_LAYER_III", ".mp3"), ("OGG", "VORBIS", ".ogg"),
                                             ("OGG", "OPUS", ".opus")])
def test_truncated_mp3_and_ogg_are_refused_like_flac_and_wav(tmp_path, fmt, subtype, ext):
    """Minor: truncated MP3/OGG were accepted silently as shorter clips (Opus) or as no audio
    (Vorbis); now they are refused as truncated, as cut-off WAV files are."""
    if subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype} to make the test file")
    sr = 48000 if subtype == "OPUS" else 22050
    full = tone_file(tmp_path / f"tone{ext}", fmt, subtype, sr=sr)
    assert load_audio(full).duration == pytest.approx(10.0, abs=0.05)
    cut = cut_in_half(full)
    for call in (lambda: load_audio(cut), lambda: check_audio(cut),
                 lambda: load_audio(cut.read_bytes(), name=cut.name)):
        with pytest.raises(AudioError, match="is truncated"):
            call()


def test_every_limit_has_its_environment_variable(monkeypatch):
    """Major 1 (limits.py): each limit can be overridden from the environment; nonsense is refused."""
    import importlib

    monkeypatch.setenv("AUDIOCLF_MAX_CLIP_MB", "512")
    monkeypatch.setenv("AUDIOCLF_MAX_SAMPLE_RATE", "500000")
    try:
        changed = importlib.reload(limits)
        assert changed.MAX_CLIP_BYTES == 512 * MB and changed.MAX_SAMPLE_RATE == 500_000
        monkeypatch.setenv("AUDIOCLF_MAX_SECONDS", "-3")
        with pytest.raises(ValueError, match="AUDIOCLF_MAX_SECONDS='-3' is not a positive number"):
            importlib.reload(limits)
    finally:
        monkeypatch.delenv("AUDIOCLF_MAX_CLIP_MB")
        monkeypatch.delenv("AUDIOCLF_MAX_SAMPLE_RATE")
        monkeypatch.delenv("AUDIOCLF_MAX_SECONDS")
        importlib.reload(limits)
    assert limits.MAX_CLIP_BYTES == 256 * MB


# ---------------------------------------------------------------- Major 2: zip uploads

def silent_wav_member(zf, name: str, size: int) -> None:
    """A WAV member of `size` bytes of 16 kHz 16-bit silence, deflated as it is written."""
    frames = (size - 44) // 2
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(MB)
    with zf.open(info, "w", force_zip64=True) as out:
        out.write(wav_header(16000, frames))
        left = frames * 2
        while left > 0:
            out.write(chunk[:min(left, MB)])
            left -= MB


@pytest.fixture(scope="session")
def padded_zip(hostile_dir) -> Path:
    """Issue 21's padded zip: 11 MB of stored random bytes plus twenty 50 MB silent WAVs.

    About 12 MB holding 1 GB: 83x over the whole archive, under the old whole-archive
    limit of 100x, while each WAV inflates ~1000x. Built streaming: never 50 MB in memory.
    """
    path = hostile_dir / "padded.zip"
    rng = np.random.default_rng(2)
    with zipfile.ZipFile(path, "w") as zf:
        pad = zipfile.ZipInfo("padding.bin", date_time=(2024, 1, 1, 0, 0, 0))
        pad.compress_type = zipfile.ZIP_STORED
        with zf.open(pad, "w") as out:
            for _ in range(11):
                out.write(rng.bytes(MB))
        for i in range(20):
            silent_wav_member(zf, f"noise/silence_{i:02d}.wav", 50 * MB)
    return path


def test_padded_zip_is_refused_by_a_members_ratio_before_writing(padded_zip, tmp_path):
    """Major 2: the padded zip passed the whole-archive ratio (83x < 100x) and was expanded in
    memory; now each large member's own ratio is checked from the headers: refused, nothing
    written, in the memory of reading the zip's directory."""
    from audioclf.datasets import ArchiveError, safe_extract, unpack_audio

    with zipfile.ZipFile(padded_zip) as zf:
        total = sum(i.file_size for i in zf.infolist())
    assert padded_zip.stat().st_size < 13 * MB and total > 1000 * MB
    assert total / padded_zip.stat().st_size < limits.ZIP_MAX_RATIO  # the old check let it through
    for call in (safe_extract, unpack_audio):
        with pytest.raises(ArchiveError, match=r"Refusing to unpack padded.zip: member "
                                               r"'noise/silence_00.wav' would expand \d+-fold .*zip bomb"):
            call(padded_zip, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    result, peak = measured(f"""
        from audioclf.datasets import ArchiveError, unpack_audio
        try:
            unpack_audio({str(padded_zip)!r}, {str(tmp_path / "child")!r})
            result = "unpacked"
        except ArchiveError as exc:
            result = str(exc)
    """)
    assert "zip bomb" in result and peak < 150 * MB, f"peak {peak / MB:.0f} MB"


def test_a_large_member_or_archive_past_its_limit_is_refused(tmp_path, monkeypatch):
    """Major 2: per-member and total unpacked limits (limits.ZIP_MAX_MEMBER_BYTES,
    ZIP_MAX_TOTAL_BYTES) hold for incompressible members too, from the headers."""
    from audioclf.datasets import ArchiveError, safe_extract

    path = tmp_path / "noise.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(3):
            zf.writestr(f"dog/{k}.wav", np.random.default_rng(k).bytes(300_000))
    monkeypatch.setattr(limits, "ZIP_MAX_MEMBER_BYTES", 200_000)
    with pytest.raises(ArchiveError, match=r"member 'dog/0.wav' would unpack to 0.3 MB, more than the "
                                           r"0.2 MB allowed per file"):
        safe_extract(path, tmp_path / "out")
    monkeypatch.setattr(limits, "ZIP_MAX_MEMBER_BYTES", 1 << 30)
    monkeypatch.setattr(limits, "ZIP_MAX_TOTAL_BYTES", 800_000)
    with pytest.raises(ArchiveError, match="it would expand to 0.9 MB, more than 0.8 MB"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_real_zip_of_long_clips_is_streamed_to_disk(tmp_path):
    """Major 2: members go to disk a chunk at a time: a zip holding a 64 MB WAV unpacks,
    and lists it by class folder, in far less memory than the member."""
    path = tmp_path / "long.zip"
    rng = np.random.default_rng(3)
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("rain/long.wav", date_time=(2024, 1, 1, 0, 0, 0))
        with zf.open(info, "w") as out:  # stored: noise does not compress
            frames = 32 * MB
            out.write(wav_header(44100, frames))
            for _ in range(64):
                out.write(rng.integers(-2000, 2000, MB // 2, dtype=np.int16).tobytes())
        zf.writestr("loose.wav", wav_header(16000, 4) + bytes(8))
        zf.writestr("__MACOSX/rain/._long.wav", b"junk")
    result, peak = measured(f"""
        from audioclf.datasets import unpack_audio
        result = [(label, p.name, p.stat().st_size) for label, p in
                  unpack_audio({str(path)!r}, {str(tmp_path / "out")!r}, label="misc")]
    """)
    assert result == [["misc", "loose.wav", 52], ["rain", "long.wav", 64 * MB + 44]]
    assert peak < baseline_peak() + 24 * MB, f"peak {peak / MB:.0f} MB"


def test_data_page_refuses_the_padded_zip_in_bounded_memory(padded_zip, tmp_path):
    """Major 2: uploading the padded zip on Data > Add clips held 1 GB in memory; now it is
    refused (named by the user's file name) and nothing is added, within the budget."""
    steps = f"""
        at.switch_page("app_pages/data.py").run()
        data = open({str(padded_zip)!r}, "rb").read()
        at.file_uploader(key="uploads_0").set_value([("my clips.zip", data, "application/zip")]).run()
        at.button(key="add_btn").click().run()
        result = {{"errors": texts(at.error), "exception": bool(at.exception), "success": texts(at.success)}}
    """
    result, peak = app_measured(steps, tmp_path / "home")
    assert not result["exception"] and not result["success"]
    assert "Refusing to unpack my clips.zip: member `noise/silence_00.wav` would expand" in result["errors"]
    assert "zip bomb" in result["errors"]
    assert not list((tmp_path / "home" / "datasets").rglob("silence_*.wav"))
    print(f"Data page, padded zip: peak {peak / MB:.0f} MB")
    assert peak < 700 * MB, f"peak {peak / MB:.0f} MB"


def test_predict_batch_refuses_the_padded_zip_in_bounded_memory(padded_zip, trained_run, workspace_home):
    """Major 2: read-only Predict > Batch peaked at 4.5 GB on the padded zip; now it says why
    it is refused, within the budget."""
    steps = f"""
        at.switch_page("app_pages/predict.py").run()
        data = open({str(padded_zip)!r}, "rb").read()
        at.file_uploader(key="pr_batch_0").set_value([("padded.zip", data, "application/zip")]).run()
        at.button(key="pr_go").click().run()
        result = {{"errors": texts(at.error), "exception": bool(at.exception)}}
    """
    result, peak = app_measured(steps, workspace_home, AUDIOCLF_READONLY="1")
    assert not result["exception"]
    assert "Refusing to unpack padded.zip: member `noise/silence_00.wav`" in result["errors"]
    print(f"Predict batch, padded zip: peak {peak / MB:.0f} MB")
    assert peak < SERVER_BUDGET and peak < 1 * GB, f"peak {peak / MB:.0f} MB"


# ---------------------------------------------------------------- Major 3: long clips

def test_explore_analysis_of_a_long_clip_fits_its_budget(long_flac):
    """Major 3 (library): Explore's analysis of the 10-minute 44.1 kHz FLAC at hop 64 held
    6.4 GB; now the rate and hop fit limits.ANALYSIS_MAX_STFT_BYTES (and the user is told),
    and what is kept (and cached by the page) is a few MB, whatever the clip's length."""
    result, peak = measured(f"""
        from audioclf.insight.analysis import analyse_clip
        a = analyse_clip({str(long_flac)!r}, n_fft=1024, hop_length=64)
        result = {{"sr": a.sr, "hop": a.hop_length, "frames": a.frames, "note": a.note,
                   "nbytes": a.nbytes, "columns": a.spec.values.shape[1], "lines": len(a.zcr)}}
    """)
    base = measured("import audioclf.features.spectral, audioclf.insight.analysis; result = None")[1]
    assert result["note"].startswith("This 600 s clip is analysed at 22,050 Hz instead of 44,100 Hz "
                                      "and with hop 1024 instead of 64")
    assert result["frames"] * (1024 // 2 + 1) * 4 <= limits.ANALYSIS_MAX_STFT_BYTES
    assert result["columns"] <= 800 and result["lines"] <= 4000
    assert result["nbytes"] < 4 * MB
    print(f"analyse_clip, 10 min at hop 64: {(peak - base) / MB:.0f} MB over the import baseline")
    assert peak - base < 10 * limits.ANALYSIS_MAX_STFT_BYTES + 2 * 600 * 22050 * 4


def test_analysis_of_a_short_clip_keeps_the_settings_asked_for(tmp_path):
    """Major 3: a clip that fits is analysed exactly as asked: no note, every frame kept."""
    from audioclf.features import SpectralConfig, extract
    from audioclf.insight.analysis import analyse_clip

    path = tone_file(tmp_path / "tone.wav", "WAV", "PCM_16", sr=22050, seconds=2.0)
    a = analyse_clip(path, n_fft=512, hop_length=128, n_mfcc=13, n_mels=64)
    feats = extract(load_audio(path), SpectralConfig(sr=22050, n_fft=512, hop_length=128, n_mfcc=13, n_mels=64))
    assert a.note is None and (a.sr, a.hop_length, a.heat_hop, a.line_hop) == (22050, 128, 128, 128)
    assert a.frames == len(feats.values) == a.mfcc.shape[1] == len(a.zcr)
    assert np.allclose(a.mfcc, feats.values[:, :13].T)


def test_explore_page_on_a_long_clip_stays_in_budget(long_flac, yamnet_tflite, tmp_path):
    """Major 3 (app): the 10-minute FLAC uploaded to Explore at the native rate and hop 64,
    YAMNet included, peaked at 6.4 GB; now the page says what it changed and stays under 1 GB."""
    steps = f"""
        at.switch_page("app_pages/explore.py").run()
        at.radio(key="a_src").set_value("Upload")
        at.selectbox(key="ex_sr").set_value("native")
        at.select_slider(key="ex_hop").set_value(64)
        at.run()
        at.file_uploader(key="a_up").set_value(("ten.flac", open({str(long_flac)!r}, "rb").read(), "audio/flac"))
        at.run()
        result = {{"info": texts(at.info), "errors": texts(at.error), "exception": bool(at.exception),
                   "charts": len(at.get("plotly_chart")), "captions": texts(at.caption)}}
    """
    result, peak = app_measured(steps, tmp_path / "home", AUDIOCLF_YAMNET=str(yamnet_tflite))
    assert not result["exception"] and not result["errors"], result
    assert "This 600 s clip is analysed at 22,050 Hz instead of 44,100 Hz" in result["info"]
    assert "12920 frames of 1024 samples, hop 1024" in result["captions"]
    assert result["charts"] == 8  # seven figures and YAMNet's classes
    print(f"Explore page, 10 min clip at hop 64: peak {peak / MB:.0f} MB")
    assert peak < 1 * GB, f"peak {peak / MB:.0f} MB"


def served_alone(run_id: str, home: Path) -> Path:
    """A fresh workspace `home` holding only the run `run_id`: the page serves that run and
    nothing an earlier test left in the session's workspace (its best run was once an
    EfficientAT run, which the Predict page preselected)."""
    from audioclf.training import runs

    shutil.copytree(runs.run_dir(run_id), home / "runs" / run_id)
    return home


@pytest.mark.parametrize("kind", ["mfcc", "efficientat"])
def test_predict_page_on_a_long_clip_stays_in_budget(kind, long_flac, request, tmp_path):
    """Major 3 (app): Predict on the 10-minute FLAC peaked at 2.5 GB (1.8 GB with an EfficientAT
    run); the clip is decoded straight to the run's rate and, past limits.PREDICT_WHOLE_MAX_SECONDS,
    streamed: a piece at a time through the features and the model (never the whole clip, nor a
    network's maps over it), answered from its windows, with its timeline. The server is a fresh
    process serving only this run."""
    run_id = request.getfixturevalue({"mfcc": "trained_run", "efficientat": "eat_demo_run"}[kind])
    steps = f"""
        at.switch_page("app_pages/predict.py").run()
        at.file_uploader(key="pr_file").set_value(("ten.flac", open({str(long_flac)!r}, "rb").read(), "audio/flac"))
        at.run()
        result = {{"errors": texts(at.error), "exception": bool(at.exception), "run": at.selectbox(key="pr_run").value,
                   "metrics": [m.label for m in at.metric], "charts": len(at.get("plotly_chart"))}}
    """
    # The owner's setting names the checkpoint the run's config names (a config alone may not, major 7).
    owner = {"AUDIOCLF_EFFICIENTAT": str(request.getfixturevalue("efficientat_pt"))} if kind == "efficientat" else {}
    result, peak = app_measured(steps, served_alone(run_id, tmp_path / "home"), AUDIOCLF_READONLY="1", **owner)
    assert not result["exception"] and not result["errors"], result
    assert result["run"] == run_id
    assert result["metrics"][:1] == ["Predicted class"] and result["charts"] >= 2  # bars and timeline
    print(f"Predict page, 10 min clip, {kind} run: peak {peak / MB:.0f} MB")
    assert peak < SERVER_BUDGET and peak < 1.25 * GB, f"peak {peak / MB:.0f} MB"


def test_a_clip_past_the_whole_clip_limit_is_answered_from_its_windows(trained_run, monkeypatch):
    """Major 3 (library): past limits.PREDICT_WHOLE_MAX_SECONDS the clip's probabilities are
    the mean of its windows' (no model pass over the whole clip); shorter clips keep theirs."""
    from audioclf.audio import Clip
    from audioclf.inference import Predictor

    predictor = Predictor.load(trained_run)
    rng = np.random.default_rng(4)
    t = np.arange(16000 * 8) / 16000
    y = (0.3 * np.sin(2 * np.pi * (300 + 200 * (t > 4)) * t) + 0.01 * rng.standard_normal(t.size))
    clip = Clip(y.astype(np.float32), 16000, "eight.wav")
    whole = predictor.predict_clip(clip)
    assert len(whole.window_probs) > 2 and not np.allclose(whole.probs, whole.window_probs.mean(axis=0))
    monkeypatch.setattr(limits, "PREDICT_WHOLE_MAX_SECONDS", 5.0)
    windowed = predictor.predict_clip(clip)
    assert np.allclose(windowed.window_probs, whole.window_probs, atol=1e-6)
    assert np.allclose(windowed.probs, whole.window_probs.mean(axis=0), atol=1e-6)


def test_the_command_line_refuses_the_bomb_and_the_padded_zip_in_one_line_each(
        flac_bomb, padded_zip, long_flac, trained_run, tmp_path):
    """Majors 1 and 2 (CLI): `audioclf predict` on the FLAC bomb reports it as one error line
    beside the clips it could read; on the padded zip it stops with one line; both in bounded
    memory (a child process, TensorFlow and the model included)."""
    code = f"""
        import contextlib, io
        from audioclf import cli
        runs = []
        for argv in (["predict", "--run", {trained_run!r}, {str(flac_bomb)!r}, {str(long_flac)!r}, "-q"],
                     ["predict", "--run", {trained_run!r}, {str(padded_zip)!r}, "-q"]):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = cli.main(argv)
            runs.append([status, out.getvalue(), err.getvalue()])
        result = runs
    """
    (bomb, zipped), peak = measured(code)
    status, out, err = bomb
    assert status == 1 and "ten_minutes.flac" in out
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: '{flac_bomb}' claims a sample rate of 655,350 Hz, outside the 1,000 to 384,000 Hz audioclf "
        "accepts: the file is damaged or not a recording (resample it, e.g. `ffmpeg -i in.wav -ar 48000 "
        "out.wav`)."]
    status, out, err = zipped
    assert status == 1 and len(err.strip().splitlines()) == 1 and "member 'noise/silence_00.wav'" in err
    assert peak < SERVER_BUDGET, f"peak {peak / MB:.0f} MB"


# ---------------------------------------------------------------- Major 5: `audioclf demo --dest` deletes folders

def _run_cli(*argv) -> tuple[int, str]:
    import contextlib
    import io

    from audioclf import cli

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, err.getvalue()


def test_demo_dest_never_deletes_a_folder_it_did_not_make(tmp_path, monkeypatch):
    """Major 5: `audioclf demo --dest DIR` refuses a folder holding files it did not write
    (read-only mode or not), and refuses any --dest in read-only mode; nothing is lost."""
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "thesis.txt").write_text("four years of work")
    code, err = _run_cli("demo", "--dest", mine, "--clips", 1)
    assert code == 1 and "already holds files the demo did not make" in err and len(err.splitlines()) == 1
    assert (mine / "notes" / "thesis.txt").read_text() == "four years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["notes"]

    monkeypatch.setenv("AUDIOCLF_READONLY", "1")
    for dest in (mine, tmp_path / "new"):
        code, err = _run_cli("demo", "--dest", dest, "--clips", 1)
        assert code == 1 and "read-only mode" in err, err
    assert sorted(p.name for p in mine.iterdir()) == ["notes"] and not (tmp_path / "new").exists()


def test_demo_replaces_only_a_demo_it_made_and_nobody_added_to(tmp_path):
    """Major 5: a demo folder it made is rebuilt with other parameters; once a user added a clip
    to it, it is the user's and is refused; an empty folder is filled."""
    from audioclf.datasets.demo import is_demo, make_demo_dataset

    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_demo(make_demo_dataset(empty, clips_per_class=1))
    made = make_demo_dataset(tmp_path / "d", clips_per_class=1)
    assert is_demo(made) and make_demo_dataset(made, clips_per_class=2) == made
    assert len(list((made / "rain").iterdir())) == 2
    sf.write(made / "rain" / "my_rain.wav", np.zeros(1600, np.float32), 16000)
    assert not is_demo(made)
    with pytest.raises(Exception, match="already holds files the demo did not make"):
        make_demo_dataset(made, clips_per_class=1)
    assert (made / "rain" / "my_rain.wav").exists() and len(list((made / "rain").iterdir())) == 3


# ---------------------------------------------------------------- Major 6: a user's `demo` data set replaced

def _users_demo(home: Path) -> Path:
    user = home / "datasets" / "demo"
    for label in ("cat", "dog"):
        (user / label).mkdir(parents=True)
        sf.write(user / label / f"{label}_1.wav", np.zeros(1600, np.float32), 16000)
    return user


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("readonly", ["", "1"])
def test_a_users_own_demo_data_set_is_never_replaced(tmp_path, monkeypatch, readonly):
    """Major 6: the built-in demo goes beside a user's data set named `demo` (read-only or not)."""
    from audioclf.datasets import ensure_demo_dataset
    from audioclf.datasets.demo import FALLBACK_NAME, is_demo

    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path))
    monkeypatch.setenv("AUDIOCLF_READONLY", readonly)
    user = _users_demo(tmp_path)
    before = _snapshot(user)
    built = ensure_demo_dataset()
    assert built == tmp_path / "datasets" / FALLBACK_NAME and is_demo(built)
    assert ensure_demo_dataset() == built  # and the next start finds the same one
    assert _snapshot(user) == before


def test_the_sidebar_names_the_built_in_demo_and_keeps_the_users(tmp_path, monkeypatch, yamnet_tflite):
    """Major 6: the app's start (the sidebar) leaves a user's `demo` alone and says which data
    set is the built-in demo."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path))
    monkeypatch.setenv("AUDIOCLF_YAMNET", str(yamnet_tflite))
    user = _users_demo(tmp_path)
    before = _snapshot(user)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    picker = at.sidebar.selectbox[0]
    assert picker.options == ["audioclf-demo (built-in demo)", "demo"]
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "'demo' is your own data set and is kept as it is; the built-in demo is 'audioclf-demo'" in captions
    assert _snapshot(user) == before


# ---------------------------------------------------------------- Minor: names that are not valid UTF-8

def _latin1_dataset(root: Path) -> Path:
    """A data set whose class folder `café` and clip `b\\xff.wav` are named in Latin-1 bytes."""
    base = os.fsencode(root)
    for label in (b"dog", b"cat", b"caf\xe9"):
        for i, name in enumerate((b"a.wav", b"b\xff.wav", b"c.wav")):
            folder = base + b"/" + label
            os.makedirs(folder, exist_ok=True)
            t = np.arange(8000) / 16000
            with open(folder + b"/" + name, "wb") as f:
                sf.write(f, (0.3 * np.sin(2 * np.pi * (300 + 150 * i + len(label) * 40) * t)).astype(np.float32),
                         16000, format="WAV")
    return root


def test_names_that_are_not_utf8_are_listed_as_problems_not_breaking_the_data_set(tmp_path):
    """Minor: non-UTF-8 file or folder names broke the whole data set (`UnicodeEncodeError ...
    surrogates not allowed` from the feature cache); now such clips are listed as problems
    with the reason (their names printable), the rest load and extract, and a direct call
    on such a file works (libsndfile gets the name's bytes; the cache stores them in hex)."""
    from audioclf.datasets import load_dataset, summarize_dataset
    from audioclf.features import MFCCConfig, extract_many

    ds = load_dataset(_latin1_dataset(tmp_path / "latin1"))
    assert ds.labels == ["cat", "dog"] and len(ds.items) == 4
    bad = {Path(where).relative_to(tmp_path).as_posix(): why for where, why in ds.problems}
    assert set(bad) == {"latin1/caf\\xe9/a.wav", "latin1/caf\\xe9/b\\xff.wav", "latin1/caf\\xe9/c.wav",
                        "latin1/cat/b\\xff.wav", "latin1/dog/b\\xff.wav"}
    assert all("not valid UTF-8" in why and "rename it" in why for why in bad.values())
    assert all(where.encode("utf-8") for where, _ in ds.problems)
    assert not summarize_dataset(ds).unreadable
    odd = os.fsdecode(os.fsencode(tmp_path / "latin1" / "dog") + b"/b\xff.wav")
    results = extract_many([str(it.path) for it in ds.items] + [odd], MFCCConfig())
    assert all(type(r).__name__ == "Features" for r in results)
    assert type(extract_many([odd], MFCCConfig())[0]).__name__ == "Features"  # now from the cache
    assert load_audio(odd).name == "b\\xff.wav"


def test_the_data_page_shows_a_data_set_with_latin1_names(tmp_path):
    """Minor: the Data page showed "Something went wrong" for such a data set; now it lists
    the skipped clips with printable names."""
    home = tmp_path / "home"
    _latin1_dataset(home / "datasets" / "latin1")
    steps = """
        at.sidebar.selectbox(key="dataset").set_value("latin1").run()
        at.switch_page("app_pages/data.py").run()
        frames = [d.value for d in at.dataframe if "reason" in d.value.columns]
        result = {"exception": [str(e.value)[:300] for e in at.exception], "errors": texts(at.error),
                  "files": sorted(frames[0]["file"]) if frames else [],
                  "clips": [m.value for m in at.metric if m.label == "Clips"]}
    """
    result, _ = app_measured(steps, home)
    assert not result["exception"] and not result["errors"], result
    assert result["clips"] == ["4"]
    assert sum("\\xe9" in f or "\\xff" in f for f in result["files"]) == 5


# ---------------------------------------------------------------- Minor: a full disk during training

def _tiny_run_config(dataset: Path):
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig

    return RunConfig(dataset=str(dataset), split=SplitConfig(val=0.25, test=0.25, seed=0), features=MFCCConfig(),
                     name="full disk", model=ModelConfig(kind="gru", rnn_units=(16,), dense_units=(16,)),
                     train=TrainConfig(epochs=2, patience=None, batch_size=8, warp_augment=()))


def _assert_failed_cleanly(home: Path) -> None:
    from audioclf import jobs
    from audioclf.training import runs

    (run,) = [r for r in runs.list_runs()]
    assert run.state == "failed"
    status = jobs.read_json(runs.run_dir(run.id) / jobs.STATUS)
    assert status["message"].startswith("The disk is full: there was no room to write the run in ")
    litter = [p.name for p in home.rglob(".*") if p.name.endswith((".tmp", ".keras"))]
    assert litter == [], f"temporary files left: {litter}"
    assert "killed" not in runs.run_status(run.id).message.lower()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 6 MB tmpfs (mounting needs root; skipped, saying so, where that is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_fails_the_run_with_a_clear_message_and_no_litter(tiny_disk, fsdd_small, monkeypatch):
    """Minor: a full disk gave a raw `OSError [Errno 28]`, left `.model.*.keras` and
    `.status.json.*.tmp` files, and the run read "killed or crashed". On a real tmpfs filled
    up during the last epoch: the run fails saying the disk is full, with nothing left over."""
    from audioclf.training import TrainingError, train

    monkeypatch.setenv("AUDIOCLF_HOME", str(tiny_disk))
    filler = tiny_disk / "filler.bin"

    def fill_the_disk(event: dict) -> None:
        if event.get("phase") == "training" and event.get("epoch") == event.get("epochs"):
            with open(filler, "wb") as f:  # leave 8 KB: status updates fit, the model does not
                while os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize > 12288:
                    f.write(bytes(4096))
                    f.flush()

    with pytest.raises(TrainingError, match="The disk is full: there was no room to write the run"):
        train(_tiny_run_config(fsdd_small), progress=fill_the_disk)
    assert filler.exists()
    _assert_failed_cleanly(tiny_disk)


def test_no_room_for_the_model_removes_its_temporary_file(fsdd_small, tmp_path, monkeypatch):
    """Minor: the same with the disk filling while the model is written (Keras's save raising
    ENOSPC half-way): the half-written `.model.*.keras` is removed, the status says why."""
    import errno

    import keras

    from audioclf.training import TrainingError, train

    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path / "home"))

    def save_half(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK half a model")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", save_half)
    with pytest.raises(TrainingError, match="The disk is full"):
        train(_tiny_run_config(fsdd_small))
    _assert_failed_cleanly(tmp_path / "home")


# ---------------------------------------------------------------- Major 7: a run's config runs foreign TensorFlow code

@pytest.fixture(scope="module")
def foreign_savedmodel(tmp_path_factory) -> tuple[Path, Path]:
    """(a SavedModel with YAMNet's call signature whose graph writes a file, the file it writes)."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("foreign")
    target = root / "written-by-the-model.txt"

    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            tf.io.write_file(str(target), "foreign code ran")
            frames = 1 + tf.maximum(0, tf.shape(waveform)[0] - 15600) // 7680
            return tf.zeros([frames, 521]), tf.zeros([frames, 1024]), tf.zeros([frames, 64])

    tf.saved_model.save(Foreign(), str(root / "model"))
    tf.saved_model.load(str(root / "model"))(tf.zeros([16000]))  # it really writes when it runs
    assert target.read_text() == "foreign code ran"
    target.unlink()
    return root / "model", target


def test_a_runs_config_cannot_load_a_foreign_savedmodel(foreign_savedmodel, demo_run, tmp_path, wav_file):
    """Major 7: `audioclf predict --run` with a config.json whose features.model is a SavedModel
    outside the trusted sources refuses it, clearly, before loading it; nothing is written."""
    import shutil

    from audioclf import workspace

    model, target = foreign_savedmodel
    forged = workspace.runs_dir() / f"{demo_run}-forged"
    shutil.copytree(workspace.runs_dir() / demo_run, forged)
    config = json.loads((forged / "config.json").read_text())
    config["features"]["model"] = str(model)
    (forged / "config.json").write_text(json.dumps(config))
    try:
        code, err = _run_cli("predict", "--run", forged.name, wav_file)
    finally:
        shutil.rmtree(forged)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"Refusing to load the YAMNet model {model}" in err and "can run code on this machine" in err
    assert "AUDIOCLF_YAMNET" in err and str(workspace.models_dir()) in err
    assert not target.exists()


def test_only_trusted_sources_of_yamnet_are_loaded(foreign_savedmodel, tmp_path, monkeypatch):
    """Major 7: a config's YAMNet model loads only from the workspace's models folder, the owner's
    $AUDIOCLF_YAMNET or TF Hub's YAMNet; other URLs (http, gs) and paths are refused unopened."""
    from audioclf.audio import Clip
    from audioclf.features import YAMNetConfig, extract
    from audioclf.features import yamnet as Y
    from audioclf import workspace

    model, target = foreign_savedmodel
    monkeypatch.delenv(Y.ENV_MODEL, raising=False)
    for spec in (str(model), "https://example.com/yamnet/1", "gs://bucket/yamnet", "http://tfhub.dev/google/yamnet/1",
                 str(workspace.models_dir() / ".." / "runs")):
        with pytest.raises(Y.UntrustedModel, match="Refusing to load the YAMNet model"):
            extract(Clip(np.zeros(16000, np.float32), 16000), YAMNetConfig(model=spec))
        assert "Refusing to load" in Y.availability(spec)
    assert not target.exists()
    with pytest.raises(Y.YAMNetUnavailable, match="No YAMNet model at"):  # nothing there: say so instead
        Y.check_source(str(tmp_path / "nowhere"))
    assert Y.trusted_source("") and Y.trusted_source(Y.DEFAULT_HANDLE)
    assert Y.trusted_source(str(workspace.models_dir() / "yamnet" / "yamnet.tflite"))
    monkeypatch.setenv(Y.ENV_MODEL, str(model))  # the owner chose it: then it is theirs to run
    assert Y.trusted_source(str(model)) and Y.trusted_source("")
    monkeypatch.setenv(Y.ENV_MODEL, "gs://owners-bucket/yamnet")
    assert Y.trusted_source("gs://owners-bucket/yamnet") and not Y.trusted_source("gs://other/yamnet")


def test_a_config_names_an_efficientat_checkpoint_only_from_trusted_places(tmp_path, monkeypatch):
    """Major 7: EfficientAT checkpoints a config names: official names (SHA-256 checked downloads),
    the workspace's models folder or $AUDIOCLF_EFFICIENTAT's; any other path is refused unread."""
    from audioclf import workspace
    from audioclf.audio import Clip
    from audioclf.features import EfficientATConfig, efficientat, extract

    monkeypatch.delenv("AUDIOCLF_EFFICIENTAT", raising=False)
    foreign = tmp_path / "mn04_as_mAP_432.pt"
    foreign.write_bytes(b"PK not read")
    with pytest.raises(efficientat.UntrustedCheckpoint, match="Refusing to load the EfficientAT model"):
        extract(Clip(np.zeros(32000, np.float32), 32000), EfficientATConfig(model=str(foreign)))
    assert "Refusing to load the EfficientAT model" in efficientat.availability(str(foreign))
    efficientat.check_source("mn04_as")
    efficientat.check_source(str(workspace.models_dir() / "efficientat" / foreign.name))
    monkeypatch.setenv("AUDIOCLF_EFFICIENTAT", str(tmp_path))
    efficientat.check_source(str(foreign))


# ---------------------------------------------------------------- Minor: a class folder that is a link

def test_a_class_folder_that_is_a_link_is_not_written_through(tmp_path, monkeypatch):
    """Minor (symlinked class folder): add_clip and relabel_clip refuse a class or split folder
    that leads outside the data set; nothing is written outside the workspace."""
    import io

    from audioclf.datasets import DatasetError, add_clip, create_dataset, relabel_clip

    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path / "home"))
    outside = tmp_path / "outside"
    outside.mkdir()
    root = create_dataset("linked")
    (root / "cat").symlink_to(outside, target_is_directory=True)
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, np.float32), 16000, format="WAV")
    with pytest.raises(DatasetError, match="'cat' in data set .* leads outside it .* Replace the link"):
        add_clip(root, "cat", "meow.wav", buf.getvalue())
    dog = add_clip(root, "dog", "woof.wav", buf.getvalue())
    with pytest.raises(DatasetError, match="leads outside it"):
        relabel_clip(dog, "cat")
    (root / "train").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match="leads outside it"):
        add_clip(root, "bird", "tweet.wav", buf.getvalue(), split="train")
    assert list(outside.iterdir()) == [] and dog.is_file()


# ---------------------------------------------------------------- Minor: pickle and h5 model files

def test_pickle_and_h5_model_files_say_what_they_are(tmp_path):
    """Minor (model-file errors said "File not found"): a pickle or an HDF5 file as a model says
    what the file is and why audioclf will not open it; the pickle is never unpickled."""
    import pickle

    import h5py

    from audioclf.training import runs

    marker = tmp_path / "unpickled.txt"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "the pickle ran"))

    for name in ("model.keras", "model.pkl"):
        (tmp_path / name).write_bytes(pickle.dumps(Payload()))
        with pytest.raises(runs.ModelLoadError) as err:
            runs.load_model(tmp_path / name)
        assert f"{name} cannot be used as a model: it is a Python pickle, which runs code" in str(err.value)
        assert "File not found" not in str(err.value)
    with h5py.File(tmp_path / "model.h5", "w") as f:
        f["weights"] = np.zeros(3)
    for name in ("model.h5", "h5.keras"):
        if name != "model.h5":
            (tmp_path / name).write_bytes((tmp_path / "model.h5").read_bytes())
        with pytest.raises(runs.ModelLoadError, match=f"{name} cannot be used as a model: it is an HDF5"):
            runs.load_model(tmp_path / name)
    assert not marker.exists()


# ---------------------------------------------------------------- Minor: clips skipped during training

def _dataset_with_broken_clips(root: Path, good: int, broken: int) -> Path:
    from conftest import tone

    for c, label in enumerate(("low", "high")):
        (root / label).mkdir(parents=True)
        for i in range(good):
            sf.write(root / label / f"{label}_{i}.wav", tone(300 + 900 * c + 20 * i, 0.5), 16000)
    for i in range(broken):  # what a clip deleted or cut while the run reads it looks like
        (root / ("low", "high")[i % 2] / f"gone_{i}.wav").write_bytes(b"RIFF\x00\x00")
    return root


def _tiny_run(dataset: Path):
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf.model import ModelConfig
    from audioclf.training import RunConfig, TrainConfig

    return RunConfig(dataset=str(dataset), split=SplitConfig(val=0.25, test=0.25, seed=0), features=MFCCConfig(),
                     model=ModelConfig(kind="gru", rnn_units=(8,), dense_units=(8,)),
                     train=TrainConfig(epochs=1, patience=None, batch_size=8, warp_augment=()))


def test_a_run_with_skipped_clips_says_so_and_too_many_fail_it(tmp_path, monkeypatch):
    """Minor (121 of 400 clips skipped, run "done", nothing in `runs list`): a few skipped clips
    show in the run's status, metrics and `runs list`; more than 10% fail the run, clearly."""
    from audioclf.training import TrainingError, runs, train

    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path / "home"))  # its failed run is no other test's

    run_id = train(_tiny_run(_dataset_with_broken_clips(tmp_path / "few", good=20, broken=2)))
    status, info = runs.read_status(run_id), next(r for r in runs.list_runs() if r.id == run_id)
    assert status["state"] == "done" and "2 of 42 clips could not be read and were left out" in status["message"]
    assert runs.load_run(run_id).metrics["skipped"] == 2 and (info.skipped, info.n_clips) == (2, 42)
    import contextlib
    import io

    from audioclf import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["runs", "list", "--format", "json"]) == 0
    row = next(r for r in json.loads(out.getvalue()) if r["id"] == run_id)
    assert row["skipped"] == "2/42"

    with pytest.raises(TrainingError, match=r"10 of 50 clips \(20%\) could not be read, more than 10%"):
        train(_tiny_run(_dataset_with_broken_clips(tmp_path / "many", good=20, broken=10)))
    failed = next(r for r in runs.list_runs() if r.dataset.endswith("many"))
    assert failed.state == "failed" and "could not be read" in failed.message


# ---------------------------------------------------------------- Minor: stale edits from a second tab

def test_a_stale_edit_from_a_second_tab_says_so_and_refreshes(tmp_path, monkeypatch):
    """Minor (stale edits failed silently): deleting or relabelling, in a second tab, a clip the
    first tab already deleted or moved says so, changes nothing, and shows the list as it is."""
    from streamlit.testing.v1 import AppTest

    from conftest import tone

    monkeypatch.setenv("AUDIOCLF_HOME", str(tmp_path))
    root = tmp_path / "datasets" / "pets"
    for c, label in enumerate(("cat", "dog")):
        (root / label).mkdir(parents=True)
        for i in range(3):
            sf.write(root / label / f"{label}_{i}.wav", tone(300 + 500 * c + 30 * i, 0.3), 16000)

    def tab() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        at.run()
        at.switch_page("app_pages/data.py")
        at.session_state["dataset"] = "pets"
        at.session_state["data_tab"] = "Browse and edit"
        at.run()
        assert not at.exception, at.exception
        return at

    first, second, third = tab(), tab(), tab()
    gone, moved = root / "cat" / "cat_0.wav", root / "cat" / "cat_1.wav"
    first.button(key=f"del_{gone}").click().run()
    first.selectbox(key=f"mv_{moved}").set_value("dog").run()
    assert not gone.exists() and (root / "dog" / "cat_1.wav").exists() and not first.exception

    second.button(key=f"del_{gone}").click().run()
    warned = " ".join(w.value for w in second.warning)
    assert "`cat_0.wav` is no longer in this class: it was moved or deleted meanwhile" in warned
    shown = {b.key for b in second.button if b.key and b.key.startswith("del_")}
    assert shown == {f"del_{root / 'cat' / 'cat_2.wav'}"}  # the list is the folder as it is now
    third.selectbox(key=f"mv_{moved}").set_value("dog").run()
    assert "`cat_1.wav` is no longer in this class" in " ".join(w.value for w in third.warning)
    assert not second.exception and not third.exception and (root / "dog" / "cat_1.wav").exists()


# ---------------------------------------------------------------- Minor: read-only mode in every entry point

def test_every_entry_point_that_trains_or_writes_refuses_in_read_only_mode(tmp_path, monkeypatch, fsdd_small,
                                                                           trained_run):
    """Minor (`python -m audioclf.tuning --worker` trained in read-only mode): the tuning worker,
    the training entry point and every CLI command that trains, deletes or writes refuse,
    in one line, and nothing changes."""
    from audioclf import tuning, workspace
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig
    from audioclf.training import RunConfig, runs

    base = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.25, test=0.25), features=MFCCConfig())
    study = tuning.create_study(tuning.TuneConfig(base=base, space=tuning.SearchSpace(
        (tuning.parse_param("model.kind", "gru,lstm"),)), trials=2, workers=1))
    run_id = runs.create_run(base.to_dict())
    before = sorted(r.id for r in runs.list_runs())
    env = {**os.environ, "AUDIOCLF_READONLY": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for module, args in (("audioclf.tuning", ["--worker", str(tuning.study_dir(study))]),
                         ("audioclf.tuning", [str(tuning.study_dir(study))]),
                         ("audioclf.training", [str(runs.run_dir(run_id))])):
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                              timeout=300, cwd=ROOT)
        assert proc.returncode != 0 and "read-only mode" in proc.stdout + proc.stderr, (module, args, proc.stderr)
    assert tuning.summarize_study(study).n_trials == 0 and runs.read_status(run_id).get("state") != "done"

    monkeypatch.setenv("AUDIOCLF_READONLY", "1")
    for argv in (["train", fsdd_small, "--epochs", "1"], ["evaluate", fsdd_small, "--cv", "2"],
                 ["tune", fsdd_small, "--trials", "1"], ["tune", "--resume", study],
                 ["runs", "delete", trained_run], ["runs", "cancel", run_id], ["studies", "delete", study],
                 ["demo", "--dest", tmp_path / "demo"], ["download-esc50", "--dest", tmp_path / "esc50"],
                 ["extract", fsdd_small, "--features", "mfcc", "--store", tmp_path / "store"]):
        code, err = _run_cli(*argv)
        assert code == 1 and "read-only mode" in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert sorted(r.id for r in runs.list_runs()) == before and tuning.study_dir(study).is_dir()
    assert not any((tmp_path / name).exists() for name in ("demo", "esc50", "store"))
    monkeypatch.delenv("AUDIOCLF_READONLY")
    import shutil

    runs.delete_run(run_id)  # a queued run or study nobody starts would read as waiting to later tests
    shutil.rmtree(tuning.study_dir(study))
