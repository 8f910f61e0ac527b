"""A fast OpenAI-compatible mock upstream for benchmarks: `python -m gateway.bench.mock --port P`.

A raw asyncio.Protocol HTTP/1.1 server (keep-alive, pipelining) with prebuilt answers, so it costs
the load generator and the proxy under test as little CPU as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import cast

READY_PREFIX = "mock ready on http://"
CONTENT = "Hello from the mock."
# The streamed answer is longer than CONTENT, in 5-character chunks sent without delay (~63 events),
# so a guarded gateway's stream hold-back (64+ characters) and per-chunk checks show up in the timings.
STREAM_CONTENT = (
    "Here is a short summary of the meeting. The checkout page will load images lazily, the search ranking "
    "will be reviewed with a small experiment, the mobile release may slip because of an accessibility fix, "
    "and the on-call rotation will be rebalanced after a review of noisy alerts. Open questions still need owners."
)
STREAM_CHUNK_CHARS = 5
MODEL = "gpt-bench"
# Bounds so a broken client cannot make the mock buffer without limit.
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

_CREATED = int(time.time())


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _completion_body() -> bytes:
    return _json({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": _CREATED, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": CONTENT},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    })


def _models_body() -> bytes:
    return _json({"object": "list", "data": [
        {"id": MODEL, "object": "model", "created": _CREATED, "owned_by": "mock"}]})


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _chunk(data: bytes) -> bytes:
    """One chunk of chunked transfer encoding."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _stream_response() -> bytes:
    """A whole SSE answer: role delta, STREAM_CONTENT in small deltas, finish, usage-free [DONE]."""
    def event(delta: dict[str, str], finish: str | None) -> bytes:
        chunk = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": _CREATED,
                 "model": MODEL, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                              "finish_reason": finish}]}
        return b"data: " + _json(chunk) + b"\n\n"

    pieces = [STREAM_CONTENT[i:i + STREAM_CHUNK_CHARS] for i in range(0, len(STREAM_CONTENT), STREAM_CHUNK_CHARS)]
    events = [event({"role": "assistant", "content": ""}, None)]
    events += [event({"content": piece}, None) for piece in pieces]
    events += [event({}, "stop"), b"data: [DONE]\n\n"]
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    return head + b"".join(_chunk(e) for e in events) + b"0\r\n\r\n"


# Prebuilt once: answering is then a dict lookup and one transport.write.
COMPLETION = _response("200 OK", _completion_body())
STREAM = _stream_response()
MODELS = _response("200 OK", _models_body())
HEALTH = _response("200 OK", b'{"status":"ok"}')
NOT_FOUND = _response("404 Not Found", _json({"error": {"message": "not found", "type": "invalid_request_error"}}))
NOT_ALLOWED = _response("405 Method Not Allowed", _json({"error": {"message": "method not allowed"}}))
BAD_REQUEST = _response("400 Bad Request", _json({"error": {"message": "bad request"}}))
TOO_LARGE = _response("413 Payload Too Large", _json({"error": {"message": "too large"}}))
LENGTH_REQUIRED = _response("411 Length Required", _json({"error": {"message": "chunked bodies unsupported"}}))

_ROUTES: dict[bytes, tuple[bytes, bytes]] = {
    # path -> (method, answer)
    b"/v1/chat/completions": (b"POST", COMPLETION),
    b"/v1/models": (b"GET", MODELS),
    b"/healthz": (b"GET", HEALTH),
}


class _Head:
    """What the mock needs from one request head."""

    __slots__ = ("chunked", "close", "expect_continue", "length", "method", "path")

    def __init__(self, method: bytes, path: bytes, http10: bool) -> None:
        self.method, self.path = method, path
        self.length = 0
        self.close = http10  # HTTP/1.0 closes unless it asks for keep-alive
        self.chunked = False
        self.expect_continue = False


