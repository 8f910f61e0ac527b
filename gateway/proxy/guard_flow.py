"""Glue between the proxy and the guard engine: which stages apply, input and output checks, answers."""

from __future__ import annotations

import functools
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from gateway.config.errors import ConfigIssue, format_path
from gateway.config.guard_schema import StageSpec
from gateway.config.schema import ApplicationConfig
from gateway.guard import actions
from gateway.metrics.context import EvalContext
from gateway.guard.engine import SEPARATOR, Decision, Engine, Segment
from gateway.guard.monitor import MonitorLog
from gateway.guard.plan import CONTEXT_ROLES, DEFAULT_ROLES, GuardPlan, Stage, compile_stages
from gateway.proxy.dialects import Dialect
from gateway.proxy.exchange import Exchange
from gateway.proxy.openai import OpenAIError, dumps_json
from gateway.proxy.responses import JSON, RawResponse, event_stream_headers
from gateway.proxy.stream_guard import StreamGuard
from gateway.proxy.walk import TOOL_DEFINITION, Found, write_back
from gateway.scrub import NO_SECRETS, SecretScrubber
from gateway.telemetry import Telemetry

log = logging.getLogger("gateway.guard")
_STAGES = TypeAdapter(list[StageSpec])
_REQUEST_STAGE_CACHE = 256
REQUEST_FIELD = "guardrails"
# Asks a corrector model to rewrite an answer; the violated rules are appended.
CORRECT_PROMPT = ("Rewrite the assistant answer below so that it complies with every rule listed. Keep its "
                  "language, tone and all content that does not break a rule. Reply with the rewritten "
                  "answer only.\nRules:\n{rules}")

Complete = Callable[[str, list[dict[str, str]]], Awaitable[str]]  # (model, messages) -> answer text


_PROMPT_ROLES = frozenset(DEFAULT_ROLES["input"])
_CONTEXT_ROLES = frozenset(CONTEXT_ROLES)


