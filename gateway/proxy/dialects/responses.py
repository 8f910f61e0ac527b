"""/v1/responses: instructions and input items in, output items out, streamed as typed events.

Its stream is not a list of choices: under output stages that only monitor, the answer is rebuilt from
its events (`ResponseMonitor`); under stages that may act it is asked for whole, checked, and told as the
events the client asked for (proxy/response_events.py)."""

from __future__ import annotations

import time
from typing import Any

from gateway.proxy.dialects.base import Dialect
from gateway.proxy.openai import RESPONSES, OpenAIError
from gateway.proxy.response_events import response_stream
from gateway.proxy.stream_monitor import AnswerMonitor, Check, ResponseMonitor
from gateway.proxy.walk import STRING, TOOL_DEFINITION, Path, Walk


class Responses(Dialect):
    name = RESPONSES.name
    endpoint = RESPONSES
    answers_in_shape = True
    whole_when_guarded = True

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        walk.text(payload.get("instructions"), ("instructions",), "system", optional=True)
        value = payload.get("input")
        if isinstance(value, str):
            walk.text(value, ("input",), "user")
        elif isinstance(value, list):
            _items(walk, value, ("input",))
        elif value is not None:
            walk.bad.append((("input",), "expected a string or an array of items"))
        for t, tool in walk.objects(payload.get("tools"), ("tools",)):
            walk.text(tool.get("description"), ("tools", t, "description"), TOOL_DEFINITION, True)
            walk.schema(tool.get("parameters"), ("tools", t, "parameters"))
        text = payload.get("text")  # structured outputs: text.format is the responses form of response_format
        if isinstance(text, dict) and isinstance(text.get("format"), dict):
            walk.text(text["format"].get("description"), ("text", "format", "description"), TOOL_DEFINITION, True)
            walk.schema(text["format"].get("schema"), ("text", "format", "schema"))
        prompt = payload.get("prompt")  # a stored prompt's variables are filled in as the user's input
        if isinstance(prompt, dict) and isinstance(prompt.get("variables"), dict):
            for name, value in prompt["variables"].items():
                path: Path = ("prompt", "variables", name)
                if isinstance(value, dict):
                    walk.content([value], path, "user", single=True)
                else:
                    walk.text(value, path, "user")

    def walk_response(self, walk: Walk, payload: dict[str, Any]) -> None:
        _items(walk, payload.get("output"), ("output",))

    def check_guarded(self, payload: dict[str, Any]) -> None:
        if payload.get("background") is True:
            raise OpenAIError(400, "This application's answers pass output stages, and a background response "
                                   "would be fetched later without them; send background: false.",
                              code="unguarded_background", param="background")

    def refusal(self, model: str, text: str, note: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A Responses API object carrying the replacement text, ended as the API ends a filtered answer: a
        response with status `incomplete` for `content_filter`, its text one output message."""
        message = {"type": "message", "id": f"msg_guard_{request_id}", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        return {"id": f"resp_guard_{request_id}", "object": "response", "created_at": int(time.time()),
                "status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "error": None,
                "model": model, "output": [message], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                          "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0},
                "guardrail": note}

    def refusal_stream(self, model: str, text: str, note: dict[str, Any], request_id: str) -> bytes:
        return response_stream(self.refusal(model, text, note, request_id))

    def monitor(self, check: Check) -> AnswerMonitor:
        return ResponseMonitor(check)

    def events(self, answer: dict[str, Any]) -> bytes:
        return response_stream(answer)


# Responses items besides messages whose fields carry free text the model reads: (field, role, may be null).
# A call's arguments are the model's own words (assistant); what a tool answered is tool input.
_ITEM_TEXTS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "function_call": (("arguments", "assistant", False),),
    "custom_tool_call": (("input", "assistant", False),),
    "mcp_call": (("arguments", "assistant", False), ("output", "tool", True)),
    "mcp_approval_request": (("arguments", "assistant", False),),
    "local_shell_call_output": (("output", "tool", False),),
    "apply_patch_call_output": (("output", "tool", True),),
    "code_interpreter_call": (("code", "assistant", True),),
}
# Items with lists of objects that carry text: (list field, text fields, role) for each list.
_ITEM_LISTS: dict[str, tuple[tuple[str, tuple[str, ...], str], ...]] = {
    "shell_call_output": (("output", ("stdout", "stderr"), "tool"),),
    "code_interpreter_call": (("outputs", ("logs",), "tool"),),
    "file_search_call": (("results", ("text",), "tool"),),
    "mcp_list_tools": (("tools", ("description",), TOOL_DEFINITION),),
    "reasoning": (("summary", ("text",), "assistant"), ("content", ("text",), "assistant")),
}
# Items whose free text sits inside an object: (object, field). The value is a string or a list of
# strings (a shell command's argv); an absent one is fine (a delete_file patch has no diff). It is what
# the model asks a client to run, patch or type: its own words (assistant), like a function's arguments.
_ITEM_NESTED: dict[str, tuple[str, str]] = {
    "local_shell_call": ("action", "command"),
    "shell_call": ("action", "commands"),
    "apply_patch_call": ("operation", "diff"),
    "computer_call": ("action", "text"),
}
# Input items that carry no free text: references to stored items, finished tool runs whose results are
# images or statuses, an approval's yes/no (its `reason` is read).
_NO_TEXT_ITEMS = frozenset({"item_reference", "web_search_call", "image_generation_call", "computer_call_output",
                            "file_search_call", "mcp_approval_response", "compaction"})


def _items(walk: Walk, items: Any, path: Path) -> None:
    for i, item in walk.objects(items, path):
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            walk.bad.append(((*path, i, "type"), STRING))
        elif kind == "message":
            role = walk.role(item, (*path, i), "assistant" if path == ("output",) else "user")
            walk.content(item.get("content"), (*path, i, "content"), role)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            if isinstance(output, list):
                walk.content(output, (*path, i, "output"), "tool")
            else:
                walk.text(output, (*path, i, "output"), "tool")
        elif walk.strict and not (kind in _ITEM_TEXTS or kind in _ITEM_NESTED or kind in _ITEM_LISTS
                                  or kind in _NO_TEXT_ITEMS):
            walk.bad.append(((*path, i, "type"), f"an input item of type '{kind}' is unknown to the guard, "
                                                 "which cannot check what it carries"))
        else:
            _item_texts(walk, kind, item, (*path, i))


def _item_texts(walk: Walk, kind: str, item: dict[str, Any], at: Path) -> None:
    """The texts of an item other than a message or a tool's output, by the tables above."""
    if kind == "mcp_approval_response":
        walk.text(item.get("reason"), (*at, "reason"), "user", optional=True)
    for field, role, optional in _ITEM_TEXTS.get(kind, ()):
        walk.text(item.get(field), (*at, field), role, optional)
    if kind == "mcp_call" and isinstance(item.get("error"), str):  # some servers send an object
        walk.text(item["error"], (*at, "error"), "tool")
    if kind in _ITEM_NESTED:
        outer, field = _ITEM_NESTED[kind]
        _nested(walk, item.get(outer), (*at, outer), field)
    for field, keys, role in _ITEM_LISTS.get(kind, ()):
        for k, entry in walk.objects(item.get(field), (*at, field)):
            for key in keys:
                walk.text(entry.get(key), (*at, field, k, key), role, optional=True)


def _nested(walk: Walk, holder: Any, path: Path, field: str) -> None:
    """`holder[field]` of an item (`path` names the holder): null, a string or a list of strings."""
    if holder is None:
        return
    if not isinstance(holder, dict):
        walk.bad.append((path, "expected an object"))
        return
    value = holder.get(field)
    if isinstance(value, list):
        for k, entry in enumerate(value):
            walk.text(entry, (*path, field, k), "assistant")
    else:
        walk.text(value, (*path, field), "assistant", optional=True)


DIALECT = Responses()
