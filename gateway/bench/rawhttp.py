"""A minimal HTTP/1.1 keep-alive client over asyncio streams, for timing streamed answers.

It only POSTs to loopback and reads the body as it arrives (chunked, content-length or until close),
handing each piece to a callback; far less per-chunk work than a general client such as httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

from gateway.errors import RawHTTPError  # noqa: F401  (re-exported; defined there)

MAX_HEAD = 64 * 1024


class RawConnection:
    """One kept-alive connection to `url`'s host; `post` may be called again after it returns."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    async def post(self, body: bytes, headers: dict[str, str], on_data: Callable[[bytes], None]) -> int:
        """Send one POST, pass every body piece to `on_data` as it arrives; return the status code."""
        return await asyncio.wait_for(self._post(body, headers, on_data), self.timeout_s)

    async def _post(self, body: bytes, headers: dict[str, str], on_data: Callable[[bytes], None]) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            status, fields = _parse_head(await self._reader.readuntil(b"\r\n\r\n"))
            keep = await _read_body(self._reader, fields, on_data)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            await self.close()
            raise RawHTTPError(f"connection failed: {exc!r}") from exc
        if not keep:
            await self.close()
        return status


def _parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise RawHTTPError(f"bad status line {lines[0][:80]!r}")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    return int(parts[1]), fields


async def _read_body(reader: asyncio.StreamReader, fields: dict[bytes, bytes],
                     on_data: Callable[[bytes], None]) -> bool:
    """Read the body, feeding `on_data`; True if the connection stays open for the next request."""
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            on_data((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailer fields
    elif b"content-length" in fields:
        left = int(fields[b"content-length"])
        while left > 0:
            data = await reader.read(min(left, 65536))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            on_data(data)
    else:
        while data := await reader.read(65536):
            on_data(data)
        return False
    return b"close" not in fields.get(b"connection", b"")
