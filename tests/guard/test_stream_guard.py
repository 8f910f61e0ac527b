"""The hold-back guard, sans-IO: for any chunking, no character of a violating span reaches the client,
and a clean stream arrives with identical text."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.guard_schema import PolicySpec, StageSpec
from gateway.guard.engine import Decision, Engine
from gateway.guard.plan import compile_stages
from gateway.guard.policy import compile_policy
from gateway.proxy.dialects import dialect
from gateway.proxy.stream_guard import StreamGuard
from gateway.proxy.stream_monitor import AnswerMonitor, ResponseMonitor

Check = Callable[[dict], Awaitable[None]]

SECRET = "PROJECT-4242"
POLICIES = {"codes": compile_policy(PolicySpec(id="codes", type="regex", patterns=["PROJECT-[0-9]{4}"]))}


def stage(action: dict) -> list:
    spec = StageSpec.model_validate({"name": "out", "on": "output", "stream": {"holdback_chars": 16},
                                     "rulesets": [{"name": "codes", "rules": [{"metric": "codes"}], "action": action}]})
    issues: list = []
    stages = compile_stages([spec], POLICIES, ("stages",), issues)
    assert not issues
    return stages


def sse(text: str, cuts: list[int]) -> bytes:
    """An OpenAI chat stream of `text` split at `cuts`, as raw SSE bytes."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(text)), len(text)]
    events = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        delta = {"role": "assistant", "content": text[a:b]} if i == 0 else {"content": text[a:b]}
        events.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _raw(events: list[dict]) -> bytes:
    return b"".join(b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1,
                                               "model": "m", **e}) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _sent(out: bytes) -> list[dict]:
    return [orjson.loads(b[6:]) for b in out.split(b"\n\n") if b.startswith(b"data: {")]


def _event_cuts(raw: bytes) -> list[int]:
    """Byte cuts that make each SSE event arrive in its own read."""
    return [i + 2 for i in range(len(raw)) if raw[i:i + 2] == b"\n\n"]


def run(stages: list, raw: bytes, byte_cuts: list[int]) -> tuple[str, list[str | None], bytes]:
    async def resolve(decision: Decision, text: str) -> str:
        return "[removed]"

    async def go() -> bytes:
        guard = StreamGuard(stages, Engine(), "chat_completions", stages[0].holdback_chars, resolve, lambda d: {},
                            stages[0].lookback_chars)
        bounds = [0, *sorted(c for c in set(byte_cuts) if 0 < c < len(raw)), len(raw)]
        out = b"".join([await guard.feed(raw[a:b]) for a, b in zip(bounds, bounds[1:])])
        return out + await guard.close()

    out = asyncio.run(go())
    text, finishes = "", []
    for block in out.split(b"\n\n"):
        event = orjson.loads(block[6:]) if block.startswith(b"data: {") else {}
        if event.get("choices") and "error" not in event:  # not the trailer or an upstream error event
            choice = event["choices"][0]
            text += choice["delta"].get("content") or ""
            finishes.append(choice["finish_reason"])
    return text, finishes, out


words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "x", "PROJECT", "-", "42", "\n"]),
                 min_size=0, max_size=30).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(prefix=words, suffix=words, cuts=st.lists(st.integers(0, 400), max_size=25),
       byte_cuts=st.lists(st.integers(0, 6000), max_size=25))
def test_no_character_of_a_violating_span_leaves(prefix: str, suffix: str, cuts: list[int],
                                                byte_cuts: list[int]) -> None:
    text = f"{prefix} {SECRET} {suffix}"
    released, finishes, out = run(stage({"type": "block"}), sse(text, cuts), byte_cuts)
    assert SECRET not in released
    # Every character released before the replacement is a prefix of the text before the span.
    assert released.endswith("[removed]")
    leaked = released[: -len("[removed]")]
    assert text.startswith(leaked) and len(leaked) <= text.index(SECRET)
    assert finishes[-1] == "content_filter" and out.endswith(b"data: [DONE]\n\n")


@settings(max_examples=150, deadline=None)
@given(text=words, cuts=st.lists(st.integers(0, 400), max_size=25), byte_cuts=st.lists(st.integers(0, 6000), max_size=25))
def test_clean_streams_are_unchanged(text: str, cuts: list[int], byte_cuts: list[int]) -> None:
    released, finishes, out = run(stage({"type": "block"}), sse(text, cuts), byte_cuts)
    assert released == text
    assert finishes[-1] == "stop" and out.endswith(b"data: [DONE]\n\n")


