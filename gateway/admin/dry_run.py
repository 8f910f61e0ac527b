"""G3 of the console spec: `POST /v1/admin/dry-run` runs messages through an application's stages, as
applied or with unsaved drafts, and tells every stage's verdict and what the client would receive.

Nothing is sent to the upstream model and nothing is written to the monitoring log: the stateless engine
runs over stages compiled from the live plan (plus drafts, paused stages or a named stored version). Judge
metrics (rubric, consistency with a judge) still call their judge model, as they would in the real check;
a `correct` action is not run (the corrector is an upstream call) and is flagged "would call the corrector".
"""

from __future__ import annotations

import random
import time
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import acting_on, ok, read_json, wrap
from gateway.admin.dry_run_schema import DryRunRequest
from gateway.policies.registry import Registry
from gateway.config.errors import ConfigIssue, format_path
from gateway.config.guard_schema import StageSpec
from gateway.guard import actions
from gateway.metrics.context import EvalContext
from gateway.guard.engine import SEPARATOR, Decision, Segment
from gateway.guard.operators import OPERATORS
from gateway.guard.plan import CONTEXT_ROLES, DEFAULT_ROLES, Stage, compile_stages
from gateway.wire import OpenAIError

_PROMPT_ROLES = frozenset(DEFAULT_ROLES["input"])
Sides = dict[str, list[tuple[Stage, str, int | None]]]  # input/output -> (stage, source, stored version), in order


def _bad(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, f"{param}: {message}", code="invalid_request", param=param)


