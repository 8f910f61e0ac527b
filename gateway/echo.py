"""A local OpenAI-compatible echo upstream for the demo: it repeats the last user message, nothing more."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

MODEL_IDS = ("echo-1", "gpt-4o-mini")
_WORD_DELAY_S = 0.02  # so a streamed answer visibly streams


def _reply_text(payload: dict[str, Any]) -> str:
    messages = payload.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
            return f"Echo: {content if isinstance(content, str) else orjson.dumps(content).decode()}"
    prompt = payload.get("prompt") or payload.get("input") or ""
    return f"Echo: {prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()}"


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _payload(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the 400 an OpenAI endpoint answers to anything else."""
    try:
        payload = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        return _json({"error": {"message": "the body must be a JSON object", "type": "invalid_request_error",
                                "param": None, "code": None}}, 400)
    return payload


async def chat(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    text, model, created = _reply_text(payload), payload.get("model", "echo-1"), int(time.time())
    if payload.get("stream"):
        return StreamingResponse(_chat_stream(text, model, created), media_type="text/event-stream")
    return _json({
        "id": "chatcmpl-echo", "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": len(text.split())},
    })


async def _chat_stream(text: str, model: str, created: int) -> AsyncIterator[bytes]:
    base = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": created, "model": model}
    words = text.split(" ")
    for i, word in enumerate(words):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
        yield b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}) + b"\n\n"
        await asyncio.sleep(_WORD_DELAY_S)
    yield b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def completions(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    return _json({
        "id": "cmpl-echo", "object": "text_completion", "created": int(time.time()), "model": payload.get("model"),
        "choices": [{"index": 0, "text": _reply_text(payload), "finish_reason": "stop", "logprobs": None}],
    })


async def embeddings(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    inputs = payload.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    data = [{"object": "embedding", "index": i, "embedding": _vector(str(x))} for i, x in enumerate(inputs)]
    return _json({"object": "list", "data": data, "model": payload.get("model"),
                  "usage": {"prompt_tokens": 0, "total_tokens": 0}})


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 4) for b in digest[:8]]


async def responses(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    text = _reply_text(payload)
    return _json({
        "id": "resp_echo", "object": "response", "created_at": int(time.time()), "status": "completed",
        "model": payload.get("model"),
        "output": [{"type": "message", "id": "msg_echo", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
    })


async def models(request: Request) -> Response:
    return _json({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "local-echo"} for m in MODEL_IDS]})


def create_echo_app() -> Starlette:
    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ])
