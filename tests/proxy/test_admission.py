"""Overload (issue 23 item 10): a concurrency cap and a bounded pending queue; the excess gets a fast 503
gateway_overloaded with Retry-After, counted; a freed slot goes to the oldest waiter."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.proxy.admission import Admission
from tests.inprocess import in_process
from tests.rawupstream import serve_raw

ANSWER = (b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":'
          b'{"role":"assistant","content":"slow answer"},"finish_reason":"stop"}]}')


async def answer_after(delay: float, w: asyncio.StreamWriter) -> None:
    await asyncio.sleep(delay)
    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(ANSWER), ANSWER))
    await w.drain()


def config(url: str, limit: int, pending: int, wait_s: float) -> str:
    return (f"server: {{max_concurrent_requests: {limit}, max_pending_requests: {pending}, "
            f"pending_timeout_s: {wait_s}}}\n"
            f"upstreams:\n  - {{name: u, base_url: '{url}', models: ['*']}}\napplications:\n"
            f"  - {{id: a, keys: [k-1]}}\n")


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def timed_post(client, delay: float = 0.0) -> tuple[float, int, dict, str]:
    await asyncio.sleep(delay)
    start = time.monotonic()
    r = await client.post("/v1/chat/completions", headers={"authorization": "Bearer k-1"}, json=CHAT)
    return time.monotonic() - start, r.status_code, dict(r.headers), r.text


def test_past_the_cap_and_the_queue_requests_are_refused_at_once(tmp_path: Path) -> None:
    async def go():
        async with serve_raw(lambda w: answer_after(1.0, w)) as url:
            async with in_process(config(url, 2, 1, 5.0), tmp_path) as (app, client):
                results = await asyncio.gather(*(timed_post(client, 0.05 * i) for i in range(6)))
                metrics = (await client.get("/metrics")).text
                return results, metrics, app.admission

    results, metrics, admission = asyncio.run(go())
    ok = [r for r in results if r[1] == 200]
    shed = [r for r in results if r[1] == 503]
    assert len(ok) == 3 and len(shed) == 3  # two slots, one waiter (served after the first two), three refused
    for elapsed, _, headers, text in shed:
        assert elapsed < 0.5 and headers["retry-after"] == "1" and '"code":"gateway_overloaded"' in text
    assert sorted(r[0] for r in ok)[-1] > 1.9  # the waiter was served once a slot came free, not refused
    assert 'gateway_overload_rejected_total{reason="queue_full"} 3.0' in metrics
    assert 'gateway_requests_total{application="unknown",model="unknown",route="chat_completions",status="503"} 3.0' \
        in metrics
    assert admission.in_flight == 0 and admission.waiting == 0  # every slot came back


def test_a_waiter_that_waits_too_long_is_refused(tmp_path: Path) -> None:
    async def go():
        async with serve_raw(lambda w: answer_after(1.5, w)) as url:
            async with in_process(config(url, 1, 4, 0.3), tmp_path) as (app, client):
                results = await asyncio.gather(timed_post(client), timed_post(client, 0.05))
                metrics = (await client.get("/metrics")).text
                return results, metrics

    (first, second), metrics = asyncio.run(go())
    assert first[1] == 200 and second[1] == 503 and "no slot came free in time" in second[3]
    assert 0.3 <= second[0] < 1.0
    assert 'gateway_overload_rejected_total{reason="queue_timeout"} 1.0' in metrics


def test_admission_hands_slots_over_in_order_and_survives_cancellation() -> None:
    async def go() -> list[str]:
        adm = Admission(1, 3, 5.0)
        order: list[str] = []
        assert await adm.acquire() is None

        async def wait(name: str) -> None:
            assert await adm.acquire() is None
            order.append(name)

        tasks = [asyncio.ensure_future(wait(n)) for n in ("a", "b", "c")]
        await asyncio.sleep(0.01)
        assert adm.waiting == 3 and await adm.acquire() == "queue_full"
        tasks[1].cancel()  # b leaves the queue
        await asyncio.sleep(0.01)
        for _ in range(3):
            adm.release()
            await asyncio.sleep(0.01)
        await asyncio.gather(tasks[0], tasks[2])
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        assert adm.in_flight == 0 and adm.waiting == 0
        return order

    assert asyncio.run(go()) == ["a", "c"]
