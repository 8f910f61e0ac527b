"""A minimal pipelined RESP2 client (the rate limits' Redis connection, proxy/limits.py): redis-py's asyncio
client costs several times the loopback round trip."""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import unquote, urlsplit

from gateway.errors import RedisError


class RespClient:
    """A minimal pipelined RESP2 client: one connection, replies matched to requests in order."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.password = unquote(parts.password) if parts.password else None
        self.username = unquote(parts.username) if parts.username else None
        self.db = int(parts.path.strip("/") or 0) if parts.path.strip("/").isdigit() else 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[asyncio.Future[object]] = deque()
        self._reading: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()

    async def call(self, *args: bytes | str | int | float) -> object:
        if self._writer is None or self._writer.is_closing():
            async with self._connecting:
                if self._writer is None or self._writer.is_closing():
                    await self._connect()
        assert self._writer is not None
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._writer.write(_encode(args))
        return await future

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._waiting.clear()
        self._reading = asyncio.ensure_future(self._read_loop(self._reader))
        if self.password:
            await self.call("AUTH", *([self.username] if self.username else []), self.password)
        if self.db:
            await self.call("SELECT", self.db)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                reply = await _read_reply(reader)
                if self._waiting:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(reply)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError) as exc:
            self.close(exc)

    def close(self, exc: BaseException | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(str(exc or "closed")))
        if self._reading is not None and self._reading is not asyncio.current_task():
            self._reading.cancel()


def _encode(args: tuple[bytes | str | int | float, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def _read_reply(reader: asyncio.StreamReader) -> object:
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = await reader.readexactly(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [await _read_reply(reader) for _ in range(n)]
    raise ValueError(f"unexpected RESP reply {line[:20]!r}")
