"""Sans-IO: every scannable text of an OpenAI request or response, with the path to write it back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.guard.engine import Segment

Path = tuple[str | int, ...]
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def request_texts(endpoint: str, payload: dict[str, Any]) -> list[tuple[Segment, Path]]:
    """All texts of a request body, by role: every message (not only the last) and text content part."""
    if endpoint == "chat_completions":
        return list(_chat_messages(payload.get("messages")))
    if endpoint in ("completions", "embeddings"):
        key = "prompt" if endpoint == "completions" else "input"
        return list(_strings(payload.get(key), (key,), "user"))
    if endpoint == "responses":
        out = list(_strings(payload.get("instructions"), ("instructions",), "system"))
        value = payload.get("input")
        if isinstance(value, str):
            out.append((Segment("user", value), ("input",)))
        elif isinstance(value, list):
            out += _response_items(value, ("input",))
        return out
    return []


def response_texts(endpoint: str, payload: dict[str, Any]) -> list[tuple[Segment, Path]]:
    """All texts of a (non-streamed) response: every choice, its content and its tool-call arguments."""
    out: list[tuple[Segment, Path]] = []
    if endpoint == "chat_completions":
        for k, choice in _items(payload.get("choices")):
            message = choice.get("message")
            if isinstance(message, dict):
                out += _message(message, ("choices", k, "message"), "assistant")
    elif endpoint == "completions":
        for k, choice in _items(payload.get("choices")):
            out += _strings(choice.get("text"), ("choices", k, "text"), "assistant")
    elif endpoint == "responses":
        out += _response_items(payload.get("output") or [], ("output",))
    return out


def write_back(payload: dict[str, Any], path: Path, text: str) -> None:
    node: Any = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = text


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        yield from ((i, v) for i, v in enumerate(value) if isinstance(v, dict))


def _strings(value: Any, path: Path, role: str) -> list[tuple[Segment, Path]]:
    if isinstance(value, str):
        return [(Segment(role, value), path)]
    if isinstance(value, list):  # lists of strings; token-id arrays cannot be read and are skipped
        return [(Segment(role, v), (*path, i)) for i, v in enumerate(value) if isinstance(v, str)]
    return []


def _chat_messages(messages: Any) -> Iterator[tuple[Segment, Path]]:
    for i, message in _items(messages):
        yield from _message(message, ("messages", i), str(message.get("role", "user")))


def _message(message: dict[str, Any], path: Path, role: str) -> list[tuple[Segment, Path]]:
    out: list[tuple[Segment, Path]] = []
    content = message.get("content")
    if isinstance(content, str):
        out.append((Segment(role, content), (*path, "content")))
    else:
        out += _parts(content, (*path, "content"), role)
    for t, call in _items(message.get("tool_calls")):
        function = call.get("function")
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            out.append((Segment(role, function["arguments"]), (*path, "tool_calls", t, "function", "arguments")))
    return out


def _parts(content: Any, path: Path, role: str) -> list[tuple[Segment, Path]]:
    # Images, audio and files are not text: a message made only of them yields nothing to scan.
    return [(Segment(role, part["text"]), (*path, j, "text")) for j, part in _items(content)
            if isinstance(part.get("type"), str) and part["type"] in _TEXT_PARTS
            and isinstance(part.get("text"), str)]


def _response_items(items: Any, path: Path) -> list[tuple[Segment, Path]]:
    out: list[tuple[Segment, Path]] = []
    for i, item in _items(items):
        kind = item.get("type", "message")
        if kind == "message":
            role = str(item.get("role", "assistant" if path == ("output",) else "user"))
            content = item.get("content")
            if isinstance(content, str):
                out.append((Segment(role, content), (*path, i, "content")))
            else:
                out += _parts(content, (*path, i, "content"), role)
        elif kind == "function_call_output" and isinstance(item.get("output"), str):
            out.append((Segment("tool", item["output"]), (*path, i, "output")))
        elif kind == "function_call" and isinstance(item.get("arguments"), str):
            out.append((Segment("assistant", item["arguments"]), (*path, i, "arguments")))
    return out
