"""Evaluate stages over a request's or response's texts: metrics, rules, rulesets by priority, actions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config.guard_schema import ActionSpec
from gateway.guard.plan import Ruleset, Stage
from gateway.guard.redact import Edit, Kept, apply_edits, edits_between, join_segments, kept_after, redaction_edits, \
    spans_by_segment
from gateway.metrics.context import EvalContext
from gateway.metrics.types import Metric, MetricValue, Span
from gateway.scrub import NO_SECRETS, SecretScrubber

log = logging.getLogger("gateway.guard")
TERMINAL = frozenset({"block", "override", "correct", "handoff"})
SEPARATOR = "\n\n"  # between scanned messages: patterns rarely match across a blank line


@dataclass(frozen=True, slots=True)
class Segment:
    """One scanned text and the role it came from (user, tool, assistant, ...)."""

    role: str
    text: str


# The action name of a request or answer stopped because its check failed (a metric error or timeout under
# on_error: block): a block in effect, but answered as an outage (HTTP 503), never as the policy's verdict.
UNAVAILABLE = "guard_unavailable"
_UNAVAILABLE_ACTION = ActionSpec(type="block", respond_with="error")


@dataclass(frozen=True, slots=True)
class Measured:
    value: MetricValue | None
    error: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What one stage saw and did, for headers, the monitoring log and Prometheus."""

    stage: str
    on: str
    scanned: bool
    mode: str = "enforce"
    ruleset: str | None = None          # the ruleset whose action applied (or would have, in monitor mode)
    action: str | None = None
    triggered: tuple[str, ...] = ()     # every triggered ruleset, enforced or monitored
    errors: tuple[str, ...] = ()        # "metric: reason"
    fail_open: bool = False             # a ruleset its errors left undecided was passed (on_error: allow)
    values: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    texts: tuple[str, ...]              # the segments' texts after any redaction, same order
    outcomes: tuple[StageOutcome, ...]
    terminal: ActionSpec | None = None  # block/override/correct/handoff that ended evaluation
    stage: Stage | None = None          # the stage and ruleset that fired the last applied action
    ruleset: str | None = None
    action: str | None = None
    # per segment, the redactions made, as edits of the segment's text as given (sorted, disjoint; adjacent
    # ones joined); empty when nothing was redacted. A stream guard releases them one by one.
    edits: tuple[tuple[Edit, ...], ...] = ()

    @property
    def changed(self) -> bool:
        return any(o.action == "redact" for o in self.outcomes)

    @property
    def unavailable(self) -> bool:
        """Stopped because a check failed (on_error: block), not by a verdict: an outage, told apart."""
        return self.action == UNAVAILABLE


class Engine:
    """Stateless evaluator; one instance per plan. `scrub` keeps the upstreams' secrets out of the error
    texts of failing metrics (logged, and kept in the monitoring log)."""

    def __init__(self, scrub: SecretScrubber = NO_SECRETS) -> None:
        self.scrub = scrub

    async def evaluate(self, stages: Sequence[Stage], segments: Sequence[Segment],
                       context: EvalContext | None = None) -> Decision:
        """Run `stages` over `segments`. `context` (the request's prompt, context and judge) goes to every
        awaited metric's `measure_async`: the metrics that compare texts or ask a judge read it."""
        texts = [s.text for s in segments]
        roles = [s.role for s in segments]
        kept: dict[int, list[Kept]] = {}  # per redacted segment: its runs of original characters
        outcomes: list[StageOutcome] = []
        cache: dict[tuple[str, str], Measured] = {}
        last: tuple[Stage, str, str] | None = None
        for stage in stages:
            picked = [i for i, role in enumerate(roles) if role in stage.roles and texts[i]]
            if not picked:
                outcomes.append(StageOutcome(stage.name, stage.on, scanned=False))
                continue
            joined, starts = join_segments([texts[i] for i in picked], SEPARATOR)
            measured = await self._measure(stage, joined, cache, context)
            outcome, winner, action = _decide(stage, measured)
            outcomes.append(outcome)
            if winner is None or action is None or outcome.mode == "monitor":
                continue
            last = (stage, winner.name, outcome.action or action.type)
            if action.type == "redact":
                per_segment = spans_by_segment(_redaction_spans(winner, measured), starts,
                                               [len(texts[i]) for i in picked])
                for i, spans in zip(picked, per_segment):
                    if spans:
                        edits = redaction_edits(spans, action.placeholder)
                        kept[i] = kept_after(kept.get(i, [(0, len(texts[i]), 0)]), edits)
                        texts[i] = apply_edits(texts[i], edits)
            elif action.type in TERMINAL:
                return Decision(tuple(texts), tuple(outcomes), action, stage, winner.name, outcome.action)
        if last is None:
            return Decision(tuple(texts), tuple(outcomes))
        made = tuple(tuple(edits_between(len(seg.text), kept[i], texts[i])) if i in kept else ()
                     for i, seg in enumerate(segments))
        return Decision(tuple(texts), tuple(outcomes), None, last[0], last[1], last[2], made)

    async def _measure(self, stage: Stage, text: str, cache: dict[tuple[str, str], Measured],
                       context: EvalContext | None) -> dict[str, Measured]:
        out: dict[str, Measured] = {}
        pending: dict[str, asyncio.Task[Measured]] = {}
        for name, metric in stage.metrics.items():
            hit = cache.get((name, text))
            if hit is not None:
                out[name] = hit
            elif hasattr(metric, "measure_async") or getattr(metric, "blocking", False):
                pending[name] = asyncio.ensure_future(_measure_async(name, metric, text, stage.timeout_s,
                                                                     self.scrub, context))
            else:
                out[name] = _measure_sync(name, metric, text, self.scrub)
        if pending:
            await asyncio.gather(*pending.values())
            out.update({name: task.result() for name, task in pending.items()})
        for name, result in out.items():
            cache[(name, text)] = result
        return out