@settings(max_examples=100, deadline=None)
@given(prefix=words, suffix=words, cuts=st.lists(st.integers(0, 400), max_size=25))
def test_redact_in_a_stream_replaces_the_span_and_goes_on(prefix: str, suffix: str, cuts: list[int]) -> None:
    text = f"{prefix} {SECRET} {suffix}"
    released, finishes, _ = run(stage({"type": "redact"}), sse(text, cuts), [])
    assert SECRET not in released
    assert released == text.replace(SECRET, "<codes>")
    assert finishes[-1] == "stop"


def test_several_choices_and_tool_calls_are_each_checked() -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "clean answer"}, "finish_reason": None},
                     {"index": 1, "delta": {"role": "assistant", "content": None, "tool_calls": [
                         {"index": 0, "id": "call", "type": "function",
                          "function": {"name": "lookup", "arguments": "{\"code\": \"PROJ"}}]}, "finish_reason": None}]},
        {"choices": [{"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ECT-4242\"}"}}]},
                      "finish_reason": "tool_calls"}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    raw = _raw(events)
    _, _, out = run(stage({"type": "redact"}), raw, [])
    assert b"PROJECT-4242" not in out and b"<codes>" in out
    assert b"clean answer" in out and out.endswith(b"data: [DONE]\n\n")
    _, finishes, out = run(stage({"type": "block"}), raw, [])
    assert b"PROJECT-4242" not in out and "content_filter" in finishes


def test_a_span_longer_than_the_holdback_ends_the_stream_instead_of_leaking_more() -> None:
    spec = StageSpec.model_validate({"name": "out", "on": "output", "message": "stopped",
                                     "stream": {"holdback_chars": 4},
                                     "rulesets": [{"name": "mask", "rules": [{"metric": "pii", "op": "not_empty"}],
                                                   "action": {"type": "redact"}}]})
    issues: list = []
    stages = compile_stages([spec], POLICIES, ("stages",), issues)
    assert stages[0].holdback_chars == 4  # an explicit setting is used as it is
    text = "write to a.very.long.mailbox.name@example.com now"
    raw = sse(text, list(range(0, len(text), 3)))
    one_event_per_read = _event_cuts(raw)
    released, finishes, _ = run(stages, raw, one_event_per_read)
    assert released.endswith("stopped") and finishes[-1] == "content_filter"
    assert "example.com" not in released
    # Arriving in one read, the whole address is seen before anything is released: it is redacted.
    released, finishes, _ = run(stages, raw, [])
    assert released == "write to <EMAIL_ADDRESS> now" and finishes[-1] == "stop"


# Upstream chunks of the wrong shape (a fuzz run against the gateway found two that raised in the guard
# and cut the client's connection): each is dropped, the rest of the stream is still checked.
json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                           max_leaves=8)
not_int = json_values.filter(lambda v: type(v) is not int)
not_text = json_values.filter(lambda v: not isinstance(v, (str, dict)))
odd_choice = (
    st.fixed_dictionaries({"index": not_int}, optional={"delta": json_values, "finish_reason": json_values})
    | st.fixed_dictionaries({"index": st.just(0), "delta": not_text})  # a choice we know, a delta we don't
    | st.fixed_dictionaries({"index": st.just(0), "delta": st.fixed_dictionaries({"content": not_text}, optional={
        "tool_calls": json_values | st.lists(st.fixed_dictionaries({}, optional={
            "index": json_values, "id": json_values, "function": json_values}), max_size=2)})})
    | json_values.filter(lambda v: not isinstance(v, dict)))
odd_event = st.fixed_dictionaries({"choices": st.lists(odd_choice, max_size=3) | json_values}) | json_values


@settings(max_examples=200, deadline=None)
@given(prefix=words, suffix=words, cuts=st.lists(st.integers(0, 400), max_size=10),
       odd=st.lists(st.tuples(st.integers(0, 30), odd_event), max_size=6))
