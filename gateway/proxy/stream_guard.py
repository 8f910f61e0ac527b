"""Hold-back guard over an SSE stream of choices (chat, completions): text leaves only after the output
stages passed on it.

Per choice, streamed text accumulates; each check scans the unreleased text plus `lookback` characters
before it, then releases all but the last `holdback` characters. A span of at most `holdback` chars can
therefore never be half released: while it is incomplete it sits in the held-back tail. A longer span
(up to `lookback`) is still found once complete; its start has left, so the stream ends there (a value
found wholly in text already sent ends nothing: it is counted, `late`). When
every stage is `eager` (each metric says where a match could still start, `Stage.pending_from`), a
check releases more: everything before the earliest such position, so prose without a match in
progress leaves at once (the held-back tail is then the token being written, a run of digits, a
pattern's literal prefix, an encoded run still growing), never less than all but `holdback`. The last
check of a choice reads the whole answer. A check reads the text as received, and a `redact` stage's
values leave span by span as their placeholders, each only once it is complete (one still being
written waits, within `HoldBack.bound`), so the stream carries the whole answer's redaction. Tool-call
arguments and a refusal are held whole until their choice finishes. A terminal action ends the stream with the
replacement text, finish_reason "content_filter" and [DONE]. What the chunks carry and how they are
written is the endpoint dialect's `ChoiceShape` (proxy/choices.py); when a check is due, which window it
reads and how far text may leave after it is the pure `HoldBack` (proxy/holdback.py), which this class
drives around the engine's await.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from gateway.guard.engine import Decision, Engine, Segment
from gateway.guard.plan import Stage
from gateway.guard.redact import apply_edits
from gateway.metrics.context import EvalContext
from gateway.proxy.choices import Choice, ChoiceShape, indexed, tools as _tools
from gateway.proxy.dialects import dialect
from gateway.proxy.holdback import HoldBack
from gateway.proxy.openai import stream_error_event
from gateway.proxy.sse import DONE, SSEDecoder
from gateway.proxy.stream_monitor import EventRelay  # noqa: F401  (re-exported: gateway/bench/holdback.py)
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


class StreamGuard:
    """Feed upstream SSE bytes, get the bytes that may go to the client."""

    def __init__(self, stages: Sequence[Stage], engine: Engine, shape: ChoiceShape | str, holdback: int | None,
                 resolve: Resolve, note: Callable[[Decision], dict[str, Any]], lookback: int | None = None,
                 context: EvalContext | None = None) -> None:
        self._stages = stages
        self._engine = engine
        self._context = context  # what the output stages' metrics read (the request's prompt and context)
        self._shape = _shape(shape)
        # holdback None: hold everything until the choice ends (a `correct` stage)
        eager = bool(stages) and all(stage.eager for stage in stages)
        self._hold = HoldBack(holdback, lookback, self._pending if eager else None)
        self._resolve = resolve
        self._note = note
        self._decoder = SSEDecoder()
        self._choices: dict[int, Choice] = {}
        self._template: dict[str, Any] = {}
        self._trailer: list[bytes] = []
        self.decisions: list[Decision] = []
        # values a check found wholly in text already sent, other than as they left (HoldBack.late), each
        # once: the stream goes on; gateway_guard_stream_late_finds_total counts them
        self.late = 0
        self.stopped = False

    async def feed(self, chunk: bytes) -> bytes:
        """Absorb every event of `chunk`, then check each touched choice once: a burst of events costs
        one check, not one per event."""
        out: list[bytes] = []
        touched: dict[int, Choice] = {}
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

    def _event(self, data: str, raw: bytes, touched: dict[int, Choice]) -> bytes:
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
        for index, c in indexed(choices):
            choice = self._choices.setdefault(index, Choice(index))
            if choice.ended:  # e.g. Azure's content-filter results after the finish: its answer was whole
                continue
            self._shape.absorb(choice, c)
            touched[index] = choice
        return b""

    async def _check_all(self, touched: dict[int, Choice]) -> bytes:
        out = []
        for choice in touched.values():
            if self.stopped:
                break
            out.append(await self._check(choice))
        touched.clear()
        return b"".join(out)

    async def _check(self, choice: Choice) -> bytes:
        """Check the choice's text if due, then release what may leave. `choice.text` stays the text as
        received (a check never reads a placeholder followed by the rest of a value: a value still held
        is read whole, and the look-back as the whole answer has it); `choice.released` counts its
        characters that left, `choice.redacted` the redactions that left in place of theirs."""
        final = choice.finish is not None
        hold = self._hold
        if not hold.due(len(choice.text), choice.released, choice.checked, final):
            return b""
        choice.checked = len(choice.text)
        upto = hold.release(choice.text, choice.released, final)
        if hold.idle(len(choice.text), choice.released, upto, final):
            return b""  # nothing would leave: the next check that may release reads this text too
        start = hold.start(choice.released, final, choice.redacted)
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
        edits = [(a + start, b + start, r) for a, b, r in decision.edits[0]] if decision.edits else []
        if hold.reaches_sent(edits, choice.released):
            return await self._stop(choice, decision)
        late = hold.late(edits, choice.released, choice.redacted, choice.late)
        if late:  # values that left as they are, found in a later window: counted (once), not stopped
            self.late += len(late)
            choice.late = late[-1][1]
        if decision.changed:
            for tool, text in zip(tools, decision.texts[1:]):
                tool["function"]["arguments"] = text
            if refusal:
                choice.refusal = decision.texts[-1]
        edits = [edit for edit in edits if edit[0] >= choice.released]  # the rest left already
        count, upto = hold.settle(len(choice.text), choice.released, upto, edits, final)
        at = choice.released
        made = [(a - at, b - at, r) for a, b, r in edits[:count]]
        out = self._delta(choice, apply_edits(choice.text[at:upto], made))
        choice.redacted += edits[:count]
        choice.released = upto
        if final:
            out += self._ending(choice, tools)
            choice.ended = True
        return out

    def _pending(self, part: str) -> int:
        """Where a match could still start in `part` (the tail of a choice's text), when every stage is
        eager: the earliest of the stages' positions."""
        return min(stage.pending_from(part) for stage in self._stages)

    async def _stop(self, choice: Choice, decision: Decision) -> bytes:
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
            replacement = await self._resolve(decision, apply_edits(choice.text, choice.redacted))
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

    def _delta(self, choice: Choice, text: str, key: str = "content") -> bytes:
        if not text:
            return b""
        delta: dict[str, Any] = {key: text}
        if not choice.started and self._shape.names_role:
            delta = {"role": "assistant", key: text}
        choice.started = True
        return self._chunk(choice.index, delta, None)

    def _ending(self, choice: Choice, tools: list[dict[str, Any]]) -> bytes:
        out = self._delta(choice, choice.refusal, "refusal")
        if tools:
            out += self._chunk(choice.index, self._first({"tool_calls": tools}, choice), None)
        return out + self._chunk(choice.index, self._first({}, choice), choice.finish)

    def _first(self, delta: dict[str, Any], choice: Choice) -> dict[str, Any]:
        """A chat choice's first chunk names the role, as OpenAI's do, also when it carries no text (an answer
        of tool calls only, or an empty one): the Node SDK's stream helpers refuse a choice without it."""
        if choice.started or not self._shape.names_role:
            return delta
        choice.started = True
        return {"role": "assistant", **delta}

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None,
               note: dict[str, Any] | None = None) -> bytes:
        body = self._shape.chunk(self._template, index, delta, finish)
        if note is not None:
            body["guardrail"] = note
        return b"data: " + orjson.dumps(body) + b"\n\n"


def _shape(shape: ChoiceShape | str) -> ChoiceShape:
    """A stream's choice shape, or the one of the endpoint named (e.g. "chat_completions")."""
    if not isinstance(shape, str):
        return shape
    found = dialect(shape).choices
    if found is None:
        raise ValueError(f"the {shape!r} stream carries no choices a hold-back guard can release")
    return found
