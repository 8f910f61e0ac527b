"""The Guard Evaluate API (seed 003): policies in priority order over input and output, first violation stops."""

from __future__ import annotations

import datetime
import os
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config.errors import format_path
from gateway.config.guard_schema import PolicySpec
from gateway.guard.plan import CONTEXT_ROLES, DEFAULT_ROLES, GuardPlan
from gateway.guard.policy import Policy, compile_policy, host_access
from gateway.guard.redact import redact
from gateway.metrics.context import EvalContext
from gateway.metrics.types import MetricValue, ParamError
from gateway.proxy.texts import read_request
from gateway.errors import EvaluateError, PolicyFailed  # noqa: F401  (re-exported; defined there)

GENERIC_CORRECTION = "I'm sorry, but I can't share that. How else can I help you?"
Complete = Callable[[str, list[dict[str, str]]], Awaitable[str]]


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(min_length=1)
    application: str | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    correction_enabled: bool = False
    policy_ids: list[str] = []
    override_policy: list[PolicySpec] = []
    context: str | list[str] | None = None  # RAG documents for relevance/consistency policies


def parse_request(body: Any) -> EvaluateRequest:
    try:
        return EvaluateRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise EvaluateError(format_path(tuple(err["loc"])), err["msg"]) from None


def select_policies(request: EvaluateRequest, plan: GuardPlan, default_ids: list[str]) -> list[Policy]:
    """policy_ids, then override_policy, in list order; neither given: the application's own policies."""
    out = []
    ids = request.policy_ids or ([] if request.override_policy else default_ids)
    for i, pid in enumerate(ids):
        if pid not in plan.policies:
            raise EvaluateError(f"policy_ids[{i}]", f"no policy with id {pid!r}")
        out.append(plan.policies[pid])
    for i, spec in enumerate(request.override_policy):
        denied = host_access(spec)
        if denied is not None:
            raise EvaluateError(format_path(("override_policy", i, *denied.path)), denied.message)
        try:
            out.append(compile_policy(spec, plan.runtime))
        except ParamError as err:
            raise EvaluateError(format_path(("override_policy", i, *err.path)), err.message) from None
    return out


def split_messages(messages: list[dict[str, Any]]) -> tuple[str, str, list[str]]:
    """The input (user and tool messages), the output (assistant messages) and the context (system and
    developer messages), read as the proxy reads a chat request: content strings and text parts, tool
    call arguments and refusals (the route refuses what cannot be read). A message's texts are joined
    by newlines, messages by blank lines."""
    by_message: dict[int, tuple[str, list[str]]] = {}
    for segment, path in read_request("chat_completions", {"messages": messages})[0]:
        by_message.setdefault(int(path[1]), (segment.role, []))[1].append(segment.text)
    groups: dict[str, list[str]] = {"input": [], "output": [], "context": []}
    for role, texts in by_message.values():
        side = _SIDES.get(role)
        if side is not None:
            groups[side].append("\n".join(texts))
    return "\n\n".join(groups["input"]), "\n\n".join(groups["output"]), groups["context"]


_SIDES = {**dict.fromkeys(DEFAULT_ROLES["input"], "input"), **dict.fromkeys(DEFAULT_ROLES["output"], "output"),
          **dict.fromkeys(CONTEXT_ROLES, "context")}


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


async def _score(policy: Policy, text: str, ctx: EvalContext | None = None) -> MetricValue:
    """The policy's score of `text` (with `ctx` as the evaluation context); any failure is PolicyFailed."""
    try:
        return await policy.score_async(text, ctx)
    except Exception as exc:
        raise PolicyFailed(policy.id) from exc


async def evaluate(request: EvaluateRequest, policies: list[Policy], complete: Complete | None,
                   corrector_model: str | None) -> dict[str, Any]:
    text_in, text_out, system = split_messages(request.messages)
    context = "\n\n".join([*system, *_as_list(request.context)])
    input_score = output_score = 0.0
    violations: list[dict[str, Any]] = []
    violated: Policy | None = None
    for policy in policies:
        in_value = await _score(policy, text_in, EvalContext("input", text_in, context, complete)) if text_in else None
        out_value = await _score(policy, text_out, EvalContext("output", text_in, context, complete)) \
            if text_out else None
        scores = [float(v.value) for v in (in_value, out_value) if v is not None]  # type: ignore[arg-type]
        if not scores:
            continue
        score = min(scores) if policy.higher_is_compliant else max(scores)
        input_score = max(input_score, float(in_value.value) if in_value else 0.0)  # type: ignore[arg-type]
        output_score = max(output_score, float(out_value.value) if out_value else 0.0)  # type: ignore[arg-type]
        if policy.violated(score, request.threshold):
            violations.append({"policy_id": policy.id, "score": round(score, 4)})
            violated = policy
            break  # seed 001: evaluation stops at the first violated policy
    correction = None
    if violated is not None and request.correction_enabled:
        content = await _correct(violated, text_out, complete, corrector_model)
        correction = {"choices": [{"role": "guard", "content": content}]}
    return {
        "id": "eval-" + os.urandom(8).hex(),
        "object": "evaluation",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "evaluation": {"status": "FAIL" if violations else "PASS", "input_score": round(input_score, 4),
                       "output_score": round(output_score, 4), "policy_violations": violations},
        "correction": correction,
    }


async def _correct(policy: Policy, output: str, complete: Complete | None, model: str | None) -> str:
    """An LLM rewrite when a corrector is configured and its answer passes; else the output with the
    violating spans redacted; else a generic refusal."""
    if complete is not None and model and output:
        try:
            rewritten = await complete(model, [
                {"role": "system", "content": "Rewrite the assistant answer so that it complies with this rule: "
                                              f"{policy.rule or policy.id}. Reply with the rewritten answer only."},
                {"role": "user", "content": output}])
            if not policy.violated((await policy.score_async(rewritten)).risk):
                return rewritten
        except Exception:  # a failed corrector falls back to the local correction below
            pass
    spans = (await _score(policy, output)).spans if output else ()
    if spans:
        return redact(output, spans, "<{label}>")
    return GENERIC_CORRECTION
