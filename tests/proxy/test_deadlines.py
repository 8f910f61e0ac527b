"""Upstream deadlines (issue 23 item 9): connect, first byte, idle between chunks and total, each firing
within 10% of its setting, against a raw TCP upstream that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config.schema import UpstreamConfig
from gateway.proxy.upstream import UpstreamTimeout, make_upstream
from tests.inprocess import in_process
from tests.rawupstream import Script, serve_raw

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"drip "}}]}\n\n'
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def hold_headers(w: asyncio.StreamWriter) -> None:
    await asyncio.sleep(60)


async def stall_after_one_chunk(w: asyncio.StreamWriter) -> None:
    w.write(SSE_HEAD + chunked(CHUNK))
    await w.drain()
    await asyncio.sleep(60)


async def drip(w: asyncio.StreamWriter) -> None:  # a chunk every 0.25 s, for ever: only a total deadline ends it
    w.write(SSE_HEAD)
    for _ in range(400):
        w.write(chunked(CHUNK))
        await w.drain()
        await asyncio.sleep(0.25)


@pytest.fixture
def raw_upstream() -> Callable[[Script], Any]:
    return serve_raw


def upstream_config(url: str, **deadlines: float) -> UpstreamConfig:
    return UpstreamConfig(name="u", base_url=url, models=("*",), **deadlines)


async def timed_failure(url: str, read: bool, **deadlines: float) -> tuple[float, str]:
    up = make_upstream(upstream_config(url, **deadlines))
    await up.open()
    start = time.monotonic()
    try:
        response = await up.send("POST", "/chat/completions", [], b"{}")
        if read:
            async for _ in response.chunks():
                pass
        raise AssertionError("no deadline fired")
    except UpstreamTimeout as exc:
        return time.monotonic() - start, str(exc)
    finally:
        await up.close()


def within_10_percent(elapsed: float, setting: float) -> None:
    assert setting * 0.99 <= elapsed <= setting * 1.10, f"fired after {elapsed:.3f} s for a {setting} s deadline"


def test_first_byte_deadline(raw_upstream) -> None:
    async def go() -> tuple[float, str]:
        async with raw_upstream(hold_headers) as url:
            return await timed_failure(url, False, first_byte_timeout_s=1.5, idle_timeout_s=0.2)

    elapsed, why = asyncio.run(go())
    within_10_percent(elapsed, 1.5)  # the short idle deadline does not time the wait for the headers
    assert why == "no response headers within 1.5 s"


def test_idle_deadline_between_chunks(raw_upstream) -> None:
    async def go() -> tuple[float, str]:
        async with raw_upstream(stall_after_one_chunk) as url:
            return await timed_failure(url, True, idle_timeout_s=1.5)

    elapsed, why = asyncio.run(go())
    within_10_percent(elapsed, 1.5)
    assert why == "no data for 1.5 s"


def test_total_deadline_ends_a_stream_that_never_goes_quiet(raw_upstream) -> None:
    async def go() -> tuple[float, str]:
        async with raw_upstream(drip) as url:
            return await timed_failure(url, True, idle_timeout_s=1.0, total_timeout_s=2.5)

    elapsed, why = asyncio.run(go())
    within_10_percent(elapsed, 2.5)  # a chunk every 0.25 s never trips the 1 s idle deadline
    assert why == "the exchange ran past its total deadline"


def test_connect_deadline() -> None:
    # A listening socket whose backlog is full and that never accepts: the SYN goes unanswered.
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(0)
        port = lsn.getsockname()[1]
        fillers = []
        for _ in range(8):  # fill the accept queue (its size is at least backlog + 1 on Linux)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        try:
            elapsed, why = asyncio.run(timed_failure(f"http://127.0.0.1:{port}/v1", False, connect_timeout_s=1.5))
        finally:
            for s in fillers:
                s.close()
    within_10_percent(elapsed, 1.5)
    assert why == "no connection within 1.5 s"


def test_the_older_timeout_s_sets_first_byte_and_idle() -> None:
    cfg = UpstreamConfig(name="u", base_url="http://127.0.0.1:1/v1", models=("*",), timeout_s=7)
    assert (cfg.first_byte_timeout_s, cfg.idle_timeout_s, cfg.total_timeout_s) == (7, 7, 1800)
    cfg = UpstreamConfig(name="u", base_url="http://127.0.0.1:1/v1", models=("*",), timeout_s=7, idle_timeout_s=3)
    assert (cfg.first_byte_timeout_s, cfg.idle_timeout_s) == (7, 3)


def test_a_stream_past_its_total_deadline_ends_with_an_error_event_at_the_client(raw_upstream,
                                                                                  tmp_path: Path) -> None:
    async def go() -> tuple[float, bytes]:
        async with raw_upstream(drip) as url:
            config = (f"upstreams:\n  - {{name: dripper, base_url: '{url}', models: ['*'], idle_timeout_s: 1,"
                      f" total_timeout_s: 2}}\napplications:\n  - {{id: a, keys: [k-1]}}\n")
            async with in_process(config, tmp_path) as (_, client):
                start = time.monotonic()
                r = await client.post("/v1/chat/completions", headers={"authorization": "Bearer k-1"},
                                      json={"model": "m", "stream": True,
                                            "messages": [{"role": "user", "content": "hi"}]})
                return time.monotonic() - start, r.content

    elapsed, body = asyncio.run(go())
    assert body.count(b"drip") >= 4, body[:300]
    events = [line for line in body.split(b"\n\n") if line.strip()]
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "upstream_timeout" and "total deadline" in last["error"]["message"]
    within_10_percent(elapsed, 2.0)
