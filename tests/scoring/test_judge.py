"""`rubric` policies: an LLM judge on a configured upstream, through the gateway and the evaluate API."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from gateway.config import ConfigError, parse_config
from gateway.guard.plan import plan_issues
from gateway.metrics.context import EvalContext
from gateway.metrics.types import ParamError
from gateway.metrics.judge import CONTEXT_NOTE, NO_CONTEXT, SYSTEM, JudgeMetric, parse_verdict
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


# `include_context`: the judge also sees the evaluation's context (system/developer messages, evaluate `context`).

def _judge_calls(metric: JudgeMetric, text: str, context: str,
                 answer: str = '{"score": 0.7}') -> list[list[dict[str, str]]]:
    """Score `text` in an evaluation whose context is `context`; the prompts the judge was sent."""
    calls: list[list[dict[str, str]]] = []

    async def complete(model: str, messages: list[dict[str, str]]) -> str:
        calls.append(messages)
        return answer

    value = asyncio.run(metric.measure_async(text, EvalContext("input", text, context, complete))).value
    assert float(value) == float(parse_verdict(answer))
    return calls


def test_judge_prompt_without_include_context_is_unchanged() -> None:
    metric = JudgeMetric.from_params({"judge_model": "j", "rubric": "R"}, "")
    assert metric.include_context is False
    [messages] = _judge_calls(metric, "user text", "SYSTEM PROMPT")
    assert messages == [{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": "RUBRIC:\nR\n\nTEXT:\nuser text"}]
    assert _judge_calls(metric, "user text", "another system prompt") == []  # the context is not in its key


def test_judge_with_include_context_sees_the_system_prompt() -> None:
    metric = JudgeMetric.from_params({"judge_model": "j", "rubric": "R", "include_context": True}, "")
    [messages] = _judge_calls(metric, "user text", "Only talk about New York.")
    assert messages[0]["content"] == SYSTEM + CONTEXT_NOTE
    assert messages[1]["content"] == "RUBRIC:\nR\n\nCONTEXT:\nOnly talk about New York.\n\nTEXT:\nuser text"
    assert _judge_calls(metric, "user text", "Only talk about New York.") == []  # cached
    [other] = _judge_calls(metric, "user text", "Only talk about Paris.")  # another system prompt: judged again
    assert "Only talk about Paris." in other[1]["content"]
    [empty] = _judge_calls(metric, "user text", "  ")
    assert f"CONTEXT:\n{NO_CONTEXT}\n\nTEXT:\nuser text" in empty[1]["content"]


def test_judge_with_include_context_keeps_its_error_contract() -> None:
    metric = JudgeMetric.from_params({"judge_model": "j", "rubric": "R", "include_context": True}, "")
    with pytest.raises(ValueError):
        _judge_calls(metric, "user text", "ctx", answer="it depends")
    calls = _judge_calls(metric, "user text", "ctx")  # a malformed answer is not cached
    assert len(calls) == 1


@pytest.mark.parametrize("value", ["yes", 1, "true", None, [True]])
def test_include_context_must_be_a_boolean(value: object) -> None:
    with pytest.raises(ParamError) as err:
        JudgeMetric.from_params({"judge_model": "j", "rubric": "R", "include_context": value}, "")
    assert err.value.path == ("include_context",)


def test_include_context_config_error_names_the_key() -> None:
    config = """
upstreams: [{name: u, base_url: "http://127.0.0.1:1/v1", models: ["*"]}]
applications: [{id: app, keys: [k]}]
policies:
  - {id: adherence, type: rubric, judge_model: j, rule: "stay on topic", include_context: "on"}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(config, "g.yaml", {}, check=plan_issues)
    assert [str(i) for i in info.value.issues] == [
        "policies[0].include_context: must be true or false (true: the judge also sees the request's system "
        "prompt and any evaluate `context`)"]


def test_a_misspelt_rubric_parameter_is_refused_not_ignored() -> None:
    """`include_contxt: true` used to pass unnoticed, and the judge then never saw the system prompt."""
    config = """
upstreams: [{name: u, base_url: "http://127.0.0.1:1/v1", models: ["*"]}]
applications: [{id: app, keys: [k]}]
policies:
  - {id: adherence, type: rubric, judge_model: j, rule: "stay on topic", include_contxt: true}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(config, "g.yaml", {}, check=plan_issues)
    assert [str(i) for i in info.value.issues] == [
        "policies[0].include_contxt: unknown parameter; allowed: judge_model, rubric, timeout_ms, cache_entries, "
        "include_context"]
