"""Time to first token of streamed answers, at concurrency 1, with our own asyncio HTTP/1.1 client.

Per request: from sending to the first `data:` event with non-empty content (TTFT), and to the end
of the response body (total). Requests run one after another on one kept-alive connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from dataclasses import asdict, dataclass

import orjson

from gateway.bench.load import percentile
from gateway.bench.rawhttp import RawConnection, RawHTTPError

_WARMUP_REQUESTS = 20
_DONE = b"data: [DONE]"


@dataclass(frozen=True)
class TtftResult:
    client: str
    requests: int
    errors: int  # non-200, no content event, or no [DONE]
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    total_p50_ms: float | None
    total_p99_ms: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def client_name() -> str:
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return f"gateway.bench.rawhttp ({loop} streams, HTTP/1.1 keep-alive), c1, sequential"


def has_content(event: bytes) -> bool:
    """Whether one SSE event (without its blank line) is a `data:` chunk carrying content text."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            try:
                choice = orjson.loads(line[5:])["choices"][0]
                return bool((choice.get("delta") or {}).get("content") or choice.get("text"))
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                return False
    return False


class _Scan:
    """Collects a streamed body and notes when its first content event arrived."""

    def __init__(self) -> None:
        self.buf = b""
        self.scanned = 0
        self.first: float | None = None

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.first is None and (end := self.buf.find(b"\n\n", self.scanned)) >= 0:
            if has_content(self.buf[self.scanned:end]):
                self.first = time.perf_counter()
            self.scanned = end + 2


async def stream_once(conn: RawConnection, body: bytes, headers: dict[str, str]) -> tuple[float, float] | None:
    """(ttft, total) in ms for one streamed request, or None if it failed."""
    scan = _Scan()
    start = time.perf_counter()
    status = await conn.post(body, headers, scan.feed)
    total = time.perf_counter()
    if status != 200 or scan.first is None or _DONE not in scan.buf:
        return None
    return (scan.first - start) * 1e3, (total - start) * 1e3


async def _measure(url: str, body: str, headers: dict[str, str], requests: int) -> TtftResult:
    headers = {"Content-Type": "application/json", **headers}
    conn = RawConnection(url)
    ttfts: list[float] = []
    totals: list[float] = []
    errors = 0
    try:
        for i in range(_WARMUP_REQUESTS + requests):
            try:
                result = await stream_once(conn, body.encode(), headers)
            except (TimeoutError, RawHTTPError, OSError):
                result = None
            if i < _WARMUP_REQUESTS:
                continue
            if result is None:
                errors += 1
            else:
                ttfts.append(result[0])
                totals.append(result[1])
    finally:
        await conn.close()
    ttfts.sort()
    totals.sort()
    return TtftResult(client_name(), requests, errors, percentile(ttfts, 50), percentile(ttfts, 99),
                      percentile(totals, 50), percentile(totals, 99))


def measure_ttft(url: str, body: str, headers: dict[str, str], requests: int) -> TtftResult:
    """`requests` streamed requests (after a few unmeasured ones) at concurrency 1."""
    coro = _measure(url, body, headers, requests)
    try:
        import uvloop  # the same loop as the gateway: less client time in the figures
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
