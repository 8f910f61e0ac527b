"""Sans-IO, incremental Server-Sent Events decoder and encoder (WHATWG HTML "event stream" format).

The decoder keeps each block's exact bytes so a relay can forward them untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DONE", "Event", "SSEDecoder", "encode"]

DONE: bytes = b"data: [DONE]\n\n"

_BOM = b"\xef\xbb\xbf"
_LF = 0x0A
_CR = 0x0D


@dataclass(frozen=True, slots=True)
class Event:
    """One block of the stream, ended by a blank line."""

    raw: bytes
    data: str | None
    event: str | None
    id: str | None
    retry: int | None


def _find_end(buf: bytes | bytearray, ls: int, pos: int, cr: int) -> tuple[int, int, int, int]:
    """Look for the blank line that ends the block; return (end or -1, line start, scan offset, next CR).

    `buf[ls:pos]` is already known to hold no line ending, so scanning resumes at `pos`. `cr` caches
    the next "\\r" at or after `pos` (len(buf) if none), so multi-block buffers are not rescanned for it.
    """
    n = len(buf)
    while True:
        if cr < pos:
            cr = buf.find(b"\r", pos)
            if cr < 0:
                cr = n
        # Up to `cr` the only line ending is "\n", so a blank line is "\n\n" or a "\n" opening a line.
        # A one-byte find is memchr; the two-byte one is slower, so it only runs on multi-line blocks.
        i = buf.find(b"\n", pos, cr)
        if i >= 0:
            if i == ls:
                return i + 1, i + 1, i + 1, cr
            if i + 1 < cr and buf[i + 1] == _LF:
                return i + 2, i + 2, i + 2, cr
            j = buf.find(b"\n\n", i + 1, cr)
            if j >= 0:
                return j + 2, j + 2, j + 2, cr
            ls = buf.rfind(b"\n", i, cr) + 1
        pos = cr
        if cr == n:
            return -1, ls, pos, cr
        if cr + 1 == n:
            # The next chunk may start with "\n", which would belong to this same line ending.
            return -1, ls, cr, cr
        nxt = cr + 2 if buf[cr + 1] == _LF else cr + 1
        if cr == ls:
            return nxt, nxt, nxt, cr
        ls = pos = nxt


def _parse(raw: bytes, raw_start: int) -> Event:
    body = raw[raw_start:] if raw_start else raw
    # Single-line "data: ..." blocks are the streaming common case; skip the general field parser.
    if body.startswith(b"data: ") and body.find(b"\n") == len(body) - 2 and b"\r" not in body:
        return Event(raw, body[6:-2].decode("utf-8", "replace"), None, None, None)
    text = body.decode("utf-8", "replace")
    data: list[str] = []
    event: str | None = None
    id_: str | None = None
    retry: int | None = None
    # A block's only blank line is its last, so every empty item (including the extra one a "\r\n"
    # turns into) is just skipped, and "\r" can be treated as "\n" without pairing up "\r\n".
    for line in text.replace("\r", "\n").split("\n") if "\r" in text else text.split("\n"):
        if not line or line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            # The spec ignores ids containing NUL.
            if "\0" not in value:
                id_ = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = _retry(value, retry)
    return Event(raw, "\n".join(data) if data else None, event, id_, retry)


def _retry(value: str, previous: int | None) -> int | None:
    try:
        return int(value)
    except ValueError:  # more digits than int() accepts from a string: not a usable delay
        return previous


class SSEDecoder:
    """Incremental decoder: feed bytes as they arrive, get back every completed block."""

    __slots__ = ("_buf", "_ls", "_pos", "_bom")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._ls = 0
        self._pos = 0
        # None until the first three bytes are known; True while the first block still carries a BOM.
        self._bom: bool | None = None

    @property
    def pending(self) -> bytes:
        """Bytes fed that are not yet part of a complete block."""
        return bytes(self._buf)

    def feed(self, chunk: bytes) -> list[Event]:
        """Add bytes; return every block they complete, in order."""
        buf: bytes | bytearray
        if self._buf:
            self._buf += chunk
            buf = self._buf
        else:
            # Nothing pending: scan the chunk itself and avoid copying it into the buffer.
            buf = bytes(chunk)
        if self._bom is None:
            if len(buf) < 3 and _BOM.startswith(buf):
                if buf is not self._buf:
                    self._buf += buf
                return []
            self._bom = buf.startswith(_BOM)
            if self._bom:
                self._ls = self._pos = 3
        events: list[Event] = []
        start, ls, pos, cr = 0, self._ls, self._pos, -1
        while start < len(buf):
            end, ls, pos, cr = _find_end(buf, ls, pos, cr)
            if end < 0:
                break
            events.append(self._event(bytes(buf[start:end])))
            start = end
        if buf is self._buf:
            del self._buf[:start]
        elif start < len(buf):
            self._buf += memoryview(buf)[start:]
        self._ls, self._pos = ls - start, pos - start
        return events

    def close(self) -> list[Event]:
        """End of stream: an unterminated block is discarded and stays readable in `pending`.

        The one exception is a block whose blank line ended in a bare "\\r" as the very last byte:
        it was held back only in case a "\\n" followed, and it is complete.
        """
        buf = self._buf
        if buf and buf[-1] == _CR and self._ls == self._pos == len(buf) - 1:
            event = self._event(bytes(buf))
            buf.clear()
            self._ls = self._pos = 0
            return [event]
        return []

    def _event(self, raw: bytes) -> Event:
        if self._bom:
            self._bom = False
            return _parse(raw, 3)
        return _parse(raw, 0)


def encode(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One event block. Line endings inside `data` become separate `data:` lines, read back as "\\n"."""
    if event is not None and ("\n" in event or "\r" in event):
        raise ValueError("SSE event name must not contain a line break")
    if id is not None and ("\n" in id or "\r" in id or "\0" in id):
        raise ValueError("SSE id must not contain a line break or NUL")
    if event is None and id is None and "\n" not in data and "\r" not in data:
        return b"data: " + data.encode() + b"\n\n"
    if "\r" in data:
        data = data.replace("\r\n", "\n").replace("\r", "\n")
    head = (f"event: {event}\n" if event is not None else "") + (f"id: {id}\n" if id is not None else "")
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()
