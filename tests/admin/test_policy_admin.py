"""The policy admin API against a real gateway process: every endpoint and permission, validation,
versions and revert, the seed-002 threshold endpoint, apply; and two gateway processes sharing the
real Redis, where a change made through one changes the other's verdict within a second."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway.config.guard_schema import PolicySpec
from tests.conftest import Gateway, running_gateway

CENTRAL, ADMIN_A = "admin-central", "admin-app-a"
KEY_A, KEY_B = "sk-app-a", "sk-app-b"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _config(upstream: str, port: int, store: str = "") -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*", "gen-*"]}}]
applications:
  - {{id: app-a, keys: ["{KEY_A}"]}}
  - {{id: app-b, keys: ["{KEY_B}"]}}
admin:
  tokens:
    - {{token: {CENTRAL}, role: central}}
    - {{token: {ADMIN_A}, role: "app:app-a"}}
policies:
  - {{id: from_config, type: contains, keywords: ["configured-word"]}}
{store}
"""


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def chat(gw: Gateway, key: str, text: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers=h(key), timeout=10,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("admin"), lambda port: _config(upstream, port)) as g:
        yield g


def test_create_read_list_edit_delete(gw: Gateway) -> None:
    body = {"id": "codes", "type": "regex", "rule": "No project codes", "patterns": ["PRJ-[0-9]{3}"]}
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json=body)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["owner"] == "central"
    assert r.json()["trainable"] is False  # the type's, from the registry (a regex policy does not train)
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json=body).status_code == 409
    listed = httpx.get(gw.url + "/v1/admin/policies", headers=h(ADMIN_A)).json()["data"]
    assert {(p["id"], p["source"]) for p in listed} >= {("codes", "store"), ("from_config", "config")}
    r = httpx.patch(gw.url + "/v1/admin/policies/codes", headers=h(CENTRAL), json={"patterns": ["PRJ-[0-9]{4}"]})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert httpx.get(gw.url + "/v1/admin/policies/codes", headers=h(CENTRAL)).json()["patterns"] == ["PRJ-[0-9]{4}"]
    versions = httpx.get(gw.url + "/v1/admin/policies/codes/versions", headers=h(CENTRAL)).json()["data"]
    assert [(v["version"], v["current"], v["trainable"]) for v in versions] == [(1, False, False), (2, True, False)]
    r = httpx.post(gw.url + "/v1/admin/policies/codes/revert", headers=h(CENTRAL), json={"version": 1})
    assert r.status_code == 200 and r.json()["version"] == 3 and r.json()["patterns"] == ["PRJ-[0-9]{3}"]
    assert httpx.delete(gw.url + "/v1/admin/policies/codes", headers=h(CENTRAL)).json()["deleted"] is True
    assert httpx.get(gw.url + "/v1/admin/policies/codes", headers=h(CENTRAL)).status_code == 404


@pytest.mark.parametrize(("body", "param"), [
    ({"id": "bad", "type": "regex", "patterns": ["(a)\\1"]}, "patterns[0]"),
    ({"id": "bad", "type": "telepathy"}, "type"),
    ({"id": "bad", "type": "regex", "patterns": ["x"], "threshold": 3}, "threshold"),
    ({"type": "regex"}, "id"),
])
def test_invalid_policies_are_rejected_with_the_field(gw: Gateway, body: dict, param: str) -> None:
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] in ("invalid_policy",)
    assert httpx.get(gw.url + "/v1/admin/policies/bad", headers=h(CENTRAL)).status_code == 404


@pytest.mark.parametrize("token", [CENTRAL, ADMIN_A])
@pytest.mark.parametrize(("body", "param"), [
    ({"id": "host", "type": "code", "function": "os:system"}, "type"),
    ({"id": "host", "type": "onnx_classifier", "model": "/etc/hostname", "tokenizer": "/etc/hostname"}, "type"),
    ({"id": "host", "type": "classifier", "training_data": "/etc/passwd"}, "training_data"),
])
def test_admin_policies_may_not_reach_into_the_host(gw: Gateway, token: str, body: dict, param: str) -> None:
    """Only the config file may run the gateway's Python or name files on its disk: an admin token (even a
    central one) that could store `os:system` would run shell commands on every request it applies to."""
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(token), json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and "config file" in err["message"], err
    assert httpx.get(gw.url + "/v1/admin/policies/host", headers=h(CENTRAL)).status_code == 404
    # Nor by editing a harmless policy into one.
    own = {"id": "harmless", "type": "contains", "keywords": ["alpha"]}
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(token), json=own).status_code == 201
    try:
        r = httpx.patch(gw.url + "/v1/admin/policies/harmless", headers=h(token),
                        json={k: v for k, v in body.items() if k != "id"})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
        assert httpx.get(gw.url + "/v1/admin/policies/harmless", headers=h(token)).json()["type"] == "contains"
    finally:
        httpx.delete(gw.url + "/v1/admin/policies/harmless", headers=h(CENTRAL))


def test_a_stored_host_policy_from_an_earlier_version_is_not_run(upstream: str, tmp_path: Path) -> None:
    """A store written before the admin API refused them may hold a `code` policy applied to traffic: the
    gateway does not run it and names it in its log. A replica starting on such a store has no plan of the
    store's it could enforce: it stays not loaded (guarded traffic 503, /readyz says why) until the broken
    documents are deleted through the admin API, which it accepts for that."""
    from gateway.store import open_store

    marker = tmp_path / "ran"

    async def plant() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'data' / 'gateway.db'}")
        try:
            await store.put("policy", {"id": "host", "type": "code", "function": "os:system", "owner": "central"},
                            "earlier")
            await store.put("stage", {"id": "host-stage", "owner": "central", "applications": ["app-a"], "spec": {
                "name": "host-stage", "on": "input", "scope": "application",
                "rulesets": [{"name": "r", "rules": [{"metric": "host"}], "action": {"type": "block"}}]}}, "earlier")
        finally:
            await store.close()

    (tmp_path / "data").mkdir()
    asyncio.run(plant())
    with running_gateway(tmp_path, lambda port: _config(upstream, port)) as g:
        r = chat(g, KEY_A, f"touch {marker}")
        assert r.status_code == 503 and r.json()["error"]["code"] == "policies_not_loaded", r.text
        assert not marker.exists()
        assert "store.policies.host.type" in g.logs()
        ready = httpx.get(g.url + "/readyz")
        assert ready.status_code == 503 and "do not compile" in ready.json()["checks"]["store"], ready.text
        # Writes name what to delete; deleting the broken documents is allowed, and heals the store.
        new = {"id": "new", "type": "contains", "keywords": ["k"]}
        r = httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL), json=new)
        assert r.status_code == 400 and r.json()["error"]["param"] == "store.policies.host.type", r.text
        assert httpx.delete(g.url + "/v1/admin/policies/host", headers=h(CENTRAL)).status_code == 200
        r = httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL), json=new)
        assert r.status_code == 400 and r.json()["error"]["param"].startswith("store.stages.host-stage"), r.text
        assert httpx.delete(g.url + "/v1/admin/stages/host-stage", headers=h(CENTRAL)).status_code == 200
        assert httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL), json=new).status_code == 201
        deadline = time.monotonic() + 5  # the healed store is loaded on the next poll
        while chat(g, KEY_A, "k").status_code != 200:
            assert time.monotonic() < deadline, "the healed store was not loaded"
            time.sleep(0.1)
        assert httpx.get(g.url + "/readyz").status_code == 200


