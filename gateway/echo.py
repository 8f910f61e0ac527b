# size: one simulator of the OpenAI API: each endpoint's handler beside its stream writer, over the
# shared request helpers and schema-valid values; split by endpoint it would scatter one wire format
"""The demo's upstream: a local model simulator that answers every endpoint the gateway serves as OpenAI does.

It calls no model. Its answers are made from the request, deterministically, in the exact wire shapes of
the OpenAI API, so the SDKs' helpers (streams, tool calls, structured outputs, embeddings) all work:

- chat completions: the last user message echoed (`Echo: ...`); `n` choices; `tools` answered with a call
  of the first function (or the one `tool_choice` names) whose arguments are a JSON object valid for the
  function's parameter schema, and a tool result answered in text; `response_format` json_object and
  json_schema (a schema-valid object); streamed word by word, tool-call arguments in pieces, with a
  usage chunk when `stream_options.include_usage` is set.
- completions: the prompt echoed, per prompt and `n`, streamed or not.
- responses: text, function calls and `text.format` json_schema; streamed as the Responses API's events.
- embeddings: unit vectors made from the text's hash, `dimensions` long (default 16), as floats or as
  base64 of little-endian float32 (`encoding_format`).
- models: the model ids below.

Every answer carries `usage` (tokens counted as words, roughly). A user message containing TRIGGER makes
it answer with a (test) card number and social security number, so an output stage has something to catch.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

MODEL_IDS = ("echo-1", "gpt-4o-mini", "text-embedding-3-small")
TRIGGER = "show me a test card"
LEAK_ANSWER = ("Sure. The test card on file is 4111 1111 1111 1111 (exp 12/30), and the customer's "
               "SSN is 078-05-1120.")
EMBEDDING_DIMENSIONS = 16
_WORD_DELAY_S = 0.02  # so a streamed answer visibly streams


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else orjson.dumps(content).decode()


def _last_user_text(payload: dict[str, Any]) -> str | None:
    """The last user message of `messages` (chat) or `input` (responses), None if there is none."""
    turns = payload.get("messages", payload.get("input"))
    if isinstance(turns, str):
        return turns
    for turn in reversed(turns if isinstance(turns, list) else []):
        if isinstance(turn, dict) and turn.get("role", "user") == "user" and "content" in turn:
            return _text_of(turn.get("content"))
    return None


def _reply(user: str | None, fallback: Any = "") -> str:
    text = user if user is not None else _text_of(fallback)
    if TRIGGER in text.lower():
        return LEAK_ANSWER
    return f"Echo: {text}"


def _tokens(value: Any) -> int:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return max(1, len(text.split()))


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(message: str, param: str | None = None, status: int = 400) -> Response:
    return _json({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}},
                 status)


async def _payload(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the 400 an OpenAI endpoint answers to anything else."""
    try:
        payload = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        return _error("the body must be a JSON object")
    return payload


def _n(payload: dict[str, Any]) -> int:
    n = payload.get("n")
    return n if isinstance(n, int) and 1 <= n <= 16 else 1


def _sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _pieces(text: str) -> list[str]:
    """A text cut into word-sized deltas that join back to it exactly."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


# ---- schema-valid values ----------------------------------------------------------------------------

def example_value(schema: Any, root: dict[str, Any] | None = None, name: str = "value", depth: int = 0) -> Any:
    """A value valid for the JSON schema `schema` (the subset tools and structured outputs use: objects,
    arrays, scalars, enum/const, anyOf/oneOf/allOf, $ref into $defs/definitions)."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    if not isinstance(schema, dict) or depth > 12:
        return None if depth > 12 else f"echo {name}"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example_value(target, root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema and depth > 0:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if isinstance(o, dict) and o.get("type") != "null"), options[0])
            return example_value(chosen, root, name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged = {**merged, **part, "properties": {**merged.get("properties", {}),
                                                           **part.get("properties", {})}}
        return example_value(merged, root, name, depth + 1)
    return _typed_value(schema, root, name, depth)


def _typed_value(schema: dict[str, Any], root: dict[str, Any], name: str, depth: int) -> Any:
    """`example_value` of a schema that is none of $ref, const, enum, default or a combination: by its type."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        found = schema.get("properties")
        props: dict[str, Any] = found if isinstance(found, dict) else {}
        listed = schema.get("required")
        required: list[Any] = listed if isinstance(listed, list) else list(props)
        # every property when additionalProperties is false (strict schemas require all), else the required
        keys = list(props) if schema.get("additionalProperties") is False else [k for k in props if k in required]
        return {k: example_value(props[k], root, k, depth + 1) for k in keys}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_value(schema.get("items", {}), root, name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(max(schema.get("minimum", 1), min(1, schema.get("maximum", 1))))
    if kind == "number":
        return float(max(schema.get("minimum", 1.0), min(1.0, schema.get("maximum", 1.0))))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"echo {name}"
    if isinstance(schema.get("minLength"), int) and len(text) < schema["minLength"]:
        text = text.ljust(schema["minLength"], "o")
    if isinstance(schema.get("maxLength"), int):
        text = text[: schema["maxLength"]]
    return text


def _json_answer(fmt: Any, text: str) -> str | None:
    """The content for `response_format` (chat) / `text.format` (responses), None for plain text."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return orjson.dumps({"echo": text}).decode()
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema", fmt)  # chat nests it under json_schema; responses puts it flat
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return orjson.dumps(example_value(schema or {"type": "object"})).decode()
    return None


def _tool_call(payload: dict[str, Any], flat: bool = False) -> tuple[str, str] | None:
    """(name, arguments) of the function to call, or None: no tools, tool_choice none, or the last turn
    is a tool result (the model then answers in text)."""
    tools = [t for t in payload.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = payload.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    turns = payload.get("messages", payload.get("input"))
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict) and (
            turns[-1].get("role") == "tool" or turns[-1].get("type") == "function_call_output"):
        return None
    wanted = None
    if isinstance(choice, dict):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
    tool = next((t for t in tools if _function(t, flat).get("name") == wanted), tools[0])
    function = _function(tool, flat)
    args = example_value(function.get("parameters") or {"type": "object", "properties": {}})
    return str(function.get("name", "tool")), orjson.dumps(args).decode()


def _function(tool: dict[str, Any], flat: bool) -> dict[str, Any]:
    if flat:  # the Responses API: {type: function, name, parameters}
        return tool
    function = tool.get("function")
    return function if isinstance(function, dict) else {}


def _call_id(seed: str, i: int) -> str:
    return "call_" + hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:24]


