"""Config loading: interpolation, defaults, and errors that name the key path and the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.guard.plan import plan_issues

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = """
upstreams:
  - name: openai
    base_url: https://api.openai.com/v1/
    api_key: ${OPENAI_API_KEY}
    models: ["gpt-*", "o*"]
applications:
  - id: support-bot
    keys: ["${SUPPORT_BOT_KEY:-sk-default}"]
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env or {}, check=plan_issues)
    return [str(issue) for issue in info.value.issues]


def test_minimal_config_defaults_and_interpolation() -> None:
    config = parse_config(MINIMAL, "test.yaml", {"OPENAI_API_KEY": "sk-live"}, check=plan_issues)
    assert config.server.port == 8080 and config.server.host == "127.0.0.1"
    assert config.server.max_body_bytes == 4 * 1024 * 1024
    up = config.upstreams[0]
    assert up.base_url == "https://api.openai.com/v1"  # trailing slash removed
    assert up.api_key == "sk-live" and up.first_byte_timeout_s == 600 and up.total_timeout_s == 1800
    assert config.applications[0].keys == ("sk-default",)


def test_env_value_overrides_default_and_empty_uses_default() -> None:
    env = {"OPENAI_API_KEY": "k", "SUPPORT_BOT_KEY": "sk-from-env"}
    assert parse_config(MINIMAL, "t", env, check=plan_issues).applications[0].keys == ("sk-from-env",)
    env["SUPPORT_BOT_KEY"] = ""
    assert parse_config(MINIMAL, "t", env, check=plan_issues).applications[0].keys == ("sk-default",)


def test_interpolated_numbers_and_dollar_escape() -> None:
    text = """
server: {port: "${PORT:-9000}"}
upstreams: [{name: u, base_url: "http://h/v1", models: ["a"], headers: {x-cost: "$$5"}}]
"""
    config = parse_config(text, "t", {}, check=plan_issues)
    assert config.server.port == 9000
    assert config.upstreams[0].headers == {"x-cost": "$5"}


def test_config_is_immutable() -> None:
    config = parse_config(MINIMAL, "t", {"OPENAI_API_KEY": "k"}, check=plan_issues)
    with pytest.raises(Exception):
        config.server.port = 1  # type: ignore[misc]


def test_missing_variable_names_key_path() -> None:
    assert errors_of(MINIMAL) == [
        "upstreams[0].api_key: environment variable OPENAI_API_KEY is not set (set it, or write ${OPENAI_API_KEY:-default})"]


def test_every_error_is_reported_with_path_and_value() -> None:
    text = """
server: {port: 99999, hots: x}
upstreams:
  - {name: a, base_url: "ftp://x", models: []}
  - {name: b, base_url: "http://x/v1", models: ["m"], timeout_s: -1}
"""
    errs = errors_of(text)
    assert "server.port: Input should be less than or equal to 65535 (got 99999)" in errs
    assert any(e.startswith("server.hots: unknown key") and "did you mean 'host'" in e for e in errs)
    assert "upstreams[0].base_url: must be an http:// or https:// URL with a host (got 'ftp://x')" in errs
    assert "upstreams[0].models: must list at least 1 item(s)" in errs
    assert "upstreams[1].timeout_s: Input should be greater than 0 (got -1)" in errs
    assert len(errs) == 5


def test_secret_values_are_never_printed() -> None:
    text = """
upstreams: [{name: a, base_url: "http://x/v1", models: ["m"], api_key: ["sk-secret-in-list"]}]
admin: {tokens: [{token: "tok-secret-123", role: "boss"}]}
"""
    errs = "\n".join(errors_of(text))
    assert "upstreams[0].api_key" in errs and "admin.tokens[0].role" in errs
    assert "sk-secret-in-list" not in errs and "tok-secret-123" not in errs


def test_cross_checks() -> None:
    text = """
upstreams:
  - {name: a, base_url: "http://x/v1", models: ["m"]}
  - {name: a, base_url: "http://y/v1", models: ["n"]}
applications:
  - {id: app1, keys: [k-shared], stages: [nope]}
  - {id: app2, keys: [k-shared]}
admin: {tokens: [{token: k-shared, role: "app:ghost"}]}
"""
    errs = errors_of(text)
    assert "upstreams[1].name: duplicate name 'a' (also upstreams[0])" in errs
    assert "applications[1].keys[0]: the same key is already used at applications[0].keys[0]" in errs
    assert "admin.tokens[0].role: no application with id 'ghost'" in errs
    assert "admin.tokens[0].token: equals the client key at applications[0].keys[0]" in errs
    assert "applications[0].stages[0]: no stage named 'nope' under `stages`" in errs
    assert not any("k-shared" in e for e in errs)


def test_no_upstream_is_an_error() -> None:
    assert errors_of("server: {port: 1234}") == ["upstreams: at least one upstream is required"]


@pytest.mark.parametrize("text,expected", [
    ("upstreams: [\n", "invalid YAML at line 2"),
    ("- just\n- a list\n", "top level must be a mapping, got list"),
    ("server: {port: '${BROKEN'}\nupstreams: []", "malformed variable reference"),
])
def test_structural_errors(text: str, expected: str) -> None:
    assert expected in "\n".join(errors_of(text))


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", check=plan_issues)
    assert str(tmp_path / "absent.yaml") in info.value.render()
    assert "file not found" in info.value.render()


def test_policies_and_stages_are_accepted() -> None:
    text = MINIMAL + """
policies:
  - {id: no_payment_data, type: pii, rule: "No payment data", entities: [CREDIT_CARD], threshold: 0.5}
stages:
  - name: org-input
    scope: central
    on: input
    rulesets: [{name: r, rules: [{metric: pii, op: contains_any, value: [EMAIL_ADDRESS]}], action: {type: redact}}]
"""
    config = parse_config(text, "t", {"OPENAI_API_KEY": "k"}, check=plan_issues)
    assert config.policies[0].id == "no_payment_data" and config.policies[0].params == {"entities": ["CREDIT_CARD"]}
    assert config.stages[0].name == "org-input"
    assert config.stages[0].on == "input"  # YAML 1.2 booleans: `on` stays a key, not True


def test_yaml_booleans_are_yaml_1_2() -> None:
    text = MINIMAL + "server: {access_log: false}\n"
    config = parse_config(text, "t", {"OPENAI_API_KEY": "k"}, check=plan_issues)
    assert config.server.access_log is False
    config = parse_config(MINIMAL + "policies: [{id: p, type: contains, keywords: [yes, no, on, off]}]\n", "t",
                          {"OPENAI_API_KEY": "k"}, check=plan_issues)
    assert config.policies[0].params == {"keywords": ["yes", "no", "on", "off"]}


def test_example_config_is_valid_as_shipped() -> None:
    config = load_config(ROOT / "config" / "gateway.yaml", env={}, check=plan_issues)
    assert config.upstreams[0].base_url.startswith("http://127.0.0.1")
    assert config.applications[0].keys


def test_upstream_headers_and_key_must_be_sendable() -> None:
    text = """
upstreams:
  - {name: a, base_url: "http://x/v1", models: ["m"], api_key: "sk-\u00e9\u00e9", headers: {"bad name": "v", ok: "caf\u00e9"}}
"""
    errs = "\n".join(errors_of(text))
    assert "upstreams[0].api_key: Value error" not in errs
    assert "upstreams[0].api_key: must be printable ASCII" in errs
    assert "'bad name' is not a valid HTTP header name" in errs
