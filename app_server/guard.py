"""The password at the door of the server: ASGI middleware in front of the whole Streamlit app.

Streamlit 1.67 serves apps with Starlette, and `st.App(script, middleware=[...])` is its
public way to put ASGI middleware in front of everything the server answers: the page, its
static files, `/_stcore/upload_file`, media, and the websocket every session runs over.
`app.py` builds that App, so `streamlit run app.py` and `audioclf app` both start guarded.

With a password configured (`password` in Streamlit's secrets, `.streamlit/secrets.toml`),
a request without a valid sign-in cookie gets the sign-in page (a browser opening a page),
403 (uploads and everything else), or a refused websocket handshake: no session exists, so
no message of any kind (rerun, clear_cache, ...) reaches Streamlit. Only the health check
stays open. The sign-in page is served here, from one self-contained HTML string, and sets
an HttpOnly cookie: the time it was issued, signed with HMAC-SHA256 under a key derived
from `server.cookieSecret` and the password (changing either signs everyone out). Wrong
passwords are slowed down per client (`app_server.throttle`).

Read-only mode also caps uploads here (`app_server.uploads`), password or not, and drops
the websocket messages by which one visitor would change the server for everyone:
clear_cache (empties every session's caches) and set_run_on_save.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, quote

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audioclf.workspace import read_only
from app_server.throttle import Throttle, Verdict, client_key
from app_server.uploads import UploadBudget, route_ids

PASSWORD_KEY = "password"  # in .streamlit/secrets.toml: password = "..." guards the server
COOKIE = "audioclf_signin"
SIGN_IN_PATH = "/_audioclf/sign-in"
SIGN_OUT_PATH = "/_audioclf/sign-out"
OPEN_PATHS = ("/_stcore/health",)  # readiness probes: says "ok" and nothing about the app
SIGN_IN_SECONDS = 12 * 3600  # a sign-in lasts a working day
MAX_FORM_BYTES = 4096  # the sign-in form is a password and a path
KEY_SALT = b"audioclf sign-in\0"
# BackMsg types a read-only server ignores: they act on every session, not the sender's.
READONLY_DROPPED = ("clear_cache", "set_run_on_save")

log = logging.getLogger("audioclf.guard")


class SecretsUnreadable(Exception):
    """A secrets file exists but cannot be read: whether it sets a password is unknown."""


def configured_password() -> str | None:
    """The password every visitor must give (Streamlit's secrets), or None for an open app.

    Raises SecretsUnreadable when a secrets file exists and cannot be parsed (a password
    without quotes, say): the app must then stay shut, not open up.
    """
    import streamlit as st

    try:
        value = st.secrets.get(PASSWORD_KEY)
    except (OSError, ValueError) as exc:  # Streamlit's "no secrets" is a FileNotFoundError too
        files = st.get_option("secrets.files") or []
        if any(Path(f).exists() for f in files):
            raise SecretsUnreadable(str(exc)) from exc
        return None
    return str(value) if value else None


def base_path() -> str:
    """`server.baseUrlPath` as a path prefix: "" or "/demo"."""
    import streamlit as st

    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def signing_key(password: str) -> bytes:
    import streamlit as st

    secret = str(st.get_option("server.cookieSecret"))
    return hmac.new(secret.encode(), KEY_SALT + password.encode(), hashlib.sha256).digest()


def sign(password: str, now: float | None = None) -> str:
    """A sign-in token: its issue time and that time's HMAC."""
    issued = str(int(time.time() if now is None else now))
    mac = hmac.new(signing_key(password), issued.encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac}"


def token_ok(token: str | None, password: str, now: float | None = None) -> bool:
    """True for a token `sign` made with this password and server secret, not yet expired."""
    if not isinstance(token, str):
        return False
    issued, _, mac = token.partition(".")
    if not issued.isdigit() or not mac:
        return False
    age = (time.time() if now is None else now) - int(issued)
    if not 0 <= age < SIGN_IN_SECONDS:
        return False
    expected = hmac.new(signing_key(password), issued.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac.encode(), expected.encode())


def signed_in(cookies: Mapping[str, str], password: str) -> bool:
    """True when `cookies` (a request's, or `st.context.cookies`) hold a valid sign-in."""
    return token_ok(cookies.get(COOKIE), password)


def password_matches(given: str, password: str) -> bool:
    # Digests first: compare_digest's time still depends on the lengths it is given.
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(password.encode()).digest())


