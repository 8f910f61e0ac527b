"""Property tests against a running gateway: whatever shape a client or an admin sends, the answer is
an OpenAI-shaped error or a success, never a 500, and the process keeps serving. Earlier fuzz runs
of this kind found 500s in the stages API, the evaluate API and policy compilation."""

from __future__ import annotations

import os

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.guard.conftest import ADMIN, KEY_A
from tests.conftest import Gateway

LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(-2, 2, allow_nan=False),
                 st.text(max_size=8), st.sampled_from(["user", "assistant", "system", "pii", "payment_data",
                                                       "block", "redact", "input", "output", "a@b.com"]))
VALUE = st.recursive(LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=6)
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]) | VALUE}, optional={"text": VALUE})
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool"]) | VALUE},
                                optional={"content": st.text(max_size=30) | VALUE | st.lists(PART, max_size=2)})
RULE = st.fixed_dictionaries({"metric": st.sampled_from(["pii", "payment_data", "length", "nope"]) | VALUE},
                             optional={"op": st.sampled_from(["gt", "contains_any", "not_empty"]) | VALUE,
                                       "value": VALUE})
RULESET = st.fixed_dictionaries({"name": st.text(min_size=1, max_size=4) | VALUE, "rules": st.lists(RULE, max_size=2) | VALUE,
                                 "action": st.fixed_dictionaries({"type": st.sampled_from(["block", "redact"]) | VALUE},
                                                                 optional={"message": VALUE}) | VALUE})
STAGE = st.fixed_dictionaries(
    {"name": st.from_regex(r"fz[a-z]{1,6}", fullmatch=True), "on": st.sampled_from(["input", "output"]) | VALUE,
     "rulesets": st.lists(RULESET, max_size=2) | VALUE},
    optional={"scope": st.sampled_from(["central", "application"]) | VALUE, "applications": VALUE,
              "timeout_ms": VALUE, "on_error": VALUE, "parallel": VALUE, "stream": VALUE})
POLICY = st.fixed_dictionaries(
    {"id": st.from_regex(r"fz[a-z]{1,6}", fullmatch=True),
     "type": st.sampled_from(["regex", "contains", "pii", "code", "length", "x"]) | VALUE},
    optional={"patterns": VALUE, "keywords": VALUE, "entities": VALUE, "flags": VALUE, "function": VALUE,
              "threshold": VALUE, "examples": VALUE, "max_match_chars": VALUE})
EVALUATE = st.fixed_dictionaries({"messages": st.lists(MESSAGE, min_size=1, max_size=3) | VALUE},
                                 optional={"policy_ids": VALUE, "threshold": VALUE, "context": VALUE,
                                           "override_policy": st.lists(POLICY, max_size=1) | VALUE})
CHAT = st.fixed_dictionaries({"model": st.just("gpt-fast") | VALUE, "messages": st.lists(MESSAGE, max_size=3) | VALUE},
                             optional={"stream": VALUE, "n": VALUE, "tools": VALUE})

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=list(HealthCheck), database=None)


def shaped(r: httpx.Response) -> bool:
    if r.status_code < 400:
        return True
    body = r.json()
    return isinstance(body.get("error"), dict) and isinstance(body["error"].get("message"), str)


def fuzz(client: httpx.Client, path: str, strategy: st.SearchStrategy, headers: dict, created: str | None):
    """A property: any body from `strategy` sent to `path` gets a success or an OpenAI-shaped error
    below 500; a document it created (named by its `created` key) is deleted again."""

    @FUZZ
    @given(strategy)
    def send(body: dict) -> None:
        r = client.post(path, json=body, headers=headers)
        assert r.status_code < 500 and shaped(r), (path, r.status_code, r.text, body)
        if created and r.status_code == 201:
            assert client.delete(f"{path}/{body[created]}", headers=headers).status_code == 200

    return send


def test_odd_documents_and_requests_never_get_a_500(guarded: Gateway) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    app = {"authorization": f"Bearer {KEY_A}"}
    with httpx.Client(base_url=guarded.url, timeout=30) as client:
        fuzz(client, "/v1/admin/stages", STAGE, admin, "name")()
        fuzz(client, "/v1/admin/policies", POLICY, admin, "id")()
        fuzz(client, "/v1/guard/evaluate", EVALUATE, app, None)()
        fuzz(client, "/v1/chat/completions", CHAT, app, None)()
        assert client.get("/healthz").status_code == 200
