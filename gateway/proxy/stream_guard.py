"""Hold-back guard over an SSE stream: text leaves only after the output stages passed on it.

Per choice, streamed text accumulates; each check scans the unreleased text plus `lookback` characters
before it, then releases all but the last `holdback` characters. A span of at most `holdback` chars can
therefore never be half released: while it is incomplete it sits in the held-back tail. A longer span
(up to `lookback`) is still found once complete; its start has left, so the stream ends there. When
every stage is `eager` (each metric says where a match could still start, `Stage.pending_from`), a
check releases more: everything before the earliest such position, so prose without a match in
progress leaves at once (the held-back tail is then the token being written, a run of digits, a
pattern's literal prefix, an encoded run still growing), never less than all but `holdback`. The last
check of a choice reads the whole answer. Tool-call
arguments and a refusal are held whole until their choice finishes. A terminal action ends the stream with the
replacement text, finish_reason "content_filter" and [DONE].
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.guard.engine import Decision, Engine, Segment
from gateway.guard.plan import Stage
from gateway.metrics.context import EvalContext
from gateway.proxy.openai import stream_error_event
from gateway.proxy.sse import DONE, Event, SSEDecoder
from gateway.errors import UnreadableStream  # noqa: F401  (re-exported; defined there)

_FIELDS = (b"data", b"event", b"id", b"retry")


def _no_text(raw: bytes) -> bool:
    """Whether a block without data holds only comments and event/id/retry fields (a keep-alive)."""
    for line in raw.removeprefix(b"\xef\xbb\xbf").replace(b"\r", b"\n").split(b"\n"):
        if line and not line.startswith(b":") and line.partition(b":")[0] not in _FIELDS:
            return False
    return True


# Given the decision that stopped the stream and the choice's whole text, the replacement text.
Resolve = Callable[[Decision, str], Awaitable[str]]
_COPIED = ("id", "object", "created", "model", "system_fingerprint", "service_tier")


@dataclass(slots=True)
class _Choice:
    index: int
    text: str = ""
    released: int = 0
    started: bool = False
    finish: str | None = None
    tools: dict[int, dict[str, Any]] = field(default_factory=dict)
    refusal: str = ""  # a chat model's refusal (structured outputs): held whole, like tool calls
    ended: bool = False  # its last check ran and its finish chunk left: later chunks for it are dropped
    checked: int = 0  # the text's length at its last check (an eager guard checks only new text)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


class EventRelay:
    """The unguarded relay: whole SSE events as they arrive, byte for byte (a partial event is useless
    to a client, and holding it lets a dead upstream be reported at an event boundary)."""

    decisions: tuple[Decision, ...] = ()
    stopped = False

    def __init__(self) -> None:
        self._decoder = SSEDecoder()

    async def feed(self, chunk: bytes) -> bytes:
        return _joined(self._decoder.feed(chunk))

    async def close(self) -> bytes:
        return self._decoder.pending


def _joined(events: list[Event]) -> bytes:
    return events[0].raw if len(events) == 1 else b"".join(e.raw for e in events)


class AnswerMonitor(EventRelay):
    """A stream under output stages that only monitor: relayed as it arrives, byte for byte like the
    unguarded relay, while a subclass gathers the answer from its events (`_take`); once the stream
    ended, `check` reads that whole answer, after it has left, so the monitoring adds no delay. A stream
    cut short (the client left, the upstream died) is checked on what it carried up to there (`check_once`,
    which the proxy calls then): text that left is monitored even when its stream did not finish."""

    def __init__(self, check: Callable[[dict[str, Any]], Awaitable[object]]) -> None:
        super().__init__()
        self._check = check
        self.checked = False

    async def feed(self, chunk: bytes) -> bytes:
        events = self._decoder.feed(chunk)
        for event in events:
            self._take(event)
        return _joined(events)

    async def close(self) -> bytes:
        await self.check_once()
        return self._decoder.pending

    async def check_once(self) -> None:
        """Check the answer gathered so far, unless it was checked already; nothing gathered, no check."""
        answer = None if self.checked else self._answer()
        self.checked = True
        if answer is not None:
            await self._check(answer)

    def _take(self, event: Event) -> None:
        raise NotImplementedError

    def _answer(self) -> dict[str, Any] | None:
        """The answer the stream carried, shaped as the endpoint's non-streamed one; None: nothing."""
        raise NotImplementedError


