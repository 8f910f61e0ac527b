"""A loopback fake of OpenAI's wider surface (moderations, images, audio, files, responses) and of Azure
OpenAI's URL shapes, for tests of the routes beyond chat. Every request is recorded whole (method, path,
query, headers, raw body); the body is never parsed as a form, so a test can compare what arrived with
what the client sent, byte for byte."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

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


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


@contextlib.asynccontextmanager
async def serve_fake(fake: Fake) -> AsyncIterator[Fake]:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path, dict(request.query),
                    {k.lower(): v for k, v in request.headers.items()}, body)
        fake.seen.append(seen)
        if fake.status != 200:
            return _json({"error": {"message": fake.error_text or f"{fake.name} says {fake.status}",
                                    "type": "invalid_request_error", "param": None, "code": None}}, fake.status)
        path = request.path
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
            response = web.StreamResponse(headers={"content-type": "audio/mpeg"})
            await response.prepare(request)
            for i in range(0, len(AUDIO), 4096):
                await response.write(AUDIO[i:i + 4096])
            await response.write_eof()
            return response
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
        return _json({"error": {"message": f"no route {request.path}", "type": "invalid_request_error",
                                "param": None, "code": None}}, 404)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