def test_malformed_chunks_are_dropped_and_the_stream_is_still_checked(prefix: str, suffix: str, cuts: list[int],
                                                                     odd: list) -> None:
    text = f"{prefix} {SECRET} {suffix}"
    events = sse(text, cuts).split(b"\n\n")
    for at, event in odd:
        if event == "[DONE]":
            continue
        events.insert(min(at, len(events) - 2), b"data: " + orjson.dumps(event))
    raw = b"\n\n".join(events)
    for action in ({"type": "block"}, {"type": "redact"}):
        released, finishes, out = run(stage(action), raw, [])
        assert SECRET.encode() not in out
        assert out.endswith(b"data: [DONE]\n\n")
        # The well-formed chunks' text still arrives, checked: before the span for block, all of it for redact.
        if action["type"] == "redact":
            assert released == text.replace(SECRET, "<codes>") and finishes[-1] == "stop"
        else:
            assert text.startswith(released[: -len("[removed]")]) and finishes[-1] == "content_filter"


def _monitored(make: Callable[[Check], AnswerMonitor], stream: bytes, step: int,
               cut: bool = False) -> tuple[bytes, list[dict]]:
    """Feed `stream` to a monitor `step` bytes at a time: the bytes it let through and the answers it
    checked, at its close (or, `cut`, when the proxy calls `check_once` for a stream cut short). Nothing
    may be checked before."""
    checked: list[dict] = []

    async def check(answer: dict) -> None:
        checked.append(answer)

    async def run() -> bytes:
        monitor = make(check)
        out = b""
        for i in range(0, len(stream), step):
            out += await monitor.feed(stream[i:i + step])
            assert not checked  # nothing is checked before the stream ended
        if cut:
            await monitor.check_once()
            await monitor.check_once()  # (once)
            return out
        return out + await monitor.close()

    return asyncio.run(run()), checked


def test_a_monitored_responses_stream_passes_byte_for_byte_and_is_checked_once_at_its_end() -> None:
    final = {"id": "resp_1", "status": "completed", "output": [{"type": "message", "content": [
        {"type": "output_text", "text": "all of it"}]}]}
    events = [
        b"event: response.created\ndata: " + orjson.dumps({"type": "response.created", "response": {"id": "resp_1"}}),
        # a delta whose text names the final event is not taken for it
        b"data: " + orjson.dumps({"type": "response.output_text.delta", "delta": '"response.completed"'}),
        b"event: response.completed\ndata: " + orjson.dumps({"type": "response.completed", "response": final}),
    ]
    stream = b"".join(e + b"\n\n" for e in events)
    for step in (7, 64, len(stream)):
        assert _monitored(ResponseMonitor, stream, step) == (stream, [final])
    # a stream cut before its last event: what its deltas carried
    cut = stream[: stream.index(b"event: response.completed")]
    assert _monitored(ResponseMonitor, cut, len(cut), cut=True) == (cut, [{"object": "response", "status": "incomplete",
        "output": [{"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": '"response.completed"'}]}]}])
    started = stream[: stream.index(b"data: {")]  # only events that carry no output: nothing to check
    assert _monitored(ResponseMonitor, started, 5) == (started, [])


def test_a_monitored_responses_stream_cut_short_is_rebuilt_from_its_items_and_deltas() -> None:
    def event(kind: str, **fields: object) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"

    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    call = {"id": "fc_1", "type": "function_call", "name": "lookup", "call_id": "c1", "arguments": ""}
    reasoning = {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]}
    stream = b"".join([
        event("response.created", response={"id": "resp_1", "output": []}),
        event("response.output_item.added", output_index=0, item=reasoning),
        event("response.output_item.added", output_index=1, item=message),
        event("response.content_part.added", output_index=1, content_index=0, part={"type": "output_text"}),
        event("response.output_text.delta", output_index=1, content_index=0, delta="Hel"),
        event("response.output_text.delta", output_index=1, content_index=0, delta="lo"),
        event("response.refusal.delta", output_index=1, content_index=1, delta="no"),
        event("response.output_text.delta", output_index=1, content_index=10 ** 9, delta="ignored"),
        event("response.output_text.delta", output_index="1", content_index=0, delta="ignored"),
        b'data: {"type": "response.output_text.delta", "output_index": 3, "delta": "unnamed event"}\n\n',
        event("response.output_item.added", output_index=2, item=call),
        event("response.function_call_arguments.delta", output_index=2, delta='{"q": '),
        event("response.function_call_arguments.delta", output_index=2, delta='"x"}'),
    ])
    rebuilt = {"object": "response", "status": "incomplete", "output": [
        reasoning,
        {**message, "content": [{"type": "output_text", "text": "Hello"}, {"type": "refusal", "refusal": "no"}]},
        {**call, "arguments": '{"q": "x"}'},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "unnamed event"}]}]}
    for step in (9, len(stream)):
        assert _monitored(ResponseMonitor, stream, step, cut=True) == (stream, [rebuilt])
    assert message["content"] == [] and call["arguments"] == ""  # the events' own objects are not changed