def answer_monitor(endpoint: str, check: Callable[[dict[str, Any]], Awaitable[object]]) -> AnswerMonitor:
    return ResponseMonitor(check) if endpoint == "responses" else StreamMonitor(endpoint, check)


class ResponseMonitor(AnswerMonitor):
    """A streamed /v1/responses answer: its last event (`response.completed`, `.incomplete` or `.failed`)
    carries the whole response. Until it arrives, the output items are rebuilt from the events that add
    them (`response.output_item.added`/`.done`) and the text, refusal and argument deltas that fill them,
    so a stream cut before its end is checked on what it carried."""

    def __init__(self, check: Callable[[dict[str, Any]], Awaitable[object]]) -> None:
        super().__init__(check)
        self._final: dict[str, Any] | None = None
        self._items: dict[int, dict[str, Any]] = {}

    def _take(self, event: Event) -> None:
        if self._final is not None:
            return
        payload = _response_event(event)
        if payload is None:
            return
        kind, index = payload["type"], payload.get("output_index", 0)
        if kind in _FINAL_EVENTS:
            if isinstance(payload.get("response"), dict):
                self._final = payload["response"]
                self._items.clear()
        elif type(index) is not int:
            return
        elif kind in _ITEM_EVENTS:
            if isinstance(payload.get("item"), dict):
                item = dict(payload["item"])  # (deltas fill in its copy and its parts' copies)
                if isinstance(item.get("content"), list):
                    item["content"] = [dict(p) if isinstance(p, dict) else p for p in item["content"]]
                self._items[index] = item
        elif isinstance(payload.get("delta"), str):
            self._add(index, kind, payload)

    def _add(self, index: int, kind: str, payload: dict[str, Any]) -> None:
        delta = payload["delta"]
        if kind == _ARGUMENTS_DELTA:
            item = self._items.setdefault(index, {"type": "function_call"})
            item["arguments"] = _text(item.get("arguments")) + delta
            return
        part_type, field_name = _PART_DELTAS[kind]
        item = self._items.setdefault(index, {"type": "message", "role": "assistant"})
        if not isinstance(item.get("content"), list):
            item["content"] = []
        content, j = item["content"], payload.get("content_index", 0)
        if type(j) is not int or not 0 <= j < 256:  # a bounded list: the index comes from the upstream
            return
        content.extend({} for _ in range(j + 1 - len(content)))
        part = content[j]
        if not isinstance(part, dict) or not isinstance(part.get(field_name), str):
            part = content[j] = {"type": part_type, field_name: ""}
        part[field_name] += delta

    def _answer(self) -> dict[str, Any] | None:
        if self._final is not None:
            return self._final
        if not self._items:
            return None
        return {"object": "response", "status": "incomplete", "output": [self._items[i] for i in sorted(self._items)]}


_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
_ITEM_EVENTS = ("response.output_item.added", "response.output_item.done")
# A delta event that fills a message's content part: (the part's type, its text field).
_PART_DELTAS = {"response.output_text.delta": ("output_text", "text"), "response.refusal.delta": ("refusal", "refusal")}
_ARGUMENTS_DELTA = "response.function_call_arguments.delta"
_WATCHED = (*_FINAL_EVENTS, *_ITEM_EVENTS, *_PART_DELTAS, _ARGUMENTS_DELTA)


