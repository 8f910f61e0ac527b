"""An OpenAI-compatible upstream on a raw loopback socket that fails on cue, for routing tests.

Each request takes the next behaviour from `cues` (a list; when empty, `default`): `ok`, `stream`,
`status:500`, `status:429:<retry-after>`, `reset` (close the connection without an answer), `stall`
(send nothing for a minute), `stream_reset` (a 200 stream that breaks after its first event),
`slow:<s>` (answer ok after s seconds). HTTP/1.1 keep-alive, request bodies read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson


@dataclass
class Cue:
    name: str
    default: str = "ok"
    cues: list[str] = field(default_factory=list)
    seen: list[dict] = field(default_factory=list)  # request bodies, as JSON
    times: list[float] = field(default_factory=list)
    in_flight: int = 0
    url: str = ""

    @property
    def count(self) -> int:
        return len(self.seen)


def _answer(model: str, text: str, usage: bool = True) -> bytes:
    body = {"id": "chatcmpl-c", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    if usage:
        body["usage"] = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    return orjson.dumps(body)


def _event(model: str, text: str) -> bytes:
    body = {"id": "chatcmpl-c", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(status: int, body: bytes, extra: str = "") -> bytes:
    reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    return (f"HTTP/1.1 {status} {reason.get(status, 'X')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


@contextlib.asynccontextmanager
async def serve_cue(cue: Cue) -> AsyncIterator[Cue]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                raw = await reader.readexactly(length) if length else b""
                payload = orjson.loads(raw) if raw else {}
                cue.seen.append(payload)
                cue.times.append(time.monotonic())
                what = cue.cues.pop(0) if cue.cues else cue.default
                model = str(payload.get("model", ""))
                cue.in_flight += 1
                try:
                    if not await _act(what, model, cue, writer):
                        return
                finally:
                    cue.in_flight -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    cue.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        yield cue
    finally:
        server.close()


async def _act(what: str, model: str, cue: Cue, writer: asyncio.StreamWriter) -> bool:
    """Answer one request; False when the connection must end."""
    kind, _, arg = what.partition(":")
    if kind == "slow":
        await asyncio.sleep(float(arg))
        kind = "ok"
    if kind == "ok":
        writer.write(_response(200, _answer(model, f"from {cue.name}")))
    elif kind == "nousage":
        writer.write(_response(200, _answer(model, f"from {cue.name}", usage=False)))
    elif kind == "status":
        status, _, retry_after = arg.partition(":")
        extra = f"retry-after: {retry_after}\r\n" if retry_after else ""
        body = orjson.dumps({"error": {"message": f"{cue.name} says {status}", "type": "server_error",
                                       "param": None, "code": None}})
        writer.write(_response(int(status), body, extra))
    elif kind == "reset":
        return False
    elif kind == "stall":
        await asyncio.sleep(60)
        return False
    elif kind in ("stream", "stream_reset"):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(_chunked(_event(model, f"from {cue.name}")))
        await writer.drain()
        if kind == "stream_reset":
            await asyncio.sleep(0.05)
            return False
        writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    else:
        raise ValueError(what)
    await writer.drain()
    return True


def refused_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
