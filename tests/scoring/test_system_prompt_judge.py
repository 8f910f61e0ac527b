"""config/examples/system-prompt-judge.yaml, served as it is, in front of a fake judge on loopback.

The gateway runs the real example file (copied byte for byte into a temporary directory, so its store
is not written into the repository); the judge and the application's model are one small
OpenAI-compatible server in this process, whose judge answer each test sets. docs/system-prompt-judge.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.loader import load_config
from gateway.guard.plan import plan_issues
from gateway.guard.policy import compile_policy
from gateway.metrics.judge import JudgeMetric
from tests.conftest import Gateway, free_port, start_gateway, stop_process
from tests.upstream import ServerThread

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "system-prompt-judge.yaml"
KEY = "sk-system-prompt-judge-app"
JUDGE_MODEL = "judge-spa-1"
CHAT_MODEL = "gpt-spa-1"
POLICY, STAGE = "system_prompt_adherence", "system-prompt-adherence"
# CyberSecEval-style: a harmless question that breaks only the rule of the system prompt it is sent with.
NY_ONLY = ("You are a climate assistant for New York City. Only describe the climate of New York; "
           "politely decline questions about any other place.")
LA_WEATHER = "What is the weather usually like in Los Angeles in February?"


@dataclass
class FakeUpstream:
    """The judge (answers `judge_answer`) and the application's model (echoes), recording every request."""

    judge_answer: str = '{"score": 0.1}'
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            payload = orjson.loads(await request.body())
            with self.lock:
                self.requests.append(payload)
            if payload["model"] == JUDGE_MODEL:
                text = self.judge_answer
            else:
                text = "echo:" + str(payload["messages"][-1]["content"])
            body = {"id": "chatcmpl-spa", "object": "chat.completion", "created": 1, "model": payload["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            return Response(orjson.dumps(body), media_type="application/json")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    def judged(self, text: str) -> list[str]:
        """The judge prompts (system and user message joined) that judged `text`."""
        with self.lock:
            calls = [r for r in self.requests if r["model"] == JUDGE_MODEL]
        prompts = ["\n".join(m["content"] for m in r["messages"]) for r in calls]
        return [p for p in prompts if text in p]

    def served(self, text: str) -> bool:
        """Whether the application's model received `text`."""
        with self.lock:
            return any(r["model"] == CHAT_MODEL and any(text in str(m.get("content")) for m in r["messages"])
                       for r in self.requests)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    server = ServerThread(upstream.app(), free_port())
    server.start()
    upstream.url = f"http://127.0.0.1:{server.port}/v1"
    yield upstream
    server.stop()


@pytest.fixture(scope="module")
def example_gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("system-prompt-judge")
    config = tmp / EXAMPLE.name
    config.write_bytes(EXAMPLE.read_bytes())
    env = {"UPSTREAM_BASE_URL": fake.url, "UPSTREAM_API_KEY": "", "JUDGE_MODEL": JUDGE_MODEL, "GATEWAY_APP_KEY": KEY}
    gw = start_gateway(config, free_port(), tmp / "gateway.log", env=env)
    try:
        yield gw
    finally:
        stop_process(gw.process, gw.log_path)


def _on_error() -> str:
    config = load_config(EXAMPLE, env={}, check=plan_issues)
    return next(s.on_error for s in config.stages if s.name == STAGE)


def _ask(gw: Gateway, user: str, system: str = NY_ONLY) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)
    return client.chat.completions.create(model=CHAT_MODEL, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": user}])


def test_example_config_loads_and_gives_the_judge_the_context() -> None:
    config = load_config(EXAMPLE, env={}, check=plan_issues)
    policies = {p.id: p for p in config.policies}
    assert policies[POLICY].type == "rubric" and policies[POLICY].params["include_context"] is True
    # next to the text-only detector, which runs first
    assert policies["prompt_injection_detector"].params["detector"] == "prompt_injection"
    assert config.applications[0].stages == ("prompt-injection", STAGE)
    stage = next(s for s in config.stages if s.name == STAGE)
    assert stage.on == "input" and stage.mode in ("monitor", "enforce")
    metric = compile_policy(policies[POLICY]).metric
    assert isinstance(metric, JudgeMetric) and metric.include_context
    assert stage.timeout_ms > metric.timeout_s * 1000, "the stage would time the judge out before it answers"


def test_judge_sees_the_system_prompt_and_its_high_score_blocks(example_gateway: Gateway,
                                                                 fake: FakeUpstream) -> None:
    fake.judge_answer = '{"score": 0.9}'
    answer = _ask(example_gateway, LA_WEATHER)
    prompts = fake.judged(LA_WEATHER)
    assert len(prompts) == 1, "the judge was not asked (did the detector stage block it first?)"
    assert NY_ONLY in prompts[0], "the judge did not see the request's system prompt"
    assert prompts[0].index(NY_ONLY) < prompts[0].index(LA_WEATHER)
    # enforce mode: the block action answers in shape, with the stage's message; the model never saw it
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content == "This assistant can't help with that request."
    assert not fake.served(LA_WEATHER)


def test_low_score_passes(example_gateway: Gateway, fake: FakeUpstream) -> None:
    fake.judge_answer = '{"score": 0.1}'
    question = "Will it snow in New York in February?"
    answer = _ask(example_gateway, question)
    assert answer.choices[0].message.content == "echo:" + question
    assert answer.choices[0].finish_reason == "stop"
    assert NY_ONLY in fake.judged(question)[0]
    assert fake.served(question)


def test_the_system_prompt_is_part_of_the_cache_key(example_gateway: Gateway, fake: FakeUpstream) -> None:
    fake.judge_answer = '{"score": 0.1}'
    question = "What should I wear for a walk in February?"
    _ask(example_gateway, question)
    _ask(example_gateway, question)
    assert len(fake.judged(question)) == 1  # the same request again: cached
    fake.judge_answer = '{"score": 0.9}'
    other = "You are a travel assistant for Alaska only."
    answer = _ask(example_gateway, question, system=other)
    prompts = fake.judged(question)
    assert len(prompts) == 2 and other in prompts[1]
    assert answer.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize("malformed", ["It depends on the system prompt.", '{"score": 7}', '{"verdict": "ok"}'])
def test_malformed_judge_answer_follows_on_error(example_gateway: Gateway, fake: FakeUpstream,
                                                 malformed: str) -> None:
    fake.judge_answer = malformed
    question = f"Is February colder than March in New York? ({malformed})"
    before = _errors(example_gateway)
    answer = _ask(example_gateway, question)
    assert len(fake.judged(question)) == 1
    if _on_error() == "allow":
        assert answer.choices[0].message.content == "echo:" + question and fake.served(question)
    else:
        assert answer.choices[0].finish_reason == "content_filter" and not fake.served(question)
    assert _errors(example_gateway) == before + 1
    # not cached: once the judge answers properly, the same request is judged again
    fake.judge_answer = '{"score": 0.1}'
    assert _ask(example_gateway, question).choices[0].message.content == "echo:" + question
    assert len(fake.judged(question)) == 2


def _errors(gw: Gateway) -> float:
    series = f'gateway_guard_errors_total{{kind="error",metric="{POLICY}",stage="{STAGE}"}}'
    for line in httpx.get(gw.url + "/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_evaluate_api_passes_its_context_to_the_judge(example_gateway: Gateway, fake: FakeUpstream) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    question = "Tell me about the climate of Los Angeles, please."
    fake.judge_answer = json.dumps({"score": 0.9, "reason": "asks about another city"})
    body = {"messages": [{"role": "user", "content": question}], "context": NY_ONLY, "policy_ids": [POLICY]}
    r = httpx.post(example_gateway.url + "/v1/guard/evaluate", json=body, headers=headers)
    assert r.status_code == 200, r.text
    evaluation = r.json()["evaluation"]
    assert evaluation["status"] == "FAIL"
    assert evaluation["policy_violations"] == [{"policy_id": POLICY, "score": 0.9}]
    assert NY_ONLY in fake.judged(question)[0]
    # a system message is context too; the evaluate API reports a judge that answers no score as a 502
    fake.judge_answer = "no idea"
    body = {"messages": [{"role": "system", "content": NY_ONLY}, {"role": "user", "content": question + "!"}],
            "policy_ids": [POLICY]}
    r = httpx.post(example_gateway.url + "/v1/guard/evaluate", json=body, headers=headers)
    assert r.status_code == 502 and r.json()["error"]["code"] == "policy_error"
    assert NY_ONLY in fake.judged(question + "!")[0]
