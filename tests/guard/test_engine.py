"""The engine on its own: AND within a ruleset, priority between rulesets, stage order, redaction that
later stages see, monitor mode, fail-closed and fail-open errors, roles and unscannable requests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config.errors import ConfigIssue
from gateway.config.guard_schema import PolicySpec, StageSpec
from gateway.guard.engine import Decision, Engine, Segment
from gateway.guard.plan import Stage, compile_stages
from gateway.guard.policy import compile_policy

POLICIES = {p.id: compile_policy(p) for p in [
    PolicySpec(id="codes", type="regex", patterns=["PROJECT-[0-9]{4}"]),
    PolicySpec(id="banned", type="contains", keywords=["acme corp"]),
    PolicySpec(id="broken", type="code", function="tests.guard.sample_metrics:boom"),
    PolicySpec(id="loud", type="code", function="tests.guard.sample_metrics:shouting", threshold=0.6),
]}


def stages(*specs: dict[str, Any]) -> list[Stage]:
    issues: list[ConfigIssue] = []
    out = compile_stages([StageSpec.model_validate(s) for s in specs], POLICIES, ("stages",), issues)
    assert not issues, issues
    return out


def ruleset(name: str, rules: list[dict[str, Any]], action: str = "block", **kw: Any) -> dict[str, Any]:
    extra = {"responses": ["no"]} if action == "override" else {}
    return {"name": name, "rules": rules, "action": {"type": action, **extra}, **kw}


def run(st: list[Stage], *texts: str, role: str = "user") -> Decision:
    return asyncio.run(Engine().evaluate(st, [Segment(role, t) for t in texts]))


def test_rules_of_a_ruleset_are_anded() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [
        ruleset("both", [{"metric": "codes"}, {"metric": "banned"}])]})
    assert run(st, "PROJECT-1234 only").action is None
    assert run(st, "PROJECT-1234 and ACME corp").action == "block"


def test_first_triggered_ruleset_in_priority_order_wins() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [
        ruleset("first", [{"metric": "banned"}], "override"), ruleset("second", [{"metric": "codes"}], "block")]})
    d = run(st, "PROJECT-1234 and acme corp")
    assert (d.ruleset, d.action) == ("first", "override")
    assert d.outcomes[0].triggered == ("first", "second")
    assert run(st, "PROJECT-1234").ruleset == "second"


def test_terminal_action_stops_later_stages() -> None:
    st = stages({"name": "a", "on": "input", "rulesets": [ruleset("r", [{"metric": "codes"}])]},
                {"name": "b", "on": "input", "rulesets": [ruleset("r", [{"metric": "codes"}], "override")]})
    d = run(st, "PROJECT-1234")
    assert d.stage is not None and d.stage.name == "a" and len(d.outcomes) == 1


def test_redaction_is_what_later_stages_see() -> None:
    st = stages({"name": "mask", "on": "input", "rulesets": [ruleset("r", [{"metric": "codes"}], "redact")]},
                {"name": "then", "on": "input", "rulesets": [ruleset("r", [{"metric": "codes"}])]})
    d = run(st, "see PROJECT-1234", "and PROJECT-9999 too")
    assert d.terminal is None and d.texts == ("see <codes>", "and <codes> too")
    assert d.action == "redact" and d.changed


def test_redact_only_the_labels_a_rule_names() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [
        ruleset("r", [{"metric": "pii", "op": "contains_any", "value": ["EMAIL_ADDRESS"]}], "redact")]})
    d = run(st, "mail x.y@example.com from 192.168.1.20")
    assert d.texts == ("mail <EMAIL_ADDRESS> from 192.168.1.20",)


def test_monitor_mode_records_without_acting() -> None:
    st = stages({"name": "s", "on": "input", "mode": "monitor", "rulesets": [ruleset("r", [{"metric": "codes"}])]})
    d = run(st, "PROJECT-1234")
    assert d.action is None and d.terminal is None
    assert d.outcomes[0].mode == "monitor" and d.outcomes[0].action == "block"


def test_monitor_ruleset_does_not_hide_a_lower_enforced_one() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [
        ruleset("watch", [{"metric": "codes"}], mode="monitor"), ruleset("act", [{"metric": "codes"}], "override")]})
    assert run(st, "PROJECT-1234").ruleset == "act"


@pytest.mark.parametrize("on_error,expected", [("block", "guard_unavailable"), ("allow", None)])
def test_metric_errors_follow_on_error(on_error: str, expected: str | None) -> None:
    st = stages({"name": "s", "on": "input", "on_error": on_error, "rulesets": [
        ruleset("r", [{"metric": "broken", "op": "gt", "value": 0.5}], "passthrough")]})
    d = run(st, "hello")
    assert d.action == expected and d.unavailable == (on_error == "block")
    assert (d.terminal is not None) == (on_error == "block")
    assert d.outcomes[0].errors and "RuntimeError" in d.outcomes[0].errors[0]
    assert d.outcomes[0].fail_open == (on_error == "allow")


def test_a_verdict_is_not_an_outage() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [ruleset("r", [{"metric": "codes"}])]})
    d = run(st, "PROJECT-1234")
    assert d.action == "block" and not d.unavailable and not d.outcomes[0].fail_open


def test_an_error_cannot_trigger_a_ruleset_another_rule_already_ruled_out() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [
        ruleset("r", [{"metric": "codes"}, {"metric": "broken", "op": "gt", "value": 0.5}])]})
    assert run(st, "nothing here").action is None


def test_code_policy_threshold() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [ruleset("r", [{"metric": "loud"}])]})
    assert run(st, "STOP SHOUTING AT ME").action == "block"
    assert run(st, "Please speak normally").action is None


def test_roles_and_unscannable_requests() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [ruleset("r", [{"metric": "codes"}])]})
    assert run(st, "PROJECT-1234", role="system").outcomes[0].scanned is False
    assert run(st, "PROJECT-1234", role="tool").action == "block"
    custom = stages({"name": "s", "on": "input", "roles": ["system"], "rulesets": [ruleset("r", [{"metric": "codes"}])]})
    assert run(custom, "PROJECT-1234", role="system").action == "block"
    assert asyncio.run(Engine().evaluate(st, [])).outcomes[0].scanned is False


def test_length_and_tokens_builtins() -> None:
    st = stages({"name": "s", "on": "input", "rulesets": [
        ruleset("long", [{"metric": "length", "op": "gte", "value": 20}]),
        ruleset("tokens", [{"metric": "tokens", "op": "gt", "value": 1000}], "override")]})
    assert run(st, "x" * 19).action is None
    assert run(st, "x" * 20).action == "block"


def test_a_slow_metric_times_out_and_follows_on_error() -> None:
    policies = {**POLICIES, "slow": compile_policy(
        PolicySpec(id="slow", type="code", function="tests.guard.sample_metrics:slow"))}
    issues: list[ConfigIssue] = []
    st = compile_stages([StageSpec.model_validate({"name": "s", "on": "input", "timeout_ms": 50, "rulesets": [
        ruleset("r", [{"metric": "slow", "op": "gt", "value": 0.5}], "passthrough")]})], policies, ("stages",), issues)
    d = run(st, "hello")
    assert d.action == "guard_unavailable"  # fail closed
    assert d.outcomes[0].errors == ("slow: timeout after 50 ms",)
    assert d.outcomes[0].seconds["slow"] < 0.5  # the request did not wait for the metric