def safe_next(target: str | None, prefix: str) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    home = prefix + "/"
    if not target or not target.startswith(home) or target.startswith("//") \
            or "\\" in target or any(c in target for c in "\r\n\t"):
        return home
    return target


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>audioclf: sign in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f7f7f9; color: #262730; margin: 0; }}
main {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem 2.2rem;
        border-radius: 0.6rem; box-shadow: 0 1px 4px rgba(0,0,0,0.12); }}
h1 {{ font-size: 1.6rem; margin: 0 0 1.2rem; }}
label {{ display: block; font-size: 0.9rem; margin-bottom: 0.3rem; }}
input {{ width: 100%; box-sizing: border-box; padding: 0.55rem; font-size: 1rem;
         border: 1px solid #bbb; border-radius: 0.4rem; }}
button {{ margin-top: 1rem; width: 100%; padding: 0.6rem; font-size: 1rem; border: 0;
          border-radius: 0.4rem; background: #F58518; color: #fff; cursor: pointer; }}
.error {{ color: #a4000f; margin-top: 1rem; }}
</style></head>
<body><main>
<h1>audioclf</h1>
<form method="post" action="{action}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form>
{message}
</main></body></html>
"""
PAGE_HEADERS = {  # nothing on the page may load from elsewhere or be framed
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def sign_in_page(prefix: str, target: str, message: str = "", status: int = 200,
                 verdict: Verdict | None = None) -> HTMLResponse:
    shown = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    body = PAGE.format(action=html.escape(prefix + SIGN_IN_PATH), next=html.escape(target),
                       message=shown)
    headers = dict(PAGE_HEADERS)
    if verdict is not None:
        headers["Retry-After"] = str(verdict.seconds)
    return HTMLResponse(body, status_code=status, headers=headers)


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str] | None:
    """The url-encoded form of a request, or None if its body is longer than `limit`."""
    if int(request.headers.get("content-length") or 0) > limit:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


class PasswordGuard:
    """ASGI middleware: the sign-in in front of every request, and read-only upload limits."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.throttle = Throttle(clock)
        self.uploads = UploadBudget()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        prefix = base_path()
        path = scope["path"]
        rel = path[len(prefix):] if prefix and path.startswith(prefix) else path
        try:
            password = configured_password()
        except SecretsUnreadable as exc:
            log.error("refusing every request: %s", exc)
            await self.shut(scope, receive, send)
            return
        if password:
            if rel == SIGN_IN_PATH and scope["type"] == "http":
                await self.sign_in(scope, receive, send, password, prefix)
                return
            if rel == SIGN_OUT_PATH and scope["type"] == "http":
                await self.sign_out(scope, receive, send, prefix)
                return
            if rel not in OPEN_PATHS and not signed_in(HTTPConnection(scope).cookies, password):
                await self.refuse(scope, receive, send, prefix)
                return
        if read_only():
            if scope["type"] == "websocket":
                receive = readonly_receive(receive)
            elif (ids := route_ids(rel)) is not None:
                await self.budgeted_upload(scope, receive, send, *ids)
                return
        await self.app(scope, receive, send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send, prefix: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting: the server answers the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = Headers(scope=scope)
        response: Response
        if scope["method"] in ("GET", "HEAD") and "text/html" in headers.get("accept", ""):
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            response = RedirectResponse(f"{prefix}{SIGN_IN_PATH}?next={quote(target, safe='')}",
                                        status_code=303, headers={"Cache-Control": "no-store"})
        else:
            response = PlainTextResponse("Sign in first.", status_code=403)
        await response(scope, receive, send)

    async def shut(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        await PlainTextResponse("The server's secrets file cannot be read, so it lets no one in: "
                                "its owner must fix .streamlit/secrets.toml (the server log says "
                                "what is wrong).", status_code=503)(scope, receive, send)

    async def sign_in(self, scope: Scope, receive: Receive, send: Send, password: str,
                      prefix: str) -> None:
        request = Request(scope, receive)
        if request.method in ("GET", "HEAD"):
            target = safe_next(request.query_params.get("next"), prefix)
            if signed_in(request.cookies, password):
                response: Response = RedirectResponse(target, status_code=303)
            else:
                response = sign_in_page(prefix, target)
            await response(scope, receive, send)
            return
        if request.method != "POST":
            await PlainTextResponse("Method not allowed.", status_code=405)(scope, receive, send)
            return
        form = await read_form(request)
        if form is None:
            await PlainTextResponse("Form too large.", status_code=413)(scope, receive, send)
            return
        target = safe_next(form.get("next"), prefix)
        client = client_key(request.client.host if request.client else None)
        waiting = self.throttle.pending(client)
        if waiting is not None:  # not even looked at: guessing faster gains nothing
            response = sign_in_page(prefix, target, waiting.sentence(), 429, waiting)
        elif password_matches(form.get("password", ""), password):
            self.throttle.succeeded(client)
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, sign(password), max_age=SIGN_IN_SECONDS, path=prefix + "/",
                                httponly=True, samesite="lax", secure=secure())
        else:
            verdict = self.throttle.failed(client)
            log.warning("wrong password from %s (%s)", client, verdict.sentence())
            response = sign_in_page(prefix, target, f"Wrong password. {verdict.sentence()}", 401,
                                    verdict)
        await response(scope, receive, send)

    async def sign_out(self, scope: Scope, receive: Receive, send: Send, prefix: str) -> None:
        response = RedirectResponse(prefix + SIGN_IN_PATH, status_code=303)
        response.delete_cookie(COOKIE, path=prefix + "/", httponly=True, samesite="lax",
                               secure=secure())
        await response(scope, receive, send)

    async def budgeted_upload(self, scope: Scope, receive: Receive, send: Send, session: str,
                              file_id: str) -> None:
        """Streamlit's upload route behind the read-only limits, checked before the body is read."""
        method = scope["method"]
        if method == "PUT":
            headers = Headers(scope=scope)
            length = headers.get("content-length", "")
            if not length.isdigit() or "transfer-encoding" in headers:
                await PlainTextResponse("Uploads need a Content-Length.", status_code=411)(
                    scope, receive, send)
                return
            reason = self.uploads.refusal(session, file_id, int(length))
            if reason:
                await PlainTextResponse(reason, status_code=413)(scope, receive, send)
                return
        status = []

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watched)
        if status and status[0] == 204:
            if method == "PUT":
                self.uploads.added(session, file_id, int(Headers(scope=scope)["content-length"]))
            elif method == "DELETE":
                self.uploads.removed(session, file_id)


def dropped_type(data: bytes | None) -> str | None:
    """The BackMsg type of a websocket frame if a read-only server ignores it, else None."""
    if not data:
        return None
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    try:
        msg.ParseFromString(data)
    except Exception:  # noqa: BLE001 - not a BackMsg: Streamlit refuses it itself
        return None
    kind = msg.WhichOneof("type")
    return kind if kind in READONLY_DROPPED else None


def readonly_receive(receive: Receive) -> Receive:
    """A websocket's `receive` that skips the messages in READONLY_DROPPED."""
    async def filtered() -> Message:
        while True:
            message = await receive()
            kind = dropped_type(message.get("bytes")) if message["type"] == "websocket.receive" else None
            if kind is None:
                return message
            log.warning("read-only: ignored a %s message", kind)

    return filtered


def secure() -> bool:
    """Cookies only over HTTPS when the server itself serves HTTPS."""
    import streamlit as st

    return bool(st.get_option("server.sslCertFile"))


def middleware() -> list[Middleware]:
    """What `app.py` hands to `st.App`: the guard, in front of Streamlit's own middleware."""
    return [Middleware(PasswordGuard)]