def _measure_sync(name: str, metric: Metric, text: str, scrub: SecretScrubber) -> Measured:
    start = time.perf_counter()
    try:
        return Measured(metric.measure(text), None, time.perf_counter() - start)
    except Exception as exc:  # a metric bug follows on_error; it never takes the request down
        return Measured(None, _failed(name, exc, scrub), time.perf_counter() - start)


def _failed(name: str, exc: Exception, scrub: SecretScrubber) -> str:
    """Log a metric's exception by its type and its message, secrets redacted and cut short (a code
    metric's text is whatever its function put there); the same text is the outcome's error."""
    error = scrub.error(exc)
    log.warning("metric failed", extra={"fields": {"metric": name, "error_type": type(exc).__name__,
                                                   "error": error}})
    return error


async def _measure_async(name: str, metric: Any, text: str, timeout_s: float, scrub: SecretScrubber,
                         context: EvalContext | None) -> Measured:
    start = time.perf_counter()
    try:
        if hasattr(metric, "measure_async"):  # an AsyncMetric
            value = await asyncio.wait_for(metric.measure_async(text, context), timeout_s)
        else:  # a blocking metric (user code) runs on a thread so the event loop never waits on it
            value = await asyncio.wait_for(asyncio.to_thread(metric.measure, text), timeout_s)
        return Measured(value, None, time.perf_counter() - start)
    except TimeoutError:
        return Measured(None, f"timeout after {timeout_s * 1000:.0f} ms", time.perf_counter() - start)
    except Exception as exc:
        return Measured(None, _failed(name, exc, scrub), time.perf_counter() - start)


def _ruleset_state(ruleset: Ruleset, measured: dict[str, Measured]) -> bool | None:
    """True (all rules trigger), False (some rule clearly does not), None (undecided: a metric failed)."""
    undecided = False
    for rule in ruleset.rules:
        result = measured[rule.metric]
        if result.value is None:
            undecided = True
            continue
        try:
            if not rule.triggers(result.value):
                return False
        except (TypeError, ValueError):
            undecided = True
    return None if undecided else True


def _decide(stage: Stage, measured: dict[str, Measured]) -> tuple[StageOutcome, Ruleset | None, ActionSpec | None]:
    """Rulesets in priority order: the first triggered enforced one (or a fail-closed error) wins.

    A triggered ruleset in monitor mode is recorded and otherwise ignored, as if it had not triggered.
    """
    triggered: list[str] = []
    errors = [f"{n}: {m.error}" for n, m in measured.items() if m.error]
    enforced: tuple[Ruleset, ActionSpec] | None = None
    monitored: tuple[Ruleset, ActionSpec] | None = None
    unavailable: set[str] = set()  # rulesets whose errors stopped the request
    fail_open = False
    for ruleset in stage.rulesets:
        state = _ruleset_state(ruleset, measured)
        if state is None and stage.on_error == "block":
            action = _UNAVAILABLE_ACTION  # fail closed, told apart from a verdict
            unavailable.add(ruleset.name)
        elif state is None:
            fail_open = True
            continue
        elif state:
            triggered.append(ruleset.name)
            action = ruleset.action
        else:
            continue
        if ruleset.mode == "enforce":
            enforced = enforced or (ruleset, action)
        else:
            monitored = monitored or (ruleset, action)
    winner = enforced or monitored
    values = {n: _plain(m.value) for n, m in measured.items() if m.value is not None}
    seconds = {n: m.seconds for n, m in measured.items()}
    name = None if winner is None else UNAVAILABLE if winner[0].name in unavailable else winner[1].type
    outcome = StageOutcome(stage.name, stage.on, True, "enforce" if enforced or not winner else "monitor",
                           winner[0].name if winner else None, name, tuple(triggered), tuple(errors), fail_open,
                           values, seconds)
    return outcome, (winner[0] if winner else None), (winner[1] if winner else None)


def _redaction_spans(ruleset: Ruleset, measured: dict[str, Measured]) -> list[Span]:
    spans: list[Span] = []
    for rule in ruleset.rules:
        value = measured[rule.metric].value
        if value is None:
            continue
        spans += [s for s in value.spans if rule.redact_labels is None or s.label in rule.redact_labels]
    return spans


def _plain(value: MetricValue | None) -> Any:
    if value is None:
        return None
    v = value.value
    return sorted(v) if isinstance(v, frozenset) else v
