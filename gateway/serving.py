"""Running the ASGI app under uvicorn (uvloop + httptools), with HTTP limits and read deadlines of our own
and a clean exit on SIGTERM.

uvicorn's httptools protocol accepts headers of any size and number and waits for ever for a request's
headers or body (a client that sends one byte a minute holds a connection, a buffer and a file
descriptor indefinitely). `LimitedHttpToolsProtocol` adds what a front proxy would otherwise have to:
headers capped in size (431) and count (431), the headers read within `header_timeout_s` of the
connection opening or the request's first byte (408, then close), and the body within `body_timeout_s`
of the headers (408, then close). Each refusal is counted in `gateway_http_rejected_total{reason}`.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import orjson
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it, so the process dies by SIGTERM (exit -15) after a
    graceful drain. An orchestrator reads that as a crash; we exit 0 once in-flight work has finished."""

    on_started: Callable[[], None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:  # the port is bound: say how to reach it now
            self.on_started()


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0


def _refusal(status: int, reason: bytes, message: str, code: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": code}})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body))) + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header caps and read deadlines (see the module's docstring).
    Subclassed by `limited_protocol` to bind the limits and the counter of refusals."""

    limits = HttpLimits()
    rejected: Callable[[str], None] = staticmethod(lambda reason: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True   # reading a request's start line and headers (or waiting for its first byte)
        self._header_bytes = 0    # raw bytes received while in headers
        self._header_count = 0
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and not self._refused and self._header_bytes > self.limits.max_header_bytes:
            # still no end of the headers after more than the cap: refuse before buffering more
            self._refuse(431, b"Request Header Fields Too Large", "header_too_large",
                         f"The request's headers exceed {self.limits.max_header_bytes} bytes.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_count = True, 0
        if self._deadline is None:  # the next request on a kept-alive connection: its headers are timed
            self._header_bytes = 0
            self._arm("header_timeout")

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count <= self.limits.max_headers:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        if self._header_count > self.limits.max_headers:
            self._refuse(431, b"Request Header Fields Too Large", "too_many_headers",
                         f"The request has more than {self.limits.max_headers} headers.")
            return
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > self.limits.max_header_bytes:
            self._refuse(431, b"Request Header Fields Too Large", "header_too_large",
                         f"The request's headers exceed {self.limits.max_header_bytes} bytes.")
            return
        super().on_headers_complete()
        self._arm("body_timeout")

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._refused:
            super().on_message_complete()

    def _arm(self, reason: str) -> None:
        self._disarm()
        delay = self.limits.header_timeout_s if reason == "header_timeout" else self.limits.body_timeout_s
        self._deadline = self.loop.call_later(delay, self._expired, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, reason: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if reason == "header_timeout" and self._in_headers and self._header_bytes == 0 and self.cycle is not None:
            self.transport.close()  # a kept-alive connection that sent nothing more: uvicorn's keep-alive case
            return
        what = "headers" if reason == "header_timeout" else "body"
        limit = self.limits.header_timeout_s if reason == "header_timeout" else self.limits.body_timeout_s
        self._refuse(408, b"Request Timeout", reason, f"The request's {what} did not arrive within {limit:g} s.")

    def _refuse(self, status: int, reason: bytes, why: str, message: str) -> None:
        self._refused = True
        self._disarm()
        self.rejected(why)
        started = self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started
        if not started:  # a response under way cannot be replaced: the connection just closes
            self.transport.write(_refusal(status, reason, message, "request_timeout" if status == 408 else why))
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's request sees a disconnect; its answer goes nowhere
            self.cycle.message_event.set()
        self.transport.close()


def limited_protocol(limits: HttpLimits, rejected: Callable[[str], None]) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http` setting, bound to `limits` and the refusal counter."""
    return type("BoundLimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,),
                {"limits": limits, "rejected": staticmethod(rejected)})


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` writes every thread's Python stack to stderr and the gateway goes on serving:
    how to see where a process that does not answer, or does not stop, is waiting."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def run_server(app: ASGIApp, host: str, port: int, *, graceful_timeout_s: float, log_level: str,
               limits: HttpLimits | None = None, rejected: Callable[[str], None] = lambda reason: None,
               on_started: Callable[[], None] | None = None) -> None:
    dump_stacks_on_sigusr1()
    http = limited_protocol(limits or HttpLimits(), rejected)
    config = uvicorn.Config(
        app, host=host, port=port, loop="uvloop" if sys.platform != "win32" else "asyncio", http=http,
        log_config=None, log_level=log_level, access_log=False, server_header=False, proxy_headers=False,
        timeout_graceful_shutdown=graceful_timeout_s)  # type: ignore[arg-type]  # a float works; typed int
    server = GracefulServer(config)
    server.on_started = on_started
    server.run()
