"""Upload limits of a read-only (shared demo) server, enforced where uploads arrive.

Streamlit keeps every uploaded file in memory until its widget lets go of it, and checks
only `server.maxUploadSize` per file (500 MB for audioclf's data-set zips). A demo visitor
only needs a clip or a few at a time, so in read-only mode each file, and the files one
session holds at once, are capped here before Streamlit reads a byte of the body. The
pages pass the same per-file limit to their uploaders, so the browser says so first.

Each limit can be changed with an environment variable, e.g. AUDIOCLF_READONLY_UPLOAD_MB=50.
"""
from __future__ import annotations

import os
from collections import OrderedDict

MB = 1 << 20
UPLOAD_ROUTE = "/_stcore/upload_file/"  # Streamlit's: PUT/DELETE .../{session_id}/{file_id}
# The multipart framing around the file (boundaries, headers, its name).
MULTIPART_SLACK = 64 << 10
MAX_SESSIONS = 2_000  # sessions tracked (least recently uploading dropped first)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"{name}={raw!r} is not a positive whole number.")
    return int(raw)


# One clip: 20 MB holds two minutes of 44.1 kHz stereo WAV, or a small zip of clips.
READONLY_FILE_MB = _env_int("AUDIOCLF_READONLY_UPLOAD_MB", 20)
READONLY_SESSION_FILES = _env_int("AUDIOCLF_READONLY_SESSION_FILES", 20)
READONLY_SESSION_MB = _env_int("AUDIOCLF_READONLY_SESSION_MB", 100)


class UploadBudget:
    """The uploaded files each session holds (by Streamlit's file ids) and their sizes."""

    def __init__(self, file_mb: int = READONLY_FILE_MB, files: int = READONLY_SESSION_FILES,
                 total_mb: int = READONLY_SESSION_MB) -> None:
        self.file_bytes = file_mb * MB
        self.files = files
        self.total_bytes = total_mb * MB
        self.sessions: OrderedDict[str, dict[str, int]] = OrderedDict()

    def refusal(self, session: str, file_id: str, length: int) -> str | None:
        """Why an upload of `length` request bytes is refused, or None if it may go ahead."""
        if length > self.file_bytes + MULTIPART_SLACK:
            return f"This demo takes files up to {self.file_bytes // MB} MB each."
        held = dict(self.sessions.get(session, {}))
        held.pop(file_id, None)  # the same file again replaces itself
        if len(held) >= self.files:
            return f"This demo holds at most {self.files} uploaded files at a time: remove some first."
        if sum(held.values()) + length > self.total_bytes + MULTIPART_SLACK:
            return (f"This demo holds at most {self.total_bytes // MB} MB of uploads at a time: "
                    "remove some first.")
        return None

    def added(self, session: str, file_id: str, length: int) -> None:
        held = self.sessions.pop(session, {})
        held[file_id] = length
        self.sessions[session] = held  # most recent last
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)

    def removed(self, session: str, file_id: str) -> None:
        held = self.sessions.get(session)
        if held is not None:
            held.pop(file_id, None)


def route_ids(rel_path: str) -> tuple[str, str] | None:
    """(session id, file id) of an upload route path (below the base URL), else None."""
    if not rel_path.startswith(UPLOAD_ROUTE):
        return None
    parts = rel_path[len(UPLOAD_ROUTE):].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]
