"""`check` reports every error of a config in one run (issue 27 item 6): schema errors, cross-section
references and policy/stage compile errors together, at their own key paths, without knock-on errors."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError
from gateway.guard.plan import plan_issues
from gateway.config.loader import parse_config

CONFIG = """
server: {port: 99999}
upstreams:
  - {name: u, base_url: 'http://127.0.0.1:9/v1', models: ['*']}
  - {name: v, base_url: nope, models: ['*']}
applications:
  - {id: a, keys: [k1], stages: [app-out, missing-stage]}
policies:
  - {id: good, type: contains, keywords: [x]}
  - {id: broken, type: nosuchtype}
  - {id: bad-re, type: regex, patterns: ['(']}
stages:
  - name: app-out
    on: output
    rulesets:
      - {name: r3, rules: [{metric: good}], action: {type: explode}}
  - name: org-in
    scope: central
    on: input
    rulesets:
      - {name: r1, rules: [{metric: broken}], action: {type: block}}
      - {name: r2, rules: [{metric: unknownmetric}], action: {type: block}}
"""


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", {}, check=plan_issues)
    return [str(i) for i in caught.value.issues]


def test_every_phase_reports_in_one_run() -> None:
    found = issues(CONFIG)
    paths = {line.split(":", 1)[0] for line in found}
    assert {"server.port", "upstreams[1].base_url", "stages[0].rulesets[0].action.type",
            "applications[0].stages[1]", "policies[1].type", "policies[2].patterns[0]",
            "stages[1].rulesets[1].rules[0].metric"} <= paths, found
    # the second stage keeps its own index though the first was left out of the later checks
    assert any(line.startswith("stages[1].rulesets[1].rules[0].metric: unknown metric 'unknownmetric'")
               for line in found)


def test_no_knock_on_errors() -> None:
    found = "\n".join(issues(CONFIG))
    assert "'app-out'" not in found          # the app names a stage that is itself invalid
    assert "unknown metric 'broken'" not in found  # a rule names a policy that did not compile
    assert "at least one upstream" not in issues("upstreams: [{name: v, base_url: nope, models: ['*']}]\n")[-1]


def test_a_valid_config_still_loads() -> None:
    config = parse_config("upstreams: [{name: u, base_url: 'http://127.0.0.1:9/v1', models: ['*']}]\n", "c", {}, check=plan_issues)
    assert config.upstreams[0].name == "u"
