"""/v1/chat/completions: messages in, choices of messages out, streamed as chunks of deltas."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.proxy.choices import Choice, absorb_finish, merge_tool, text, tools
from gateway.proxy.dialects.base import Dialect
from gateway.proxy.openai import CHAT
from gateway.proxy.walk import TOOL_DEFINITION, Path, Walk


class ChatChoices:
    """A chat stream's choices: each chunk carries a `delta` (content, refusal, tool calls)."""

    names_role = True

    def absorb(self, choice: Choice, c: dict[str, Any]) -> None:
        delta = c.get("delta")
        if isinstance(delta, dict):
            choice.text += text(delta.get("content"))
            choice.refusal += text(delta.get("refusal"))
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict) and type(call.get("index", 0)) is int:
                    merge_tool(choice, call)
        absorb_finish(choice, c)

    def chunk(self, template: dict[str, Any], index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {**template, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def answer(self, choices: list[Choice]) -> dict[str, Any]:
        out = []
        for choice in choices:
            message: dict[str, Any] = {"role": "assistant", "content": choice.text}
            if choice.refusal:
                message["refusal"] = choice.refusal
            if choice.tools:
                message["tool_calls"] = tools(choice)
            out.append({"index": choice.index, "message": message, "finish_reason": choice.finish})
        return {"object": "chat.completion", "choices": out}


class Chat(Dialect):
    name = CHAT.name
    endpoint = CHAT
    answers_in_shape = True
    choices = ChatChoices()

    @staticmethod
    def ask(model: str, messages: list[dict[str, str]]) -> bytes:
        """The gateway's own request for one non-streamed, deterministic answer (a `correct` action's)."""
        return orjson.dumps({"model": model, "messages": messages, "temperature": 0})

    @staticmethod
    def answer_text(raw: bytes) -> object:
        """The first choice's message content of a non-streamed answer (KeyError, IndexError: none)."""
        return orjson.loads(raw)["choices"][0]["message"]["content"]

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        for i, message in walk.objects(payload.get("messages"), ("messages",)):
            role = walk.role(message, ("messages", i), "user")
            _message(walk, message, ("messages", i), role)
            if role != "tool":  # a participant's name the model sees (a tool message's names a function)
                walk.text(message.get("name"), ("messages", i, "name"), role, optional=True)
        prediction = payload.get("prediction")  # Predicted Outputs: text the model is given to reuse
        if isinstance(prediction, dict):
            walk.content(prediction.get("content"), ("prediction", "content"), "user")
        for t, tool in walk.objects(payload.get("tools"), ("tools",)):
            key = "custom" if tool.get("type") == "custom" else "function"
            if isinstance(tool.get(key), dict):
                walk.text(tool[key].get("description"), ("tools", t, key, "description"), TOOL_DEFINITION, True)
                walk.schema(tool[key].get("parameters"), ("tools", t, key, "parameters"))
        for f, function in walk.objects(payload.get("functions"), ("functions",)):  # the legacy form
            walk.text(function.get("description"), ("functions", f, "description"), TOOL_DEFINITION, True)
            walk.schema(function.get("parameters"), ("functions", f, "parameters"))
        form = payload.get("response_format")
        if isinstance(form, dict) and isinstance(form.get("json_schema"), dict):
            walk.text(form["json_schema"].get("description"), ("response_format", "json_schema", "description"),
                      TOOL_DEFINITION, True)
            walk.schema(form["json_schema"].get("schema"), ("response_format", "json_schema", "schema"))

    def walk_response(self, walk: Walk, payload: dict[str, Any]) -> None:
        for k, choice in walk.objects(payload.get("choices"), ("choices",)):
            message = choice.get("message")  # absent on a choice some providers filtered: nothing to read
            if isinstance(message, dict):
                _message(walk, message, ("choices", k, "message"), "assistant")
            elif message is not None:
                walk.bad.append((("choices", k, "message"), "expected an object"))

    def refusal(self, model: str, text: str, note: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A whole answer with finish_reason content_filter."""
        return {"id": f"guard-{request_id}", "created": int(time.time()), "model": model, "guardrail": note,
                "object": "chat.completion", "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "finish_reason": "content_filter", "logprobs": None}]}

    def refusal_stream(self, model: str, text: str, note: dict[str, Any], request_id: str) -> bytes:
        """The text, a content_filter finish, then [DONE]."""
        base = {"id": f"guard-{request_id}", "created": int(time.time()), "model": model}
        chunks = [{**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
                  {**base, "object": "chat.completion.chunk", "guardrail": note,
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}]
        return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _message(walk: Walk, message: dict[str, Any], path: Path, role: str) -> None:
    walk.content(message.get("content"), (*path, "content"), role)
    # What else of a message a client shows: a refusal, a reasoning model's reasoning (DeepSeek, vLLM and
    # others name it either way), an audio answer's transcript.
    for key in ("refusal", "reasoning_content", "reasoning"):
        if isinstance(message.get(key), str):
            walk.text(message[key], (*path, key), role)
    walk.citations(message.get("annotations"), (*path, "annotations"), role, nested=True)
    audio = message.get("audio")
    if isinstance(audio, dict) and isinstance(audio.get("transcript"), str):
        walk.text(audio["transcript"], (*path, "audio", "transcript"), role)
    for t, call in walk.objects(message.get("tool_calls"), (*path, "tool_calls")):
        if isinstance(call.get("custom"), dict):  # a custom tool's call carries free text
            walk.text(call["custom"].get("input"), (*path, "tool_calls", t, "custom", "input"), role)
        elif isinstance(call.get("function"), dict):
            walk.text(call["function"].get("arguments"), (*path, "tool_calls", t, "function", "arguments"), role)
        else:
            walk.bad.append(((*path, "tool_calls", t), "expected a 'function' object"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        walk.text(legacy.get("arguments"), (*path, "function_call", "arguments"), role)
    elif legacy is not None:
        walk.bad.append(((*path, "function_call"), "expected an object"))


DIALECT = Chat()
