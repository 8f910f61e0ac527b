"""POST /v1/moderations (issue 24, the whole OpenAI surface): input stages on its `input` (a string, strings,
or text and image parts), then the upstream routed by `model` (a request without one is routed as
omni-moderation-latest and sent without one); auth, limits and key hygiene as on the other routes.
End to end: the official openai client, the app in process, two fake upstreams in memory
(tests/memupstream.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fakeopenai import Fake, fake_app, memory_fake
from tests.inprocess import in_process
from tests.proxy.test_routing import metric

STAGES = """policies:
  - {id: banned, type: contains, keywords: ['forbidden']}
stages:
  - name: block_banned
    on: input
    scope: central
    rulesets: [{name: banned, rules: [{metric: banned}], action: {type: block}}]
  - name: mask
    on: input
    scope: central
    rulesets: [{name: mail, rules: [{metric: pii, op: contains_any, value: [EMAIL_ADDRESS]}], action: {type: redact}}]
"""


def config(default: Fake, other: Fake, rpm: str = "") -> str:
    return (f"upstreams:\n"
            f"  - {{name: text, base_url: '{other.url}/v1', api_key: sk-upstream-other, models: ['text-moderation-*']}}\n"
            f"  - {{name: omni, base_url: '{default.url}/v1', api_key: sk-upstream-omni, models: ['omni-*', 'gpt-*']}}\n"
            f"applications:\n  - {{id: a, keys: [k-1]{rpm}}}\n" + STAGES)


def apps(default: Fake, other: Fake) -> dict[str, Any]:
    return {"omni": fake_app(default), "text": fake_app(other)}


def client_for(http) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="k-1", http_client=http, max_retries=0)


def test_moderation_input_is_redacted_then_answered_by_the_default_models_upstream(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("omni")) as omni, memory_fake(Fake("text")) as text:
            async with in_process(config(omni, text), tmp_path, upstream_app=apps(omni, text)) as (_, http):
                client = client_for(http)
                result = await client.moderations.create(input="write to bob@example.com today")
                assert result.id == "modr-1" and result.results[0].flagged is False
                seen = omni.last()
                assert (seen.method, seen.path) == ("POST", "/v1/moderations") and not text.seen
                sent = seen.json()
                assert "model" not in sent  # no model asked: the upstream applies its own default
                assert "bob@example.com" not in sent["input"] and sent["input"].startswith("write to ")
                assert seen.headers["authorization"] == "Bearer sk-upstream-omni"  # the client's key stays here
                assert "k-1" not in str(seen.headers)

                await client.moderations.create(input="hello", model="text-moderation-stable")
                assert text.last().json() == {"input": "hello", "model": "text-moderation-stable"}
                assert text.last().headers["authorization"] == "Bearer sk-upstream-other"

                m = (await http.get("/metrics")).text
                assert metric(m, "gateway_requests_total", route="moderations", application="a", model="omni-*",
                              status="200") == 1
                assert metric(m, "gateway_requests_total", route="moderations", application="a",
                              model="text-moderation-*", status="200") == 1
    asyncio.run(go())


def test_moderation_lists_and_parts_pass_input_stages(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("omni")) as omni, memory_fake(Fake("text")) as text:
            async with in_process(config(omni, text), tmp_path, upstream_app=apps(omni, text)) as (_, http):
                client = client_for(http)
                await client.moderations.create(input=["fine", "mail carol@example.org"], model="omni-moderation-latest")
                sent = omni.last().json()["input"]
                assert sent[0] == "fine" and "carol@example.org" not in sent[1]
                parts = [{"type": "text", "text": "see dave@example.net"},
                         {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
                await client.moderations.create(input=parts, model="omni-moderation-latest")  # type: ignore[arg-type]
                sent = omni.last().json()["input"]
                assert "dave@example.net" not in sent[0]["text"] and sent[1] == parts[1]

                before = len(omni.seen)
                with pytest.raises(openai.BadRequestError) as blocked:
                    await client.moderations.create(input=["ok", "this is forbidden"])
                assert blocked.value.status_code == 400
                with pytest.raises(openai.BadRequestError) as bad:  # a part the guard cannot read
                    await client.moderations.create(input=[{"type": "video", "video": {}}])  # type: ignore[list-item]
                assert bad.value.code == "unreadable_input" and bad.value.param == "input[0].type"
                r = await http.post("/v1/moderations", json={"input": 42}, headers={"authorization": "Bearer k-1"})
                assert r.status_code == 400 and r.json()["error"]["code"] == "unreadable_input"
                r = await http.post("/v1/moderations", json={}, headers={"authorization": "Bearer k-1"})
                assert r.status_code == 400 and r.json()["error"]["param"] == "input"
                assert len(omni.seen) == before  # nothing refused went upstream
    asyncio.run(go())


def test_moderation_auth_limits_and_method(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("omni")) as omni, memory_fake(Fake("text")) as text:
            async with in_process(config(omni, text, rpm=", rpm: 2"), tmp_path, upstream_app=apps(omni, text)) as (_, http):
                r = await http.post("/v1/moderations", json={"input": "x"}, headers={"authorization": "Bearer nope"})
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
                client = client_for(http)
                for _ in range(2):
                    await client.moderations.create(input="hi")
                with pytest.raises(openai.RateLimitError) as limited:
                    await client.moderations.create(input="hi")
                assert limited.value.response.headers["x-ratelimit-limit-requests"] == "2"
                assert len(omni.seen) == 2
                r = await http.get("/v1/moderations", headers={"authorization": "Bearer k-1"})
                assert r.status_code == 405
    asyncio.run(go())


def test_moderation_upstream_error_is_scrubbed(tmp_path: Path) -> None:
    async def go() -> None:
        fake = Fake("omni", status=401, error_text="Incorrect API key provided: sk-upstream-omni")
        async with memory_fake(fake) as omni, memory_fake(Fake("text")) as text:
            async with in_process(config(omni, text), tmp_path, upstream_app=apps(omni, text)) as (_, http):
                r = await http.post("/v1/moderations", json={"input": "x"}, headers={"authorization": "Bearer k-1"})
                assert r.status_code == 401 and "sk-upstream-omni" not in r.text
    asyncio.run(go())
