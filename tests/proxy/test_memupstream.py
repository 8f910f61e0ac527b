"""The upstream seam (issue 26, item 5): create_app(upstream_client=...) with the in-memory client over
tests/upstream.py's app carries a request both ways through the real handler: status and headers, a
streamed SSE body whole and in order (however the client slices it), an upstream error status, and the
upstream's own key sent instead of the client's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from yarl import URL

from gateway.app import GatewayApp, create_app
from gateway.config.loader import parse_config
from gateway.guard.plan import PlanCheck
from gateway.settings import Settings
from tests.memupstream import MemoryAnswer, MemoryClient, memory_client
from tests.upstream import Recorder, create_upstream

KEY = "sk-upstream-memory-0123456789"
CONFIG = f"""
upstreams:
  - {{name: main, base_url: "http://main.test/v1", api_key: {KEY}, models: ["gpt-*", "status-*"]}}
  - {{name: gone, base_url: "http://gone.test/v1", models: ["gone-*"]}}
applications: [{{id: app, keys: [k-1]}}]
"""
AUTH = {"authorization": "Bearer k-1"}


@contextlib.asynccontextmanager
async def gateway(tmp: Path, rec: Recorder, piece: int) -> AsyncIterator[tuple[GatewayApp, httpx.AsyncClient]]:
    path = tmp / "gateway.yaml"
    path.write_text(CONFIG)
    check = PlanCheck()
    config = parse_config(CONFIG, str(path), {}, check=check)
    app = create_app(Settings(config_path=str(path)), config, check.runtime,
                     upstream_client=memory_client({"main": create_upstream(rec)}, piece=piece))
    async with app.starlette.router.lifespan_context(app.starlette):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            yield app, client


def chat(model: str, text: str, stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_a_request_goes_both_ways_through_the_in_memory_upstream(tmp_path: Path, piece: int) -> None:
    rec = Recorder()

    async def go() -> None:
        async with gateway(tmp_path, rec, piece) as (_, http):
            r = await http.post("/v1/chat/completions", headers={**AUTH, "x-client-note": "n1"},
                                json=chat("gpt-test", "hello"))
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "echo:hello"
            assert r.headers["x-request-id"] == "up-123" and r.headers["x-ratelimit-remaining"] == "99"
            assert "set-cookie" not in r.headers  # the response hygiene ran on the in-memory answer
            sent = dict(rec.last()["headers"])
            assert sent["authorization"] == f"Bearer {KEY}" and "k-1" not in str(rec.last()["headers"])
            assert sent["x-client-note"] == "n1" and rec.last()["path"] == "/v1/chat/completions"

            text = "a longer answer, sliced into many SSE events and then into pieces"
            async with http.stream("POST", "/v1/chat/completions", headers=AUTH,
                                   json=chat("gpt-fast", text, stream=True)) as s:
                assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
                body = b"".join([chunk async for chunk in s.aiter_raw()])
            events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
            assert events[-1] == b"[DONE]"
            deltas = [orjson.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
            assert "".join(deltas) == "echo:" + text  # whole, in order
            assert len([d for d in deltas if d]) == len(range(0, len("echo:" + text), 4))  # one event per part

            r = await http.post("/v1/chat/completions", headers=AUTH, json=chat("status-429", "hi"))
            assert r.status_code == 429 and r.headers["retry-after"] == "7"
            assert r.json()["error"]["message"] == "upstream says 429"

            r = await http.post("/v1/chat/completions", headers=AUTH, json=chat("gone-1", "hi"))
            assert r.status_code == 502, r.text  # no app for that upstream: unreachable, as a refused connection

    asyncio.run(go())


def test_the_in_memory_answer_yields_the_body_in_pieces_then_nothing() -> None:
    async def go() -> None:
        async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
            await receive()
            await send({"type": "http.response.start", "status": 201, "headers": [(b"X-Mixed-Case", b"v")]})
            await send({"type": "http.response.body", "body": b"abcdefgh", "more_body": True})
            await send({"type": "http.response.body", "body": b"ij"})

        client = MemoryClient(app, piece=3)
        answer = await client.request("POST", URL("http://x.test/p?q=1"), data=b"{}", headers=[("a", "b")])
        assert isinstance(answer, MemoryAnswer) and answer.status == 201
        assert (b"x-mixed-case", b"v") in list(answer.raw_headers)
        pieces = [await answer.content.readany() for _ in range(5)]
        assert pieces == [b"abc", b"def", b"ghi", b"j", b""]  # the buffered body, sliced
        assert await answer.content.readany() == b""
        answer.close()
        await client.close()

    asyncio.run(go())
