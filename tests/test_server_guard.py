"""The password at the door of the server (issue 21, major 4), against a real server.

`streamlit run app.py -- --readonly` with a password in a secrets file, on 127.0.0.1.
Before signing in, nothing but the sign-in page and the health check answers: uploads
are refused before their body is read (the server's memory does not grow), the websocket
handshake is refused (so no session exists and no message such as clear_cache can be
sent), and every page leads to the sign-in. Wrong passwords wait longer and longer per
client. After signing in the app works, uploads included, within read-only limits.

Real HTTP and websocket clients and Debian's chromium; one server for the module. Each
client that guesses passwords connects from its own loopback address (127.0.0.2, ...),
so its waits are its own.
"""
from __future__ import annotations

import http.client
import ipaddress
import shutil
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
import requests
import soundfile as sf

from appserver import ServerDidNotStart, have_chromium, launch_chromium, start_app, streamlit_app

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "a long phrase for the demo"
START_TIMEOUT = 90
PAGE_TIMEOUT = 90_000  # ms
SIGN_IN = "/_audioclf/sign-in"
MB = 1 << 20
# Small read-only limits (the defaults are 20 MB, 20 files, 100 MB) keep the files small.
LIMITS = {"AUDIOCLF_READONLY_UPLOAD_MB": "1", "AUDIOCLF_READONLY_SESSION_FILES": "3",
          "AUDIOCLF_READONLY_SESSION_MB": "2"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The README's start, read-only, with a password; yields (url, home, pid)."""
    home = tmp_path_factory.mktemp("guard_home")
    secrets = home / "secrets.toml"
    secrets.write_text(f'password = "{PASSWORD}"\n')
    env = {**os.environ, "AUDIOCLF_HOME": str(home / "workspace"), **LIMITS}
    env.pop("AUDIOCLF_READONLY", None)  # the flag must do it
    # The address is .streamlit/config.toml's: 127.0.0.1.
    args = streamlit_app("--secrets.files", str(secrets), "--", "--readonly", address=False)
    try:
        app = start_app(args, home=home, env=env, timeout=START_TIMEOUT)
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))
    yield app.url, home, app.pid
    app.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def listening(pid: int, port: int) -> set[str]:
    """The addresses process `pid` listens on at `port` (its network namespace's /proc/net/tcp)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # LISTEN
                raw = bytes.fromhex(addr)
                # /proc/net shows each 32-bit word in host (little-endian) order.
                words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]
                found.add(str(ipaddress.ip_address(b"".join(words))))
    return found


def connection(url: str, source: str = "127.0.0.1") -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))


def put_upload(url: str, path: str, size: int, headers: dict | None = None) -> int | None:
    """PUT `size` bytes (multipart-like) in 1 MB pieces; the status, or None if cut off unanswered."""
    conn = connection(url)
    try:
        conn.putrequest("PUT", path)
        for k, v in {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(size),
                     **(headers or {})}.items():
            conn.putheader(k, v)
        conn.endheaders()
        piece = b"\0" * MB
        try:
            for start in range(0, size, MB):
                conn.send(piece[:min(MB, size - start)])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest: fine
        try:
            return conn.getresponse().status
        except (ConnectionResetError, http.client.RemoteDisconnected):
            return None
    finally:
        conn.close()


def sign_in_post(url: str, password: str, source: str) -> http.client.HTTPResponse:
    conn = connection(url, source)
    conn.request("POST", SIGN_IN, body=urlencode({"password": password, "next": "/"}),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.body = resp.read().decode()
    conn.close()
    return resp


# ---------------------------------------------------------------- the parts, without a server

def test_streamlit_run_finds_the_guarded_app():
    """`streamlit run app.py` serves the st.App that app.py assigns (found by reading the file);
    if a Streamlit upgrade stops finding it, the server would start unguarded: fail here."""
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"


def test_the_throttle_doubles_its_wait_then_locks_out():
    from app_server import throttle

    now = [0.0]
    t = throttle.Throttle(clock=lambda: now[0])
    waits = []
    for _ in range(throttle.LOCK_AFTER):
        assert t.pending("a") is None  # the wait is over: this password is looked at
        verdict = t.failed("a")
        waits.append(verdict.wait)
        assert t.pending("a") is not None and t.pending("b") is None
        now[0] += verdict.wait
    assert waits[:4] == [1, 2, 4, 8] and all(b >= a for a, b in zip(waits, waits[1:]))
    assert verdict.locked and verdict.wait == throttle.LOCK_SECONDS
    assert "locked for 15 minutes" in verdict.sentence()
    assert t.failed("a").locked  # after a lockout, the next wrong password locks again
    now[0] += throttle.FORGET_AFTER + throttle.LOCK_SECONDS + 1
    assert t.failed("a").wait == throttle.FIRST_WAIT  # an hour without guesses: forgotten
    t.succeeded("a")
    assert t.pending("a") is None
    assert throttle.client_key("2001:db8::1") == throttle.client_key("2001:db8::2:3") == "2001:db8::/64"
    assert throttle.client_key("::ffff:10.0.0.1") == "10.0.0.1"


def test_sign_in_tokens_expire_and_cannot_be_forged():
    from app_server import guard

    now = time.time()
    token = guard.sign(PASSWORD, now)
    assert guard.token_ok(token, PASSWORD, now + 60)
    assert not guard.token_ok(token, "another password", now + 60)  # a new password signs all out
    assert not guard.token_ok(token, PASSWORD, now + guard.SIGN_IN_SECONDS + 1)
    assert not guard.token_ok(token, PASSWORD, now - 3600)  # issued in the future
    issued, mac = token.split(".")
    assert not guard.token_ok(f"{int(issued) - 10}.{mac}", PASSWORD, now)  # another issue time
    assert guard.safe_next("/explore?dataset=demo", "") == "/explore?dataset=demo"
    for bad in ("//evil.example/x", "https://evil.example/", "/\\evil", "/a\r\nSet-Cookie: x", None):
        assert guard.safe_next(bad, "") == "/", bad
    assert guard.safe_next("/explore", "/demo") == "/demo/"


@pytest.mark.parametrize("content, expected", [
    ("password = open sesame\n", "SecretsUnreadable"),  # no quotes: not TOML; was an open app
    (None, "None"),  # no secrets file at all: an open app
])
def test_a_secrets_file_that_cannot_be_read_keeps_the_app_shut(tmp_path, content, expected):
    if content is not None:
        (tmp_path / ".streamlit").mkdir()
        (tmp_path / ".streamlit" / "secrets.toml").write_text(content)
    code = ("from app_server.guard import SecretsUnreadable, configured_password\n"
            "try:\n    print(configured_password())\n"
            "except SecretsUnreadable:\n    print('SecretsUnreadable')")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}  # no ~/.streamlit either
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == expected, out.stderr[-2000:]


def test_read_only_drops_only_messages_that_act_on_everyone():
    from streamlit.proto.BackMsg_pb2 import BackMsg

    from app_server import guard

    def frame(kind: str) -> bytes:
        msg = BackMsg()
        if isinstance(getattr(msg, kind), bool):
            setattr(msg, kind, True)
        else:
            getattr(msg, kind).SetInParent()
        return msg.SerializeToString()

    assert guard.dropped_type(frame("clear_cache")) == "clear_cache"
    assert guard.dropped_type(frame("set_run_on_save")) == "set_run_on_save"
    for kind in ("rerun_script", "stop_script", "app_heartbeat"):
        assert guard.dropped_type(frame(kind)) is None
    assert guard.dropped_type(b"\xff not a protobuf") is None  # Streamlit refuses that itself


# ---------------------------------------------------------------- the real server

def test_the_readme_start_listens_on_this_machine_only(server):
    url, _, pid = server
    assert listening(pid, int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}


def test_audioclf_app_share_listens_on_every_interface(tmp_path):
    """In a network namespace of its own (root), so the shared server is reachable by no one."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (util-linux) for a private network namespace")
    port = 8501
    env = {**os.environ, "AUDIOCLF_HOME": str(tmp_path / "workspace")}
    env.pop("AUDIOCLF_READONLY_UPLOAD_MB", None)
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up; exec \"$@\"", "sh",
                             sys.executable, "-m", "audioclf", "app", "--share", "--readonly",
                             "--headless", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + START_TIMEOUT
        while not listening(proc.pid, port):
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()[-2000:]
            time.sleep(0.3)
        assert listening(proc.pid, port) == {"0.0.0.0"}
        # Read-only: Streamlit's own upload route checks the read-only size too.
        argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")
        assert argv[argv.index("--server.maxUploadSize") + 1] == "20"
    finally:
        proc.terminate()  # exec'd all the way down: this is the server
        proc.wait(10)


