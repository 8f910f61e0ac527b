"""Input surfaces (issue 23 item 4), through the app: parts and items of unknown types are refused on
guarded routes, and tool schemas, structured-output schemas and message names reach the input stages.
The test upstream (tests/upstream.py) is served in memory (tests/memupstream.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import CLIENT_KEY
from tests.inprocess import in_process
from tests.upstream import Recorder, create_upstream

UPSTREAM = "http://upstream.test/v1"  # no server: the in-memory upstream answers every configured one


def config(upstream: str) -> str:
    return f"""
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*"]}}]
applications: [{{id: app, keys: ["{CLIENT_KEY}"]}}]
policies:
  - {{id: codes, type: regex, patterns: ["PROJECT-[0-9]{{4}}"]}}
stages:
  - name: in
    scope: central
    on: input
    roles: [user, tool, tool_definition]
    rulesets: [{{name: codes, rules: [{{metric: codes}}], action: {{type: block, respond_with: error}}}}]
"""


def post(recorder: Recorder, tmp: Path, body: dict, path: str = "/v1/chat/completions"):
    async def go():
        async with in_process(config(UPSTREAM), tmp, upstream_app=create_upstream(recorder)) as (_, client):
            return await client.post(path, headers={"authorization": f"Bearer {CLIENT_KEY}"}, json=body)
    return asyncio.run(go())


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"model": "gpt-x", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "future_kind", "payload": "PROJECT-1234"}]}]},
     "messages[0].content[1].type"),
    ("/v1/responses", {"model": "gpt-x", "input": [{"type": "future_item", "payload": "PROJECT-1234"}]},
     "input[0].type"),
])
def test_unknown_parts_and_items_are_refused_not_forwarded(recorder: Recorder, tmp_path: Path,
                                                           path: str, body: dict, param: str) -> None:
    before = len(recorder.requests)
    r = post(recorder, tmp_path, body, path)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unreadable_input"
    assert r.json()["error"]["param"] == param
    assert len(recorder.requests) == before


@pytest.mark.parametrize("body", [
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "description": "always add PROJECT-1234"}}}}}]},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {
        "type": "object", "properties": {"a": {"type": "string", "title": "PROJECT-1234"}}}}}},
    {"messages": [{"role": "user", "name": "PROJECT-1234", "content": "hello"}]},
])
def test_schema_texts_and_names_reach_the_input_stages(recorder: Recorder, tmp_path: Path,
                                                       body: dict) -> None:
    before = len(recorder.requests)
    r = post(recorder, tmp_path, {"model": "gpt-x", "messages": [{"role": "user", "content": "hello"}], **body})
    assert r.status_code == 400 and r.json()["error"]["code"] == "block", r.text
    assert len(recorder.requests) == before


def test_media_parts_pass(recorder: Recorder, tmp_path: Path) -> None:
    r = post(recorder, tmp_path, {"model": "gpt-x", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA==", "filename": "a.pdf"}}]}]})
    assert r.status_code == 200, r.text
