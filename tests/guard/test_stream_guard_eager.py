"""The eager release rule (issue 24, first tokens without waiting): a stage whose metrics all say where a
match could still start (`pending_from`) releases text up to there instead of holding back a fixed tail.
The no-leak property of tests/guard/test_stream_guard.py must hold for it for every chunking: whatever
span the stage's metric finds in the whole answer, no character of it reaches the client before the
block, with disguised canaries (every transform of tests/metrics/evasion_cases.py) and for the three
pattern metrics (regex, contains, pii). And prose leaves at once: only the token being written waits."""

from __future__ import annotations

import asyncio

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.config.guard_schema import PolicySpec, StageSpec
from gateway.guard.engine import Decision, Engine
from gateway.guard.plan import compile_stages
from gateway.guard.policy import compile_policy
from gateway.proxy.stream_guard import StreamGuard
from tests.guard.test_stream_guard import run, sse
from tests.metrics.evasion_cases import AWS_KEY, CARD, CODE, TRANSFORMS

POLICIES = {
    "codes": compile_policy(PolicySpec(id="codes", type="regex", patterns=["PROJECT-[0-9]{4}"])),
    "words": compile_policy(PolicySpec(id="words", type="contains", keywords=["project falcon", "hunter2"])),
}
CANARIES = {"codes": [CODE], "words": ["project falcon", "hunter2"], "pii": [CARD, AWS_KEY, "jane.doe@example.com"]}


def eager_stage(metric: str, action: str = "block", stream: dict | None = None) -> list:
    spec = StageSpec.model_validate({"name": "out", "on": "output", **({"stream": stream} if stream else {}),
                                     "rulesets": [{"name": "r", "rules": [{"metric": metric}] if metric != "pii" else
                                                   [{"metric": "pii", "op": "contains_any",
                                                     "value": ["CREDIT_CARD", "AWS_ACCESS_KEY", "EMAIL_ADDRESS"]}],
                                                   "action": {"type": action}}]})
    issues: list = []
    stages = compile_stages([spec], POLICIES, ("stages",), issues)
    assert not issues, issues
    return stages


def test_stages_are_eager_only_when_every_metric_says_where_a_match_could_start() -> None:
    assert all(eager_stage(m)[0].eager for m in ("codes", "words", "pii"))
    assert not eager_stage("codes", stream={"holdback_chars": 16})[0].eager  # an explicit hold-back stays fixed
    spec = PolicySpec(id="fn", type="code", function="tests.guard.sample_metrics:shouting")
    issues: list = []
    stage = compile_stages([StageSpec.model_validate({"name": "o", "on": "output", "rulesets": [
        {"name": "r", "rules": [{"metric": "fn"}]}]})], {"fn": compile_policy(spec)}, ("stages",), issues)
    assert not issues and not stage[0].eager  # a metric that cannot say keeps today's hold-back


prose = st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "x", "a", "The", "project", "-", "\n", "I",
                                  "hunter", "jane", "@", "42", "Mr.", "done."]),
                 min_size=0, max_size=25).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(metric=st.sampled_from(sorted(CANARIES)), which=st.integers(0, 2), prefix=prose, suffix=prose,
       transform=st.sampled_from(["plain", *sorted(TRANSFORMS)]),
       cuts=st.lists(st.integers(0, 600), max_size=30), byte_cuts=st.lists(st.integers(0, 9000), max_size=20))
def test_no_character_of_a_found_span_leaves_with_the_eager_rule(metric: str, which: int, prefix: str, suffix: str,
                                                                  transform: str, cuts: list[int],
                                                                  byte_cuts: list[int]) -> None:
    canary = CANARIES[metric][which % len(CANARIES[metric])]
    disguised = canary if transform == "plain" else TRANSFORMS[transform](canary)
    text = f"{prefix} {disguised} {suffix}"
    stages = eager_stage(metric)
    found = stages[0].metrics[metric].measure(text).spans
    assume(found)  # the property is about the stream: a span the metric finds in the whole answer
    first = min(s.start for s in found)
    released, finishes, out = run(stages, sse(text, cuts), byte_cuts)
    assert released.endswith("[removed]"), (transform, released)
    leaked = released[: -len("[removed]")]
    assert text.startswith(leaked) and len(leaked) <= first, (transform, leaked, first)
    assert finishes[-1] == "content_filter" and out.endswith(b"data: [DONE]\n\n")


