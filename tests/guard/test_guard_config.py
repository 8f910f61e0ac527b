"""Bad guard config is a config error with a key path, caught by `guardrail-gateway check`."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.guard.plan import plan_issues
from gateway.guard.policy_types import PolicyType

BASE = """
upstreams: [{name: u, base_url: "http://127.0.0.1:1/v1", models: ["*"]}]
applications: [{id: app, keys: [k], stages: [s-app]}]
policies:
  - {id: codes, type: regex, patterns: ["PROJECT-[0-9]{4}"]}
"""


def errors(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + extra, "g.yaml", {}, check=plan_issues)
    return [str(i) for i in info.value.issues]


STAGE = """
stages:
  - name: s-app
    on: input
    rulesets:
      - name: r
        rules: [{rule}]
        action: {action}
"""


@pytest.mark.parametrize("rule,action,expected", [
    ("{metric: nope}", "{type: block}", "stages[0].rulesets[0].rules[0].metric: unknown metric 'nope'"),
    ("{metric: pii, op: gt, value: high}", "{type: block}", "stages[0].rulesets[0].rules[0].value: `gt` needs a number"),
    ("{metric: pii, op: between, value: 1}", "{type: block}", "stages[0].rulesets[0].rules[0].op: Input should be"),
    ("{metric: length, op: contains_any, value: [A]}", "{type: block}", "needs a metric that returns labels"),
    ("{metric: length}", "{type: block}", "stages[0].rulesets[0].rules[0].op: required unless `metric` names a policy"),
    ("{metric: codes}", "{type: override}", "stages[0].rulesets[0].action: an override action needs `responses`"),
    ("{metric: codes}", "{type: correct, model: m}", "`correct` rewrites an answer: it is only valid in an output stage"),
    ("{metric: codes}", "{type: explode}", "stages[0].rulesets[0].action.type: Input should be"),
])
def test_bad_rules_and_actions(rule: str, action: str, expected: str) -> None:
    errs = errors(STAGE.replace("{rule}", rule).replace("{action}", action))
    assert any(expected in e for e in errs), errs


@pytest.mark.parametrize("policy,expected", [
    ("{id: p2, type: regex, patterns: ['(a)\\1']}", "policies[1].patterns[0]: RE2 rejects this pattern"),
    ("{id: p2, type: regex}", "policies[1].patterns"),
    ("{id: p2, type: contains, keywords: []}", "policies[1].keywords"),
    ("{id: p2, type: pii, entities: [SOCIAL]}", "policies[1].entities[0]"),
    ("{id: p2, type: telepathy}", "policies[1].type: unknown policy type 'telepathy'"),
    ("{id: p2, type: classifier}", "policies[1].examples: a classifier policy needs at least one FAIL example"),
    ("{id: p2, type: rubric, rule: x}", "policies[1].judge_model: a rubric policy needs judge_model"),
    ("{id: p2, type: rubric, judge_model: j}", "policies[1].rubric: a rubric policy needs a rubric"),
    ("{id: p2, type: rubric, rule: x, judge_model: j, timeout_ms: 0}", "policies[1].timeout_ms"),
    ("{id: p2, type: detector, detector: nope}", "policies[1].detector: must be one of prompt_injection"),
    ("{id: p2, type: regex, patterns: [x], threshold: 1.5}", "policies[1].threshold"),
    ("{id: codes, type: regex, patterns: [x]}", "policies[1].id: duplicate id 'codes'"),
    ("{id: p2, type: code, function: 'no.such.module:f'}", "policies[1].function"),
])
def test_bad_policies(policy: str, expected: str) -> None:
    stage = STAGE.replace("{rule}", "{metric: codes}").replace("{action}", "{type: block}")
    errs = errors(f"  - {policy}\n" + stage)
    assert any(expected in e for e in errs), errs


def test_unknown_stage_keys_and_duplicate_stage_names() -> None:
    errs = errors("""
stages:
  - {name: s-app, on: input, holdback: 3, rulesets: [{name: r, rules: [{metric: codes}]}]}
""")
    assert any(e.startswith("stages[0].holdback: unknown key") for e in errs), errs
    errs = errors("""
stages:
  - {name: s-app, on: input, rulesets: [{name: r, rules: [{metric: codes}]}]}
  - {name: s-app, on: output, rulesets: [{name: r, rules: [{metric: codes}]}]}
""")
    assert "stages[1].name: duplicate name 's-app' (also stages[0])" in errs


def test_a_valid_guard_config_loads() -> None:
    config = parse_config(BASE + STAGE.replace("{rule}", "{metric: codes}").replace("{action}", "{type: block}"),
                          "g.yaml", {}, check=plan_issues)
    assert config.stages[0].rulesets[0].rules[0].metric == "codes"


def test_stage_models_filter() -> None:
    """A stage naming `models` runs only on requests for them; an empty list is an error with its path."""
    from gateway.guard.plan import build_plan

    stage = STAGE.replace("{rule}", "{metric: codes}").replace("{action}", "{type: block}")
    config = parse_config(BASE + stage.replace("    on: input\n", "    on: input\n    models: [gpt-4o]\n"),
                          "g.yaml", {}, check=plan_issues)
    plan = build_plan(config)
    assert [s.name for s in plan.stages_for("app", "input", model="gpt-4o")] == ["s-app"]
    assert plan.stages_for("app", "input", model="gpt-4o-mini") == ()
    assert [s.name for s in plan.stages_for("app", "input")] == ["s-app"]  # no model known: every stage
    errs = errors(stage.replace("    on: input\n", "    on: input\n    models: []\n"))
    assert "stages[0].models: must list at least 1 item(s)" in errs, errs


@pytest.mark.parametrize("stage,expected", [
    ("{name: s-app, on: output, parallel: true, rulesets: [{name: r, rules: [{metric: codes}], action: {type: block}}]}",
     "stages[0].parallel: only input stages can run beside the upstream call"),
    ("{name: s-app, on: input, parallel: true, rulesets: [{name: r, rules: [{metric: codes}], action: {type: redact}}]}",
     "stages[0].rulesets[0].action.type: `redact` changes the request"),
])
def test_parallel_stage_limits(stage: str, expected: str) -> None:
    errs = errors(f"stages:\n  - {stage}\n")
    assert any(expected in e for e in errs), errs


def test_parallel_input_stage_compiles() -> None:
    config = parse_config(BASE + "stages:\n  - {name: s-app, on: input, parallel: true, rulesets: "
                                 "[{name: r, rules: [{metric: codes}], action: {type: block}}]}\n", "g.yaml", {}, check=plan_issues)
    assert config.stages[0].parallel is True


def test_a_policy_that_fails_to_compile_in_an_unforeseen_way_is_a_config_error(monkeypatch) -> None:
    """A parameter shape no check caught (a fuzz run found one: a list inside regex `flags`) must
    be a config error naming the policy, not a crash of the admin API or of startup."""
    import gateway.guard.policy as policy_module

    def broken(params: dict) -> None:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setitem(policy_module.KINDS, "broken", (broken, "labels"))
    monkeypatch.setitem(policy_module.POLICY_TYPES, "broken", PolicyType("broken", "pattern", "", calibrated_threshold=0.5))
    found = errors("  - {id: odd, type: broken}\n" + STAGE.replace("{rule}", "{metric: codes}")
                   .replace("{action}", "{type: block}"))
    assert found == ["policies[1]: could not be compiled (TypeError: unhashable type: 'list'); "
                     "check its parameters"], found
