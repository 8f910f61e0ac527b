"""Sans-IO: every scannable text of an OpenAI request or response, with the path to write it back.

The same walk also finds what the guard cannot read: a text carrier of the wrong shape (a number where
OpenAI wants a string, an object where it wants a message) or a prompt sent as token ids. `unreadable`
reports the first one, so a request whose input is guarded can be refused instead of going upstream
unchecked.
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
_STRING = "expected a string"
# The role of tool descriptions an app or an MCP server gives the model; no stage reads it unless its roles name it.
TOOL_DEFINITION = "tool_definition"


class _Walk:
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
            self.bad.append((path, _STRING))

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


def read_request(endpoint: str, payload: dict[str, Any]) -> tuple[Found, tuple[Path, str] | None]:
    """In one walk: the request's texts, and the first place that carries input the guard cannot read
    (and why), or None."""
    return _request(endpoint, payload).result()


def request_texts(endpoint: str, payload: dict[str, Any]) -> Found:
    """All texts of a request body, by role: every message (not only the last) and text content part."""
    return _request(endpoint, payload).found


def unreadable(endpoint: str, payload: dict[str, Any]) -> tuple[Path, str] | None:
    """The first place of a request that carries input the guard cannot read, and why; None if none."""
    return _request(endpoint, payload).result()[1]


def read_response(endpoint: str, payload: dict[str, Any]) -> tuple[Found, tuple[Path, str] | None]:
    """In one walk: a (non-streamed) answer's texts, and the first place that carries output the guard
    cannot read (and why), or None."""
    return _response(endpoint, payload).result()


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


def _request(endpoint: str, payload: dict[str, Any]) -> _Walk:
    walk = _Walk(strict=True)
    if endpoint == "chat_completions":
        for i, message in walk.objects(payload.get("messages"), ("messages",)):
            role = _role(walk, message, ("messages", i), "user")
            _message(walk, message, ("messages", i), role)
            if role != "tool":  # a participant's name the model sees (a tool message's names a function)
                walk.text(message.get("name"), ("messages", i, "name"), role, optional=True)
        prediction = payload.get("prediction")  # Predicted Outputs: text the model is given to reuse
        if isinstance(prediction, dict):
            _content(walk, prediction.get("content"), ("prediction", "content"), "user")
        for t, tool in walk.objects(payload.get("tools"), ("tools",)):
            key = "custom" if tool.get("type") == "custom" else "function"
            if isinstance(tool.get(key), dict):
                walk.text(tool[key].get("description"), ("tools", t, key, "description"), TOOL_DEFINITION, True)
                _schema(walk, tool[key].get("parameters"), ("tools", t, key, "parameters"))
        for f, function in walk.objects(payload.get("functions"), ("functions",)):  # the legacy form
            walk.text(function.get("description"), ("functions", f, "description"), TOOL_DEFINITION, True)
            _schema(walk, function.get("parameters"), ("functions", f, "parameters"))
        form = payload.get("response_format")
        if isinstance(form, dict) and isinstance(form.get("json_schema"), dict):
            walk.text(form["json_schema"].get("description"), ("response_format", "json_schema", "description"),
                      TOOL_DEFINITION, True)
            _schema(walk, form["json_schema"].get("schema"), ("response_format", "json_schema", "schema"))
    elif endpoint in ("completions", "embeddings"):
        key = "prompt" if endpoint == "completions" else "input"
        _prompt(walk, payload.get(key), (key,), "user")
        if endpoint == "completions":
            walk.text(payload.get("suffix"), ("suffix",), "user", optional=True)
    elif endpoint == "moderations":  # a string, an array of strings, or an array of parts (text, image_url)
        value = payload.get("input")
        if isinstance(value, list) and any(isinstance(v, dict) for v in value):
            _content(walk, value, ("input",), "user")
        else:
            _prompt(walk, value, ("input",), "user")
    elif endpoint == "images":  # pass-through /images/generations and /images/edits sent as JSON
        walk.text(payload.get("prompt"), ("prompt",), "user")
    elif endpoint == "audio_speech":  # pass-through /audio/speech: the text spoken, and how to speak it
        walk.text(payload.get("input"), ("input",), "user")
        walk.text(payload.get("instructions"), ("instructions",), "user", optional=True)
    elif endpoint == "responses":
        walk.text(payload.get("instructions"), ("instructions",), "system", optional=True)
        value = payload.get("input")
        if isinstance(value, str):
            walk.found.append((Segment("user", value), ("input",)))
        elif isinstance(value, list):
            _response_items(walk, value, ("input",))
        elif value is not None:
            walk.bad.append((("input",), "expected a string or an array of items"))
        for t, tool in walk.objects(payload.get("tools"), ("tools",)):
            walk.text(tool.get("description"), ("tools", t, "description"), TOOL_DEFINITION, True)
            _schema(walk, tool.get("parameters"), ("tools", t, "parameters"))
        text = payload.get("text")  # structured outputs: text.format is the responses form of response_format
        if isinstance(text, dict) and isinstance(text.get("format"), dict):
            walk.text(text["format"].get("description"), ("text", "format", "description"), TOOL_DEFINITION, True)
            _schema(walk, text["format"].get("schema"), ("text", "format", "schema"))
        prompt = payload.get("prompt")  # a stored prompt's variables are filled in as the user's input
        if isinstance(prompt, dict) and isinstance(prompt.get("variables"), dict):
            for name, value in prompt["variables"].items():
                path: Path = ("prompt", "variables", name)
                if isinstance(value, dict):
                    _content(walk, [value], path, "user", single=True)
                else:
                    walk.text(value, path, "user")
    return walk


def _role(walk: _Walk, item: dict[str, Any], path: Path, default: str) -> str:
    role = item.get("role", default)
    if not isinstance(role, str):
        walk.bad.append(((*path, "role"), _STRING))
        return "user"
    role = _ROLE_ALIASES.get(role, role)
    return role if role in _CHAT_ROLES else "user"


def _response(endpoint: str, payload: dict[str, Any]) -> _Walk:
    walk = _Walk()
    if endpoint == "chat_completions":
        for k, choice in walk.objects(payload.get("choices"), ("choices",)):
            message = choice.get("message")  # absent on a choice some providers filtered: nothing to read
            if isinstance(message, dict):
                _message(walk, message, ("choices", k, "message"), "assistant")
            elif message is not None:
                walk.bad.append((("choices", k, "message"), "expected an object"))
    elif endpoint == "completions":
        for k, choice in walk.objects(payload.get("choices"), ("choices",)):
            walk.text(choice.get("text"), ("choices", k, "text"), "assistant", optional=True)
    elif endpoint == "responses":
        _response_items(walk, payload.get("output"), ("output",))
    return walk


def _prompt(walk: _Walk, value: Any, path: Path, role: str) -> None:
    """A string or a list of strings; token ids (a list of integers, or of such lists) cannot be read."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        walk.bad.append((path, "token ids cannot be checked; send the prompt as text"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list):
                walk.bad.append(((*path, i), "token ids cannot be checked; send the prompt as text"))
            else:
                walk.text(item, (*path, i), role)
    else:
        walk.text(value, path, role, optional=True)


