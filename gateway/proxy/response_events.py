"""Sans-IO: a finished /v1/responses object told as the event stream the Responses API would have sent.

A streamed /v1/responses request whose output stages apply is sent upstream without streaming, checked
whole like any answer, and then streamed to the client from the checked object: every item, part and
text in the order and shape of OpenAI's events (`response.created` ... `response.completed`), each text
in one delta. The OpenAI SDKs' stream helpers rebuild the same response from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

# The event that ends a stream, by the response's status; a status not named ends it as completed.
_FINAL = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}


def response_stream(response: dict[str, Any]) -> bytes:
    """The SSE bytes of the whole stream for `response` (a decoded Responses API object)."""
    return b"".join(_sse(kind, {"type": kind, "sequence_number": n, **fields})
                    for n, (kind, fields) in enumerate(_events(response)))


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _events(response: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    output = response.get("output")
    items = [item for item in output if isinstance(item, dict)] if isinstance(output, list) else []
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield "response.created", {"response": started}
    yield "response.in_progress", {"response": started}
    for i, item in enumerate(items):
        yield from _item(i, item)
    yield _FINAL.get(str(response.get("status")), "response.completed"), {"response": response}


def _item(i: int, item: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    item_id = str(item.get("id", ""))
    kind = item.get("type")
    where = {"item_id": item_id, "output_index": i}
    if kind == "message" and isinstance(item.get("content"), list):
        yield "response.output_item.added", {"output_index": i, "item": {**item, "content": [],
                                                                          "status": "in_progress"}}
        for j, part in enumerate(item["content"]):
            if not isinstance(part, dict):
                continue
            at = {**where, "content_index": j}
            if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                yield "response.content_part.added", {**at, "part": {**part, "text": "", "annotations": []}}
                yield "response.output_text.delta", {**at, "delta": part["text"], "logprobs": []}
                yield "response.output_text.done", {**at, "text": part["text"], "logprobs": []}
            elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                yield "response.content_part.added", {**at, "part": {**part, "refusal": ""}}
                yield "response.refusal.delta", {**at, "delta": part["refusal"]}
                yield "response.refusal.done", {**at, "refusal": part["refusal"]}
            else:
                yield "response.content_part.added", {**at, "part": part}
            yield "response.content_part.done", {**at, "part": part}
    elif kind == "function_call" and isinstance(item.get("arguments"), str):
        yield "response.output_item.added", {"output_index": i, "item": {**item, "arguments": "",
                                                                          "status": "in_progress"}}
        yield "response.function_call_arguments.delta", {**where, "delta": item["arguments"]}
        yield "response.function_call_arguments.done", {**where, "arguments": item["arguments"]}
    else:
        yield "response.output_item.added", {"output_index": i, "item": item}
    yield "response.output_item.done", {"output_index": i, "item": item}
