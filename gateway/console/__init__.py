"""The web console: static ES modules (vendored Preact + htm, no build step) served from package data
under /console/, a pure client of the admin API. Mounted when the config has admin tokens and
`server.console` is not false.

Every response under /console carries a strict CSP (nothing from another origin, no inline script or
style, no eval), nosniff, no referrer, same-origin opener, no framing, and `Cache-Control: no-cache`
(reloads are 304s through the ETag, and an upgrade never leaves stale modules behind).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
]
_OURS = {name for name, _ in HEADERS}


class ConsoleFiles:
    """StaticFiles from the package's console/static, with the console's headers on every answer."""

    def __init__(self) -> None:
        self.files = StaticFiles(packages=[("gateway", "console/static")], html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                message = {**message, "headers": headers + HEADERS}
            await send(message)

        try:
            await self.files(scope, receive, send_with_headers)
        except HTTPException as exc:  # a missing file: answered here, so it carries the headers too
            await PlainTextResponse(exc.detail, exc.status_code)(scope, receive, send_with_headers)


def console_enabled(config: Any) -> bool:
    """Served when the config has admin tokens (its only way in) and `server.console` is not false."""
    return bool(config.admin.tokens) and bool(config.server.console)


def console_url(config: Any, host: str, port: int) -> str | None:
    """The console's address and an admin token to sign in with, for the demo banner (None: not served)."""
    if not console_enabled(config):
        return None
    return f"http://{host}:{port}/console/ (admin token {config.admin.tokens[0].token})"


def console_routes() -> list[BaseRoute]:
    return [Mount("/console", app=ConsoleFiles(), name="console")]
