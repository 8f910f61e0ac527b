"""A gateway whose config exercises every action, input and output, in front of the test upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Gateway, running_gateway

KEY_A, KEY_B, KEY_C, KEY_D, KEY_E = "sk-guard-a", "sk-guard-b", "sk-guard-c", "sk-guard-d", "sk-guard-e"
ADMIN, ADMIN_A = "admin-central-token", "admin-app-a-token"


def guard_config(upstream: str, port: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams:
  - {{name: main, base_url: "{upstream}", api_key: sk-up, models: ["gpt-*", "fixer-*", "odd-*", "deep-*", "judge-*", "garbled-*"]}}
applications:
  - {{id: app-a, keys: ["{KEY_A}"], stages: [a-input, a-output]}}
  - {{id: app-b, keys: ["{KEY_B}"], stages: [b-output]}}
  - {{id: app-c, keys: ["{KEY_C}"], stages: [c-fail-closed]}}
  - {{id: app-d, keys: ["{KEY_D}"], stages: [d-fail-open], allow_request_stages: false}}
  - {{id: app-e, keys: ["{KEY_E}"]}}
admin:
  tokens:
    - {{token: {ADMIN}, role: central}}
    - {{token: {ADMIN_A}, role: "app:app-a"}}
guard: {{corrector_model: fixer-1}}
policies:
  - {{id: secret_codes, type: regex, rule: "Never reveal project codes", patterns: ["PROJECT-[0-9]{{4}}"]}}
  - {{id: banned_words, type: contains, rule: "Do not say forbidden words", keywords: ["acme corp", "forbidden"]}}
  - {{id: payment_data, type: pii, rule: "Should not share payment information", entities: [CREDIT_CARD, IBAN_CODE]}}
  - {{id: broken, type: code, function: "tests.guard.sample_metrics:boom"}}
stages:
  - name: org-input
    scope: central
    on: input
    timeout_ms: 5000
    rulesets:
      - name: block-secret
        rules: [{{metric: secret_codes}}]
        action: {{type: block, message: "Blocked: project codes are confidential."}}
      - name: mask-contact
        rules: [{{metric: pii, op: contains_any, value: [EMAIL_ADDRESS, PHONE_NUMBER]}}]
        action: {{type: redact}}
      - name: watch-injection
        mode: monitor
        rules: [{{metric: prompt_injection, op: gt, value: 0.99}}]
        action: {{type: block}}
  - name: org-output
    scope: central
    on: output
    rulesets:
      - name: watch-length
        mode: monitor
        rules: [{{metric: length, op: gt, value: 10}}]
        action: {{type: block}}
  - name: a-input
    on: input
    rulesets:
      - name: override-banned
        rules: [{{metric: banned_words}}]
        action: {{type: override, responses: ["I can't discuss that."]}}
      - name: human
        rules: [{{metric: length, op: gt, value: 3000}}]
        action: {{type: handoff}}
  - name: a-output
    on: output
    rulesets:
      - name: payment
        rules: [{{metric: payment_data}}]
        action: {{type: override, responses: ["I can't share payment details."]}}
      - name: mask-ip-out
        rules: [{{metric: pii, op: contains, value: IP_ADDRESS}}]
        action: {{type: redact}}
  - name: b-output
    on: output
    rulesets:
      - name: fix-banned
        rules: [{{metric: banned_words}}]
        action: {{type: correct, model: fixer-1}}
      - name: block-payment
        rules: [{{metric: payment_data}}]
        action: {{type: block, respond_with: error, message: "No payment data."}}
  - name: c-fail-closed
    on: input
    rulesets:
      - name: flaky
        rules: [{{metric: broken, op: gt, value: 0.5}}]
        action: {{type: passthrough}}
  - name: d-fail-open
    on: input
    on_error: allow
    rulesets:
      - name: flaky
        rules: [{{metric: broken, op: gt, value: 0.5}}]
        action: {{type: block}}
"""


@pytest.fixture(scope="session")
def guarded(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("guarded"), lambda port: guard_config(upstream, port)) as gw:
        yield gw
