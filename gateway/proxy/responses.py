"""Minimal ASGI responses that keep upstream headers as raw pairs and stop a relay when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway.wire import JSON, Headers, RawResponse  # noqa: F401  (re-exported)

_EVENT_STREAM = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))


def event_stream_headers(headers: Headers) -> Headers:
    """`headers` for a body the gateway tells as server-sent events: its own content type, and no caching
    (so no proxy holds the events back), in place of those the headers had."""
    return [*_EVENT_STREAM, *(h for h in headers if h[0] not in (b"content-type", b"cache-control"))]


class RelayResponse:
    """Streams `chunks` to the client; a client disconnect cancels the producer (and so the upstream call).

    We watch for `http.disconnect` ourselves rather than rely on a failed send, because a slow upstream
    may go minutes without a chunk to send, and the upstream request must stop as soon as the client goes.
    """

    __slots__ = ("status", "headers", "chunks", "on_disconnect")

    def __init__(self, status: int, headers: Headers, chunks: AsyncIterator[bytes],
                 on_disconnect: Callable[[], None] | None = None) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pump.done():
                pump.cancel()
                if self.on_disconnect is not None:
                    self.on_disconnect()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump
            await _close(self.chunks)
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            raise pump.exception()  # type: ignore[misc]

    async def _pump(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@contextlib.contextmanager
def cancel_on_disconnect(receive: Receive) -> Iterator[None]:
    """Cancel the enclosed awaits (e.g. a minutes-long non-streamed upstream call) if the client leaves;
    raise `ClientDisconnect` in their place. Only valid once the request body has been read."""
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.get_running_loop().create_task(_wait_disconnect(receive))
    active = True

    def on_done(w: asyncio.Task[None]) -> None:
        # `active` guards against a callback already scheduled when the block ends.
        if active and not w.cancelled() and w.exception() is None:
            task.cancel()

    watcher.add_done_callback(on_done)
    try:
        yield
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            task.uncancel()
            raise ClientDisconnect() from None
        raise
    finally:
        active = False
        watcher.cancel()


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose: Callable[[], Awaitable[None]] | None = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
