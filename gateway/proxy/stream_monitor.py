"""Relaying a stream without holding it back: the plain relay, and the monitors that gather the answer a
stream carries so that output stages which only monitor check it once it has left whole."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.guard.engine import Decision
from gateway.proxy.choices import Choice, ChoiceShape, indexed, text
from gateway.proxy.sse import Event, SSEDecoder

Check = Callable[[dict[str, Any]], Awaitable[object]]


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

    def __init__(self, check: Check) -> None:
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


class ResponseMonitor(AnswerMonitor):
    """A streamed /v1/responses answer: its last event (`response.completed`, `.incomplete` or `.failed`)
    carries the whole response. Until it arrives, the output items are rebuilt from the events that add
    them (`response.output_item.added`/`.done`) and the text, refusal and argument deltas that fill them,
    so a stream cut before its end is checked on what it carried."""

    def __init__(self, check: Check) -> None:
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
            item["arguments"] = text(item.get("arguments")) + delta
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


class StreamMonitor(AnswerMonitor):
    """A chat or completions stream (its dialect's `shape`): each choice's text and tool calls are gathered
    from its chunks, and checked as the (non-streamed) answer they add up to. Nothing is held back or
    rebuilt, so the stream keeps every field the upstream sent."""

    def __init__(self, shape: ChoiceShape, check: Check) -> None:
        super().__init__(check)
        self._shape = shape
        self._choices: dict[int, Choice] = {}

    def _take(self, event: Event) -> None:
        data = event.data
        if not data or data.strip() == "[DONE]" or '"choices"' not in data:
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        for index, c in indexed(obj.get("choices") if isinstance(obj, dict) else None):
            self._shape.absorb(self._choices.setdefault(index, Choice(index)), c)

    def _answer(self) -> dict[str, Any] | None:
        if not self._choices:
            return None
        return self._shape.answer(sorted(self._choices.values(), key=lambda c: c.index))