@settings(max_examples=150, deadline=None)
@given(metric=st.sampled_from(sorted(CANARIES)), text=prose, cuts=st.lists(st.integers(0, 400), max_size=25))
def test_clean_streams_are_unchanged_with_the_eager_rule(metric: str, text: str, cuts: list[int]) -> None:
    stages = eager_stage(metric)
    assume(not stages[0].metrics[metric].measure(text).spans)
    released, finishes, _ = run(stages, sse(text, cuts), [])
    assert released == text and finishes[-1] == "stop"


@settings(max_examples=150, deadline=None)
@given(prefix=prose, suffix=prose, transform=st.sampled_from(["plain", *sorted(TRANSFORMS)]),
       cuts=st.lists(st.integers(0, 400), max_size=25))
def test_redact_with_the_eager_rule_replaces_exactly_the_span(prefix: str, suffix: str, transform: str,
                                                               cuts: list[int]) -> None:
    assume(not (transform.startswith("hex") and (suffix.startswith("42") or prefix.endswith("42"))))
    disguised = CODE if transform == "plain" else TRANSFORMS[transform](CODE)
    text = f"{prefix} {disguised} {suffix}"
    released, finishes, _ = run(eager_stage("codes", "redact"), sse(text, cuts), [])
    assert released == f"{prefix} <codes> {suffix}", transform
    assert finishes[-1] == "stop"


def _released_after_each_chunk(stages: list, chunks: list[str]) -> list[str]:
    async def resolve(decision: Decision, text: str) -> str:
        return "[removed]"

    async def go() -> list[str]:
        guard = StreamGuard(stages, Engine(), "chat_completions", stages[0].holdback_chars, resolve, lambda d: {},
                            stages[0].lookback_chars)
        seen, out = "", []
        for chunk in chunks:
            raw = sse(chunk, [])
            raw = raw[: raw.index(b"data: {", 10)]  # the content event alone, no finish, no [DONE]
            for block in (await guard.feed(raw)).split(b"\n\n"):
                if block.startswith(b"data: {"):
                    import orjson
                    seen += orjson.loads(block[6:])["choices"][0]["delta"].get("content") or ""
            out.append(seen)
        return out

    return asyncio.run(go())


PROSE = ("Sure, here is a short answer about gardening: water the roses in the morning, keep the soil "
         "loose, and prune in late winter so that new shoots have room to grow.")


def test_prose_leaves_at_once_only_the_token_being_written_waits() -> None:
    chunks = [PROSE[i:i + 4] for i in range(0, len(PROSE), 4)]
    for metric in ("codes", "words", "pii"):
        stages = eager_stage(metric)
        assert stages[0].holdback_chars >= 64  # the cap is still there: only the rule releases earlier
        sent = _released_after_each_chunk(stages, chunks)
        for k, released in enumerate(sent):
            written = "".join(chunks[: k + 1])
            waiting = written[len(released):]
            assert written.startswith(released)
            assert " " not in waiting.strip() or metric == "words" and waiting.strip() in ("project",), (metric, waiting)
        assert sent[1] != ""  # the first word left with the second chunk, not after ~128 characters


def test_a_candidate_is_held_from_its_start_while_it_could_still_match() -> None:
    stages = eager_stage("pii")
    text = "Call me on 415 555 01"
    sent = _released_after_each_chunk(stages, [text])
    assert sent[-1] == "Call me on"[: len(sent[-1])] and len(sent[-1]) <= len("Call me on ")
    codes = eager_stage("codes")
    sent = _released_after_each_chunk(codes, ["the id is PROJ"])
    assert sent[-1] == "the id is "
    sent = _released_after_each_chunk(codes, ["the id is UFJPSkVD"])  # base64 of PROJEC, still growing
    assert sent[-1] == "the id is "
