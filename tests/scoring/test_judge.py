"""`rubric` policies: an LLM judge on a configured upstream, through the gateway and the evaluate API."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.scoring.judge import parse_verdict
from tests.conftest import Gateway, running_gateway

KEY = "sk-judge-app"


@pytest.mark.parametrize(("answer", "score"), [
    ('{"score": 0.8, "reason": "x"}', 0.8),
    ('Sure! ```json\n{"score": 0, "reason": "fine"}\n```', 0.0),
    ('{"score": 1}', 1.0),
])
def test_parse_verdict(answer: str, score: float) -> None:
    assert parse_verdict(answer) == score


@pytest.mark.parametrize("answer", ["no json here", '{"score": 1.5}', '{"score": true}', '{"reason": "x"}',
                                    '{"score": "high"}', '{"score": 0.5'])
def test_parse_verdict_rejects(answer: str) -> None:
    with pytest.raises(ValueError):
        parse_verdict(answer)


def _config(upstream: str, port: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*", "judge-*"]}}]
applications:
  - {{id: app, keys: ["{KEY}"], stages: [judged, judged-open]}}
policies:
  - {{id: tone, type: rubric, judge_model: judge-1, rule: "Answers must stay professional."}}
  - {{id: tone_broken_judge, type: rubric, judge_model: judge-rambling-1, rule: "Answers must stay professional."}}
stages:
  - name: judged
    on: input
    timeout_ms: 5000
    rulesets:
      - {{name: rubric, rules: [{{metric: tone}}], action: {{type: block, respond_with: error}}}}
  - name: judged-open
    on: output
    on_error: allow
    rulesets:
      - {{name: broken, rules: [{{metric: tone_broken_judge}}], action: {{type: block}}}}
"""


@pytest.fixture(scope="module")
def judge_gateway(upstream: str, tmp_path_factory: pytest.TempPathFactory):
    with running_gateway(tmp_path_factory.mktemp("judge"), lambda port: _config(upstream, port)) as gw:
        yield gw


def test_judge_blocks_and_passes(judge_gateway: Gateway, recorder) -> None:
    client = openai.OpenAI(base_url=judge_gateway.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "VIOLATION here"}])
    assert err.value.type == "guardrail_violation" and err.value.code == "block"
    judged = [r for r in recorder.requests if r["json"].get("model") == "judge-1"]
    assert judged and "Answers must stay professional." in judged[-1]["json"]["messages"][-1]["content"]
    assert judged[-1]["json"]["temperature"] == 0
    ok = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a calm question"}])
    # The broken judge (output stage, on_error: allow) lets the answer through and counts the error.
    assert ok.status_code == 200 and ok.parse().choices[0].message.content == "echo:a calm question"
    metrics = httpx.get(judge_gateway.url + "/metrics").text
    assert 'gateway_guard_errors_total{kind="error",metric="tone_broken_judge",stage="judged-open"}' in metrics


def test_judge_scores_are_cached(judge_gateway: Gateway, recorder) -> None:
    client = openai.OpenAI(base_url=judge_gateway.url + "/v1", api_key=KEY, max_retries=0)
    before = sum(1 for r in recorder.requests if r["json"].get("model") == "judge-1")
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "same text twice"}])
    after = sum(1 for r in recorder.requests if r["json"].get("model") == "judge-1")
    assert after - before == 1


def test_evaluate_api_with_rubric(judge_gateway: Gateway) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "VIOLATION!"}],
            "policy_ids": ["tone"]}
    r = httpx.post(judge_gateway.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    evaluation = r.json()["evaluation"]
    assert evaluation["status"] == "FAIL" and evaluation["policy_violations"][0]["policy_id"] == "tone"
    assert evaluation["output_score"] == 0.93
