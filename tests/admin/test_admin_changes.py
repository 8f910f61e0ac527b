"""G18: `GET /v1/admin/changes` (the change feed across policies, stages, applications and pins) and
`GET /v1/admin/jobs` (the training jobs), in process (tests/inprocess.py) on SQLite and the real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path

import pytest

from tests.inprocess import in_process
from tests.redisutil import drop_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"
CENTRAL = {"authorization": "Bearer adm"}
APP_A = {"authorization": "Bearer adm-a"}
APP_B = {"authorization": "Bearer adm-b"}
FIELDS = {"object", "seq", "kind", "id", "version", "action", "author", "created", "note", "owner"}


def _config(store: str) -> str:
    return ("upstreams: [{name: u, base_url: 'http://127.0.0.1:9', models: ['*']}]\n"
            "admin:\n  tokens: [{token: adm, role: central}, {token: adm-a, role: 'app:a'}, "
            "{token: adm-b, role: 'app:b'}]\n"
            "applications: [{id: a, keys: [key-a]}, {id: b, keys: [key-b]}]\n" + store)


def _run(tmp_path: Path, backend: str, test) -> None:
    prefix = f"test-g18-{uuid.uuid4().hex[:10]}:"
    store = f"store: {{url: '{REDIS_URL}', prefix: '{prefix}'}}\n" if backend == "redis" else ""

    async def go() -> None:
        async with in_process(_config(store), tmp_path) as (app, client):
            await test(client, app._registry.store)
    try:
        asyncio.run(go())
    finally:
        if backend == "redis":
            drop_prefix(REDIS_URL, prefix)


def _keys(answer) -> list[tuple[str, str, int, str]]:
    return [(c["kind"], c["id"], c["version"], c["action"]) for c in answer.json()["data"]]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_change_feed(tmp_path: Path, backend: str) -> None:
    async def test(c, _) -> None:
        policy = {"id": "p1", "type": "contains", "keywords": ["x"]}
        assert (await c.post("/v1/admin/policies", headers=CENTRAL, json=policy)).status_code == 201
        mine = {"id": "pa", "type": "contains", "keywords": ["y"]}
        assert (await c.post("/v1/admin/policies", headers=APP_A, json=mine)).status_code == 201
        since = time.time()
        await asyncio.sleep(0.01)
        r = await c.patch("/v1/admin/policies/p1", headers=CENTRAL, json={"keywords": ["z"], "note": "wider"})
        assert r.status_code == 200, r.text
        stage = {"name": "sa", "on": "input", "applications": ["a"], "rulesets": [{"name": "r", "action": {"type": "block"},
                                                                                   "rules": [{"metric": "pa"}]}]}
        r = await c.post("/v1/admin/stages", headers=APP_A, json=stage)
        assert r.status_code == 201, r.text
        r = await c.post("/v1/admin/applications", headers=CENTRAL, json={"id": "new-app"})
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        assert (await c.delete("/v1/admin/policies/p1", headers=CENTRAL)).status_code == 200

        r = await c.get("/v1/admin/changes", headers=CENTRAL)
        assert r.status_code == 200, r.text
        feed = r.json()["data"]
        assert _keys(r) == [("policy", "p1", 2, "delete"), ("application", "new-app", 1, "write"),
                            ("stage", "sa", 1, "write"), ("policy", "p1", 2, "write"), ("policy", "pa", 1, "write"),
                            ("policy", "p1", 1, "write")]
        assert all(set(item) == FIELDS for item in feed)  # metadata only: no body
        assert [i["author"] for i in feed] == ["central", "central", "app:a", "central", "app:a", "central"]
        assert [i["owner"] for i in feed] == ["central", "app:new-app", "app:a", "central", "app:a", "central"]
        assert feed[3]["note"] == "wider" and r.json()["next_before"] is None
        assert [i["seq"] for i in feed] == sorted((i["seq"] for i in feed), reverse=True)
        digest = hashlib.sha256(key.encode()).hexdigest()
        assert key not in r.text and digest not in r.text and digest[:16] not in r.text and "key_hashes" not in r.text

        # since, limit and the cursor
        r = await c.get("/v1/admin/changes", headers=CENTRAL, params={"since": str(since)})
        assert _keys(r) == [("policy", "p1", 2, "delete"), ("application", "new-app", 1, "write"),
                            ("stage", "sa", 1, "write"), ("policy", "p1", 2, "write")]
        r = await c.get("/v1/admin/changes", headers=CENTRAL, params={"limit": "4"})
        page = r.json()
        assert len(page["data"]) == 4 and page["next_before"] == page["data"][-1]["seq"]
        r = await c.get("/v1/admin/changes", headers=CENTRAL, params={"limit": "4", "before": str(page["next_before"])})
        assert [*page["data"], *r.json()["data"]] == feed and r.json()["next_before"] is None
        assert len((await c.get("/v1/admin/changes", headers=CENTRAL, params={"limit": "1000"})).json()["data"]) == 6

        # an application token: its own objects only
        r = await c.get("/v1/admin/changes", headers=APP_A)
        assert _keys(r) == [("stage", "sa", 1, "write"), ("policy", "pa", 1, "write")]
        assert (await c.get("/v1/admin/changes", headers=APP_B)).json()["data"] == []
        assert (await c.get("/v1/admin/changes")).status_code == 401

        # bad values and unknown parameters: 400 naming them
        for params, param in (({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "ten"}, "limit"),
                              ({"limit": "²"}, "limit"), ({"since": "yesterday"}, "since"), ({"since": "nan"}, "since"),
                              ({"since": "-1"}, "since"), ({"before": "x"}, "before"), ({"before": "-3"}, "before"),
                              ({"kind": "policy"}, "kind"), ({"sinse": "1"}, "sinse")):
            r = await c.get("/v1/admin/changes", headers=CENTRAL, params=params)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, (params, r.text)
        doc = (await c.get("/v1/admin/openapi.json")).json()["paths"]
        assert {p["name"] for p in doc["/v1/admin/changes"]["get"]["parameters"]} == {"since", "limit", "before"}
        item = doc["/v1/admin/changes"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(item["properties"]["data"]["items"]["properties"]) == FIELDS
        assert [p["name"] for p in doc["/v1/admin/jobs"]["get"]["parameters"]] == ["limit"]
    _run(tmp_path, backend, test)


async def _trained(c, policy_id: str, headers: dict[str, str]) -> dict:
    r = await c.post(f"/v1/admin/policies/{policy_id}/train", headers=headers, json={})
    assert r.status_code == 202, r.text
    for _ in range(200):
        job = (await c.get(f"/v1/admin/policies/{policy_id}/train", headers=headers)).json()
        if job.get("status") in ("ready", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"training {policy_id} did not finish")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_training_jobs(tmp_path: Path, backend: str) -> None:
    async def test(c, store) -> None:
        assert (await c.get("/v1/admin/jobs", headers=CENTRAL)).json() == {"object": "list", "data": []}
        examples = [{"type": "FAIL", "input_example": "the password is hunter2"},
                    {"type": "PASS", "input_example": "how do I reset a password?"}]
        for policy_id, headers in (("ok", CENTRAL), ("mine", APP_A)):
            r = await c.post("/v1/admin/policies", headers=headers,
                             json={"id": policy_id, "type": "similar", "rule": "No passwords", "examples": examples})
            assert r.status_code == 201, r.text
        ready = await _trained(c, "ok", CENTRAL)
        assert ready["status"] == "ready"
        # a training that failed (as TrainingJobs.run saves one), started after the first
        now = time.time()
        await store.put_job("mine", {"policy": "mine", "status": "failed", "started": now + 1, "finished": now + 2,
                                     "error": "ValueError: no FAIL examples", "author": "app:a"})

        r = await c.get("/v1/admin/jobs", headers=CENTRAL)
        assert r.status_code == 200, r.text
        jobs = r.json()["data"]
        assert [(j["object"], j["policy"], j["status"], j["author"]) for j in jobs] == [
            ("training_job", "mine", "failed", "app:a"), ("training_job", "ok", "ready", "central")]
        assert "no FAIL examples" in jobs[0]["error"]
        assert jobs[1]["version"] == 2 and jobs[1].get("error") is None and jobs[1]["started"] <= jobs[1]["finished"]
        assert all("age_s" not in j for j in jobs)
        assert jobs[1] == {**ready, "object": "training_job"}  # what GET .../train answers
        assert [j["policy"] for j in (await c.get("/v1/admin/jobs", headers=CENTRAL,
                                                  params={"limit": "1"})).json()["data"]] == ["mine"]
        assert [j["policy"] for j in (await c.get("/v1/admin/jobs", headers=APP_A)).json()["data"]] == ["mine"]
        assert (await c.get("/v1/admin/jobs", headers=APP_B)).json()["data"] == []
        # the training's new version is in the change feed, by its author
        r = await c.get("/v1/admin/changes", headers=CENTRAL, params={"limit": "1", "since": str(ready["started"])})
        assert _keys(r) == [("policy", "ok", 2, "write")]
        for params, param in (({"limit": "0"}, "limit"), ({"limit": "many"}, "limit"), ({"status": "failed"}, "status")):
            r = await c.get("/v1/admin/jobs", headers=CENTRAL, params=params)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, (params, r.text)
    _run(tmp_path, backend, test)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_an_applications_jobs_among_many(tmp_path: Path, backend: str) -> None:
    """More trained policies than the Redis pool has connections (100), most of them another owner's, newer:
    an application token still gets its own jobs (before: a 503 on Redis, the policies' bodies read at
    once; and jobs past the 1000 newest never shown)."""
    async def test(c, store) -> None:
        for i in range(130):
            owner = "app:a" if i < 2 else "app:b"
            await store.put("policy", {"id": f"p{i}", "type": "contains", "keywords": ["x"], "owner": owner}, owner)
            await store.put_job(f"p{i}", {"policy": f"p{i}", "status": "ready", "started": 100.0 + i, "author": owner})
        r = await c.get("/v1/admin/jobs", headers=APP_A)
        assert r.status_code == 200, r.text
        assert [(j["policy"], j["owner"]) for j in r.json()["data"]] == [("p1", "app:a"), ("p0", "app:a")]
        r = await c.get("/v1/admin/jobs", headers=APP_B, params={"limit": "3"})
        assert [j["policy"] for j in r.json()["data"]] == ["p129", "p128", "p127"]
        assert len((await c.get("/v1/admin/jobs", headers=CENTRAL, params={"limit": "1000"})).json()["data"]) == 130
    _run(tmp_path, backend, test)
