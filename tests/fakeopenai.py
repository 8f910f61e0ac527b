"""A loopback fake of OpenAI's wider surface (moderations, images, audio, files, responses) and of Azure
OpenAI's URL shapes, for tests of the routes beyond chat: an ASGI app (`fake_app`), served on loopback
(`serve_fake`) or in memory (`memory_fake` and `in_process(..., upstream_app=fake_app(fake))`). Every
request is recorded whole (method, path, query, headers, raw body); the body is never parsed as a form,
so a test can compare what arrived with what the client sent, byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

AUDIO = bytes(range(256)) * 64  # 16 KiB of every byte value: binary, not UTF-8


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Fake:
    name: str = "fake"
    seen: list[Seen] = field(default_factory=list)
    url: str = ""  # the server's origin, e.g. http://127.0.0.1:1234
    status: int = 200  # answer this status (an OpenAI error body) instead
    error_text: str = ""  # the error body's message

    def last(self) -> Seen:
        return self.seen[-1]


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def fake_app(fake: Fake) -> Starlette:
    """The fake as an ASGI app: served on loopback by `serve_fake`, or in memory (tests/memupstream.py)."""
    async def handle(request: Request) -> Response:
        body = await request.body()
        seen = Seen(request.method, request.scope["path"], dict(request.query_params),
                    {k.lower(): v for k, v in request.headers.items()}, body)
        fake.seen.append(seen)
        if fake.status != 200:
            return _json({"error": {"message": fake.error_text or f"{fake.name} says {fake.status}",
                                    "type": "invalid_request_error", "param": None, "code": None}}, fake.status)
        path = seen.path
        for prefix in ("/openai/v1", "/v1"):
            if path.startswith(prefix + "/"):
                path = path[len(prefix):]
                break
        if path.startswith("/openai/deployments/"):
            path = "/" + path.split("/", 4)[4]  # /openai/deployments/{d}/chat/completions -> /chat/completions
        if path == "/moderations":
            return _json({"id": "modr-1", "model": "omni-moderation-latest", "results": [{
                "flagged": False, "categories": {}, "category_scores": {}, "category_applied_input_types": {}}]})
        if path == "/images/generations":
            return _json({"created": 1, "data": [{"b64_json": "aW1hZ2U=", "revised_prompt": None}]})
        if path == "/audio/speech":
            return StreamingResponse(_audio(), media_type="audio/mpeg")
        if path == "/files" and request.method == "POST":
            return _json({"id": "file-1", "object": "file", "bytes": len(body), "created_at": 1,
                          "filename": "data.jsonl", "purpose": "batch", "status": "processed"})
        if path.startswith("/responses/"):
            return _json({"id": path.rsplit("/", 1)[1], "object": "response", "created_at": 1, "status": "completed",
                          "model": "m", "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
                          "tools": []})
        if path == "/embeddings":
            return _json({"object": "list", "model": seen.json().get("model", ""), "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        if path in ("/chat/completions", "/responses", "/completions"):
            model = seen.json().get("model", "")
            return _json({"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": model,
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": f"from {fake.name}"},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
        return _json({"error": {"message": f"no route {seen.path}", "type": "invalid_request_error",
                                "param": None, "code": None}}, 404)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{tail:path}", handle, methods=methods)])


async def _audio() -> AsyncIterator[bytes]:
    for i in range(0, len(AUDIO), 4096):
        yield AUDIO[i:i + 4096]


@contextlib.asynccontextmanager
async def memory_fake(fake: Fake) -> AsyncIterator[Fake]:
    """`fake` with a URL nothing listens on (http://{name}.test), for a test that serves `fake_app(fake)`
    in memory: `in_process(config, tmp, upstream_app=fake_app(fake))` (or {upstream name: app})."""
    fake.url = f"http://{fake.name}.test"
    yield fake


class _Server(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()  # in the test's loop: the test runner keeps its signal handlers


@contextlib.asynccontextmanager
async def serve_fake(fake: Fake) -> AsyncIterator[Fake]:
    """`fake_app(fake)` on a loopback port (uvicorn, in this event loop); `fake.url` is its origin."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(fake_app(fake), log_level="error", lifespan="off", access_log=False))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield fake
    finally:
        server.should_exit = True
        await task
        sock.close()