# ---- chat completions --------------------------------------------------------------------------------

async def chat(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    if not isinstance(payload.get("messages"), list):
        return _error("'messages' is a required property", "messages")
    model, created, n = payload.get("model", "echo-1"), int(time.time()), _n(payload)
    last = payload["messages"][-1] if payload["messages"] else {}
    if isinstance(last, dict) and last.get("role") == "tool":  # a tool's result: the model answers about it
        user: str | None = f"(tool result) {_text_of(last.get('content'))}"
    else:
        user = _last_user_text(payload) or ""
    text = _reply(user)
    content = _json_answer(payload.get("response_format"), text) or text
    call = _tool_call(payload)
    prompt_tokens = sum(_tokens(_text_of(m.get("content"))) for m in payload["messages"] if isinstance(m, dict))
    completion_tokens = _tokens(call[1] if call else content) * n
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens,
             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                           "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
    rid = "chatcmpl-echo" + hashlib.sha256(orjson.dumps(payload["messages"])).hexdigest()[:16]
    if payload.get("stream"):
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_chat_stream(rid, model, created, n, content, call, usage if include_usage else None),
                                 media_type="text/event-stream")
    choices = []
    for i in range(n):
        message: dict[str, Any] = {"role": "assistant", "content": None if call else content, "refusal": None,
                                   "annotations": []}
        if call:
            message["tool_calls"] = [{"id": _call_id(rid, i), "type": "function",
                                      "function": {"name": call[0], "arguments": call[1]}}]
        choices.append({"index": i, "message": message, "logprobs": None,
                        "finish_reason": "tool_calls" if call else "stop"})
    return _json({"id": rid, "object": "chat.completion", "created": created, "model": model,
                  "system_fingerprint": "fp_echo", "choices": choices, "usage": usage})