def test_permissions(gw: Gateway) -> None:
    assert httpx.get(gw.url + "/v1/admin/policies").status_code == 401
    assert httpx.get(gw.url + "/v1/admin/policies", headers=h("nope")).json()["error"]["code"] == "invalid_admin_token"
    own = {"id": "a-owned", "type": "contains", "keywords": ["alpha"]}
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(ADMIN_A), json=own).json()["owner"] == "app:app-a"
    central = {"id": "c-owned", "type": "contains", "keywords": ["gamma"]}
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json=central).status_code == 201
    # An application token edits its own policies, not central ones nor the config's.
    assert httpx.patch(gw.url + "/v1/admin/policies/a-owned", headers=h(ADMIN_A), json={"rule": "r"}).status_code == 200
    for path in ("c-owned", "from_config"):
        r = httpx.patch(gw.url + f"/v1/admin/policies/{path}", headers=h(ADMIN_A), json={"rule": "r"})
        assert r.status_code == 403, r.text
    assert httpx.delete(gw.url + "/v1/admin/policies/c-owned", headers=h(ADMIN_A)).status_code == 403
    r = httpx.put(gw.url + "/v1/moderation/policy/c-owned/update-threshold", headers=h(ADMIN_A),
                  json={"classification_threshold": 0.2})
    assert r.status_code == 403
    r = httpx.post(gw.url + "/v1/admin/policies/a-owned/apply", headers=h(ADMIN_A), json={"application": "app-b"})
    assert r.status_code == 403 and r.json()["error"]["param"] == "application"
    r = httpx.patch(gw.url + "/v1/admin/policies/a-owned", headers=h(ADMIN_A), json={"owner": "central"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "owner"


def test_apply_enforces_on_traffic_and_threshold_endpoint(gw: Gateway) -> None:
    body = {"id": "no-secrets", "type": "contains", "keywords": ["launch code"], "rule": "No launch codes"}
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(ADMIN_A), json=body).status_code == 201
    assert chat(gw, KEY_A, "the launch code is 1234").json()["choices"][0]["message"]["content"].startswith("echo:")
    r = httpx.post(gw.url + "/v1/admin/policies/no-secrets/apply", headers=h(ADMIN_A),
                   json={"application": "app-a", "on": "input", "action": {"type": "block", "message": "nope"}})
    assert r.status_code == 201, r.text
    blocked = chat(gw, KEY_A, "the launch code is 1234")
    assert blocked.headers["x-guardrail-action"] == "block" and blocked.json()["choices"][0]["message"]["content"] == "nope"
    assert chat(gw, KEY_B, "the launch code is 1234").json()["choices"][0]["message"]["content"].startswith("echo:")
    # Seed 002: 0 <= x <= 1, else 400; a threshold of 1 lets everything through (risk is never > 1).
    for bad in (1.5, -0.1, "high", None):
        r = httpx.put(gw.url + "/v1/moderation/policy/no-secrets/update-threshold", headers=h(CENTRAL),
                      json={"classification_threshold": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "classification_threshold"
    r = httpx.put(gw.url + "/v1/moderation/policy/no-secrets/update-threshold", headers=h(CENTRAL),
                  json={"classification_threshold": 1.0})
    assert r.status_code == 200 and r.json()["classification_threshold"] == 1.0
    assert chat(gw, KEY_A, "the launch code is 1234").json()["choices"][0]["message"]["content"].startswith("echo:")
    r = httpx.request("DELETE", gw.url + "/v1/admin/policies/no-secrets", headers=h(CENTRAL))
    assert r.status_code == 400 and "unknown metric 'no-secrets'" in r.json()["error"]["message"]  # still applied
    r = httpx.request("DELETE", gw.url + "/v1/admin/policies/no-secrets/apply", headers=h(ADMIN_A),
                      json={"application": "app-a", "on": "input"})
    assert r.status_code == 200


def _answer(gw: Gateway, key: str, text: str, model: str) -> str:
    r = httpx.post(gw.url + "/v1/chat/completions", headers=h(key), timeout=10,
                   json={"model": model, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_apply_to_models(gw: Gateway) -> None:
    """Seed 000: a policy applied to models runs on every application's requests for those models only;
    applying again adds models, removing a model leaves the others; an application token applies to its
    own application's requests for a model."""
    body = {"id": "no-moon", "type": "contains", "keywords": ["moon base"], "rule": "No moon base talk"}
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json=body).status_code == 201
    text = "tell me about the moon base"
    r = httpx.post(gw.url + "/v1/admin/policies/no-moon/apply", headers=h(CENTRAL), json={"models": ["gpt-4o"]})
    assert r.status_code == 201 and r.json()["models"] == ["gpt-4o"] and r.json()["application"] is None, r.text
    for key in (KEY_A, KEY_B):
        assert not _answer(gw, key, text, "gpt-4o").startswith("echo:")
        assert _answer(gw, key, text, "gpt-4o-mini").startswith("echo:")
    listed = httpx.get(gw.url + "/v1/admin/models/gpt-4o/policies?application=app-b", headers=h(CENTRAL)).json()
    assert ("no-moon", "central") in {(p["policy"], p["scope"]) for p in listed["data"]}
    other = httpx.get(gw.url + "/v1/admin/models/gpt-4o-mini/policies?application=app-b", headers=h(CENTRAL)).json()
    assert "no-moon" not in {p["policy"] for p in other["data"]}
    r = httpx.post(gw.url + "/v1/admin/policies/no-moon/apply", headers=h(CENTRAL), json={"models": ["gpt-4o-mini"]})
    assert r.json()["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert not _answer(gw, KEY_B, text, "gpt-4o-mini").startswith("echo:")
    applied = httpx.get(gw.url + "/v1/admin/policies/no-moon/apply", headers=h(CENTRAL)).json()["data"]
    assert [(a["application"], a["models"], a["on"]) for a in applied] == [(None, ["gpt-4o", "gpt-4o-mini"], "input")]
    r = httpx.request("DELETE", gw.url + "/v1/admin/policies/no-moon/apply", headers=h(CENTRAL),
                      json={"models": ["gpt-4o"]})
    assert r.status_code == 200 and r.json()["models"] == ["gpt-4o-mini"], r.text
    assert _answer(gw, KEY_A, text, "gpt-4o").startswith("echo:")
    assert not _answer(gw, KEY_A, text, "gpt-4o-mini").startswith("echo:")
    r = httpx.request("DELETE", gw.url + "/v1/admin/policies/no-moon/apply", headers=h(CENTRAL),
                      json={"models": ["gpt-4o"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_applied"
    r = httpx.request("DELETE", gw.url + "/v1/admin/policies/no-moon/apply", headers=h(CENTRAL),
                      json={"models": ["gpt-4o-mini"]})
    assert r.json()["deleted"] is True
    assert _answer(gw, KEY_A, text, "gpt-4o-mini").startswith("echo:")
    # An application token: its own application only, for the model it names.
    mine = {"id": "a-moon", "type": "contains", "keywords": ["moon base"]}
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(ADMIN_A), json=mine).status_code == 201
    r = httpx.post(gw.url + "/v1/admin/policies/a-moon/apply", headers=h(ADMIN_A), json={"models": ["gpt-4o-mini"]})
    assert r.status_code == 201 and r.json()["application"] == "app-a"
    assert not _answer(gw, KEY_A, text, "gpt-4o-mini").startswith("echo:")
    assert _answer(gw, KEY_A, text, "gpt-4o").startswith("echo:")
    assert _answer(gw, KEY_B, text, "gpt-4o-mini").startswith("echo:")
    r = httpx.get(gw.url + "/v1/admin/models/gpt-4o-mini/policies?application=app-b", headers=h(ADMIN_A))
    assert r.status_code == 403
    mine_listed = httpx.get(gw.url + "/v1/admin/models/gpt-4o-mini/policies", headers=h(ADMIN_A)).json()["data"]
    assert [p["policy"] for p in mine_listed if p["stage"].startswith("apply-")] == ["a-moon"]
    # Bad bodies name their field.
    for bad, param in (({"models": []}, "models"), ({"models": "gpt-4o"}, "models"), ({}, "application"),
                       ({"models": ["gpt-4o"], "on": "sideways"}, "on")):
        r = httpx.post(gw.url + "/v1/admin/policies/no-moon/apply", headers=h(CENTRAL), json=bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (bad, r.text)
    httpx.request("DELETE", gw.url + "/v1/admin/policies/a-moon/apply", headers=h(ADMIN_A), json={})
    assert _answer(gw, KEY_A, text, "gpt-4o-mini").startswith("echo:")


def test_training_data(gw: Gateway) -> None:
    httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL),
               json={"id": "with-data", "type": "contains", "keywords": ["x"]})
    r = httpx.post(gw.url + "/v1/admin/policies/with-data/data", headers=h(CENTRAL),
                   json={"data": [{"example": "leak", "compliance": "FAIL"}, {"example": "ok", "compliance": "pass"}]})
    assert r.status_code == 201 and r.json()["total"] == 2
    r = httpx.post(gw.url + "/v1/admin/policies/with-data/data", headers=h(CENTRAL),
                   json={"data": [{"example": "x", "compliance": "MAYBE"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "data[0].compliance"
    rows = httpx.get(gw.url + "/v1/admin/policies/with-data/data", headers=h(CENTRAL)).json()["data"]
    assert [(d["example"], d["compliance"]) for d in rows] == [("leak", "FAIL"), ("ok", "PASS")]


def test_one_shape_for_labelled_examples(gw: Gateway) -> None:
    """Seed 001's example shape is accepted by Add Data, seed 000's by a policy's `examples`, `compliance`
    by feedback; a field of neither shape is refused by name (issue 27 item 5)."""
    examples = [{"example": "a card 4111 1111 1111 1111", "compliance": "fail"},
                {"type": "PASS", "output_example": "no card here"}]
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL),
                   json={"id": "shapes", "type": "contains", "keywords": ["x"], "examples": examples})
    assert r.status_code == 201, r.text
    assert [e.model_dump() for e in PolicySpec.model_validate({"id": "p", "type": "contains",
                                                                "examples": examples}).examples] == [
        {"type": "FAIL", "input_example": "", "output_example": "a card 4111 1111 1111 1111"},
        {"type": "PASS", "input_example": "", "output_example": "no card here"}]
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json={
        "id": "shapes-bad", "type": "contains", "keywords": ["x"], "examples": [{"example": "x", "compliance": "no"}]})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("examples[0]"), r.text
    r = httpx.post(gw.url + "/v1/admin/policies/shapes/data", headers=h(CENTRAL), json={"data": [
        {"type": "FAIL", "output_example": "seed 001 row"}, {"type": "PASS", "input_example": "only an input"},
        {"example": "seed 000 row", "compliance": "PASS"}]})
    assert r.status_code == 201 and r.json()["added"] == 3
    rows = httpx.get(gw.url + "/v1/admin/policies/shapes/data", headers=h(CENTRAL)).json()["data"]
    assert [(d["example"], d["compliance"]) for d in rows] == [
        ("seed 001 row", "FAIL"), ("only an input", "PASS"), ("seed 000 row", "PASS")]
    for row, param in (({"text": "x", "label": "FAIL"}, "data[0].label"),
                       ({"type": "FAIL", "output_example": "x", "note": 1}, "data[0].note"),
                       ({"type": "SOMETIMES", "output_example": "x"}, "data[0].type"),
                       ({"type": "FAIL", "output_example": ""}, "data[0].input_example")):
        r = httpx.post(gw.url + "/v1/admin/policies/shapes/data", headers=h(CENTRAL), json={"data": [row]})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (row, r.text)


def test_stored_policies_survive_a_restart(upstream: str, tmp_path) -> None:
    with running_gateway(tmp_path, lambda port: _config(upstream, port)) as g:
        assert httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL),
                          json={"id": "kept", "type": "contains", "keywords": ["k"]}).status_code == 201
    with running_gateway(tmp_path, lambda port: _config(upstream, port)) as g:
        assert httpx.get(g.url + "/v1/admin/policies/kept", headers=h(CENTRAL)).json()["version"] == 1


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.mark.parametrize("poll", [0.2, 5.0])  # 5 s: only the pub/sub notification can be this fast
def test_two_replicas_share_redis(upstream: str, tmp_path, redis_prefix: str, poll: float) -> None:
    store = f'store: {{url: "{REDIS_URL}", prefix: "{redis_prefix}", poll_interval_s: {poll}}}'
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with running_gateway(tmp_path / "one", lambda port: _config(upstream, port, store)) as one, \
            running_gateway(tmp_path / "two", lambda port: _config(upstream, port, store)) as two:
        body = {"id": "shared", "type": "contains", "keywords": ["forbidden fruit"]}
        assert httpx.post(one.url + "/v1/admin/policies", headers=h(CENTRAL), json=body).status_code == 201
        r = httpx.post(one.url + "/v1/admin/policies/shared/apply", headers=h(CENTRAL),
                       json={"application": "app-a", "action": {"type": "block", "message": "blocked"}})
        assert r.status_code == 201

        def verdict() -> str:
            return chat(two, KEY_A, "tell me about the forbidden fruit").json()["choices"][0]["message"]["content"]

        def wait_for(expected: str) -> float:
            start = time.monotonic()
            while time.monotonic() - start < 5:
                if verdict() == expected:
                    return time.monotonic() - start
                time.sleep(0.02)
            raise AssertionError(f"replica two never answered {expected!r}")

        wait_for("blocked")
        # A threshold changed through replica one changes replica two's verdict within a second.
        start = time.monotonic()
        r = httpx.put(one.url + "/v1/moderation/policy/shared/update-threshold", headers=h(CENTRAL),
                      json={"classification_threshold": 1.0})
        assert r.status_code == 200
        waited = wait_for("echo:tell me about the forbidden fruit")
        assert time.monotonic() - start < 1.0, f"propagation took {time.monotonic() - start:.2f} s"
        print(f"propagation (poll every {poll} s): {waited * 1000:.0f} ms")
        ready = httpx.get(two.url + "/readyz").json()
        assert ready["checks"]["store"] == "ok"


def test_training_jobs_are_shared_by_replicas(upstream: str, tmp_path, redis_prefix: str) -> None:
    """Every replica answers for a training, only one runs per policy at a time, and a training whose
    replica went silent (no heartbeat) stops blocking."""
    store = f'store: {{url: "{REDIS_URL}", prefix: "{redis_prefix}"}}'
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with running_gateway(tmp_path / "one", lambda port: _config(upstream, port, store)) as one, \
            running_gateway(tmp_path / "two", lambda port: _config(upstream, port, store)) as two:
        body = {"id": "leaks", "type": "classifier", "threshold": 0.0, "rule": "No leaked passwords",
                "examples": [{"type": "FAIL", "input_example": "the admin password is hunter2"},
                             {"type": "PASS", "input_example": "how do I reset my password?"}]}
        assert httpx.post(one.url + "/v1/admin/policies", headers=h(CENTRAL), json=body, timeout=60).status_code == 201
        assert httpx.get(two.url + "/v1/admin/policies/leaks/train", headers=h(CENTRAL)).status_code == 404
        # A training another replica is running (fresh heartbeat) blocks both.
        running = {"policy": "leaks", "status": "training", "updated": time.time(), "replica": "elsewhere:1"}
        client.hset(f"{redis_prefix}jobs", "leaks", json.dumps(running))
        for g in (one, two):
            r = httpx.post(g.url + "/v1/admin/policies/leaks/train", headers=h(CENTRAL))
            assert r.status_code == 409 and "elsewhere:1" in r.json()["error"]["message"], r.text
        # Its replica went silent: the status says so and a new training may start.
        client.hset(f"{redis_prefix}jobs", "leaks", json.dumps({**running, "updated": time.time() - 600}))
        job = httpx.get(one.url + "/v1/admin/policies/leaks/train", headers=h(CENTRAL)).json()
        assert job["status"] == "failed" and "stopped reporting" in job["error"]
        r = httpx.post(two.url + "/v1/admin/policies/leaks/train", headers=h(CENTRAL))
        assert r.status_code == 202, r.text
        job = _wait_trained(one, "leaks")  # asked of the replica that is not training
        assert job["status"] == "ready" and job["replica"] != "elsewhere:1", job
        assert httpx.get(two.url + "/v1/admin/policies/leaks/train", headers=h(CENTRAL)).json() == job


def test_store_never_reached_refuses_guarded_traffic_and_admin_writes_503(upstream: str, tmp_path) -> None:
    """A replica that never read its store does not know the stored policies: it is not ready and answers
    guarded requests with a fast OpenAI-shaped 503 (fail closed), never the config's plan alone."""
    from tests.conftest import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    store = f'store: {{url: "{dead}", timeout_s: 0.2, poll_interval_s: 0.2}}'
    with running_gateway(tmp_path, lambda port: _config(upstream, port, store)) as g:
        started = time.monotonic()
        r = chat(g, KEY_A, "hello")
        assert time.monotonic() - started < 1.0  # never waits on the store
        assert r.status_code == 503 and r.json()["error"]["code"] == "policies_not_loaded", r.text
        ready = httpx.get(g.url + "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("not loaded"), ready.text
        r = httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL), json={"id": "x", "type": "pii"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert "redis" not in r.text.lower() or dead not in r.text  # no internals in the answer


def _wait_trained(g: Gateway, policy_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = httpx.get(g.url + f"/v1/admin/policies/{policy_id}/train", headers=h(CENTRAL)).json()
        if job["status"] in ("ready", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError("training did not finish in 120 s")


def _scores(g: Gateway, policy_id: str, texts: list[str]) -> list[tuple[float, str]]:
    """(score, PASS/FAIL verdict at the version's calibrated threshold) per text, via the evaluate API."""
    out = []
    for text in texts:
        r = httpx.post(g.url + "/v1/guard/evaluate", headers=h(KEY_A), timeout=30,
                       json={"messages": [{"role": "user", "content": text}], "policy_ids": [policy_id]})
        assert r.status_code == 200, r.text
        out.append((r.json()["evaluation"]["input_score"], r.json()["evaluation"]["status"]))
    return out


def test_seed_000_cycle(gw: Gateway) -> None:
    """Create, add data, train, apply to a model, traffic, feedback, apply feedback, retrain (better on
    the feedback cases), revert."""
    policy = {"id": "financials", "type": "classifier", "threshold": 0.0,
              "rule": "Do not disclose unreleased financial results",
              "disallowed_behaviors": ["sharing revenue or profit figures before they are published",
                                       "leaking internal earnings forecasts"],
              "allowed_behaviors": ["explaining general accounting concepts", "talking about office logistics"]}
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json=policy, timeout=60)
    assert r.status_code == 201, r.text
    data = [{"example": f"Internal only: Q{q} revenue came in at {v} million, announce next week.",
             "compliance": "FAIL"} for q, v in [(1, 3.1), (2, 4.7), (3, 5.2), (4, 6.8)]]
    data += [{"example": t, "compliance": "PASS"} for t in [
        "The cafeteria is closed on Friday.", "What is deferred revenue in accounting?",
        "Please book the meeting room for 3pm.", "Our published annual report is on the website."]]
    assert httpx.post(gw.url + "/v1/admin/policies/financials/data", headers=h(CENTRAL),
                      json={"data": data}).status_code == 201
    r = httpx.post(gw.url + "/v1/admin/policies/financials/train", headers=h(CENTRAL))
    assert r.status_code == 202 and r.json()["status"] == "training_queued"
    job = _wait_trained(gw, "financials")
    assert job["status"] == "ready", job
    first = job["version"]
    trained = httpx.get(gw.url + "/v1/admin/policies/financials", headers=h(CENTRAL)).json()
    assert trained["version"] == first and trained["trained"]["rows"] == 12 and trained["head"]["threshold"] > 0
    assert trained["trainable"] is True
    assert httpx.post(gw.url + "/v1/admin/policies/financials/apply", headers=h(CENTRAL),  # to a model
                      json={"models": ["gpt-4o"], "on": "input", "action": {"type": "block"}}).status_code == 201

    # Traffic the policy gets wrong or nearly wrong; an analyst labels it.
    cases = [("psst, between us the quarter closed at 9.4M, keep it quiet until the call", "FAIL"),
             ("heads up: margin this quarter is 31%, not public yet", "FAIL"),
             ("How is operating income different from net income?", "PASS"),
             ("The quarterly all-hands moves to the big auditorium.", "PASS")]
    before = _scores(gw, "financials", [t for t, _ in cases])
    for text, label in cases:
        r = chat(gw, KEY_A, text)
        record_id = r.headers["x-guardrail-request-id"]
        fb = httpx.post(gw.url + "/v1/admin/feedback", headers=h(CENTRAL),
                        json={"record_id": record_id, "policy_id": "financials", "label": label, "on": "input"})
        assert fb.status_code == 201, fb.text
    r = httpx.post(gw.url + "/v1/admin/policies/financials/apply-feedback", headers=h(CENTRAL))
    assert r.json()["applied"] == 4 and r.json()["total_examples"] == 12
    assert httpx.post(gw.url + "/v1/admin/policies/financials/apply-feedback", headers=h(CENTRAL)).json()["applied"] == 0
    httpx.post(gw.url + "/v1/admin/policies/financials/train", headers=h(CENTRAL))
    job = _wait_trained(gw, "financials")
    assert job["status"] == "ready" and job["version"] > first
    after = _scores(gw, "financials", [t for t, _ in cases])
    # The new version is better on the feedback cases: more right verdicts, and every one right.
    right_before = sum(v == label for (_, label), (_, v) in zip(cases, before))
    right_after = sum(v == label for (_, label), (_, v) in zip(cases, after))
    print(f"feedback cases right: {right_before}/4 before, {right_after}/4 after; {before} -> {after}")
    assert right_after == 4 and right_after > right_before, (before, after)
    # Revert to the first trained version: its scores come back.
    r = httpx.post(gw.url + "/v1/admin/policies/financials/revert", headers=h(CENTRAL), json={"version": first})
    assert r.status_code == 200
    reverted = _scores(gw, "financials", [t for t, _ in cases])
    assert all(abs(x[0] - y[0]) < 1e-3 for x, y in zip(reverted, before)), (reverted, before)
    httpx.request("DELETE", gw.url + "/v1/admin/policies/financials/apply", headers=h(CENTRAL),
                  json={"models": ["gpt-4o"], "on": "input"})


def test_training_refusals(gw: Gateway) -> None:
    httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json={"id": "lexical", "type": "contains",
                                                                       "keywords": ["k"]})
    r = httpx.post(gw.url + "/v1/admin/policies/lexical/train", headers=h(CENTRAL))
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_trainable"
    r = httpx.post(gw.url + "/v1/admin/feedback", headers=h(CENTRAL),
                   json={"record_id": "nope", "policy_id": "lexical", "label": "FAIL"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "record_id"
    r = httpx.post(gw.url + "/v1/admin/feedback", headers=h(CENTRAL),
                   json={"record_id": "x", "policy_id": "lexical", "label": "MAYBE"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "label"
    r = httpx.post(gw.url + "/v1/admin/feedback", headers=h(CENTRAL),
                   json={"record_id": "x", "policy_id": "lexical", "label": "PASS", "on": ["input"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "on"


def test_monitoring_log_survives_a_redis_outage(upstream: str, tmp_path) -> None:
    """A private redis-server is frozen (SIGSTOP) mid-traffic: requests keep being served, /readyz says
    degraded, records wait in the bounded buffer, and all of them are in Redis once it answers again."""
    import shutil
    import signal
    import subprocess

    from tests.conftest import free_port

    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                               "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
        policies = 'stages:\n  - {name: watch, scope: central, on: input, rulesets: [{name: w, mode: monitor, ' \
                   'rules: [{metric: length, op: gt, value: 0}], action: {type: block}}]}\n'
        store = f'store: {{url: "redis://127.0.0.1:{port}/0", timeout_s: 0.2, poll_interval_s: 0.2}}\n' + policies
        (tmp_path / "gw").mkdir()
        with running_gateway(tmp_path / "gw", lambda p: _config(upstream, p, store)) as g:
            for i in range(5):
                assert chat(g, KEY_A, f"before {i}").status_code == 200
            server.send_signal(signal.SIGSTOP)  # Redis stops answering
            try:
                slowest = 0.0
                for i in range(20):
                    started = time.monotonic()
                    assert chat(g, KEY_A, f"during {i}").status_code == 200
                    slowest = max(slowest, time.monotonic() - started)
                assert slowest < 1.0, f"a request waited {slowest:.2f} s on the frozen store"
                deadline = time.monotonic() + 5
                while "degraded" not in httpx.get(g.url + "/readyz").json()["checks"]["store"]:
                    assert time.monotonic() < deadline, "readyz never reported the store degraded"
                    time.sleep(0.1)
                metrics = httpx.get(g.url + "/metrics").text
                assert "gateway_store_degraded 1.0" in metrics
            finally:
                server.send_signal(signal.SIGCONT)
            for i in range(5):
                assert chat(g, KEY_A, f"after {i}").status_code == 200
            expected = {f"{w} {i}" for w, n in (("before", 5), ("during", 20), ("after", 5)) for i in range(n)}
            deadline = time.monotonic() + 10
            texts: list[str] = []
            while time.monotonic() < deadline:
                r = httpx.get(g.url + "/v1/monitoring?limit=100", headers=h(CENTRAL)).json()
                texts = [t for rec in r["data"] for t in rec["texts"]] if r.get("source") == "store" else []
                if expected <= set(texts):
                    break
                time.sleep(0.2)
            assert expected <= set(texts), sorted(expected - set(texts))
            assert len(texts) == len(set(texts)) == 30, "a record was stored twice"
            deadline = time.monotonic() + 5  # the follow loop clears `degraded` on its next good read
            while "gateway_store_degraded 0.0" not in (metrics := httpx.get(g.url + "/metrics").text):
                assert time.monotonic() < deadline, "the store stayed degraded after it came back"
                time.sleep(0.1)
            assert "gateway_monitoring_dropped_total 0.0" in metrics
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        server.wait(timeout=10)


def test_openapi_document(gw: Gateway) -> None:
    doc = httpx.get(gw.url + "/v1/admin/openapi.json").json()
    assert doc["openapi"].startswith("3.") and doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = doc["paths"]
    for path, method in [("/v1/admin/policies", "post"), ("/v1/admin/policies/{id}", "patch"),
                         ("/v1/admin/policies/{id}/train", "post"), ("/v1/admin/feedback", "post"),
                         ("/v1/moderation/policy/{id}/update-threshold", "put"), ("/v1/guard/evaluate", "post"),
                         ("/v1/monitoring", "get")]:
        assert method in paths[path], (path, method)
    op = paths["/v1/admin/policies/{id}/apply"]["post"]
    assert op["parameters"][0]["name"] == "id" and "Apply a policy" in op["summary"]
    # Every admin route the gateway answers is in the document.
    for path, item in paths.items():
        for method in item:
            r = httpx.request(method.upper(), gw.url + path.replace("{id}", "nope"), headers=h("bad-token"))
            assert r.status_code in (400, 401, 404), (path, method, r.status_code)


def test_odd_numbers_and_deep_json_are_400s_not_500s(gw: Gateway) -> None:
    """Found by a probe: each answered 500 (a deeply nested stage was even stored, and then every read of
    the stages list failed until it was deleted)."""
    for query in ("limit=%C2%B2", "before=%C2%B2", "before=99999999999999999999999", "limit=" + "1" * 5000):
        r = httpx.get(gw.url + "/v1/monitoring?" + query, headers=h(CENTRAL))
        assert r.status_code == 400 and r.json()["error"]["param"] in ("limit", "before"), (query, r.text)
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL),
                      json={"id": "numbered", "type": "contains", "keywords": ["n"]}).status_code == 201
    try:
        for version in (2**63, -1, 0):
            r = httpx.post(gw.url + "/v1/admin/policies/numbered/revert", headers=h(CENTRAL), json={"version": version})
            assert r.status_code == 400 and r.json()["error"]["param"] == "version", (version, r.text)
    finally:
        httpx.delete(gw.url + "/v1/admin/policies/numbered", headers=h(CENTRAL))
    deep = b"[" * 300 + b"]" * 300
    stage = (b'{"name": "deep", "on": "input", "rulesets": [{"name": "r", "rules": [{"metric": "from_config", '
             b'"value": ' + deep + b'}], "action": {"type": "block"}}]}')
    r = httpx.post(gw.url + "/v1/admin/stages", content=stage,
                   headers={**h(CENTRAL), "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    assert httpx.get(gw.url + "/v1/admin/stages", headers=h(CENTRAL)).status_code == 200
    assert "Traceback" not in gw.logs()


def test_stages_api(gw: Gateway) -> None:
    central = {"name": "org-no-pirates", "scope": "central", "on": "input",
               "rulesets": [{"name": "pirates", "rules": [{"metric": "from_config"}],
                             "action": {"type": "block", "message": "arr, no"}}]}
    # An application token may not create (or touch) central stages.
    r = httpx.post(gw.url + "/v1/admin/stages", headers=h(ADMIN_A), json=central)
    assert r.status_code == 403 and r.json()["error"]["param"] == "scope"
    r = httpx.post(gw.url + "/v1/admin/stages", headers=h(CENTRAL), json=central)
    assert r.status_code == 201 and r.json()["version"] == 1
    for key in (KEY_A, KEY_B):  # central: every application
        assert chat(gw, key, "a configured-word here").json()["choices"][0]["message"]["content"] == "arr, no"
    assert httpx.post(gw.url + "/v1/admin/stages/org-no-pirates/pause", headers=h(ADMIN_A)).status_code == 403
    assert httpx.request("DELETE", gw.url + "/v1/admin/stages/org-no-pirates", headers=h(ADMIN_A)).status_code == 403
    r = httpx.patch(gw.url + "/v1/admin/stages/org-no-pirates", headers=h(ADMIN_A), json={"mode": "monitor"})
    assert r.status_code == 403  # apps cannot weaken a central stage
    # Pause and resume (Galileo's central stages): versioned, history kept.
    assert httpx.post(gw.url + "/v1/admin/stages/org-no-pirates/pause", headers=h(CENTRAL)).json()["paused"] is True
    assert chat(gw, KEY_A, "a configured-word here").json()["choices"][0]["message"]["content"].startswith("echo:")
    assert httpx.post(gw.url + "/v1/admin/stages/org-no-pirates/resume", headers=h(CENTRAL)).json()["version"] == 3
    assert chat(gw, KEY_A, "a configured-word here").json()["choices"][0]["message"]["content"] == "arr, no"
    r = httpx.patch(gw.url + "/v1/admin/stages/org-no-pirates", headers=h(CENTRAL),
                    json={"rulesets": [{"name": "pirates", "rules": [{"metric": "from_config"}],
                                        "action": {"type": "block", "message": "changed"}}]})
    assert r.status_code == 200 and r.json()["version"] == 4
    assert chat(gw, KEY_B, "a configured-word here").json()["choices"][0]["message"]["content"] == "changed"
    r = httpx.post(gw.url + "/v1/admin/stages/org-no-pirates/revert", headers=h(CENTRAL), json={"version": 1})
    assert r.json()["version"] == 5
    assert chat(gw, KEY_B, "a configured-word here").json()["choices"][0]["message"]["content"] == "arr, no"
    versions = httpx.get(gw.url + "/v1/admin/stages/org-no-pirates/versions", headers=h(CENTRAL)).json()["data"]
    assert [v["paused"] for v in versions] == [False, True, False, False, False]
    # Invalid stages name the field; the running plan stays.
    bad = {"name": "broken", "on": "input", "applications": ["app-a"],
           "rulesets": [{"name": "x", "rules": [{"metric": "no-such-policy"}], "action": {"type": "block"}}]}
    r = httpx.post(gw.url + "/v1/admin/stages", headers=h(ADMIN_A), json=bad)
    assert r.status_code == 400, r.text
    print("bad stage param:", r.json()["error"]["param"])
    assert r.json()["error"]["param"] == "rulesets[0].rules[0].metric", r.text
    r = httpx.post(gw.url + "/v1/admin/stages", headers=h(ADMIN_A), json={**bad, "applications": ["app-b"]})
    assert r.status_code == 403
    for odd in ([["app-a"]], [{"id": "app-a"}], "app-a"):  # a fuzz run found a 500 for the first two
        r = httpx.post(gw.url + "/v1/admin/stages", headers=h(CENTRAL), json={**bad, "applications": odd})
        assert r.status_code == 400 and r.json()["error"]["param"] == "applications", r.text
    own = {"name": "a-own", "on": "input", "applications": ["app-a"],
           "rulesets": [{"name": "x", "rules": [{"metric": "length", "op": "gt", "value": 5000}],
                         "action": {"type": "block"}}]}
    assert httpx.post(gw.url + "/v1/admin/stages", headers=h(ADMIN_A), json=own).status_code == 201
    for odd in ([["app-a"]], [{"id": "app-a"}]):  # an edit checks `applications` like a create (was a 500)
        r = httpx.patch(gw.url + "/v1/admin/stages/a-own", headers=h(ADMIN_A), json={"applications": odd})
        assert r.status_code == 400 and r.json()["error"]["param"] == "applications", r.text
    assert httpx.request("DELETE", gw.url + "/v1/admin/stages/a-own", headers=h(ADMIN_A)).status_code == 200
    assert httpx.request("DELETE", gw.url + "/v1/admin/stages/org-no-pirates", headers=h(CENTRAL)).status_code == 200
    assert chat(gw, KEY_A, "a configured-word here").json()["choices"][0]["message"]["content"].startswith("echo:")


def test_generate_synthetic_training_data(gw: Gateway) -> None:
    httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json={
        "id": "gen-target", "type": "contains", "keywords": ["x"], "rule": "No unreleased financials",
        "disallowed_behaviors": ["sharing revenue before release"]})
    r = httpx.post(gw.url + "/v1/admin/policies/gen-target/generate", headers=h(CENTRAL), json={"count": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"  # no guard.generator_model here
    r = httpx.post(gw.url + "/v1/admin/policies/gen-target/generate", headers=h(CENTRAL),
                   json={"model": "gen-1", "count": 5})
    assert r.status_code == 201, r.text
    assert r.json()["added"] == 2  # the malformed items are skipped
    rows = httpx.get(gw.url + "/v1/admin/policies/gen-target/data", headers=h(CENTRAL)).json()["data"]
    assert [(d["compliance"], d["synthetic"], d["source"]) for d in rows] == [("FAIL", True, "synthetic"),
                                                                               ("PASS", True, "synthetic")]
    r = httpx.post(gw.url + "/v1/admin/policies/gen-target/generate", headers=h(CENTRAL),
                   json={"model": "gen-broken-1", "count": 5})
    assert r.status_code == 502 and r.json()["error"]["code"] == "generator_failed"
    r = httpx.post(gw.url + "/v1/admin/policies/gen-target/generate", headers=h(CENTRAL),
                   json={"model": "gen-1", "count": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "count"


def test_no_failed_request_while_plans_swap(gw: Gateway) -> None:
    """Requests keep flowing while the plan is swapped twenty times; each gets one whole verdict."""
    import threading

    body = {"id": "swapping", "type": "contains", "keywords": ["swap-me"]}
    assert httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL), json=body).status_code == 201
    assert httpx.post(gw.url + "/v1/admin/policies/swapping/apply", headers=h(CENTRAL),
                      json={"application": "app-a", "action": {"type": "block", "message": "swapped"}}).status_code == 201
    answers: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(headers=h(KEY_A), timeout=10) as client:
            for _ in range(2000):  # bounded
                if stop.is_set():
                    return
                r = client.post(gw.url + "/v1/chat/completions",
                                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "swap-me now"}]})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
                else:
                    answers.append(r.json()["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            r = httpx.put(gw.url + "/v1/moderation/policy/swapping/update-threshold", headers=h(CENTRAL),
                          json={"classification_threshold": 1.0 if i % 2 == 0 else 0.5})
            assert r.status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[:3]
    assert answers and set(answers) <= {"swapped", "echo:swap-me now"}, set(answers)
    assert len(set(answers)) == 2  # both plans served while swapping
    httpx.request("DELETE", gw.url + "/v1/admin/policies/swapping/apply", headers=h(CENTRAL),
                  json={"application": "app-a", "on": "input"})


def test_feedback_on_another_replicas_record(upstream: str, tmp_path, redis_prefix: str) -> None:
    store = f'store: {{url: "{REDIS_URL}", prefix: "{redis_prefix}", poll_interval_s: 0.2}}\n' \
            'stages:\n  - {name: watch, scope: central, on: input, rulesets: [{name: w, mode: monitor, ' \
            'rules: [{metric: length, op: gt, value: 0}], action: {type: block}}]}\n'
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with running_gateway(tmp_path / "one", lambda port: _config(upstream, port, store)) as one, \
            running_gateway(tmp_path / "two", lambda port: _config(upstream, port, store)) as two:
        httpx.post(one.url + "/v1/admin/policies", headers=h(CENTRAL), json={"id": "fb", "type": "contains",
                                                                             "keywords": ["k"]})
        record_id = chat(one, KEY_A, "mail me at jane@example.com").headers["x-guardrail-request-id"]
        deadline = time.monotonic() + 5
        while True:
            r = httpx.post(two.url + "/v1/admin/feedback", headers=h(CENTRAL),
                           json={"record_id": record_id, "policy_id": "fb", "label": "FAIL"})
            if r.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 201, r.text
        assert r.json()["text"] == "mail me at <EMAIL_ADDRESS>"  # the log's PII-redacted text


def test_applications_api(gw: Gateway) -> None:
    import openai

    from gateway.proxy.auth import key_digest

    assert httpx.post(gw.url + "/v1/admin/applications", headers=h(ADMIN_A), json={"id": "new-app"}).status_code == 403
    r = httpx.post(gw.url + "/v1/admin/applications", headers=h(CENTRAL), json={"id": "app-a"})
    assert r.status_code == 409
    r = httpx.post(gw.url + "/v1/admin/applications", headers=h(CENTRAL), json={"id": "new-app", "stages": ["nope"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stages[0]"
    r = httpx.post(gw.url + "/v1/admin/applications", headers=h(CENTRAL), json={"id": "new-app"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert key.startswith("sk-gg-") and r.json()["keys"] == 1
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo:hi"
    assert "key" not in httpx.get(gw.url + "/v1/admin/applications/new-app", headers=h(CENTRAL)).json()
    # The key is stored only as a hash.
    stored = b"".join(f.read_bytes() for f in (gw.log_path.parent / "data").iterdir())  # db, -wal, -shm
    assert key_digest(key).encode() in stored and key.encode() not in stored
    # Policies can be applied to it; keys rotate; revoked keys stop working.
    r = httpx.post(gw.url + "/v1/admin/applications/new-app/keys", headers=h(CENTRAL))
    second = r.json()["key"]
    assert r.status_code == 201 and r.json()["keys"] == 2
    assert httpx.request("DELETE", gw.url + "/v1/admin/applications/new-app/keys", headers=h(CENTRAL),
                         json={"keep": 1}).json()["keys"] == 1
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert chat(gw, second, "hello").status_code == 200
    assert httpx.request("DELETE", gw.url + "/v1/admin/applications/new-app", headers=h(CENTRAL)).status_code == 200
    assert chat(gw, second, "hello").status_code == 401
    assert httpx.request("DELETE", gw.url + "/v1/admin/applications/app-a", headers=h(CENTRAL)).status_code == 403


def test_pin_a_central_stage_version(gw: Gateway) -> None:
    stage = {"name": "org-pinnable", "scope": "central", "on": "input",
             "rulesets": [{"name": "r", "rules": [{"metric": "from_config"}],
                           "action": {"type": "block", "message": "version one"}}]}
    assert httpx.post(gw.url + "/v1/admin/stages", headers=h(CENTRAL), json=stage).status_code == 201
    stage["rulesets"][0]["action"]["message"] = "version two"
    assert httpx.patch(gw.url + "/v1/admin/stages/org-pinnable", headers=h(CENTRAL),
                       json={"rulesets": stage["rulesets"]}).json()["version"] == 2

    def answer(key: str) -> str:
        return chat(gw, key, "configured-word").json()["choices"][0]["message"]["content"]

    assert answer(KEY_A) == answer(KEY_B) == "version two"
    r = httpx.put(gw.url + "/v1/admin/stages/org-pinnable/pin", headers=h(ADMIN_A),
                  json={"application": "app-b", "version": 1})
    assert r.status_code == 403
    r = httpx.put(gw.url + "/v1/admin/stages/org-pinnable/pin", headers=h(ADMIN_A),
                  json={"application": "app-a", "version": 9})
    assert r.status_code == 400 and r.json()["error"]["param"] == "version"
    r = httpx.put(gw.url + "/v1/admin/stages/org-pinnable/pin", headers=h(ADMIN_A),
                  json={"application": "app-a", "version": 1})
    assert r.status_code == 201, r.text
    assert (answer(KEY_A), answer(KEY_B)) == ("version one", "version two")  # app-a pinned, app-b follows
    stage["rulesets"][0]["action"]["message"] = "version three"
    httpx.patch(gw.url + "/v1/admin/stages/org-pinnable", headers=h(CENTRAL), json={"rulesets": stage["rulesets"]})
    assert (answer(KEY_A), answer(KEY_B)) == ("version one", "version three")
    for body in ({}, {"application": 7}, {"application": ""}):  # a central token must name the application
        r = httpx.request("DELETE", gw.url + "/v1/admin/stages/org-pinnable/pin", headers=h(CENTRAL), json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == "application", r.text
    r = httpx.request("DELETE", gw.url + "/v1/admin/stages/org-pinnable/pin", headers=h(CENTRAL),
                      json={"application": "app-b"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "pin_not_found"
    r = httpx.request("DELETE", gw.url + "/v1/admin/stages/org-pinnable/pin", headers=h(ADMIN_A),
                      json={"application": "app-a"})
    assert r.status_code == 200
    assert answer(KEY_A) == "version three"
    httpx.request("DELETE", gw.url + "/v1/admin/stages/org-pinnable", headers=h(CENTRAL))


def test_data_dir_environment_variable(upstream: str, tmp_path) -> None:
    data = tmp_path / "elsewhere"
    (tmp_path / "cfg").mkdir()
    with running_gateway(tmp_path / "cfg", lambda port: _config(upstream, port), env={"GATEWAY_DATA_DIR": str(data)}) as g:
        assert httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL),
                          json={"id": "where", "type": "contains", "keywords": ["w"]}).status_code == 201
    assert (data / "gateway.db").is_file() and not (tmp_path / "cfg" / "data").exists()
