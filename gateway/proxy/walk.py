"""Sans-IO: the walk that reads the texts out of an OpenAI JSON body, and writes a changed one back.

A `Walk` gathers every scannable text it is shown, with the path to write it back, and the places it
cannot read: a text carrier of the wrong shape (a number where OpenAI wants a string, an object where it
wants a message) or a prompt sent as token ids. Each endpoint dialect (proxy/dialects/) walks its own
fields with it; the readers here are the shapes several endpoints share (content parts, prompts, JSON
schemas, citations, roles).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.guard.engine import Segment

Path = tuple[str | int, ...]
Found = list[tuple[Segment, Path]]
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
# Roles the guard knows. Any other is read as "user" (a typo, "User", a provider's own role such as
# "ipython"): checked by the input stages rather than sent on unchecked. A legacy "function" message is
# a tool's answer.
_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_ROLE_ALIASES = {"function": "tool"}
STRING = "expected a string"
# The role of tool descriptions an app or an MCP server gives the model; no stage reads it unless its roles name it.
TOOL_DEFINITION = "tool_definition"
# Content parts that carry media, not text (images, audio, files): the stages have nothing to read in them.
# A part of any other type without a `text` is refused in a request (a new kind of part the guard would
# pass unread).
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file", "input_image", "input_file", "output_audio"})


class Walk:
    """Texts found, in order, and the carriers that could not be read (path, reason)."""

    __slots__ = ("found", "bad", "strict")

    def __init__(self, strict: bool = False) -> None:
        self.found: Found = []
        self.bad: list[tuple[Path, str]] = []
        self.strict = strict  # a request: parts and items of a type the guard does not know are unreadable

    def result(self) -> tuple[Found, tuple[Path, str] | None]:
        """The texts, and the first place that could not be read (and why), or None."""
        return self.found, self.bad[0] if self.bad else None

    def text(self, value: Any, path: Path, role: str, optional: bool = False) -> None:
        if isinstance(value, str):
            self.found.append((Segment(role, value), path))
        elif not (optional and value is None):
            self.bad.append((path, STRING))

    def objects(self, value: Any, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        if value is None:
            return
        if not isinstance(value, list):
            self.bad.append((path, "expected an array"))
            return
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item
            else:
                self.bad.append(((*path, i), "expected an object"))

    def role(self, item: dict[str, Any], path: Path, default: str) -> str:
        """A message's role, as the guard reads it (an unknown one is the user's)."""
        role = item.get("role", default)
        if not isinstance(role, str):
            self.bad.append(((*path, "role"), STRING))
            return "user"
        role = _ROLE_ALIASES.get(role, role)
        return role if role in _CHAT_ROLES else "user"

    def prompt(self, value: Any, path: Path, role: str) -> None:
        """A string or a list of strings; token ids (a list of integers, or of such lists) cannot be read."""
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            self.bad.append((path, "token ids cannot be checked; send the prompt as text"))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, list):
                    self.bad.append(((*path, i), "token ids cannot be checked; send the prompt as text"))
                else:
                    self.text(item, (*path, i), role)
        else:
            self.text(value, path, role, optional=True)

    def content(self, content: Any, path: Path, role: str, single: bool = False) -> None:
        """A string, null, or an array of parts (`single`: one part, at `path` itself). Images, audio and
        files are not text: they yield nothing. A part of a type the guard does not know is read for its
        `text`, if it has one: an upstream that accepts it may show that text to the model."""
        if content is None or isinstance(content, str):
            self.text(content, path, role, optional=True)
            return
        if not isinstance(content, list):
            self.bad.append((path, "expected a string or an array of content parts"))
            return
        for j, part in self.objects(content, path):
            at: Path = path if single else (*path, j)
            kind = part.get("type")
            if not isinstance(kind, str):
                self.bad.append(((*at, "type"), STRING))
            elif kind in _TEXT_PARTS:
                self.text(part.get("text"), (*at, "text"), role)
                self.citations(part.get("annotations"), (*at, "annotations"), role, nested=False)
            elif kind == "refusal":
                self.text(part.get("refusal"), (*at, "refusal"), role)
            elif isinstance(part.get("text"), str):
                self.text(part["text"], (*at, "text"), role)
            elif self.strict and kind not in _MEDIA_PARTS:
                self.bad.append(((*at, "type"), f"a content part of type '{kind}' is unknown to the guard and "
                                                "carries no 'text' it can check"))

    def schema(self, schema: Any, path: Path, depth: int = 0) -> None:
        """The `description` and `title` texts of a JSON schema (tool parameters, a structured output's
        schema): the model reads them as instructions. Property names and enums are short identifiers; not read."""
        if not isinstance(schema, dict) or depth > 32:
            return
        for key in ("description", "title"):
            if isinstance(schema.get(key), str):
                self.text(schema[key], (*path, key), TOOL_DEFINITION)
        for key in ("properties", "$defs", "definitions", "patternProperties"):
            if isinstance(schema.get(key), dict):
                for name, sub in schema[key].items():
                    self.schema(sub, (*path, key, name), depth + 1)
        for key in ("items", "additionalProperties", "not", "contains"):
            self.schema(schema.get(key), (*path, key), depth + 1)
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if isinstance(schema.get(key), list):
                for k, sub in enumerate(schema[key]):
                    self.schema(sub, (*path, key, k), depth + 1)

    def citations(self, notes: Any, path: Path, role: str, nested: bool) -> None:
        """The title and address of each URL citation a client shows beside the text (`nested`: chat's
        `{"type": "url_citation", "url_citation": {...}}`; responses put the fields on the annotation)."""
        for a, note in self.objects(notes, path):
            cite = note.get("url_citation") if nested else note
            if note.get("type") == "url_citation" and isinstance(cite, dict):
                at: Path = (*path, a, "url_citation") if nested else (*path, a)
                for key in ("title", "url"):
                    self.text(cite.get(key), (*at, key), role, optional=True)


def write_back(payload: dict[str, Any], path: Path, text: str) -> None:
    """Put `text` at `path`. Log probabilities on the way (a chat or completions choice's `logprobs`, a
    responses text part's) spell out the old text token by token: they are emptied."""
    node: Any = payload
    for key in path[:-1]:
        _forget_logprobs(node)
        node = node[key]
    _forget_logprobs(node)
    node[path[-1]] = text


def _forget_logprobs(node: Any) -> None:
    # Only an answer's token details (an object or a list); a request's `logprobs: true` is a setting.
    if isinstance(node, dict) and isinstance(node.get("logprobs"), (dict, list)) and node["logprobs"]:
        node["logprobs"] = [] if isinstance(node["logprobs"], list) else None