async def _chat_stream(rid: str, model: str, created: int, n: int, content: str, call: tuple[str, str] | None,
                       usage: dict[str, Any] | None) -> AsyncIterator[bytes]:
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_echo"}

    def chunk(i: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    for i in range(n):
        yield chunk(i, {"role": "assistant", "content": "" if not call else None, "refusal": None})
    if call:
        for i in range(n):
            yield chunk(i, {"tool_calls": [{"index": 0, "id": _call_id(rid, i), "type": "function",
                                            "function": {"name": call[0], "arguments": ""}}]})
        args = call[1]
        for start in range(0, len(args), 8):
            for i in range(n):
                yield chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": args[start:start + 8]}}]})
            await asyncio.sleep(_WORD_DELAY_S)
    else:
        for piece in _pieces(content):
            for i in range(n):
                yield chunk(i, {"content": piece})
            await asyncio.sleep(_WORD_DELAY_S)
    for i in range(n):
        yield chunk(i, {}, "tool_calls" if call else "stop")
    if usage is not None:
        yield _sse({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


# ---- completions -------------------------------------------------------------------------------------

async def completions(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    prompt = payload.get("prompt", "")
    prompts = prompt if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt) and prompt else [prompt]
    n, model, created = _n(payload), payload.get("model", "echo-1"), int(time.time())
    texts = [_reply(None, p) for p in prompts for _ in range(n)]
    prompt_tokens = sum(_tokens(_text_of(p)) for p in prompts)
    completion_tokens = sum(_tokens(t) for t in texts)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    rid = "cmpl-echo" + hashlib.sha256(orjson.dumps(prompts)).hexdigest()[:16]
    base = {"id": rid, "object": "text_completion", "created": created, "model": model, "system_fingerprint": "fp_echo"}
    if payload.get("stream"):
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_completion_stream(base, texts, usage if include_usage else None),
                                 media_type="text/event-stream")
    return _json({**base, "usage": usage, "choices": [
        {"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)]})


async def _completion_stream(base: dict[str, Any], texts: list[str], usage: dict[str, Any] | None) -> AsyncIterator[bytes]:
    pieces = [_pieces(t) for t in texts]
    for step in range(max(len(p) for p in pieces)):
        for i, own in enumerate(pieces):
            if step < len(own):
                yield _sse({**base, "choices": [{"index": i, "text": own[step], "finish_reason": None, "logprobs": None}]})
        await asyncio.sleep(_WORD_DELAY_S)
    for i in range(len(texts)):
        yield _sse({**base, "choices": [{"index": i, "text": "", "finish_reason": "stop", "logprobs": None}]})
    if usage is not None:
        yield _sse({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


# ---- embeddings --------------------------------------------------------------------------------------

async def embeddings(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    inputs = payload.get("input")
    if isinstance(inputs, list) and inputs and all(isinstance(x, int) for x in inputs):
        inputs = [inputs]  # one text given as token ids
    inputs = inputs if isinstance(inputs, list) else [inputs]
    dims = payload.get("dimensions", EMBEDDING_DIMENSIONS)
    if not isinstance(dims, int) or not 1 <= dims <= 4096:
        return _error("'dimensions' must be an integer from 1 to 4096", "dimensions")
    fmt = payload.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        return _error("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    data = []
    for i, x in enumerate(inputs):
        vector = embedding_vector(x if isinstance(x, str) else orjson.dumps(x).decode(), dims)
        encoded: Any = vector if fmt == "float" else base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(_tokens(x) for x in inputs)
    return _json({"object": "list", "data": data, "model": payload.get("model", "text-embedding-3-small"),
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def embedding_vector(text: str, dims: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector of `dims` float32 values from the text's hash."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw += [b / 127.5 - 1.0 for b in digest]
        counter += 1
    raw = raw[:dims]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in raw]  # exactly float32 values


# ---- responses ---------------------------------------------------------------------------------------

async def responses(request: Request) -> Response:
    payload = await _payload(request)
    if isinstance(payload, Response):
        return payload
    model, created = payload.get("model", "echo-1"), int(time.time())
    turns = payload.get("input")
    user = _last_user_text(payload)
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict) and \
            turns[-1].get("type") == "function_call_output":
        user = f"(tool result) {_text_of(turns[-1].get('output'))}"
    text = _reply(user)
    fmt = (payload.get("text") or {}).get("format") if isinstance(payload.get("text"), dict) else None
    content = _json_answer(fmt, text) or text
    rid = "resp_echo" + hashlib.sha256(orjson.dumps(turns)).hexdigest()[:16]
    call = _tool_call(payload, flat=True)
    if call:
        item: dict[str, Any] = {"type": "function_call", "id": "fc_" + rid[9:], "call_id": _call_id(rid, 0),
                                "name": call[0], "arguments": call[1], "status": "completed"}
    else:
        item = {"type": "message", "id": "msg_" + rid[9:], "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}]}
    input_tokens = _tokens(turns if turns is not None else "")
    output_tokens = _tokens(call[1] if call else content)
    response = {
        "id": rid, "object": "response", "created_at": created, "status": "completed", "error": None,
        "incomplete_details": None, "instructions": payload.get("instructions"), "model": model,
        "output": [item], "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [], "top_p": 1.0, "text": {"format": fmt or {"type": "text"}},
        "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": input_tokens + output_tokens},
    }
    if payload.get("stream"):
        return StreamingResponse(_response_stream(response), media_type="text/event-stream")
    return _json(response)


async def _response_stream(response: dict[str, Any]) -> AsyncIterator[bytes]:
    """The Responses API's events for `response`, its text and call arguments in word-sized deltas."""
    from gateway.proxy.response_events import _events  # the event order and shapes, told once

    seq = 0
    for kind, fields in _events(response):
        deltas: Sequence[str | None] = [fields["delta"]] if "delta" in fields else [None]
        if kind == "response.output_text.delta":
            deltas = _pieces(fields["delta"])
        elif kind == "response.function_call_arguments.delta":
            deltas = [fields["delta"][i:i + 8] for i in range(0, len(fields["delta"]), 8)] or [""]
        for delta in deltas:
            data = {"type": kind, "sequence_number": seq, **fields}
            if delta is not None:
                data["delta"] = delta
                await asyncio.sleep(_WORD_DELAY_S)
            seq += 1
            yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# ---- models ------------------------------------------------------------------------------------------

async def models(request: Request) -> Response:
    return _json({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "local-echo"} for m in MODEL_IDS]})


async def model(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in MODEL_IDS:
        return _json({"error": {"message": f"The model '{name}' does not exist", "type": "invalid_request_error",
                                "param": None, "code": "model_not_found"}}, 404)
    return _json({"id": name, "object": "model", "created": 0, "owned_by": "local-echo"})


def create_echo_app() -> Starlette:
    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{name}", model, methods=["GET"]),
    ])