def test_a_monitored_chat_stream_passes_byte_for_byte_and_its_whole_answer_is_checked_at_its_end() -> None:
    def chunk(choices: list) -> bytes:
        return b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": choices}) + b"\n\n"

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": '}}
    stream = b"".join([
        chunk([{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]),
        chunk([{"index": 1, "delta": {"content": "Other"}, "finish_reason": None}]),
        b": keep-alive\n\n",
        chunk([{"index": 0, "delta": {"content": "lo", "tool_calls": [call]}, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]},
                "finish_reason": "tool_calls"}]),
        b'data: {"choices": [{"index": [1], "delta": {"content": "unreadable"}}]}\n\n',
        chunk([{"index": 1, "delta": {}, "finish_reason": "stop"}]),
        chunk([]),  # a usage chunk
        b"data: [DONE]\n\n",
    ])
    chat = dialect("chat_completions").monitor
    tool = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    for step in (5, 64, len(stream)):
        assert _monitored(chat, stream, step) == (stream, [{"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello", "tool_calls": [tool]},
             "finish_reason": "tool_calls"},
            {"index": 1, "message": {"role": "assistant", "content": "Other"}, "finish_reason": "stop"}]}])

    legacy = b"".join(b"data: " + orjson.dumps({"choices": [{"index": 0, "text": t, "finish_reason": f}]}) + b"\n\n"
                      for t, f in (("one ", None), ("two", "length"))) + b"data: [DONE]\n\n"
    assert _monitored(dialect("completions").monitor, legacy, len(legacy)) == (legacy, [
        {"object": "text_completion", "choices": [{"index": 0, "text": "one two", "finish_reason": "length"}]}])
    ping = b": ping\n\ndata: [DONE]\n\n"  # no choice ever arrived: nothing to check
    assert _monitored(chat, ping, len(ping)) == (ping, [])


def test_a_chunk_after_a_choices_finish_does_not_send_its_ending_twice() -> None:
    """Azure sends content-filter results for a choice after its finish: the tool call and the finish used
    to go out again, and the SDK joined the arguments twice."""
    raw = _raw([
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call", "type": "function", "function": {"name": "f", "arguments": "{\"q\": "}}]},
            "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"x\"}"}}]},
                      "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": None,
                      "content_filter_results": {"hate": {"filtered": False}}}]}])
    one_event_per_read = _event_cuts(raw)
    sent = _sent(run(stage({"type": "redact"}), raw, one_event_per_read)[2])
    finishes = [c["finish_reason"] for e in sent for c in e.get("choices", []) if c["finish_reason"]]
    arguments = "".join(t["function"]["arguments"] for e in sent for c in e.get("choices", [])
                        for t in c["delta"].get("tool_calls", []))
    assert finishes == ["tool_calls"] and arguments == '{"q": "x"}'


def test_a_block_in_one_choice_leaves_a_choice_that_finished_with_its_own_finish() -> None:
    raw = _raw([
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "clean zero"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [{"index": 1, "delta": {"role": "assistant", "content": f"one {SECRET}"}, "finish_reason": None}]},
        {"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]}])
    sent = _sent(run(stage({"type": "block"}), raw, [])[2])
    finishes = [(c["index"], c["finish_reason"]) for e in sent for c in e.get("choices", []) if c["finish_reason"]]
    assert finishes == [(0, "stop"), (1, "content_filter")]


def _refusal_stream(refusal: str) -> bytes:
    return _raw([
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "refusal": ""}, "finish_reason": None}]},
        *({"choices": [{"index": 0, "delta": {"refusal": part}, "finish_reason": None}]}
          for part in (refusal[:7], refusal[7:])),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}])


