"""Where a policy runs: the `apply-*` stages the admin API's Apply Policy writes.

A policy applied to an application (and optionally some of its models), or to models for every
application, is one stored stage named `apply-<policy>-<application>-<on>` (or `apply-<policy>-models-<on>`)
with one ruleset of one rule: the policy, compared with its own threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.guard.plan import GuardPlan
from gateway.store import Version


def apply_id(policy_id: str, app: str | None, on: str) -> str:
    return f"apply-{policy_id}-{app}-{on}" if app else f"apply-{policy_id}-models-{on}"


def _rules(spec: dict[str, Any]) -> list[Any]:
    return [r.get("metric") for rs in spec.get("rulesets", []) for r in rs.get("rules", [])]


def applied_counts(stages: Iterable[Version]) -> dict[str, int]:
    """G7: how many `apply-*` stages run each policy."""
    applied: dict[str, int] = {}
    for stage in stages:
        rules = _rules(stage.body.get("spec", {}))
        if stage.id.startswith("apply-") and len(rules) == 1:
            applied[rules[0]] = applied.get(rules[0], 0) + 1
    return applied


def apply_stage(policy_id: str, app: str | None, models: list[str] | None, on: str, existing: Version | None,
                body: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """The stage spec that applies the policy (and the models it runs for: applying again adds models),
    from an Apply Policy body's `action` and `timeout_ms` (the existing stage's action by default)."""
    if existing is not None and models is not None:
        before = existing.body["spec"].get("models")
        if before is None and app is not None:
            models = None  # already applied to every model of the application
        elif before:
            models = sorted({*before, *models})
    action = body.get("action", existing.body["spec"]["rulesets"][0]["action"] if existing else {"type": "block"})
    spec: dict[str, Any] = {"name": apply_id(policy_id, app, on), "on": on, "timeout_ms": body.get("timeout_ms", 1000),
                            "scope": "application" if app else "central",
                            "rulesets": [{"name": policy_id, "rules": [{"metric": policy_id}], "action": action}]}
    if models is not None:
        spec["models"] = models
    return spec, models


def applied_to(stages: Iterable[Version], policy_id: str, application: str | None) -> list[dict[str, Any]]:
    """Where the policy is applied through the admin API (its `apply-*` stages); `application`: only
    that application's (an application token's view), None: all."""
    data = []
    for doc in stages:
        spec = doc.body.get("spec", {})
        if not doc.id.startswith(f"apply-{policy_id}-") or _rules(spec) != [policy_id]:
            continue
        apps = doc.body.get("applications", [])
        if application is not None and apps != [application]:
            continue
        data.append({"stage": doc.id, "application": apps[0] if apps else None,
                     "models": spec.get("models"), "on": spec.get("on"), "paused": bool(doc.body.get("paused"))})
    return data


def model_policies(plan: GuardPlan, app: str, model: str) -> list[dict[str, Any]]:
    """Every rule that runs on one application's requests for `model` (central stages and the
    application's, in order), with the policy or built-in metric it names."""
    data = []
    for on in ("input", "output"):
        for stage in plan.stages_for(app, on, model=model):
            for rs in stage.rulesets:
                for rule in rs.rules:
                    data.append({"policy": rule.metric, "stage": stage.name, "scope": stage.scope, "on": on,
                                 "ruleset": rs.name, "source": "policy" if rule.metric in plan.policies
                                 else "builtin"})
    return data
