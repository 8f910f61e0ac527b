"""Answers read whole are bounded (issue 23 item 7): an oversized answer or error body from the upstream
is a 502 upstream_response_too_large, never read into memory without end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.inprocess import in_process
from tests.rawupstream import serve_raw


def answer(status: int, size: int):
    async def script(w: asyncio.StreamWriter) -> None:
        body = b'{"error": {"message": "' + b"x" * size + b'"}}'
        w.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (status, len(body)))
        for i in range(0, len(body), 65536):
            w.write(body[i:i + 65536])
            await w.drain()
    return script


@pytest.mark.parametrize("status,size,expected", [
    (200, 8_000, 502), (200, 1_000, 200), (500, 2 * 1024 * 1024, 502), (500, 100_000, 500)])
def test_answers_past_their_bound_are_refused(tmp_path: Path, status: int, size: int, expected: int) -> None:
    async def go():
        async with serve_raw(answer(status, size)) as url:
            config = (f"upstreams: [{{name: u, base_url: '{url}', models: ['*'], max_response_bytes: 4096}}]\n"
                      "applications: [{id: a, keys: [k-1]}]\n")
            async with in_process(config, tmp_path) as (_, client):
                return await client.post("/v1/chat/completions", headers={"authorization": "Bearer k-1"},
                                         json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    r = asyncio.run(go())
    assert r.status_code == expected
    if expected == 502:
        assert r.json()["error"]["code"] == "upstream_response_too_large"


def test_a_2xx_other_than_200_passes_the_output_stages(tmp_path: Path) -> None:
    """Found by a review: only a 200 was checked, so a 203 from a proxy in front of the model was relayed
    past the output stages."""
    completion = (b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":'
                  b'{"role":"assistant","content":"the code is PROJECT-1234"},"finish_reason":"stop"}]}')

    async def script(w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 203 Non-Authoritative Information\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(completion), completion))
        await w.drain()

    async def go():
        async with serve_raw(script) as url:
            config = (f"upstreams: [{{name: u, base_url: '{url}', models: ['*']}}]\n"
                      "applications: [{id: a, keys: [k-1]}]\n"
                      "policies: [{id: codes, type: regex, patterns: ['PROJECT-[0-9]{4}']}]\n"
                      "stages:\n  - {name: out, on: output, scope: central, rulesets: [{name: r, rules: "
                      "[{metric: codes}], action: {type: block, message: 'withheld'}}]}\n")
            async with in_process(config, tmp_path) as (_, client):
                return await client.post("/v1/chat/completions", headers={"authorization": "Bearer k-1"},
                                         json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    r = asyncio.run(go())
    assert "PROJECT-1234" not in r.text and r.json()["choices"][0]["message"]["content"] == "withheld"