def test_a_streamed_refusal_reaches_the_client_after_the_output_stages_checked_it() -> None:
    """A chat model's refusal (structured outputs) streams as `delta.refusal`; the guard dropped it and
    the client got only `finish_reason: stop`."""
    def refusals(out: bytes) -> str:
        return "".join(c["delta"].get("refusal") or "" for e in _sent(out) for c in e.get("choices", []))

    clean = _refusal_stream("I can't help with that request.")
    for cuts in ([], _event_cuts(clean)):
        out = run(stage({"type": "block"}), clean, cuts)[2]
        assert refusals(out) == "I can't help with that request."
        assert [c["finish_reason"] for e in _sent(out) for c in e["choices"] if c["finish_reason"]] == ["stop"]
    leaking = _refusal_stream(f"I can't share {SECRET}, sorry.")
    assert refusals(run(stage({"type": "redact"}), leaking, [])[2]) == "I can't share <codes>, sorry."
    text, finishes, out = run(stage({"type": "block"}), leaking, _event_cuts(leaking))
    assert SECRET.encode() not in out and text == "[removed]" and finishes[-1] == "content_filter"
    assert _monitored(dialect("chat_completions").monitor, leaking, 7)[1] == [
        {"object": "chat.completion", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "", "refusal": f"I can't share {SECRET}, sorry."}, "finish_reason": "stop"}]}]


def test_keep_alives_pass_and_unreadable_lines_end_the_stream() -> None:
    """Comments, event/id/retry fields and empty data lines carry no text and pass; a line that is no SSE
    field, or data that is not JSON, raises UnreadableStream (the proxy ends the stream with an error)."""
    from gateway.proxy.stream_guard import UnreadableStream

    head, tail = sse("hello there", []).split(b"data: [DONE]\n\n")[0], b"data: [DONE]\n\n"
    quiet = b": keep-alive\n\nevent: ping\nid: 7\nretry: 100\n\n\xef\xbb\xbf: bom\n\ndata: \n\n"
    released, finishes, out = run(stage({"type": "block"}), quiet + head + tail, [])
    assert released == "hello there" and finishes[-1] == "stop" and b": keep-alive" in out
    for bad in (b' data: {"choices": [{"index": 0, "delta": {"content": "' + SECRET.encode() + b'"}}]}\n\n',
                b'{"choices": []}\n\n', b"data: not json\n\n"):
        with pytest.raises(UnreadableStream):
            run(stage({"type": "block"}), head + bad + tail, [])


def test_a_failing_output_check_ends_the_stream_as_an_outage_not_a_refusal() -> None:
    policies = {**POLICIES, "broken": compile_policy(PolicySpec(id="broken", type="code",
                                                                function="tests.guard.sample_metrics:boom"))}
    spec = StageSpec.model_validate({"name": "out", "on": "output", "stream": {"holdback_chars": 16}, "rulesets": [
        {"name": "r", "rules": [{"metric": "broken", "op": "gt", "value": 0.5}], "action": {"type": "block"}}]})
    stages = compile_stages([spec], policies, ("stages",), [])
    raw = sse("a harmless answer that is long enough to be checked more than once", [5, 30])
    text, finishes, out = run(stages, raw, _event_cuts(raw))
    last = orjson.loads(out.strip().split(b"\n\n")[-1][6:])
    assert last["error"]["code"] == "guard_unavailable" and last["error"]["type"] == "guard_unavailable"
    assert "content_filter" not in finishes and b"[DONE]" not in out  # not a verdict, not a complete answer
    assert text == ""  # the first check failed: nothing it did not pass left


def test_an_answer_of_tool_calls_only_names_its_role_in_its_first_chunk() -> None:
    """OpenAI's first chunk of a choice carries role: assistant; a rebuilt stream whose choice has no text
    (tool calls only) must too: the Node SDK's stream helpers fail with 'missing role for choice 0'."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    raw = _raw([{"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}])
    _, _, out = run(stage({"type": "block"}), raw, _event_cuts(raw))
    sent = [c for c in _sent(out) if c.get("choices")]
    assert sent[0]["choices"][0]["delta"].get("role") == "assistant", sent
    assert sum(1 for c in sent if c["choices"][0]["delta"].get("role")) == 1
    assert any(c["choices"][0]["delta"].get("tool_calls") for c in sent)