class GuardFlow:
    def __init__(self, plan: GuardPlan, telemetry: Telemetry, monitor: MonitorLog, complete: Complete,
                 scrub: SecretScrubber = NO_SECRETS) -> None:
        self.plan = plan
        self.engine = Engine(scrub)
        self._telemetry = telemetry
        self._monitor = monitor
        self._complete = complete
        self._request_stages: dict[bytes, tuple[Stage, ...]] = {}
        self._rng = random.Random()

    def select(self, ex: Exchange, app: ApplicationConfig, payload: dict[str, Any]) -> None:
        """The stages that apply to `ex`: central, then the application's, then the request's own (the
        `guardrails` field, taken out of `payload`)."""
        extra: tuple[Stage, ...] = ()
        if REQUEST_FIELD in payload:
            if not app.allow_request_stages:
                raise OpenAIError(400, f"Application '{app.id}' may not add stages with '{REQUEST_FIELD}'.",
                                  code="request_stages_denied", param=REQUEST_FIELD)
            extra = self._compile_request_stages(payload.pop(REQUEST_FIELD))
        model = payload.get("model") if isinstance(payload.get("model"), str) else None
        plan = self.plan
        inputs = plan.stages_for(app.id, "input", extra, model)
        parallel = tuple(s for s in inputs if s.parallel)
        if parallel:
            inputs = tuple(s for s in inputs if not s.parallel)
        ex.input_stages, ex.parallel_stages = inputs, parallel
        ex.output_stages = plan.stages_for(app.id, "output", extra, model)

    def _compile_request_stages(self, raw: Any) -> tuple[Stage, ...]:
        key = hashlib.sha256(dumps_json(raw, lambda why: _bad_stages(REQUEST_FIELD, why),
                                        orjson.OPT_SORT_KEYS)).digest()
        cached = self._request_stages.get(key)
        if cached is not None:
            return cached
        try:
            specs = _STAGES.validate_python(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise _bad_stages(format_path((REQUEST_FIELD, *err["loc"])), err["msg"]) from None
        issues: list[ConfigIssue] = []
        for i, spec in enumerate(specs):
            if spec.scope == "central":
                issues.append(ConfigIssue(format_path((REQUEST_FIELD, i, "scope")),
                                          "a request may only add application stages"))
        stages = compile_stages(specs, self.plan.policies, (REQUEST_FIELD,), issues, self.plan.runtime)
        if issues:
            raise _bad_stages(issues[0].path, issues[0].message)
        if len(self._request_stages) >= _REQUEST_STAGE_CACHE:
            self._request_stages.clear()
        self._request_stages[key] = tuple(stages)
        return self._request_stages[key]

    @staticmethod
    def read_input(ex: Exchange, dialect: Dialect, payload: dict[str, Any]) -> None:
        """Read the request's texts for the input stages; input they cannot read must not reach the model
        unchecked, so it is refused (fail closed) with a 400 naming the value, unless every stage only
        monitors (`mode: monitor` never acts): then the readable texts are checked and the rest is logged."""
        ex.found, bad = dialect.read_request(payload)
        if bad is not None:
            param = format_path(bad[0])
            if not any(stage.enforcing for stage in (*ex.input_stages, *ex.parallel_stages)):
                log.warning("request input not readable by the monitoring stages", extra={"fields": {
                    "request_id": ex.request_id, "at": param, "reason": bad[1]}})
                return
            raise OpenAIError(400, f"Invalid value at '{param}': {bad[1]}. This gateway checks the input of this "
                                   "request and cannot read this value.", code="unreadable_input", param=param)

    async def check_input(self, ex: Exchange, dialect: Dialect, payload: dict[str, Any],
                          parallel: bool = False) -> Decision:
        """The input stages (or, with `parallel`, the parallel ones: the request as it was sent upstream)."""
        found = ex.found if ex.found is not None else dialect.read_request(payload)[0]
        ex.prompt = SEPARATOR.join(seg.text for seg, _ in found if seg.role in _PROMPT_ROLES)
        ex.context = SEPARATOR.join(seg.text for seg, _ in found if seg.role in _CONTEXT_ROLES)
        ex.evaluation = EvalContext("input", ex.prompt, ex.context, self._complete)
        stages = ex.parallel_stages if parallel else ex.input_stages
        decision = await self.engine.evaluate(stages, [seg for seg, _ in found], ex.evaluation)
        self._record(decision, ex, "input", _logged(found, stages))
        ex.decisions.append(decision)
        if decision.changed and decision.terminal is None and not parallel:
            for (segment, path), text in zip(found, decision.texts):
                if text != segment.text:
                    write_back(payload, path, text)
            ex.found = None  # the texts changed: a parallel check reads the request as sent
        return decision

    def enter_output(self, ex: Exchange) -> EvalContext:
        """The evaluation context of the output stages: they compare the answer with the prompt and context."""
        ex.evaluation = EvalContext("output", ex.prompt, ex.context, self._complete)
        return ex.evaluation

    async def check_output(self, ex: Exchange, payload: dict[str, Any], found: Found) -> Decision:
        """Run the output stages on the texts `read_response` found in `payload`; redactions are written back."""
        decision = await self.engine.evaluate(ex.output_stages, [seg for seg, _ in found], self.enter_output(ex))
        self._record(decision, ex, "output", _logged(found, ex.output_stages))
        ex.decisions.append(decision)
        if decision.terminal is None and decision.changed:
            for (segment, path), text in zip(found, decision.texts):
                if text != segment.text:
                    write_back(payload, path, text)
        return decision

    def stream_guard(self, ex: Exchange) -> StreamGuard:
        """The hold-back guard of a stream of choices (its dialect's shape) under output stages that may act."""
        shape = ex.dialect.choices
        if shape is None:  # (a stream without choices under stages that may act is asked for whole)
            raise ValueError(f"a {ex.route} stream carries no choices a hold-back guard can release")
        context = self.enter_output(ex)
        return StreamGuard(ex.output_stages, self.engine, shape, self.holdback(ex.output_stages),
                           functools.partial(self.replacement, context=context), ex.annotation,
                           self.lookback(ex.output_stages), context)

    async def replacement(self, decision: Decision, original: str, context: EvalContext | None = None) -> str:
        """The text a terminal action answers with; `correct` asks the corrector, then re-checks (with the
        `context` of the check that stopped it)."""
        assert decision.terminal is not None and decision.stage is not None
        action = decision.terminal
        if action.type != "correct":
            return actions.refusal_text(action, decision.stage.message, self._rng)
        try:
            corrected = await self._correct(decision, original)
        except Exception as exc:  # the corrector is an upstream like any other: it can fail
            log.warning("correction failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
            return decision.stage.message
        recheck = await self.engine.evaluate((decision.stage,), [Segment("assistant", corrected)], context)
        return decision.stage.message if recheck.terminal is not None else corrected

    async def _correct(self, decision: Decision, original: str) -> str:
        assert decision.terminal is not None and decision.stage is not None
        ruleset = next(r for r in decision.stage.rulesets if r.name == decision.ruleset)
        rules = [self.plan.policies[r.metric].rule or r.metric if r.metric in self.plan.policies else r.metric
                 for r in ruleset.rules]
        system = CORRECT_PROMPT.format(rules="\n".join(f"- {r}" for r in rules))
        if decision.terminal.instructions:
            system += "\n" + decision.terminal.instructions
        return await self._complete(decision.terminal.model or "",
                                    [{"role": "system", "content": system}, {"role": "user", "content": original}])

    async def refusal_response(self, ex: Exchange, decision: Decision, dialect: Dialect, model: str, stream: bool,
                               original: str = "") -> RawResponse:
        """The whole answer for a request stopped by a terminal action: in the endpoint's shape where it has
        one (an embedding has none: it is always an error)."""
        assert decision.terminal is not None
        request_id = ex.request_id
        note = actions.annotation(decision, request_id)
        headers = [JSON, *actions.headers(decision)]
        if decision.unavailable:  # an outage, not a verdict: the client and the dashboards tell them apart
            return RawResponse(503, [*headers, (b"retry-after", b"1")],
                               orjson.dumps(actions.unavailable_body(decision, note)))
        text = await self.replacement(decision, original, ex.evaluation)
        if decision.terminal.respond_with == "error" or not dialect.answers_in_shape:
            body = orjson.dumps(actions.error_body(text, decision.terminal.type, note))
            return RawResponse(400, headers, body)
        if stream:
            events = dialect.refusal_stream(model, text, note, request_id)
            return RawResponse(200, event_stream_headers(headers), events)
        return RawResponse(200, headers, orjson.dumps(dialect.refusal(model, text, note, request_id)))

    @staticmethod
    def lookback(stages: tuple[Stage, ...]) -> int:
        return max((stage.lookback_chars for stage in stages), default=0)

    @staticmethod
    def holdback(stages: tuple[Stage, ...]) -> int | None:
        """Characters a stream guard holds back; None (the whole answer) when a stage may `correct` it."""
        if any(rs.action.type == "correct" for stage in stages for rs in stage.rulesets):
            return None
        return max((stage.holdback_chars for stage in stages), default=0)

    def record_stream(self, decisions: Sequence[Decision], ex: Exchange, late: int = 0) -> None:
        """A stream is checked many times; the monitoring log keeps the decisive (or last) check. `late`: the
        redactions its checks found wholly in text already sent (StreamGuard.late), counted."""
        if late:
            self._telemetry.guard_stream_late.labels(ex.application).inc(late)
        if decisions:
            decisive = next((d for d in decisions if d.terminal is not None or d.action), decisions[-1])
            self._record(decisive, ex, "output", decisive.texts)

    def _record(self, decision: Decision, ex: Exchange, on: str, texts: tuple[str, ...]) -> None:
        if decision.action is not None:
            ex.guard = decision.action
        t = self._telemetry
        for o in decision.outcomes:
            stage_label = o.stage if o.stage in self.plan.stages else "request"
            for metric, seconds in o.seconds.items():
                t.guard_metric_seconds.labels(metric).observe(seconds)
            for error in o.errors:
                kind = "timeout" if "timeout" in error else "error"
                t.guard_errors.labels(stage_label, error.split(":", 1)[0], kind).inc()
                if o.fail_open:
                    t.guard_fail_open.labels(stage_label, error.split(":", 1)[0]).inc()
            if o.action is not None:
                ruleset = o.ruleset if stage_label != "request" else "request"
                t.guard_triggers.labels(stage_label, ruleset or "", o.action, o.mode).inc()
            if not o.scanned:
                t.guard_not_scanned.labels(stage_label).inc()
        if decision.outcomes and any(o.scanned for o in decision.outcomes):
            # the model the client asked for; the route (upstream, matched glob) beside it
            requested = ex.requested_model or ex.model
            route = f"{ex.upstream}:{ex.model}" if ex.upstream else ex.model
            self._monitor.add(ex.request_id, ex.application, requested, on, decision, texts, route)


def _logged(found: Found, stages: Sequence[Stage]) -> tuple[str, ...]:
    """The texts the monitoring log keeps: tool descriptions are long and the same on every request, so
    only when a stage read them."""
    if any(TOOL_DEFINITION in stage.roles for stage in stages):
        return tuple(seg.text for seg, _ in found)
    return tuple(seg.text for seg, _ in found if seg.role != TOOL_DEFINITION)


def _bad_stages(path: str, message: str) -> OpenAIError:
    return OpenAIError(400, f"Invalid '{REQUEST_FIELD}' at {path}: {message}", code="invalid_guardrails",
                       param=path)