def _message(walk: _Walk, message: dict[str, Any], path: Path, role: str) -> None:
    _content(walk, message.get("content"), (*path, "content"), role)
    # What else of a message a client shows: a refusal, a reasoning model's reasoning (DeepSeek, vLLM and
    # others name it either way), an audio answer's transcript.
    for key in ("refusal", "reasoning_content", "reasoning"):
        if isinstance(message.get(key), str):
            walk.text(message[key], (*path, key), role)
    _citations(walk, message.get("annotations"), (*path, "annotations"), role, nested=True)
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


def _content(walk: _Walk, content: Any, path: Path, role: str, single: bool = False) -> None:
    """A string, null, or an array of parts (`single`: one part, at `path` itself). Images, audio and
    files are not text: they yield nothing. A part of a type the guard does not know is read for its
    `text`, if it has one: an upstream that accepts it may show that text to the model."""
    if content is None or isinstance(content, str):
        walk.text(content, path, role, optional=True)
        return
    if not isinstance(content, list):
        walk.bad.append((path, "expected a string or an array of content parts"))
        return
    for j, part in walk.objects(content, path):
        at: Path = path if single else (*path, j)
        kind = part.get("type")
        if not isinstance(kind, str):
            walk.bad.append(((*at, "type"), _STRING))
        elif kind in _TEXT_PARTS:
            walk.text(part.get("text"), (*at, "text"), role)
            _citations(walk, part.get("annotations"), (*at, "annotations"), role, nested=False)
        elif kind == "refusal":
            walk.text(part.get("refusal"), (*at, "refusal"), role)
        elif isinstance(part.get("text"), str):
            walk.text(part["text"], (*at, "text"), role)
        elif walk.strict and kind not in _MEDIA_PARTS:
            walk.bad.append(((*at, "type"), f"a content part of type '{kind}' is unknown to the guard and carries "
                                            "no 'text' it can check"))