def _validation(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> OpenAIError:
    err = exc.errors()[0]
    path = format_path((*prefix, *err["loc"]))
    message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
    return _bad(path, message)


def _visible(role: Role, body: dict[str, Any], app: str) -> bool:
    spec = body.get("spec", {})
    return spec.get("scope") == "central" or app in body.get("applications", [])


class DryRunAdmin:
    """The dry-run endpoint over one registry (and its store)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self.rng = random.Random()

    async def stored_stage(self, name: str, version: int | None,
                           param: str) -> tuple[StageSpec, dict[str, Any], int]:
        doc = await self.store.get("stage", name, version) if version is not None \
            else await self.store.get("stage", name)
        if doc is None:
            raise OpenAIError(404, f"{param}: no stored stage '{name}'" + (f" version {version}." if version else "."),
                              code="stage_not_found", param=param)
        return StageSpec.model_validate(doc.body["spec"]), doc.body, doc.version

    def compile_one(self, spec: StageSpec, param: str) -> Stage:
        issues: list[ConfigIssue] = []
        compiled = compile_stages([spec], self.registry.flow.plan.policies, (param,), issues,
                                  self.registry.runtime)
        if issues:
            path = issues[0].path.replace(f"{param}[0]", param, 1)
            raise _bad(path, issues[0].message)
        return compiled[0]

    async def run(self, request: Request, role: Role) -> Any:
        """Dry-run messages through an application's stages (drafts too): no upstream call, nothing logged."""
        started = time.perf_counter()
        try:
            body = DryRunRequest.model_validate(await read_json(request))
        except ValidationError as exc:
            raise _validation(exc) from None
        app = acting_on(self.registry, role, body.application, "required, an application id",
                        "dry-run its own application's stages")
        sides = await self.applied(app)
        if body.include_paused:
            await self.add_paused(sides, role, app)
        self.add_drafts(sides, body, role)
        if body.stages is not None:
            await self.only(sides, body.stages, body.include_paused, role, app)
        if body.model is not None:
            for on in sides:
                sides[on] = [e for e in sides[on] if e[0].models is None or body.model in e[0].models]
        out = {"object": "dry_run", "application": app, "model": body.model,
               **await self.check(sides, body.on, *_conversation(body))}
        out["seconds"] = round(time.perf_counter() - started, 4)
        return ok(out)

    async def applied(self, app: str) -> Sides:
        """The stages the application's requests meet now, per side, in the plan's order."""
        stored_versions = {d.id: d.version for d in await self.store.list("stage")}
        return {on: [(s, "plan", stored_versions.get(s.name)) for s in self.registry.flow.plan.stages_for(app, on)]
                for on in ("input", "output")}

    async def add_paused(self, sides: Sides, role: Role, app: str) -> None:
        """`include_paused`: the paused stored stages that would apply, in their place."""
        for doc in await self.store.list("stage"):
            if not doc.body.get("paused") or not _visible(role, doc.body, app):
                continue
            stage = self.compile_one(StageSpec.model_validate(doc.body["spec"]), f"store.stages.{doc.id}")
            _insert(sides[stage.on], (stage, "paused", doc.version))

    def add_drafts(self, sides: Sides, body: DryRunRequest, role: Role) -> None:
        """`draft_stages`: each replaces the applied stage of its name (on either side) or is added."""
        for i, draft in enumerate(body.draft_stages):
            param = f"draft_stages[{i}]"
            spec_body = {k: v for k, v in draft.items() if k != "applications"}
            try:
                spec = StageSpec.model_validate(spec_body)
            except ValidationError as exc:
                raise _validation(exc, ("draft_stages", i)) from None
            if spec.scope == "central" and not role.central:
                raise OpenAIError(403, "Only central tokens may try central stages.", code="forbidden",
                                  param=f"{param}.scope")
            stage = self.compile_one(spec, param)
            other = "output" if stage.on == "input" else "input"  # a draft may move a stage to the other side
            sides[other] = [e for e in sides[other] if e[0].name != stage.name]
            _insert(sides[stage.on], (stage, "draft", None), replace=True)

    async def only(self, sides: Sides, names: list[str], include_paused: bool, role: Role, app: str) -> None:
        """`stages`: only these, by name or name@version (a stored version, put in the stage's place)."""
        wanted: dict[str, int | None] = {}
        for i, item in enumerate(names):
            name, at, version = item.partition("@")
            if at and not (version.isascii() and version.isdigit() and int(version) > 0):
                raise _bad(f"stages[{i}]", "a stage name, or name@version with a version from 1.")
            wanted[name] = int(version) if at else None
            if not any(e[0].name == name for on in sides for e in sides[on]) and not at:
                raise _bad(f"stages[{i}]", f"no stage '{name}' applies to application '{app}'"
                                           + ("" if include_paused else " (paused stages need include_paused)"))
        for i, (name, pinned) in enumerate(wanted.items()):
            if pinned is None:
                continue
            spec, doc_body, _ = await self.stored_stage(name, pinned, f"stages[{i}]")
            if not role.central and not _visible(role, doc_body, app):
                raise OpenAIError(403, f"Stage '{name}' is not attached to this token's application.",
                                  code="forbidden", param=f"stages[{i}]")
            stage = self.compile_one(spec, f"stages[{i}]")
            _insert(sides[stage.on], (stage, "version", pinned), replace=True)
        for on in sides:
            sides[on] = [e for e in sides[on] if e[0].name in wanted]

    async def check(self, sides: Sides, on: str, messages: list[tuple[str, str]],
                    answer: str | None) -> dict[str, Any]:
        """Run the input side, then (unless the input was stopped) the output side, as the real check
        would: what each side did and what the client would receive."""
        prompt = SEPARATOR.join(t for r, t in messages if r in _PROMPT_ROLES)
        context = SEPARATOR.join(t for r, t in messages if r in CONTEXT_ROLES)
        engine = self.registry.flow.engine
        complete = getattr(self.registry.flow, "_complete", None)  # judge metrics call their judge, as in a real check
        out: dict[str, Any] = {"input": None, "output": None}
        decisions: list[Decision] = []
        output_decision: Decision | None = None
        stopped: Decision | None = None
        if on in ("input", "both"):
            decision = await engine.evaluate([s for s, _, _ in sides["input"]], [Segment(r, t) for r, t in messages],
                                             EvalContext("input", prompt, context, complete))
            decisions.append(decision)
            out["input"] = _side(decision, sides["input"], [t for _, t in messages])
            if decision.terminal is not None:
                stopped = decision
        if on in ("output", "both") and answer is not None:
            if stopped is not None:
                out["output"] = {"stages": [], "action": None, "stage": None, "ruleset": None, "texts": [answer],
                                 "original": [answer], "skipped": "the input check stopped the request: no answer"}
            else:
                decision = await engine.evaluate([s for s, _, _ in sides["output"]], [Segment("assistant", answer)],
                                                 EvalContext("output", prompt, context, complete))
                decisions.append(decision)
                output_decision = decision
                out["output"] = _side(decision, sides["output"], [answer])
                if decision.terminal is not None:
                    stopped = decision
        fired = actions.fired(decisions)
        out.update(action=fired.action if fired else None,
                   stage=fired.stage.name if fired and fired.stage else None,
                   ruleset=fired.ruleset if fired else None)
        out["response"] = _response(stopped, output_decision, answer, self.rng)
        return out


def _conversation(body: DryRunRequest) -> tuple[list[tuple[str, str]], str | None]:
    """(the request's messages, the answer checked by the output side: the last assistant message,
    unless on=input)."""
    messages: list[tuple[str, str]] = [(m.role, m.content) for m in body.messages]
    if body.on == "input":
        return messages, None
    last = max((i for i, (r, _) in enumerate(messages) if r == "assistant"), default=None)
    if last is None:
        raise _bad("messages", "on=output and on=both need an assistant message: the answer checked.")
    return messages[:last], messages[last][1]


def dry_run_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    d = DryRunAdmin(registry)
    return [Route("/v1/admin/dry-run", wrap(admin, d.run), methods=["POST"])]


def _insert(entries: list[tuple[Stage, str, int | None]], entry: tuple[Stage, str, int | None],
            replace: bool = False) -> None:
    """Replace the stage of the same name in place, or add it after the last stage of its scope
    (central stages before application ones)."""
    stage = entry[0]
    for i, (s, _, _) in enumerate(entries):
        if s.name == stage.name:
            if replace:
                entries[i] = entry
            return
    if stage.scope == "central":
        at = max((i + 1 for i, (s, _, _) in enumerate(entries) if s.scope == "central"), default=0)
        entries.insert(at, entry)
    else:
        entries.append(entry)


def _plain(value: Any) -> Any:
    return sorted(value) if isinstance(value, frozenset) else value


def _rule_triggers(op: str, value: Any, target: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = frozenset(value)
    try:
        return bool(OPERATORS[op](value, target))
    except (TypeError, ValueError):
        return None


def _side(decision: Decision, entries: list[tuple[Stage, str, int | None]], original: list[str]) -> dict[str, Any]:
    by_name = {s.name: (s, source, version) for s, source, version in entries}
    stages = []
    for o in decision.outcomes:
        stage, source, version = by_name[o.stage]
        rulesets = []
        for rs in stage.rulesets:
            rules = [{"metric": r.metric, "op": r.op, "target": _plain(r.target), "value": o.values.get(r.metric),
                      "triggers": _rule_triggers(r.op, o.values.get(r.metric), r.target) if o.scanned else None}
                     for r in rs.rules]
            rulesets.append({"name": rs.name, "mode": rs.mode, "triggered": rs.name in o.triggered,
                             "action": rs.action.model_dump(mode="json", exclude_defaults=True) or {"type": "passthrough"},
                             "rules": rules})
        stages.append({"stage": o.stage, "on": o.on, "scope": stage.scope, "source": source, "version": version,
                       "scanned": o.scanned, "mode": o.mode, "ruleset": o.ruleset, "action": o.action,
                       "triggered": list(o.triggered), "errors": list(o.errors), "fail_open": o.fail_open,
                       "values": o.values, "seconds": {k: round(v, 6) for k, v in o.seconds.items()},
                       "rulesets": rulesets})
    return {"stages": stages, "action": decision.action, "stage": decision.stage.name if decision.stage else None,
            "ruleset": decision.ruleset, "texts": list(decision.texts), "original": original, "skipped": None}


def _response(stopped: Decision | None, output: Decision | None, answer: str | None,
              rng: random.Random) -> dict[str, Any]:
    if stopped is None:
        text = output.texts[0] if output is not None and output.texts else answer
        return {"status": 200, "kind": "forwarded", "text": text,
                "finish_reason": "stop" if answer is not None else None}
    assert stopped.terminal is not None and stopped.stage is not None
    if stopped.unavailable:
        return {"status": 503, "kind": "unavailable", "text": actions.unavailable_body(stopped, {})["error"]["message"],
                "finish_reason": None}
    if stopped.terminal.type == "correct":
        return {"status": 200, "kind": "corrector", "finish_reason": None,
                "text": f"(would call the corrector model '{stopped.terminal.model}' to rewrite the answer; "
                        "not run in a dry-run)"}
    text = actions.refusal_text(stopped.terminal, stopped.stage.message, rng)
    if stopped.terminal.respond_with == "error":
        return {"status": 400, "kind": "error", "text": text, "finish_reason": None}
    return {"status": 200, "kind": "completion", "text": text, "finish_reason": "content_filter"}
