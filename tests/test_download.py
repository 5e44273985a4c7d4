"""ESC-50 download: a small ESC-50-shaped zip served over file:// and a local HTTP server,
verified, unpacked safely and loaded; hostile archives refused without writing anything."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.datasets import (ArchiveError, DownloadError, SplitConfig, download_esc50, load_dataset, safe_extract,
                               split_dataset)

CATEGORIES = ("dog", "rain", "clock_tick")


def _wav(freq: float) -> bytes:
    buf = io.BytesIO()
    t = np.arange(8000) / 8000
    sf.write(buf, 0.3 * np.sin(2 * np.pi * freq * t), 8000, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def esc50_zip(tmp_path_factory) -> Path:
    """Like ESC-50's master.zip: ESC-50-master/{audio/*.wav, meta/esc50.csv, README.md}."""
    path = tmp_path_factory.mktemp("esc50src") / "master.zip"
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ESC-50-master/README.md", "# ESC-50\n")
        for fold in range(1, 6):
            for target, category in enumerate(CATEGORIES):
                name = f"{fold}-{100 + target}-A-{target}.wav"
                zf.writestr(f"ESC-50-master/audio/{name}", _wav(200 + 300 * target + 7 * fold))
                rows.append(f"{name},{fold},{target},{category},False,{100 + target},A")
        zf.writestr("ESC-50-master/meta/esc50.csv", "\n".join(rows) + "\n")
    return path


def test_download_from_file_url_and_load(esc50_zip, tmp_path):
    calls = []
    root = download_esc50(tmp_path / "esc50", url=esc50_zip.as_uri(), progress=lambda d, t: calls.append((d, t)))
    assert root == tmp_path / "esc50"
    assert (root / "meta" / "esc50.csv").is_file() and len(list((root / "audio").iterdir())) == 15
    size = esc50_zip.stat().st_size
    assert calls[-1] == (size, size) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    ds = load_dataset(root)
    assert ds.labels == sorted(CATEGORIES) and ds.groups == [f"fold{k}" for k in range(1, 6)]
    split = split_dataset(ds, SplitConfig("group"))
    assert not {i.group for i in split.train} & {i.group for i in split.test}
    assert not list(tmp_path.glob(".*"))  # temporary files cleaned up
    # Second call: already there, nothing downloaded.
    assert download_esc50(tmp_path / "esc50", url="http://127.0.0.1:9/never-used.zip") == root


def test_download_over_http_with_sha256_into_workspace(esc50_zip):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(esc50_zip.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/master.zip"
        digest = hashlib.sha256(esc50_zip.read_bytes()).hexdigest()
        with pytest.raises(DownloadError, match="SHA-256"):
            download_esc50(url=url, sha256="0" * 64)
        calls = []
        root = download_esc50(url=url, sha256=digest, progress=lambda d, t: calls.append((d, t)))
    finally:
        server.shutdown()
        server.server_close()
    from audioclf import workspace

    assert root == workspace.datasets_dir() / "esc50"
    assert calls[0] == (0, esc50_zip.stat().st_size) and calls[-1][0] == calls[-1][1]
    assert len(load_dataset(root)) == 15


def test_download_errors_are_human(tmp_path):
    with pytest.raises(DownloadError, match="Could not download"):
        download_esc50(tmp_path / "a", url="http://127.0.0.1:9/master.zip")
    not_zip = tmp_path / "page.zip"
    not_zip.write_text("<html>404</html>")
    with pytest.raises(DownloadError, match="not a zip"):
        download_esc50(tmp_path / "b", url=str(not_zip))
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("cats/1.wav", _wav(300))
    with pytest.raises(DownloadError, match="does not look like ESC-50"):
        download_esc50(tmp_path / "c", url=str(other))
    with pytest.raises(DownloadError, match="No archive"):
        download_esc50(tmp_path / "d", url=str(tmp_path / "missing.zip"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.zip", "page.zip"]


@pytest.mark.parametrize("member", ["../evil.wav", "/tmp/audioclf-evil.wav", "ok/../../evil.wav", "..\\evil.wav"])
def test_hostile_members_refused_and_nothing_written(tmp_path, member):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("ESC-50-master/audio/1-1-A-0.wav", _wav(300))
        zf.writestr(member, _wav(400))
    dest = tmp_path / "out" / "esc50"
    with pytest.raises(ArchiveError, match="Refusing"):
        safe_extract(zpath, dest)
    assert not dest.exists()
    with pytest.raises(DownloadError, match="Refusing"):
        download_esc50(dest, url=zpath.as_uri())
    assert not (tmp_path / "evil.wav").exists() and not (tmp_path / "out" / "evil.wav").exists()
    assert not Path("/tmp/audioclf-evil.wav").exists()
    assert not list((tmp_path / "out").rglob("*.wav"))


def test_symlink_member_refused(tmp_path):
    zpath = tmp_path / "link.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("audio/link.wav")
        info.external_attr = (0o120777 << 16)  # a symbolic link to /etc/passwd
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        safe_extract(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists()
