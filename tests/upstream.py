"""A small OpenAI-compatible upstream for tests. The model name picks a behaviour; requests are recorded."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

CHUNK_DELAY_S = 0.15


@dataclass
class Recorder:
    """What the upstream saw, shared with the test thread."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    closed: dict[str, threading.Event] = field(default_factory=dict)
    sent_at: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def closed_event(self, model: str) -> threading.Event:
        with self.lock:
            return self.closed.setdefault(model, threading.Event())

    def last(self) -> dict[str, Any]:
        with self.lock:
            return self.requests[-1]


def _chunk(model: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _completion(model: str, text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def create_upstream(rec: Recorder) -> Starlette:
    async def record(request: Request) -> dict[str, Any]:
        raw = await request.body()
        entry = {"path": request.url.path, "headers": [(k.decode(), v.decode()) for k, v in request.scope["headers"]],
                 "body": raw, "json": orjson.loads(raw) if raw else None}
        with rec.lock:
            rec.requests.append(entry)
        return entry

    async def chat(request: Request) -> Response:
        entry = await record(request)
        payload = entry["json"]
        model = payload["model"]
        if model.startswith("status-"):
            status = int(model.split("-")[1])
            body = {"error": {"message": f"upstream says {status}", "type": "upstream_test", "param": None,
                              "code": "test_code"}}
            return Response(orjson.dumps(body), status, {"retry-after": "7", "x-upstream-extra": "yes"},
                            media_type="application/json")
        if model.startswith("leak-"):  # refuses the credentials it got and echoes them, masked (as OpenAI does) and not
            sent = dict(entry["headers"])
            key = sent.get("authorization", "").removeprefix("Bearer ")
            body = {"error": {"message": f"Incorrect API key provided: {key[:8]}{'*' * 24}{key[-4:]}. You can find "
                                         f"your API key at https://platform.openai.com/account/api-keys. (sent: {key}, "
                                         f"api-key: {sent.get('api-key')})", "type": "invalid_request_error",
                              "param": None, "code": "invalid_api_key"}}
            return Response(orjson.dumps(body), 401, {"www-authenticate": f'Bearer realm="api", error="{key}"'},
                            media_type="application/json")
        if model.startswith("html-"):  # a proxy's error page in front of the model
            return Response(b"<html><body>502 Bad Gateway: echo " + orjson.dumps(payload) + b"</body></html>",
                            int(model.split("-")[1]), {"retry-after": "3"}, media_type="text/html")
        if model.startswith("slow-"):
            await asyncio.sleep(3)
        if model.startswith("wait-"):  # a long non-streamed generation; notices when the gateway leaves
            for _ in range(600):
                if await request.is_disconnected():
                    rec.closed_event(model).set()
                    break
                await asyncio.sleep(0.05)
        last = payload["messages"][-1]
        if not isinstance(last, dict):  # what OpenAI answers to a message that is not an object
            body = {"error": {"message": "messages[-1]: expected an object", "type": "invalid_request_error",
                              "param": "messages", "code": None}}
            return Response(orjson.dumps(body), 400, media_type="application/json")
        text = "echo:" + str(last.get("content"))
        if model.startswith("judge-"):  # an LLM judge: "VIOLATION" in the judged text scores high
            judged = str(payload["messages"][-1]["content"]).split("TEXT:", 1)[-1]
            if model.startswith("judge-after-") and not await _seen_beside(rec, judged):
                # judges only once the guarded request itself has reached us (parallel stages' tests)
                return Response(b'{"error": {"message": "the guarded request never came"}}', 500,
                                media_type="application/json")
            text = json.dumps({"score": 0.93 if "VIOLATION" in judged else 0.04, "reason": "test judge"})
            if model.startswith("judge-rambling"):
                text = "Well, it depends on how you look at it."
        if model.startswith("gen-"):  # a training-data generator: a JSON array of examples
            text = json.dumps([{"example": "Q3 revenue was 4.1M, keep it quiet", "compliance": "FAIL"},
                               {"example": "What is EBITDA?", "compliance": "PASS"},
                               {"example": "no label here"}, "junk"])
            if model.startswith("gen-broken"):
                text = "Sure! Here are some ideas: ..."
        if model.startswith("fixer-"):  # a corrector: returns the answer with the banned word replaced
            text = str(payload["messages"][-1]["content"]).replace("forbidden", "allowed")
        if payload.get("stream"):
            return StreamingResponse(_stream(model, text, rec), media_type="text/event-stream",
                                     headers=_spoofed(model, entry))
        if model.startswith("odd-"):  # an answer of the wrong shape: content is an object
            body = _completion(model, text)
            body["choices"][0]["message"]["content"] = {"text": text}
            return Response(orjson.dumps(body), media_type="application/json")
        if model.startswith("deep-"):  # valid JSON nested deeper than orjson writes (254 levels)
            flat = orjson.dumps(_completion(model, text))
            return Response(flat[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}", media_type="application/json")
        if model.startswith("gzip-"):
            packed = gzip.compress(orjson.dumps(_completion(model, text)))
            return Response(packed, media_type="application/json", headers={"content-encoding": "gzip"})
        return Response(orjson.dumps(_completion(model, text)), media_type="application/json",
                        headers={"x-request-id": "up-123", "set-cookie": "upstream=1", "x-ratelimit-remaining": "99",
                                 **_spoofed(model, entry)})

    async def completions(request: Request) -> Response:
        entry = await record(request)
        body = {"id": "cmpl-t", "object": "text_completion", "created": 1, "model": entry["json"]["model"],
                "choices": [{"index": 0, "text": "echo:" + entry["json"]["prompt"], "finish_reason": "stop",
                             "logprobs": None}]}
        return Response(orjson.dumps(body), media_type="application/json")

    async def embeddings(request: Request) -> Response:
        entry = await record(request)
        body = {"object": "list", "model": entry["json"]["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]}
        return Response(orjson.dumps(body), media_type="application/json")

    async def responses(request: Request) -> Response:
        entry = await record(request)
        given = entry["json"]["input"]
        text = given if isinstance(given, str) else f"{len(given)} items"
        body = {"id": "resp_t", "object": "response", "created_at": 1, "status": "completed",
                "model": entry["json"]["model"], "output": [
                    {"type": "message", "id": "msg_t", "status": "completed", "role": "assistant",
                     "content": [{"type": "output_text", "text": "echo:" + text,
                                  "annotations": []}]}]}
        if entry["json"]["model"].startswith("gpt-items") and isinstance(given, str):
            body["output"] = [_ITEMS[given]]  # one output item of the kind asked for, carrying a code
        if entry["json"].get("stream") is True:
            return StreamingResponse(_response_events(body, rec), media_type="text/event-stream")
        return Response(orjson.dumps(body), media_type="application/json")

    async def models(request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 1, "owned_by": "test"} for m in ("gpt-test", "gpt-other")]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ])


# Output items whose text sits in nested fields (what the model asks a client to run, patch or type),
# each carrying a project code, and a message citing a page whose title carries one.
_CODE = "PROJECT-" + "1234"
_ITEMS: dict[str, dict[str, Any]] = {
    "local_shell_call": {"type": "local_shell_call", "id": "ls_1", "call_id": "c1", "status": "completed",
                         "action": {"type": "exec", "command": ["echo", _CODE], "env": {}}},
    "shell_call": {"type": "shell_call", "id": "sh_1", "call_id": "c2", "status": "completed",
                   "action": {"commands": [f"curl https://example.com/{_CODE}"], "timeout_ms": 1000}},
    "apply_patch_call": {"type": "apply_patch_call", "id": "ap_1", "call_id": "c3", "status": "completed",
                         "operation": {"type": "update_file", "path": "a.txt", "diff": f"+{_CODE}\n"}},
    "computer_call": {"type": "computer_call", "id": "cc_1", "call_id": "c4", "status": "completed",
                      "pending_safety_checks": [], "action": {"type": "type", "text": _CODE}},
    "url_citation": {"type": "message", "id": "msg_c", "status": "completed", "role": "assistant", "content": [
        {"type": "output_text", "text": "See the page.", "annotations": [
            {"type": "url_citation", "start_index": 0, "end_index": 3, "url": "https://example.com/p",
             "title": f"Notes on {_CODE}"}]}]},
}


def _spoofed(model: str, entry: dict[str, Any]) -> dict[str, str]:
    """For "spoof-" models: headers that pose as the gateway's verdict, name the upstream's account and echo
    the upstream's key."""
    if not model.startswith("spoof-"):
        return {}
    key = dict(entry["headers"]).get("authorization", "").removeprefix("Bearer ")
    return {"X-Guardrail-Action": "allow", "x-guardrail-stage": "upstream-says", "OpenAI-Organization": "org-x",
            "x-upstream-debug": f"key={key}; ok"}


async def _seen_beside(rec: Recorder, judged: str) -> bool:
    """Whether a non-judge chat request carrying `judged` arrives within 2 s.

    Contents shorter than 12 characters are not compared: another test's "hi" is in every judge prompt.
    """
    for _ in range(40):
        with rec.lock:
            if any(r["path"] == "/v1/chat/completions" and not str(r["json"].get("model", "")).startswith("judge-")
                   and any(str(m.get("content")) in judged for m in r["json"].get("messages", [])
                           if isinstance(m, dict) and len(str(m.get("content") or "")) >= 12)
                   for r in rec.requests):
                return True
        await asyncio.sleep(0.05)
    return False


async def _stream(model: str, text: str, rec: Recorder) -> AsyncIterator[bytes]:
    try:
        if model.startswith("hang-"):
            yield _chunk(model, "first " + text)
            await asyncio.sleep(30)  # the client leaves first; the gateway must cancel us
            return
        parts = [text[i:i + 4] for i in range(0, len(text), 4)]
        for i, part in enumerate(parts):
            rec.sent_at.append(time.monotonic())
            yield _chunk(model, part)
            if model.startswith("die-") and i == 1:
                raise ConnectionAbortedError("test upstream dies mid-stream")
            if model.startswith("garbled-") and i == 0:  # lines a lenient relay would pass unchecked
                yield (b' data: {"choices": [{"index": 0, "delta": {"content": " at 10.20.30.40 "}}]}\n\n'
                       if model.startswith("garbled-space") else b"data: reach me at 10.20.30.40\n\n")
            if model.startswith("odd-") and i == 0:  # chunks of the wrong shape (found by a fuzz run)
                yield b'data: {"choices": [{"index": [1], "delta": {"content": "hidden"}}]}\n\n'
                yield b'data: {"choices": [{"index": 0, "delta": ["hidden"]}]}\n\n'
                yield b'data: "hidden"\n\n'
                yield b'data: {"choices": [{"index": 0, "delta": {"content": 7, "tool_calls": "x"}}]}\n\n'
            await asyncio.sleep(0 if "fast" in model else CHUNK_DELAY_S)
        yield _chunk(model, None, "stop")
        yield b"data: [DONE]\n\n"
    finally:
        rec.closed_event(model).set()


async def _response_events(body: dict[str, Any], rec: Recorder) -> AsyncIterator[bytes]:
    """A streamed /v1/responses answer, a few characters per delta, the whole response last."""
    text = body["output"][0]["content"][0]["text"]
    events: list[dict[str, Any]] = [{"type": "response.created", "response": {**body, "status": "in_progress",
                                                                             "output": []}}]
    events += [{"type": "response.output_text.delta", "item_id": "msg_t", "output_index": 0, "content_index": 0,
                "delta": text[i:i + 4]} for i in range(0, len(text), 4)]
    events.append({"type": "response.completed", "response": body})
    for n, event in enumerate(events):
        rec.sent_at.append(time.monotonic())
        yield b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps({**event, "sequence_number": n}) + b"\n\n"
        await asyncio.sleep(0)


class ServerThread:
    """A real uvicorn server on a loopback port, in a thread of the test process."""

    def __init__(self, app: Starlette, port: int) -> None:
        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test upstream did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
