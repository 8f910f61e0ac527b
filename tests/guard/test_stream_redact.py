"""Streamed redaction with the eager hold-back: a value is redacted whole, never its first part with the rest
after the placeholder ('<IP_ADDRESS>0' for '10.20.30.40' redacted while '10.20.30.4' was written). For any
chunking, what a redacting stage streams is what it answers for the whole text, no character of a value
the whole answer's redaction replaces leaves, and the text held after a check stays within the hold-back's
`bound` (gateway/proxy/holdback.py `HoldBack.settle`)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.guard_schema import PolicySpec, StageSpec
from gateway.guard.engine import Decision, Engine, Segment
from gateway.guard.plan import compile_stages
from gateway.guard.policy import compile_policy
from gateway.proxy.stream_guard import StreamGuard
from tests.guard.test_stream_guard import sse

VALUES = ["10.20.30.40", "192.168.1.254", "+1 415 555 2671", "(415) 555-2671", "4111 1111 1111 1111",
          "4539148803436467", "jane.doe@example.com", "a.b@mail.example.org", "DE89 3704 0044 0532 0130 00",
          "GB82 WEST 1234 5698 7654 32"]
WORDS = ["the", "server", "is", "at", "and", "ok", "thanks", "see", "you", "x", "done.", "Sure,", "\n", "value:"]


def redact_stage(stream: dict | None = None) -> list:
    spec = StageSpec.model_validate({"name": "out", "on": "output", **({"stream": stream} if stream else {}),
                                     "rulesets": [{"name": "mask", "rules": [{"metric": "pii", "op": "not_empty"}],
                                                   "action": {"type": "redact"}}]})
    issues: list = []
    stages = compile_stages([spec], {}, ("stages",), issues)
    assert not issues
    return stages


STAGES = redact_stage()
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Streamed:
    text: str = ""  # what the client got, concatenated
    finishes: list = field(default_factory=list)
    held: list[int] = field(default_factory=list)  # the text held after each read (received, not released)
    checks: int = 0
    scanned: int = 0  # characters the checks read, all together
    late: int = 0  # values found wholly in text already sent (StreamGuard.late)


def stream(stages: list, text: str, chunks: list[str]) -> Streamed:
    """Stream `text` cut into `chunks` (one event per read) through a guard of `stages`."""
    async def resolve(decision: Decision, whole: str) -> str:
        return "[removed]"

    class Counting(Engine):
        async def evaluate(self, stages, segments, context=None):  # type: ignore[no-untyped-def]
            got.checks += 1
            got.scanned += sum(len(s.text) for s in segments)
            return await super().evaluate(stages, segments, context)

    got = Streamed()

    async def go() -> bytes:
        guard = StreamGuard(stages, Counting(), "chat_completions", stages[0].holdback_chars, resolve,
                            lambda d: {}, stages[0].lookback_chars)
        out = []
        bounds = [0]
        for chunk in chunks:
            bounds.append(bounds[-1] + len(chunk))
        raw = sse(text, bounds)
        for block in raw.split(b"\n\n")[:-1]:
            out.append(await guard.feed(block + b"\n\n"))
            got.held.extend(len(c.text) - c.released for c in guard._choices.values() if not c.ended)
        out.append(await guard.close())
        got.late = guard.late
        return b"".join(out)

    for block in asyncio.run(go()).split(b"\n\n"):
        event = orjson.loads(block[6:]) if block.startswith(b"data: {") else {}
        if event.get("choices"):
            got.text += event["choices"][0]["delta"].get("content") or ""
            got.finishes.append(event["choices"][0]["finish_reason"])
    return got


def whole(stages: list, text: str) -> str:
    """The whole answer's redaction: what the same stages answer for it unstreamed."""
    decision = asyncio.run(Engine().evaluate(stages, [Segment("assistant", text)]))
    assert decision.terminal is None
    return decision.texts[0]


def cut(text: str, sizes: list[int]) -> list[str]:
    chunks, at, k = [], 0, 0
    while at < len(text):
        size = sizes[k % len(sizes)] if sizes else 1
        chunks.append(text[at:at + size])
        at += size
        k += 1
    return chunks


def replaced(text: str, stages: list) -> list[str]:
    """The values the whole answer's redaction replaces."""
    return [text[s.start:s.end] for s in stages[0].metrics["pii"].measure(text).spans]