def _response_event(event: Event) -> dict[str, Any] | None:
    """A decoded event of the kinds the monitor reads (others are not decoded), or None."""
    data = event.data
    if not data or (event.event is not None and event.event not in _WATCHED):
        return None
    if event.event is None and not any(kind in data for kind in _WATCHED):
        return None
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) and payload.get("type") in _WATCHED else None


def _indexed(choices: object) -> Iterator[tuple[int, dict[str, Any]]]:
    """A chunk's choices with their index; one without an int index (bool is none either) is not a
    choice that can be checked, and is skipped (so it is dropped where a guard rebuilds the stream)."""
    for c in choices if isinstance(choices, list) else ():
        index = c.get("index", 0) if isinstance(c, dict) else None
        if type(index) is int:
            yield index, c


def _absorb(choice: _Choice, c: dict[str, Any], chat: bool) -> None:
    """Take the text of one choice chunk. Fields of the wrong type are skipped: what a guard lets leave is
    built from what was absorbed and checked, so a malformed field is dropped, never passed on unchecked."""
    if chat:
        delta = c.get("delta")
        if isinstance(delta, dict):
            choice.text += _text(delta.get("content"))
            choice.refusal += _text(delta.get("refusal"))
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict) and type(call.get("index", 0)) is int:
                    _merge_tool(choice, call)
    else:
        choice.text += _text(c.get("text"))
    finish = c.get("finish_reason")
    if finish and isinstance(finish, str):
        choice.finish = finish


def _merge_tool(choice: _Choice, call: dict[str, Any]) -> None:
    index = call.get("index", 0)
    held = choice.tools.setdefault(index, {"index": index})
    for key in ("id", "type"):
        if call.get(key) and isinstance(call[key], str):
            held[key] = call[key]
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    target = held.setdefault("function", {"name": "", "arguments": ""})
    target["name"] += _text(function.get("name"))
    target["arguments"] += _text(function.get("arguments"))


def _tools(choice: _Choice) -> list[dict[str, Any]]:
    return sorted(choice.tools.values(), key=lambda t: t["index"])


class StreamMonitor(AnswerMonitor):
    """A chat or completions stream: each choice's text and tool calls are gathered from its chunks, and
    checked as the (non-streamed) answer they add up to. Nothing is held back or rebuilt, so the stream
    keeps every field the upstream sent."""

    def __init__(self, endpoint: str, check: Callable[[dict[str, Any]], Awaitable[object]]) -> None:
        super().__init__(check)
        self._chat = endpoint == "chat_completions"
        self._choices: dict[int, _Choice] = {}

    def _take(self, event: Event) -> None:
        data = event.data
        if not data or data.strip() == "[DONE]" or '"choices"' not in data:
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        for index, c in _indexed(obj.get("choices") if isinstance(obj, dict) else None):
            _absorb(self._choices.setdefault(index, _Choice(index)), c, self._chat)

    def _answer(self) -> dict[str, Any] | None:
        if not self._choices:
            return None
        choices = []
        for choice in sorted(self._choices.values(), key=lambda c: c.index):
            if self._chat:
                message: dict[str, Any] = {"role": "assistant", "content": choice.text}
                if choice.refusal:
                    message["refusal"] = choice.refusal
                if choice.tools:
                    message["tool_calls"] = _tools(choice)
                choices.append({"index": choice.index, "message": message, "finish_reason": choice.finish})
            else:
                choices.append({"index": choice.index, "text": choice.text, "finish_reason": choice.finish})
        return {"object": "chat.completion" if self._chat else "text_completion", "choices": choices}


