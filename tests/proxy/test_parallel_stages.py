"""Parallel input stages: the request goes upstream while the stage runs; the stage's verdict decides.

The judge of these tests (`judge-after-*` on the test upstream) answers only once the guarded request
itself has reached the upstream, and fails otherwise: a parallel stage therefore passes or blocks on
the judge's score, while the same stage run before the upstream call fails closed on the judge's error.
"""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.conftest import Gateway, running_gateway

KEY_PAR = "sk-parallel-app"
KEY_SEQ = "sk-sequential-app"
KEY_MIXED = "sk-mixed-app"


def _config(upstream: str, port: int) -> str:
    stage = """
    on: input
    timeout_ms: 5000
    rulesets: [{name: judged, rules: [{metric: no_violations}], action: {type: block}}]"""
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*", "judge-*", "wait-*"]}}]
applications:
  - {{id: par, keys: ["{KEY_PAR}"], stages: [beside]}}
  - {{id: seq, keys: ["{KEY_SEQ}"], stages: [before]}}
  - {{id: mixed, keys: ["{KEY_MIXED}"], stages: [beside, mask]}}
policies:
  - {{id: no_violations, type: rubric, judge_model: judge-after-1, rule: "No violations."}}
stages:
  - name: beside
    parallel: true{stage}
  - name: before{stage}
  - name: mask
    on: input
    rulesets: [{{name: mail, rules: [{{metric: pii, op: contains_any, value: [EMAIL_ADDRESS]}}], action: {{type: redact}}}}]
"""


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory):
    with running_gateway(tmp_path_factory.mktemp("parallel"), lambda port: _config(upstream, port)) as gateway:
        yield gateway


def _client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def _sent(recorder, text: str) -> list[dict]:
    with recorder.lock:
        return [r for r in recorder.requests if not r["json"]["model"].startswith("judge-")
                and any(isinstance(m, dict) and m.get("content") == text for m in r["json"].get("messages", []))]


def test_parallel_stage_passes_once_the_upstream_has_the_request(gw: Gateway, recorder) -> None:
    text = f"a calm question {uuid.uuid4().hex}"
    answer = _client(gw, KEY_PAR).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
    assert answer.choices[0].message.content == "echo:" + text
    assert len(_sent(recorder, text)) == 1
    # Control: the same stage before the upstream call cannot get its judge's verdict, fails closed,
    # and the request never leaves the gateway.
    other = f"a calm question {uuid.uuid4().hex}"
    with pytest.raises(openai.InternalServerError) as info:
        _client(gw, KEY_SEQ).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": other}])
    assert info.value.status_code == 503 and info.value.body["code"] == "guard_unavailable"
    assert _sent(recorder, other) == []


def test_parallel_block_drops_the_upstream_call(gw: Gateway, recorder) -> None:
    model = f"wait-{uuid.uuid4().hex[:8]}"  # a generation that would run for 30 s
    text = f"VIOLATION {uuid.uuid4().hex}"
    raw = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY_PAR}"}, timeout=20,
                     json={"model": model, "messages": [{"role": "user", "content": text}]})
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert raw.headers["x-guardrail-action"] == "block" and raw.headers["x-guardrail-stage"] == "beside"
    assert body["guardrail"]["stages"][0]["triggered"] == ["judged"]  # the judge's score, not an error
    assert body["guardrail"]["stages"][0]["errors"] == []
    assert len(_sent(recorder, text)) == 1
    assert recorder.closed_event(model).wait(10), "the gateway kept the blocked request's upstream call open"
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'gateway_upstream_abandoned_total{upstream="main"} 1.0' in metrics


def test_parallel_stage_on_streams(gw: Gateway) -> None:
    client = _client(gw, KEY_PAR)
    text = f"stream me {uuid.uuid4().hex}"
    stream = client.chat.completions.create(model="gpt-fast", stream=True,
                                            messages=[{"role": "user", "content": text}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo:" + text
    bad = f"VIOLATION {uuid.uuid4().hex}"
    chunks = list(client.chat.completions.create(model="gpt-fast", stream=True,
                                                 messages=[{"role": "user", "content": bad}]))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "echo:" not in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stages_without_parallel_run_first_and_redact_what_is_sent(gw: Gateway, recorder) -> None:
    """`beside` is listed first but runs after `mask`: it judges (and the upstream gets) the redacted text."""
    tag = uuid.uuid4().hex
    text = f"write to jane.doe@example.com about {tag}"
    redacted = f"write to <EMAIL_ADDRESS> about {tag}"
    answer = _client(gw, KEY_MIXED).chat.completions.create(model="gpt-4o",
                                                            messages=[{"role": "user", "content": text}])
    assert answer.choices[0].message.content == "echo:" + redacted
    assert len(_sent(recorder, redacted)) == 1 and _sent(recorder, text) == []
    with recorder.lock:
        judged = [r for r in recorder.requests if r["json"]["model"] == "judge-after-1"
                  and tag in r["json"]["messages"][-1]["content"]]
    assert judged and "jane.doe@example.com" not in judged[-1]["json"]["messages"][-1]["content"]
