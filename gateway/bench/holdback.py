"""Added time to first token of a guarded stream, before and after the eager release rule (issue 24).

`python -m gateway.bench.holdback [--runs N] [--pace-ms 20] [--chars 4]` streams answers into the output
guard at a model's pace (`--chars` characters every `--pace-ms` ms, real sleeps) and measures, per run,
from the first upstream chunk to the first content the guard lets out. Three relays: none (the
unguarded relay), `fixed` (the stage's whole hold-back, as before: eager off) and `eager` (text leaves
once no match can still start in it). The stage is the usual one: `pii` (all types), a `regex`
policy and a `contains` policy, with the evasion views on. Two answers: prose without candidate spans,
and one whose first sentence holds candidates (a number, an e-mail address, an order code).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time

import orjson

from gateway.config.guard_schema import PolicySpec, StageSpec
from gateway.guard.engine import Decision, Engine
from gateway.guard.plan import compile_stages
from gateway.guard.policy import compile_policy
from gateway.proxy.stream_guard import EventRelay, StreamGuard

PROSE = ("Sure. Water the roses early in the morning, keep the soil loose and mulched, and prune them in late "
         "winter so that the new shoots have room to grow. Feed them twice a season and watch for aphids.")
CANDIDATES = ("4471 ships to jane.doe@example.com on Tuesday; reference ACME-2231 and call 415 555 0100 if it "
              "is late. Feed them twice a season and watch for aphids, and prune them in late winter so that")


def _stages() -> list:
    policies = {"codes": compile_policy(PolicySpec(id="codes", type="regex", patterns=["ACME-[0-9]{4}"])),
                "words": compile_policy(PolicySpec(id="words", type="contains", keywords=["project falcon"]))}
    spec = StageSpec.model_validate({"name": "out", "on": "output", "rulesets": [
        {"name": "pii", "rules": [{"metric": "pii", "op": "contains_any",
                                   "value": ["CREDIT_CARD", "AWS_ACCESS_KEY", "US_SSN"]}], "action": {"type": "block"}},
        {"name": "codes", "rules": [{"metric": "codes"}], "action": {"type": "block"}},
        {"name": "words", "rules": [{"metric": "words"}], "action": {"type": "block"}}]})
    issues: list = []
    stages = compile_stages([spec], policies, ("stages",), issues)
    assert not issues, issues
    return stages


def _events(text: str, chars: int) -> list[bytes]:
    out = []
    for i in range(0, len(text), chars):
        delta = {"content": text[i:i + chars]} if i else {"role": "assistant", "content": text[i:i + chars]}
        out.append(b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}) + b"\n\n")
    return out


async def _once(relay: object, events: list[bytes], pace: float) -> float:
    """ms from the first chunk to the first content out of `relay`."""
    start = time.perf_counter()
    for k, event in enumerate(events):
        if k:
            await asyncio.sleep(max(0.0, start + k * pace - time.perf_counter()))
        out = await relay.feed(event)  # type: ignore[attr-defined]
        if b'"content"' in out:
            return (time.perf_counter() - start) * 1e3
    await relay.feed(b"data: [DONE]\n\n")  # type: ignore[attr-defined]
    return (time.perf_counter() - start) * 1e3


async def _measure(mode: str, text: str, runs: int, chars: int, pace: float) -> list[float]:
    stages = _stages()
    if mode == "fixed":
        stages = [dataclasses.replace(s, eager=False) for s in stages]

    async def resolve(decision: Decision, text: str) -> str:
        return "[removed]"

    times = []
    for _ in range(runs):
        relay = EventRelay() if mode == "none" else StreamGuard(
            stages, Engine(), "chat_completions", stages[0].holdback_chars, resolve, lambda d: {},
            stages[0].lookback_chars)
        times.append(await _once(relay, _events(text, chars), pace))
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pace-ms", type=float, default=20.0)
    parser.add_argument("--chars", type=int, default=4)
    args = parser.parse_args(argv)
    hold = _stages()[0].holdback_chars
    print(f"pace: {args.chars} characters every {args.pace_ms:g} ms; the stage's hold-back: {hold} characters; "
          f"{args.runs} runs each")
    print(f"{'answer':<28}{'relay':<8}{'TTFT p50 ms':>12}{'added p50 ms':>14}{'TTFT max ms':>13}")
    for name, text in (("prose, no candidate spans", PROSE), ("candidate spans up front", CANDIDATES)):
        base = None
        for mode in ("none", "fixed", "eager"):
            times = asyncio.run(_measure(mode, text, args.runs, args.chars, args.pace_ms / 1000))
            p50 = statistics.median(times)
            base = p50 if base is None else base
            print(f"{name:<28}{mode:<8}{p50:>12.1f}{p50 - base:>14.1f}{max(times):>13.1f}")


if __name__ == "__main__":
    main()