def test_before_sign_in_every_page_leads_to_the_sign_in_and_nothing_else_answers(server):
    url, _, _ = server
    page = requests.get(url + "/Present?dataset=demo", headers={"Accept": "text/html"},
                        allow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == SIGN_IN + "?next=%2FPresent%3Fdataset%3Ddemo"
    form = requests.get(url + page.headers["location"])
    assert form.status_code == 200 and 'type="password"' in form.text
    assert 'value="/Present?dataset=demo"' in form.text  # back there after signing in
    assert "stApp" not in form.text and "<script" not in form.text  # not the app's page
    for path in ("/_stcore/host-config", "/static/js/index.js", "/media/x.wav", "/favicon.png",
                 "/_stcore/metrics", "/component/x/index.html"):
        r = requests.get(url + path, allow_redirects=False)
        assert r.status_code == 403, (path, r.status_code)
    assert requests.get(url + "/_stcore/health").status_code == 200  # readiness probes only
    # Forged or foreign cookies do not count.
    for cookie in ("1.abc", f"{int(time.time())}.{'0' * 64}", "x"):
        r = requests.get(url + "/_stcore/host-config", cookies={"audioclf_signin": cookie})
        assert r.status_code == 403, cookie


def test_an_upload_before_sign_in_is_refused_and_not_kept(server):
    """Four 50 MB uploads by a visitor who never signed in (issue: 204 each, +200 MB kept)."""
    url, _, pid = server
    path = f"/_stcore/upload_file/{uuid.uuid4()}/{uuid.uuid4()}"
    assert put_upload(url, path, 10_000) == 403
    before = rss_mb(pid)
    statuses = [put_upload(url, path, 50 * MB) for _ in range(4)]
    time.sleep(1)
    grown = rss_mb(pid) - before
    assert all(s in (403, None) for s in statuses), statuses
    assert 403 in statuses
    assert grown < 40, f"the server grew by {grown:.0f} MB while refusing 200 MB of uploads"


def test_the_websocket_is_refused_before_sign_in(server):
    """No websocket, no session: rerun, clear_cache or any other message has nowhere to go."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url, _, _ = server
    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    for cookie in (None, "audioclf_signin=1.abc"):
        headers = {"Origin": url, **({"Cookie": cookie} if cookie else {})}
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, additional_headers=headers, subprotocols=["streamlit"], open_timeout=10)
        assert refused.value.response.status_code == 403


def test_wrong_passwords_wait_longer_and_longer_per_client(server):
    """30 wrong passwords as fast as possible (issue: all 30 checked in 1.9 s)."""
    url, _, _ = server
    answers = [sign_in_post(url, "guess %d" % i, "127.0.0.2") for i in range(30)]
    statuses = [a.status for a in answers]
    assert statuses[0] == 401 and "Wrong password" in answers[0].body
    # The first wait is 1 s: what came during it was not looked at.
    checked = statuses.count(401)
    assert checked <= 3 and statuses.count(429) == 30 - checked, statuses
    assert all("before the next try" in a.body for a in answers)
    # Not even the right password gets in during a wait.
    right = sign_in_post(url, PASSWORD, "127.0.0.2")
    if right.status == 429:
        assert "audioclf_signin" not in (right.getheader("set-cookie") or "")
    waits = []
    for _ in range(3):
        time.sleep(int(answers[-1].getheader("retry-after")) + 0.2)
        answers.append(sign_in_post(url, "another guess", "127.0.0.2"))
        assert answers[-1].status == 401, answers[-1].body
        waits.append(int(answers[-1].getheader("retry-after")))
    assert waits == sorted(waits) and waits[-1] >= 2 * waits[0], waits
    # Another client is not slowed down by this one, and gets in with the password.
    other = sign_in_post(url, PASSWORD, "127.0.0.3")
    assert other.status == 303 and "audioclf_signin=" in other.getheader("set-cookie")
    assert "HttpOnly" in other.getheader("set-cookie")


class Session:
    """A signed-in client speaking Streamlit's own protocol: HTTP for uploads, a websocket for the rest."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.url, self.http = url, requests.Session()
        r = self.http.post(url + SIGN_IN, data={"password": PASSWORD, "next": "/"}, allow_redirects=False)
        assert r.status_code == 303, r.text
        assert self.http.get(url + "/").status_code == 200  # the app's page, signed in
        self.http.get(url + "/_stcore/health")  # sets Streamlit's XSRF cookie, as the page's script does
        self.xsrf = self.http.cookies.get("_streamlit_xsrf")
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        self.ws = connect(url.replace("http://", "ws://") + "/_stcore/stream", open_timeout=30,
                          additional_headers={"Origin": url, "Cookie": cookie},
                          subprotocols=["streamlit", self.xsrf], max_size=None)
        self.id = self.rerun()

    def send(self, kind: str) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        if isinstance(getattr(msg, kind), bool):  # clear_cache, set_run_on_save
            setattr(msg, kind, True)
        else:
            getattr(msg, kind).SetInParent()
        self.ws.send(msg.SerializeToString())

    def rerun(self) -> str:
        """Run the script; its session id once the run has finished."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.send("rerun_script")
        session, deadline = None, time.time() + PAGE_TIMEOUT / 1000
        while time.time() < deadline:
            msg = ForwardMsg.FromString(self.ws.recv(timeout=deadline - time.time()))
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                session = msg.new_session.initialize.session_id
            elif kind == "script_finished" and session:
                return session
        raise AssertionError("the script run did not finish")

    def upload(self, kb: int) -> tuple[str, int]:
        """(file id, status) of an upload of `kb` KB of real audio bytes (a WAV's worth of noise)."""
        file_id = uuid.uuid4().hex
        r = self.http.put(f"{self.url}/_stcore/upload_file/{self.id}/{file_id}",
                          files={"file": ("clip.wav", os.urandom(kb << 10), "audio/wav")},
                          headers={"X-Xsrftoken": self.xsrf})
        return file_id, r.status_code

    def delete(self, file_id: str) -> int:
        return self.http.delete(f"{self.url}/_stcore/upload_file/{self.id}/{file_id}",
                                headers={"X-Xsrftoken": self.xsrf}).status_code


def test_signed_in_uploads_stay_within_the_read_only_limits(server):
    """Per file 1 MB, per session 3 files and 2 MB at a time here (LIMITS); deleting frees room."""
    url, _, _ = server
    s = Session(url)
    try:
        assert s.upload(2048)[1] == 413  # one file over the limit
        a, status = s.upload(900)
        assert status == 204
        assert s.upload(900)[1] == 204
        assert s.upload(900)[1] == 413  # 2.7 MB held would pass the session's 2 MB
        assert s.upload(10)[1] == 204  # the third file
        assert s.upload(10)[1] == 413  # a fourth
        assert s.delete(a) == 204
        assert s.upload(10)[1] == 204  # room again
    finally:
        s.ws.close()


def test_a_read_only_server_ignores_clear_cache_from_a_signed_in_session(server):
    """clear_cache empties every visitor's caches; on a shared demo one visitor may not."""
    url, home, _ = server
    s = Session(url)
    try:
        s.send("clear_cache")
        s.send("set_run_on_save")
        s.rerun()  # the connection still works: only those two messages were skipped
    finally:
        s.ws.close()
    log = (home / "server.log").read_text()
    assert "ignored a clear_cache message" in log and "ignored a set_run_on_save message" in log


@pytest.fixture(scope="module")
def browser():
    if not have_chromium():
        pytest.skip("install Debian's chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    """A 1 s tone (32 KB) and a 40 s one (1.3 MB: over this server's 1 MB read-only limit)."""
    folder = tmp_path_factory.mktemp("guard_clips")
    sr = 16000
    out = []
    for name, seconds in (("tone.wav", 1), ("long_tone.wav", 40)):
        t = np.arange(seconds * sr) / sr
        sf.write(folder / name, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr,
                 subtype="PCM_16")
        out.append(folder / name)
    return out[0], out[1]


@pytest.mark.e2e
def test_the_browser_signs_in_and_the_app_works(server, browser, clips):
    url, _, _ = server
    small, large = clips
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT)
    page.goto(url + "/explore")
    assert SIGN_IN in page.url
    assert page.locator('[data-testid="stApp"]').count() == 0  # only the sign-in
    assert page.locator("input").count() == 2  # the password (and the hidden way back)
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="Wrong password").wait_for()
    assert not context.cookies()
    page.wait_for_timeout(1300)  # the 1 s wait after a first wrong password
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.locator("h1", has_text="Explore").wait_for()  # back where the visitor was going
    [cookie] = [c for c in context.cookies() if c["name"] == "audioclf_signin"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Present" in nav and "Train" not in nav  # read-only, from `-- --readonly`
    # Uploads pass the guard once signed in, within the read-only limit the uploader states.
    page.get_by_text("Upload").first.click()
    dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]').first
    page.get_by_text("1MB per file").first.wait_for()
    dropzone.set_input_files(str(large))
    page.get_by_text("File must be 1.0MB or smaller").wait_for()
    dropzone.set_input_files(str(small))
    page.get_by_text("1.00 s · 16000 Hz").first.wait_for()  # the server has it and read it
    assert page.locator('[data-testid="stException"]').count() == 0
    context.close()
