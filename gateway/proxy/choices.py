"""Sans-IO: the choices of a chat or completions stream, gathered chunk by chunk.

A `Choice` holds what the chunks of one choice carried (its text, refusal, tool calls, finish); the
stream monitor adds them up to the answer they make, the hold-back guard releases them as they pass.
What differs between the two endpoints (which fields a chunk carries, how a chunk and a whole answer
are written) is their dialect's `ChoiceShape` (proxy/dialects/chat.py, completions.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Choice:
    index: int
    text: str = ""
    released: int = 0
    started: bool = False
    finish: str | None = None
    tools: dict[int, dict[str, Any]] = field(default_factory=dict)
    refusal: str = ""  # a chat model's refusal (structured outputs): held whole, like tool calls
    ended: bool = False  # its last check ran and its finish chunk left: later chunks for it are dropped
    checked: int = 0  # the text's length at its last check (an eager guard checks only new text)
    # a stream guard's redactions that left in place of their text: edits of `text`, sorted (its `text`
    # stays the text as received, and `released` counts the characters of it that left)
    redacted: list[tuple[int, int, str]] = field(default_factory=list)
    late: int = 0  # the end of the last value a stream guard found wholly in sent text (each counted once)


class ChoiceShape(Protocol):
    """How one endpoint's stream carries its choices."""

    @property
    def names_role(self) -> bool:
        """Whether a choice's first chunk names the role (`"role": "assistant"`), as chat's do."""

    def absorb(self, choice: Choice, c: dict[str, Any]) -> None:
        """Take the text of one choice chunk `c` into `choice`."""

    def chunk(self, template: dict[str, Any], index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        """A chunk of choice `index` carrying `delta` (its `content`, `refusal`, `tool_calls`, `role`)."""

    def answer(self, choices: list[Choice]) -> dict[str, Any]:
        """The non-streamed answer the choices add up to."""


def text(value: object) -> str:
    return value if isinstance(value, str) else ""


def indexed(choices: object) -> Iterator[tuple[int, dict[str, Any]]]:
    """A chunk's choices with their index; one without an int index (bool is none either) is not a
    choice that can be checked, and is skipped (so it is dropped where a guard rebuilds the stream)."""
    for c in choices if isinstance(choices, list) else ():
        index = c.get("index", 0) if isinstance(c, dict) else None
        if type(index) is int:
            yield index, c


def absorb_finish(choice: Choice, c: dict[str, Any]) -> None:
    """A choice chunk's finish_reason. Fields of the wrong type are skipped, here as in every `absorb`:
    what a guard lets leave is built from what was absorbed and checked, so a malformed field is dropped,
    never passed on unchecked."""
    finish = c.get("finish_reason")
    if finish and isinstance(finish, str):
        choice.finish = finish


def merge_tool(choice: Choice, call: dict[str, Any]) -> None:
    index = call.get("index", 0)
    held = choice.tools.setdefault(index, {"index": index})
    for key in ("id", "type"):
        if call.get(key) and isinstance(call[key], str):
            held[key] = call[key]
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    target = held.setdefault("function", {"name": "", "arguments": ""})
    target["name"] += text(function.get("name"))
    target["arguments"] += text(function.get("arguments"))


def tools(choice: Choice) -> list[dict[str, Any]]:
    return sorted(choice.tools.values(), key=lambda t: t["index"])
