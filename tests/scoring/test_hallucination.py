"""The hallucination heads (consistency, factual, relevance): shipped weights, the factual type's
knowledge rule, a regression bound on a train-side sample, and the evaluate API's `context` path end
to end on a real gateway."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.config.guard_schema import PolicySpec
from gateway.metrics.context import EvalContext
from gateway.guard.policy import compile_policy
from gateway.metrics.types import ParamError
from gateway.scoring.stats import roc_auc
from gateway.scoring.hallucination import HEADS, load_heads
from gateway.scoring.hallucination_eval import balanced_accuracy, features
from gateway.metrics.model import MissingKnowledge
from gateway.scoring.runtime import ScoringRuntime
from tests.conftest import Gateway, running_gateway

SAMPLE = Path(__file__).parents[1] / "data" / "hallucination_sample.jsonl"
# Per head on the sample (rows from train/, which the heads saw): AUC and balanced accuracy at the shipped
# threshold as measured with the shipped weights (0.906/0.844, 0.991/0.967, 0.994/0.967, 1.0/1.0), less
# 0.05. A broken feature or weight file falls far below; quality is measured on test/ (docs/models.md).
BOUNDS = {"consistency": (0.85, 0.79), "factual": (0.94, 0.91), "relevance_input": (0.94, 0.91),
          "relevance_output": (0.95, 0.95)}
SOURCE = ("The Riverside library reopened on 3 March after a two-year renovation. It now opens from 9 am to "
          "8 pm on weekdays and is closed on Sundays. The renovation cost 4.2 million euros, paid by the city.")


def _score(policy, text: str, ctx: EvalContext | None) -> float:
    return float(asyncio.run(policy.score_async(text, ctx)).value)


def test_shipped_heads_share_one_calibrated_threshold() -> None:
    heads = load_heads()
    assert set(heads) == set(HEADS)
    for head in heads.values():
        assert head.threshold == 0.5 and 0 < head.meta["cut_before_shift"] < 1
        assert head.meta["calibration"].startswith("best file-weighted balanced accuracy")


@pytest.mark.parametrize("head", HEADS)
def test_regression_sample(head: str, scoring_runtime: ScoringRuntime) -> None:
    rows = [r for r in map(json.loads, SAMPLE.read_text().splitlines()) if r["head"] == head]
    shipped = load_heads()[head]
    x = features(head, [r["text"] for r in rows], [r["reference"] for r in rows], scoring_runtime.encoder,
                 contexts=[r.get("context", "") for r in rows])
    scores = np.array([shipped.score(v) for v in x])
    labels = np.array([r["label"] for r in rows])
    auc, bal = roc_auc(scores, labels), balanced_accuracy(scores, labels, shipped.threshold)
    assert auc >= BOUNDS[head][0] and bal >= BOUNDS[head][1], (head, round(auc, 4), round(bal, 4))


def test_factual_without_knowledge_is_a_config_error(scoring_runtime: ScoringRuntime) -> None:
    with pytest.raises(ParamError) as err:
        compile_policy(PolicySpec(id="f", type="factual"), scoring_runtime)
    assert err.value.path == ("knowledge",)
    assert "knowledge: context" in str(err.value) and "rubric" in str(err.value) and "judge_model" in str(err.value)


def test_factual_against_the_request_context_refuses_without_one(scoring_runtime: ScoringRuntime) -> None:
    policy = compile_policy(PolicySpec(id="f", type="factual", knowledge="context", threshold=0.0), scoring_runtime)
    with pytest.raises(MissingKnowledge):
        _score(policy, "The library is closed on Sundays.", EvalContext("output", "When is it open?", ""))
    ctx = EvalContext("output", "When does the library open on weekdays?", SOURCE)
    right = _score(policy, "From 9 am to 8 pm.", ctx)
    wrong = _score(policy, "It opens at 7 am and stays open until midnight, including Sundays.", ctx)
    assert right > wrong and not policy.violated(right) and policy.violated(wrong)


def test_factual_with_fixed_knowledge_and_consistency_sides(scoring_runtime: ScoringRuntime) -> None:
    factual = compile_policy(PolicySpec(id="f", type="factual", knowledge=SOURCE, threshold=0.0), scoring_runtime)
    assert _score(factual, "The renovation cost 4.2 million euros.", EvalContext("output")) > \
        _score(factual, "The renovation cost 9 million dollars, paid by a private donor.", EvalContext("output"))
    consistency = compile_policy(PolicySpec(id="c", type="consistency", threshold=0.0), scoring_runtime)
    # only answers make claims: the input side (a question against the context) is compliant
    assert _score(consistency, "Who paid for the renovation?", EvalContext("input", "", SOURCE)) == 1.0


KEY = "sk-hallucination-app"


def _config(upstream: str, port: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*"]}}]
applications: [{{id: rag, keys: ["{KEY}"]}}]
policies:
  - {{id: grounded, type: consistency, rule: "Answers stay within the documents", threshold: 0.0}}
  - {{id: on_topic, type: relevance, threshold: 0.0}}
  - {{id: correct, type: factual, knowledge: context, threshold: 0.0}}
"""


@pytest.fixture(scope="module")
def rag_gateway(upstream: str, tmp_path_factory: pytest.TempPathFactory):
    with running_gateway(tmp_path_factory.mktemp("halluc"), lambda port: _config(upstream, port)) as gw:
        yield gw


def _evaluate(gw: Gateway, answer: str, policy: str, context: list[str] | None) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "When is the Riverside library open, and who paid for it?"},
                         {"role": "assistant", "content": answer}], "policy_ids": [policy]}
    if context is not None:
        body["context"] = context
    return httpx.post(gw.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY}"},
                      timeout=60)


def test_evaluate_api_context_feeds_the_hallucination_policies(rag_gateway: Gateway) -> None:
    docs = [SOURCE, "Members may borrow up to ten books for three weeks."]
    supported = "It opens from 9 am to 8 pm on weekdays and is closed on Sundays. The city paid for the renovation."
    invented = "It is open around the clock every day. A tech billionaire donated 40 million dollars for it."
    # factual is calibrated on short QA answers (HaluEval); long answers are consistency's
    answers = {"grounded": (supported, invented),
               "correct": ("From 9 am to 8 pm on weekdays; the city paid.", "Around the clock; a billionaire paid.")}
    for policy, (good, bad_answer) in answers.items():
        ok = _evaluate(rag_gateway, good, policy, docs)
        assert ok.status_code == 200 and ok.json()["evaluation"]["status"] == "PASS", ok.text
        bad = _evaluate(rag_gateway, bad_answer, policy, docs)
        ev = bad.json()["evaluation"]
        assert ev["status"] == "FAIL" and ev["policy_violations"][0]["policy_id"] == policy, bad.text
        assert ev["policy_violations"][0]["score"] < 0.5
    # relevance: the answer against the question and the documents
    assert _evaluate(rag_gateway, supported, "on_topic", docs).json()["evaluation"]["status"] == "PASS"
    off = _evaluate(rag_gateway, "Penguins are flightless birds that live in Antarctica.", "on_topic", docs)
    assert off.json()["evaluation"]["status"] == "FAIL", off.text
    # factual grounded on the context, and none given: an error, never a confident number
    r = _evaluate(rag_gateway, supported, "correct", None)
    assert r.status_code == 502 and r.json()["error"]["code"] == "policy_error", r.text
