"""An in-memory upstream: `Upstream`'s client (gateway.proxy.upstream.UpstreamClient) over an ASGI app
through httpx.ASGITransport, so a test's fake upstream runs in the test's own event loop, no socket.

    create_app(settings, config, runtime, upstream_client=memory_client(app))

Every configured upstream then talks to `app` (the URL's host is ignored; its path and query reach the
app as a server would pass them); or, given a mapping of upstream names to apps, each named upstream to
its own app and any other upstream to nothing (a refused connection). Errors come back as a server would answer them: an exception in the
app before its answer started is a 500, and an httpx transport failure is a ConnectionError (the
gateway's UpstreamUnreachable).

httpx.ASGITransport BUFFERS THE WHOLE ANSWER: `request` returns only once the app has finished, and the
body then comes out of `content.readany()` in `piece`-byte slices (boundaries that fall anywhere, even
inside an SSE event, as a socket's would). So a stream's timing is not seen here: first-byte, idle and
total deadlines, chunks released while the upstream still writes, a client or upstream leaving
mid-stream, an app that never finishes: those tests stay on loopback servers (tests/upstream.py,
tests/rawupstream.py, tests/cueupstream.py). So does what only aiohttp shows (its URL encoding, its
default headers, content decoding quirks): this client decodes gzip/deflate as aiohttp's session does.

Not in gateway/: the bench measures the real client over loopback, and the demo runs a real process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx
from starlette.types import ASGIApp
from yarl import URL

from gateway.config.schema import UpstreamConfig
from gateway.proxy.upstream import UpstreamAnswer, UpstreamBody, UpstreamClient


class MemoryBody:
    """The buffered body, `piece` bytes per readany(), then b""."""

    def __init__(self, chunks: AsyncIterator[bytes], piece: int) -> None:
        self._chunks = chunks
        self._piece = piece
        self._left = b""

    async def readany(self) -> bytes:
        while not self._left:
            try:
                self._left = await anext(self._chunks)
            except StopAsyncIteration:
                return b""
        out, self._left = self._left[:self._piece], self._left[self._piece:]
        return out


class MemoryAnswer:
    """httpx's response as the protocol's answer: raw_headers lower-cased byte pairs."""

    def __init__(self, response: httpx.Response, piece: int) -> None:
        self._response = response
        self.status = response.status_code
        self.raw_headers = [(k.lower(), v) for k, v in response.headers.raw]
        self.content: UpstreamBody = MemoryBody(response.aiter_bytes(), piece)  # decoded, as aiohttp's

    def close(self) -> None:
        self.content = MemoryBody(_nothing(), 1)  # the body is in memory: nothing to drop but the reference


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


class MemoryClient:
    """An UpstreamClient over one ASGI app (see the module's docstring)."""

    def __init__(self, app: ASGIApp | None, piece: int = 4096) -> None:
        """`app` None: nothing listens (every request fails as a refused connection would)."""
        transport = None if app is None else httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        self._client = httpx.AsyncClient(transport=transport, timeout=None)
        self._app = app
        self._piece = piece
        self.sent: list[httpx.Request] = []  # every request, as sent (a test may read its headers)

    def request(self, method: str, url: URL, *, data: Any = None, headers: Any = None,
                allow_redirects: bool = True) -> Awaitable[UpstreamAnswer]:
        return self._request(method, url, data, headers, allow_redirects)

    async def _request(self, method: str, url: URL, data: Any, headers: Iterable[tuple[str, str]] | None,
                       allow_redirects: bool) -> UpstreamAnswer:
        request = self._client.build_request(method, str(url), content=data, headers=list(headers or ()))
        self.sent.append(request)
        if self._app is None:
            raise ConnectionRefusedError("in-memory upstream: no app for this upstream")
        try:
            response = await self._client.send(request, stream=True, follow_redirects=allow_redirects)
        except httpx.TransportError as exc:
            raise ConnectionError(f"in-memory upstream: {type(exc).__name__}: {exc}") from exc
        return MemoryAnswer(response, self._piece)

    async def close(self) -> None:
        await self._client.aclose()


def memory_client(app: ASGIApp | Mapping[str, ASGIApp], piece: int = 4096) -> Callable[[UpstreamConfig], UpstreamClient]:
    """A create_app(upstream_client=...) factory: every upstream's client talks to `app` in memory, or
    (a mapping) the upstream named there to its app and any other to nothing."""
    def make(config: UpstreamConfig) -> UpstreamClient:
        return MemoryClient(app.get(config.name) if isinstance(app, Mapping) else app, piece)

    return make