def parse_head(head: bytes) -> _Head | None:
    """Parse a request line and headers (without the blank line); None if malformed."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    parsed = _Head(parts[0], parts[1].split(b"?", 1)[0], parts[2] == b"HTTP/1.0")
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                return None
            parsed.length = int(value)
        elif name == b"transfer-encoding":
            parsed.chunked = b"chunked" in value
        elif name == b"connection":
            parsed.close = b"close" in value or (parsed.close and b"keep-alive" not in value)
        elif name == b"expect":
            parsed.expect_continue = value == b"100-continue"
    return parsed


def answer(head: _Head, body: bytes) -> bytes:
    """The prebuilt response for one complete request."""
    route = _ROUTES.get(head.path)
    if route is None:
        return NOT_FOUND
    method, response = route
    if head.method != method:
        return NOT_ALLOWED
    # Only decode the body when it may ask for streaming, to keep the common path cheap.
    if response is COMPLETION and b'"stream"' in body:
        try:
            wants_stream = json.loads(body).get("stream") is True
        except (ValueError, AttributeError):
            return BAD_REQUEST
        return STREAM if wants_stream else COMPLETION
    return response


class MockProtocol(asyncio.Protocol):
    """One client connection: buffers bytes, answers every complete request in order."""

    delay_s = 0.0  # answer this long after the request came (a model's time to answer); set by --delay-ms

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # Unparsed bytes are kept as a list of chunks and only joined once `need` bytes are in,
        # so a large body arriving in many reads costs O(n), not O(n^2).
        self.chunks: list[bytes] = []
        self.size = 0
        self.need = 0
        self.continued = False  # 100 Continue already sent for the request being buffered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size < self.need:
            return
        buf = b"".join(self.chunks) if len(self.chunks) > 1 else data
        out: list[bytes] = []
        close = False
        while buf:
            end = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            if end < 0:
                # Head not complete yet: wait for more bytes, unless it is already too long.
                close = len(buf) > MAX_HEAD
                out += [BAD_REQUEST] if close else []
                self.need = 0
                break
            head = parse_head(buf[:end])
            error = _head_error(head)
            if error is not None or head is None:
                out.append(error or BAD_REQUEST)
                close = True
                break
            total = end + 4 + head.length
            if len(buf) < total:
                self.need = total
                self._maybe_continue(head, out)
                break
            out.append(answer(head, buf[end + 4:total]))
            buf, self.need, self.continued = buf[total:], 0, False
            close = head.close
            if close:
                break
        self.chunks, self.size = ([buf], len(buf)) if buf and not close else ([], 0)
        if self.delay_s and out:
            asyncio.get_running_loop().call_later(self.delay_s, self._flush, out, close)
        else:
            self._flush(out, close)

    def _maybe_continue(self, head: _Head, out: list[bytes]) -> None:
        # A client that sent `Expect: 100-continue` waits for this before sending its body.
        if head.expect_continue and not self.continued:
            out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.continued = True

    def _flush(self, out: list[bytes], close: bool) -> None:
        assert self.transport is not None
        if self.transport.is_closing():  # the client left while a delayed answer waited
            return
        if close and out:
            # Tell the client this connection ends after the last answer.
            out[-1] = out[-1].replace(b"\r\n", b"\r\nconnection: close\r\n", 1)
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


def _head_error(head: _Head | None) -> bytes | None:
    if head is None:
        return BAD_REQUEST
    if head.chunked:
        return LENGTH_REQUIRED  # no client in the benchmark sends chunked bodies
    if head.length > MAX_BODY:
        return TOO_LARGE
    return None


async def serve(host: str, port: int) -> None:
    """Listen until SIGINT/SIGTERM; print a ready line with the real port once bound."""
    import signal

    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    server = await loop.create_server(MockProtocol, host, port, reuse_address=True, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    print(f"{READY_PREFIX}{host}:{bound}", flush=True)
    await stop
    # Close the listener without waiting for clients to hang up: a benchmark child must stop promptly.
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.bench.mock", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the ready line)")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="answer each request this long after it came (default 0: at once)")
    args = parser.parse_args(argv)
    MockProtocol.delay_s = max(0.0, args.delay_ms) / 1000.0
    try:
        import uvloop
    except ImportError:  # still works, just slower
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
