"""A finished /v1/responses object told as OpenAI's event stream: every event validates as the SDK's own
event type, and the deltas rebuild every text and tool call."""

from __future__ import annotations

import orjson
import pydantic
from openai.types.responses import ResponseStreamEvent

from gateway.proxy.response_events import response_stream
from gateway.proxy.sse import SSEDecoder

RESPONSE = {
    "id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "m",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [
            {"type": "output_text", "text": "first part", "annotations": []},
            {"type": "refusal", "refusal": "not that"},
            {"type": "output_text", "text": "", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "lookup", "arguments": "{\"q\": 1}",
         "status": "completed"}],
    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
}


def events(response: dict) -> list[dict]:
    decoder = SSEDecoder()
    parsed = decoder.feed(response_stream(response))
    assert decoder.pending == b""
    out = []
    for event in parsed:
        data = orjson.loads(event.data)
        assert event.raw.startswith(b"event: " + data["type"].encode() + b"\n")
        out.append(data)
    return out


def test_every_event_is_an_sdk_event_in_order() -> None:
    stream = events(RESPONSE)
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    for data in stream:
        assert adapter.validate_python(data).type == data["type"]
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    kinds = [e["type"] for e in stream]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert stream[0]["response"]["output"] == [] and stream[0]["response"]["status"] == "in_progress"
    assert stream[-1]["response"] == RESPONSE
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 3
    assert kinds.count("response.content_part.added") == kinds.count("response.content_part.done") == 3


def test_the_deltas_rebuild_the_response() -> None:
    stream = events(RESPONSE)
    texts: dict[tuple[int, int], str] = {}
    for e in stream:
        if e["type"] in ("response.output_text.delta", "response.refusal.delta"):
            key = (e["output_index"], e["content_index"])
            texts[key] = texts.get(key, "") + e["delta"]
    assert texts == {(1, 0): "first part", (1, 1): "not that", (1, 2): ""}
    args = "".join(e["delta"] for e in stream if e["type"] == "response.function_call_arguments.delta")
    assert args == "{\"q\": 1}"
    added = [e["item"] for e in stream if e["type"] == "response.output_item.added"]
    assert added[1]["content"] == [] and added[2]["arguments"] == ""  # the deltas fill them, never twice
    assert [e["item"] for e in stream if e["type"] == "response.output_item.done"] == RESPONSE["output"]


def test_the_final_event_follows_the_status() -> None:
    assert events({**RESPONSE, "status": "incomplete"})[-1]["type"] == "response.incomplete"
    assert events({**RESPONSE, "status": "failed"})[-1]["type"] == "response.failed"
    bare = events({"id": "r", "object": "response", "status": "completed", "output": "odd"})
    assert [e["type"] for e in bare] == ["response.created", "response.in_progress", "response.completed"]