class StreamGuard:
    """Feed upstream SSE bytes, get the bytes that may go to the client."""

    def __init__(self, stages: Sequence[Stage], engine: Engine, endpoint: str, holdback: int | None,
                 resolve: Resolve, note: Callable[[Decision], dict[str, Any]], lookback: int | None = None,
                 context: EvalContext | None = None) -> None:
        self._stages = stages
        self._engine = engine
        self._context = context  # what the output stages' metrics read (the request's prompt and context)
        self._chat = endpoint == "chat_completions"
        self._holdback = holdback  # None: hold everything until the choice ends (a `correct` stage)
        self._lookback = max(lookback or 0, holdback or 0)
        self._eager = holdback is not None and bool(stages) and all(stage.eager for stage in stages)
        self._resolve = resolve
        self._note = note
        self._decoder = SSEDecoder()
        self._choices: dict[int, _Choice] = {}
        self._template: dict[str, Any] = {}
        self._trailer: list[bytes] = []
        self.decisions: list[Decision] = []
        self.stopped = False

    async def feed(self, chunk: bytes) -> bytes:
        """Absorb every event of `chunk`, then check each touched choice once: a burst of events costs
        one check, not one per event."""
        out: list[bytes] = []
        touched: dict[int, _Choice] = {}
        for event in self._decoder.feed(chunk):
            if event.data is None:
                if not _no_text(event.raw):
                    raise UnreadableStream("a line that is not a server-sent event field")
                out.append(event.raw)  # comments and keep-alives carry no text
            elif event.data.strip() == "[DONE]":
                out.append(await self._check_all(touched))
                if not self.stopped:
                    out.append(await self._finish_all())
                if not self.stopped:
                    out.append(DONE)
                self.stopped = True
            else:
                out.append(self._event(event.data, event.raw, touched))
            if self.stopped:
                break
        out.append(await self._check_all(touched))
        return b"".join(out)

    async def close(self) -> bytes:
        """The upstream ended without [DONE]: check and release what is held, then end cleanly."""
        if self.stopped:
            return b""
        out = await self._finish_all()
        self.stopped = True
        return out

    def _event(self, data: str, raw: bytes, touched: dict[int, _Choice]) -> bytes:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            if not data.strip():
                return b""  # an empty data line: a keep-alive
            raise UnreadableStream("an event whose data is not JSON") from None
        if not isinstance(obj, dict):
            return b""  # not a chunk: dropped like undecodable data
        if "error" in obj and not obj.get("choices"):
            return raw  # an upstream error event carries no model output
        self._template = {k: obj[k] for k in _COPIED if k in obj}
        choices = obj.get("choices")
        if not choices:
            self._trailer.append(raw)  # e.g. the usage chunk: sent after the last choice ends
            return b""
        for index, c in _indexed(choices):
            choice = self._choices.setdefault(index, _Choice(index))
            if choice.ended:  # e.g. Azure's content-filter results after the finish: its answer was whole
                continue
            _absorb(choice, c, self._chat)
            touched[index] = choice
        return b""

    async def _check_all(self, touched: dict[int, _Choice]) -> bytes:
        out = []
        for choice in touched.values():
            if self.stopped:
                break
            out.append(await self._check(choice))
        touched.clear()
        return b"".join(out)

    async def _check(self, choice: _Choice) -> bytes:
        final = choice.finish is not None
        hold = self._holdback
        if not final and (hold is None or (len(choice.text) - choice.released <= hold if not self._eager
                                           else len(choice.text) == choice.checked)):
            return b""
        choice.checked = len(choice.text)
        # The last check of a choice reads all of it: rules on the whole answer (a length, a span longer
        # than any window) get their say before the held-back tail is released.
        start = 0 if hold is None or final else max(0, choice.released - self._lookback)
        window = choice.text[start:]
        tools = _tools(choice) if final else []
        refusal = final and bool(choice.refusal)
        segments = [Segment("assistant", window)] + [Segment("assistant", t["function"]["arguments"]) for t in tools]
        if refusal:
            segments.append(Segment("assistant", choice.refusal))
        decision = await self._engine.evaluate(self._stages, segments, self._context)
        self.decisions.append(decision)
        if decision.terminal is not None:
            return await self._stop(choice, decision)
        if decision.changed:
            sent = choice.released - start
            if decision.texts[0][:sent] != window[:sent]:  # only a span longer than the hold-back can do this
                return await self._stop(choice, decision)
            choice.text = choice.text[:start] + decision.texts[0]
            for tool, text in zip(tools, decision.texts[1:]):
                tool["function"]["arguments"] = text
            if refusal:
                choice.refusal = decision.texts[-1]
        upto = len(choice.text) if final else len(choice.text) - (hold or 0)
        if self._eager and not final and hold:
            upto = max(upto, self._pending(choice.text, hold))
        out = self._delta(choice, choice.text[choice.released:upto]) if upto > choice.released else b""
        choice.released = max(choice.released, upto)
        if final:
            out += self._ending(choice, tools)
            choice.ended = True
        return out

    def _pending(self, text: str, hold: int) -> int:
        """Where a match could still start in `text` (its tail: text further back is released by the
        hold-back cap anyway; the rest of the tail gives the views their context)."""
        tail = max(0, len(text) - 2 * hold - 32)
        part = text[tail:]
        return tail + min(stage.pending_from(part) for stage in self._stages)

    async def _stop(self, choice: _Choice, decision: Decision) -> bytes:
        self.stopped = True
        if decision.unavailable:  # a check failed (on_error: block): an outage, ended as the upstream's would be
            return stream_error_event("The guard could not check the rest of this answer: an output stage's "
                                      "check failed, and it fails closed; the stream was ended there.",
                                      "guard_unavailable", "guard_unavailable")
        if decision.terminal is None and decision.stage is not None:
            # A redaction reached into text already sent (a span longer than the hold-back): it cannot
            # be taken back, so the stream ends as the stage's block would.
            replacement = decision.stage.message
        else:
            replacement = await self._resolve(decision, choice.text)
        out = self._delta(choice, replacement)
        note = self._note(decision)
        for c in sorted(self._choices.values(), key=lambda c: c.index):
            if not c.ended:  # a choice that already finished keeps its own finish
                out += self._chunk(c.index, {}, "content_filter", note)
        return out + DONE

    async def _finish_all(self) -> bytes:
        out = []
        for choice in sorted(self._choices.values(), key=lambda c: c.index):
            if choice.finish is None:
                choice.finish = "stop"
                out.append(await self._check(choice))
            if self.stopped:
                return b"".join(out)
        return b"".join(out) + b"".join(self._trailer)

    def _delta(self, choice: _Choice, text: str, key: str = "content") -> bytes:
        if not text:
            return b""
        delta: dict[str, Any] = {key: text}
        if not choice.started and self._chat:
            delta = {"role": "assistant", key: text}
        choice.started = True
        return self._chunk(choice.index, delta, None)

    def _ending(self, choice: _Choice, tools: list[dict[str, Any]]) -> bytes:
        out = self._delta(choice, choice.refusal, "refusal")
        if tools:
            out += self._chunk(choice.index, self._first({"tool_calls": tools}, choice), None)
        return out + self._chunk(choice.index, self._first({}, choice), choice.finish)

    def _first(self, delta: dict[str, Any], choice: _Choice) -> dict[str, Any]:
        """A chat choice's first chunk names the role, as OpenAI's do, also when it carries no text (an answer
        of tool calls only, or an empty one): the Node SDK's stream helpers refuse a choice without it."""
        if choice.started or not self._chat:
            return delta
        choice.started = True
        return {"role": "assistant", **delta}

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None,
               note: dict[str, Any] | None = None) -> bytes:
        if self._chat:
            body: dict[str, Any] = {**self._template, "choices": [
                {"index": index, "delta": delta, "finish_reason": finish}]}
        else:
            body = {**self._template, "choices": [
                {"index": index, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}]}
        if note is not None:
            body["guardrail"] = note
        return b"data: " + orjson.dumps(body) + b"\n\n"