def assert_no_value_leaks(got: Streamed, text: str, stages: list) -> None:
    """No value the whole redaction replaces leaves in part: its tail (its last 2+ characters, which a
    half redaction sends after the placeholder) appears in the stream only where the whole answer has it."""
    redacted = whole(stages, text)
    for value in replaced(text, stages):
        for k in range(1, len(value) - 1):
            assert got.text.count(value[k:]) <= redacted.count(value[k:]), (value, value[k:], got.text)


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_a_value_written_a_few_characters_at_a_time_is_redacted_whole(value: str, step: int) -> None:
    """'10.20.30.4', '+1 415 555 26', 'jane.doe@example.c' are valid values already; redacted then, the
    rest of the value left after the placeholder ('<IP_ADDRESS>0', '<PHONE_NUMBER>71', '<EMAIL_ADDRESS>om')."""
    text = f"the value is {value} and that is all"
    got = stream(STAGES, text, cut(text, [step]))
    assert value not in whole(STAGES, text)
    assert got.text == whole(STAGES, text) and got.finishes[-1] == "stop"
    assert max(got.held) <= STAGES[0].holdback_chars * 2


answers = st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(VALUES)), min_size=1, max_size=30)
separators = st.lists(st.sampled_from([" ", " ", ", ", "\n", " and "]), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(parts=answers, seps=separators, sizes=st.lists(st.integers(1, 4), min_size=1, max_size=12))
def test_a_streamed_redaction_equals_the_whole_answers_and_stays_bounded(parts: list[str], seps: list[str],
                                                                         sizes: list[int]) -> None:
    """Ordinary text mixed with IP addresses, phone numbers, e-mails, cards and IBANs, streamed 1-4
    characters at a time: the client gets the whole answer's redaction, the held text stays within the
    bound, and the stream is not stopped."""
    text = "".join(p + seps[k % len(seps)] for k, p in enumerate(parts))
    got = stream(STAGES, text, cut(text, sizes))
    assert got.text == whole(STAGES, text)
    assert got.finishes[-1] == "stop"
    assert max(got.held) <= 2 * STAGES[0].holdback_chars
    assert_no_value_leaks(got, text, STAGES)


@pytest.mark.parametrize("stream_spec", [None, {"holdback_chars": 16}])
def test_a_run_of_150_addresses_is_held_within_the_bound(stream_spec: dict | None) -> None:
    """The review of 14a7b72: 150 IP addresses in a row held up to 1,753 characters (a regex stage with
    holdback_chars 16: 1,705). Redacted span by span, the held text stays within twice the hold-back."""
    stages = redact_stage(stream_spec)
    rng = random.Random(7)
    text = "Hosts: " + " ".join(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                                for _ in range(150)) + " done."
    got = stream(stages, text, cut(text, [rng.randint(1, 4) for _ in range(50)]))
    assert got.finishes[-1] == "stop" and got.text == whole(stages, text)  # each address (<= 14 chars) whole
    assert max(got.held) <= 2 * stages[0].holdback_chars
    assert "<IP_ADDRESS>" in got.text


@pytest.mark.parametrize("after", [", 10.20.30.40 ok", " jane.doe@example.com ok", ", and 10.20.30.40 ok",
                                   " 10.20.30.40 ok"])
@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_a_phone_number_followed_by_an_address(after: str, step: int) -> None:
    """The review of 14a7b72: with a phone number followed by an address the stream stopped after the
    number left unredacted. Now no digit of it leaves where the whole answer redacts it, and the stream
    goes on to its end."""
    text = "call +1 415 555 2671" + after
    got = stream(STAGES, text, cut(text, [step]))
    assert got.text == whole(STAGES, text) and got.finishes[-1] == "stop"
    if "+1 415 555 2671" in replaced(text, STAGES):
        assert not any(ch.isdigit() for ch in got.text.split("ok")[0].replace("<PHONE_NUMBER>", "")
                       .split("<")[0])


def dense_answer(length: int = 2000) -> dict:
    """Stream a PII-dense answer of `length` characters 1-4 characters at a time; what the test checks of it."""
    rng = random.Random(3)
    parts: list[str] = []
    while sum(map(len, parts)) < length:
        parts.append(rng.choice(VALUES + WORDS[:4]))
    text = " ".join(parts)[:length]
    chunks = cut(text, [rng.randint(1, 4) for _ in range(64)])
    got = stream(STAGES, text, chunks)
    return {"chunks": len(chunks), "length": len(text), "checks": got.checks, "scanned": got.scanned,
            "held": max(got.held), "finish": got.finishes[-1], "equal": got.text == whole(STAGES, text)}


def test_a_pii_dense_answer_of_2000_characters_streams_with_bounded_work() -> None:
    """The review of 14a7b72: raw numbers in the held tail cost pii_pending up to 95 s per check on a
    2,000-character PII-dense answer. In a child process with a generous limit (a few seconds here), so a
    regression fails instead of hanging: one check per read, each reading at most the look-back before
    the release point plus the held text (within the bound)."""
    code = "import json; from tests.guard.test_stream_redact import dense_answer; print(json.dumps(dense_answer()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    stage = STAGES[0]
    assert got["finish"] == "stop" and got["equal"]
    assert got["held"] <= 2 * stage.holdback_chars
    assert got["checks"] <= got["chunks"] + 1
    assert got["scanned"] <= got["chunks"] * (stage.lookback_chars + 2 * stage.holdback_chars + 4) + got["length"]


@pytest.mark.parametrize("length", [4000, 8000])
def test_a_longer_pii_dense_answer_is_not_stopped(length: int) -> None:
    """The review of bc7f92c: at 4,000 or 8,000 characters the dense answer ended at character 2,698 with
    content_filter, a value found by a later window (its context cut off) in text already sent."""
    code = f"import json; from tests.guard.test_stream_redact import dense_answer; print(json.dumps(dense_answer({length})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["finish"] == "stop" and got["equal"] and got["held"] <= 2 * STAGES[0].holdback_chars


def prose(length: int) -> str:
    rng = random.Random(1)
    words = ("the a of to and in that is was for it with as on be at by this had not are but from or have an "
             "they which one you were her all she there would their we him been has when who will more no if "
             "out so said what up its about into than them can only other new some could time these two may "
             "then do first any my now such like our over even most made after also did many before must").split()
    out = ""
    while len(out) < length:
        out += rng.choice(words) + rng.choice([" ", " ", " ", ", ", ". ", ".\n\n"])
    return out[:length]


@pytest.mark.parametrize("head", [
    "Wire it to GB82 WEST 1234 5698 7654 32 +1 415 555 2671 (call first).\n\n",
    "Your order 415 555 2671 shipped. ",
    "Support: 10.20.30.40 / +1 415 555 2671 (on call).\n\n",
])
@pytest.mark.parametrize("step", [1, 4])
def test_a_value_left_raw_is_not_found_again_in_sent_text_once_its_context_is_cut_off(head: str, step: int) -> None:
    """The review of bc7f92c: a phone number right after an IBAN (or after 'order', or after an address
    and '/') is no value in its context, so it leaves as the whole answer has it; about 1,024 characters
    later the look-back window begins right after that context, the number is found in text already sent,
    and the stream ended with content_filter (at 1,034-1,066 of about 1,250). Such a find lies wholly in
    sent text: the stream goes on, the client gets the whole answer's redaction."""
    text = head + prose(1200)
    redacted = whole(STAGES, text)
    assert "415 555 2671" in redacted  # the whole answer keeps it
    got = stream(STAGES, text, cut(text, [step]))
    assert got.finishes[-1] == "stop" and got.text == redacted
    assert got.late == 1  # counted, once (later windows find it again)


def two_stages() -> list:
    """A pii stage and a regex stage after it, both redacting: the second reads the first's result."""
    policies = {"codes": compile_policy(PolicySpec(id="codes", type="regex", patterns=["PROJECT-[0-9]{4}"]))}
    specs = [StageSpec.model_validate({"name": name, "on": "output", "rulesets": [
        {"name": "mask", "rules": [rule], "action": {"type": "redact"}}]})
        for name, rule in (("pii", {"metric": "pii", "op": "not_empty"}), ("codes", {"metric": "codes"}))]
    issues: list = []
    stages = compile_stages(specs, policies, ("stages",), issues)
    assert not issues and all(stage.eager for stage in stages)
    return stages


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(VALUES), st.just("PROJECT-4242")),
                      min_size=1, max_size=16),
       sizes=st.lists(st.integers(1, 4), min_size=1, max_size=8))
def test_two_redacting_stages_stream_the_whole_answers_redaction(parts: list[str], sizes: list[int]) -> None:
    stages = two_stages()
    text = " ".join(parts) + " ok"
    got = stream(stages, text, cut(text, sizes))
    assert got.text == whole(stages, text) and got.finishes[-1] == "stop"
    assert max(got.held) <= 2 * max(stage.holdback_chars for stage in stages)