# Content parts that carry media, not text (images, audio, files): the stages have nothing to read in them.
# A part of any other type without a `text` is refused in a request (a new kind of part the guard would
# pass unread).
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file", "input_image", "input_file", "output_audio"})
# Responses input items that carry no free text: references to stored items, finished tool runs whose
# results are images or statuses, an approval's yes/no (its `reason` is read).
_NO_TEXT_ITEMS = frozenset({"item_reference", "web_search_call", "image_generation_call", "computer_call_output",
                            "file_search_call", "mcp_approval_response", "compaction"})


def _schema(walk: _Walk, schema: Any, path: Path, depth: int = 0) -> None:
    """The `description` and `title` texts of a JSON schema (tool parameters, a structured output's schema):
    the model reads them as instructions. Property names and enums are short identifiers; not read."""
    if not isinstance(schema, dict) or depth > 32:
        return
    for key in ("description", "title"):
        if isinstance(schema.get(key), str):
            walk.text(schema[key], (*path, key), TOOL_DEFINITION)
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                _schema(walk, sub, (*path, key, name), depth + 1)
    for key in ("items", "additionalProperties", "not", "contains"):
        _schema(walk, schema.get(key), (*path, key), depth + 1)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            for k, sub in enumerate(schema[key]):
                _schema(walk, sub, (*path, key, k), depth + 1)


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


def _nested(walk: _Walk, holder: Any, path: Path, field: str) -> None:
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


def _citations(walk: _Walk, notes: Any, path: Path, role: str, nested: bool) -> None:
    """The title and address of each URL citation a client shows beside the text (`nested`: chat's
    `{"type": "url_citation", "url_citation": {...}}`; responses put the fields on the annotation)."""
    for a, note in walk.objects(notes, path):
        cite = note.get("url_citation") if nested else note
        if note.get("type") == "url_citation" and isinstance(cite, dict):
            at: Path = (*path, a, "url_citation") if nested else (*path, a)
            for key in ("title", "url"):
                walk.text(cite.get(key), (*at, key), role, optional=True)


def _response_items(walk: _Walk, items: Any, path: Path) -> None:
    for i, item in walk.objects(items, path):
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            walk.bad.append(((*path, i, "type"), _STRING))
        elif kind == "message":
            role = _role(walk, item, (*path, i), "assistant" if path == ("output",) else "user")
            _content(walk, item.get("content"), (*path, i, "content"), role)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            if isinstance(output, list):
                _content(walk, output, (*path, i, "output"), "tool")
            else:
                walk.text(output, (*path, i, "output"), "tool")
        elif walk.strict and not (kind in _ITEM_TEXTS or kind in _ITEM_NESTED or kind in _ITEM_LISTS
                                  or kind in _NO_TEXT_ITEMS):
            walk.bad.append(((*path, i, "type"), f"an input item of type '{kind}' is unknown to the guard, "
                                                 "which cannot check what it carries"))
        else:
            if kind == "mcp_approval_response":
                walk.text(item.get("reason"), (*path, i, "reason"), "user", optional=True)
            for field, role, optional in _ITEM_TEXTS.get(kind, ()):
                walk.text(item.get(field), (*path, i, field), role, optional)
            if kind == "mcp_call" and isinstance(item.get("error"), str):  # some servers send an object
                walk.text(item["error"], (*path, i, "error"), "tool")
            if kind in _ITEM_NESTED:
                outer, field = _ITEM_NESTED[kind]
                _nested(walk, item.get(outer), (*path, i, outer), field)
            for field, keys, role in _ITEM_LISTS.get(kind, ()):
                for k, entry in walk.objects(item.get(field), (*path, i, field)):
                    for key in keys:
                        walk.text(entry.get(key), (*path, i, field, k, key), role, optional=True)
