"""/v1/completions (the legacy one): a prompt in, choices of text out, streamed as chunks of text."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.proxy.choices import Choice, absorb_finish, text
from gateway.proxy.dialects.base import Dialect
from gateway.proxy.openai import COMPLETIONS
from gateway.proxy.walk import Walk


class CompletionChoices:
    """A completions stream's choices: each chunk carries a `text`."""

    names_role = False

    def absorb(self, choice: Choice, c: dict[str, Any]) -> None:
        choice.text += text(c.get("text"))
        absorb_finish(choice, c)

    def chunk(self, template: dict[str, Any], index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {**template, "choices": [
            {"index": index, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}]}

    def answer(self, choices: list[Choice]) -> dict[str, Any]:
        return {"object": "text_completion", "choices": [
            {"index": choice.index, "text": choice.text, "finish_reason": choice.finish} for choice in choices]}


class Completions(Dialect):
    name = COMPLETIONS.name
    endpoint = COMPLETIONS
    answers_in_shape = True
    choices = CompletionChoices()

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        walk.prompt(payload.get("prompt"), ("prompt",), "user")
        walk.text(payload.get("suffix"), ("suffix",), "user", optional=True)

    def walk_response(self, walk: Walk, payload: dict[str, Any]) -> None:
        for k, choice in walk.objects(payload.get("choices"), ("choices",)):
            walk.text(choice.get("text"), ("choices", k, "text"), "assistant", optional=True)

    def refusal(self, model: str, text: str, note: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A whole answer with finish_reason content_filter."""
        return {"id": f"guard-{request_id}", "created": int(time.time()), "model": model, "guardrail": note,
                "object": "text_completion",
                "choices": [{"index": 0, "text": text, "finish_reason": "content_filter", "logprobs": None}]}

    def refusal_stream(self, model: str, text: str, note: dict[str, Any], request_id: str) -> bytes:
        """The text, a content_filter finish, then [DONE]."""
        base = {"id": f"guard-{request_id}", "created": int(time.time()), "model": model}
        chunks = [{**base, "object": "text_completion",
                   "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}]},
                  {**base, "object": "text_completion", "guardrail": note,
                   "choices": [{"index": 0, "text": "", "finish_reason": "content_filter", "logprobs": None}]}]
        return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


DIALECT = Completions()
