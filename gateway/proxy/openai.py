"""Sans-IO OpenAI wire format: endpoints, request parsing and validation, error and list bodies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.wire import OpenAIError, error_body, stream_error_event  # noqa: F401  (re-exported)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One proxied OpenAI route: its path under an upstream's base URL and what a request must carry."""

    name: str                      # metric label, e.g. "chat_completions"
    path: str                      # appended to the upstream base_url, e.g. "/chat/completions"
    required: tuple[str, ...]      # fields that must be present besides `model`
    can_stream: bool
    default_model: str | None = None  # routed as this when the request names no model (sent without one)


CHAT = Endpoint("chat_completions", "/chat/completions", ("messages",), True)
COMPLETIONS = Endpoint("completions", "/completions", ("prompt",), True)
EMBEDDINGS = Endpoint("embeddings", "/embeddings", ("input",), False)
RESPONSES = Endpoint("responses", "/responses", (), True)
# `model` is optional on OpenAI's moderations: a request without one is routed as OpenAI's default model
# (aliases, groups, globs) and sent as it came, so the upstream applies its own default.
MODERATIONS = Endpoint("moderations", "/moderations", ("input",), False, "omni-moderation-latest")


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A validated request body; `payload` is the decoded JSON object, unknown fields included."""

    payload: dict[str, Any]
    model: str
    stream: bool
    fields: int  # how many top-level fields the client sent (a guard that removes one must re-encode)


def dumps_json(value: Any, too_deep: Callable[[str], OpenAIError], option: int | None = None) -> bytes:
    """orjson.dumps of JSON that came in. orjson reads 1,024 levels of nesting but writes only 254: what
    lies between raises `too_deep(reason)`, the sender's error, instead of crashing (500)."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        raise too_deep("nested too deeply: at most 254 levels of arrays and objects") from None


def request_too_deep(reason: str) -> OpenAIError:
    return OpenAIError(400, f"The request body is {reason}.", code="invalid_json")


def answer_too_deep(reason: str) -> OpenAIError:
    return OpenAIError(502, f"The upstream answer is {reason}; the gateway cannot write it back.",
                       type="upstream_error", code="unreadable_answer")


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object; a 400 `invalid_json` otherwise."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_json")
    return payload


def parse_request(body: bytes, endpoint: Endpoint) -> ParsedRequest:
    """Decode and check a request body; raise `OpenAIError` (400) naming the bad field."""
    if not body:
        raise OpenAIError(400, "The request body is empty; expected a JSON object.", code="invalid_json")
    payload = json_object(body)
    model = payload.get("model")
    if model is None and endpoint.default_model is not None:
        model = endpoint.default_model
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "Missing required parameter: 'model'.", code="missing_required_parameter",
                          param="model")
    for field in endpoint.required:
        if payload.get(field) is None:
            raise OpenAIError(400, f"Missing required parameter: '{field}'.", code="missing_required_parameter",
                              param=field)
    if endpoint is CHAT and not (isinstance(payload["messages"], list) and payload["messages"]):
        raise OpenAIError(400, "'messages' must be a non-empty array.", code="invalid_type", param="messages")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise OpenAIError(400, "'stream' must be a boolean.", code="invalid_type", param="stream")
    return ParsedRequest(payload, model, bool(stream) and endpoint.can_stream, len(payload))


def model_list(models: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"object": "list", "data": models})


def model_entry(model_id: str, owned_by: str, created: int = 0) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
