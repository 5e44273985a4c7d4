"""Upload limits of a read-only (shared demo) server, enforced where uploads arrive.

Streamlit keeps every uploaded file in memory until its widget lets go of it, and checks
only `server.maxUploadSize` per file (500 MB for audioclf's data-set zips). A demo visitor
only needs a clip or a few at a time, so in read-only mode each file, and the files one
session holds at once, are capped here before Streamlit reads a byte of the body. The
pages pass the same per-file limit to their uploaders, so the browser says so first.

The limits live in `audioclf.limits` (READONLY_*, each with its AUDIOCLF_ variable).
"""
from __future__ import annotations

from collections import OrderedDict

from audioclf import limits

MB = limits.MB
UPLOAD_ROUTE = "/_stcore/upload_file/"  # Streamlit's: PUT/DELETE .../{session_id}/{file_id}
# The multipart framing around the file (boundaries, headers, its name).
MULTIPART_SLACK = 64 << 10
MAX_SESSIONS = 2_000  # sessions tracked (least recently uploading dropped first)


class UploadBudget:
    """The uploaded files each session holds (by Streamlit's file ids) and their sizes."""

    def __init__(self, file_bytes: int = limits.READONLY_UPLOAD_BYTES,
                 files: int = limits.READONLY_SESSION_FILES,
                 total_bytes: int = limits.READONLY_SESSION_BYTES) -> None:
        self.file_bytes = file_bytes
        self.files = files
        self.total_bytes = total_bytes
        self.sessions: OrderedDict[str, dict[str, int]] = OrderedDict()

    def refusal(self, session: str, file_id: str, length: int) -> str | None:
        """Why an upload of `length` request bytes is refused, or None if it may go ahead."""
        if length > self.file_bytes + MULTIPART_SLACK:
            return f"This demo takes files up to {limits.mb(self.file_bytes)} each."
        held = dict(self.sessions.get(session, {}))
        held.pop(file_id, None)  # the same file again replaces itself
        if len(held) >= self.files:
            return f"This demo holds at most {self.files} uploaded files at a time: remove some first."
        if sum(held.values()) + length > self.total_bytes + MULTIPART_SLACK:
            return (f"This demo holds at most {limits.mb(self.total_bytes)} of uploads at a time: "
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
