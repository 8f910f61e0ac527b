"""G19 under a race: two admin writes of one policy based on the same version (If-Match) reach the store
together, both past the registry's early check; the store's compare-and-set lets one land and the other
answers 409 version_conflict. In process (tests/inprocess.py), on SQLite and on the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.inprocess import in_process
from tests.redisutil import drop_prefix

ADMIN = {"authorization": "Bearer adm"}
URL = "/v1/admin/policies/race"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _config(store: str) -> str:
    return ("upstreams: [{name: u, base_url: 'http://127.0.0.1:9', models: ['*']}]\n"
            "admin:\n  tokens: [{token: adm, role: central}]\n" + store)


def _hold_puts(store: Any, writers: int) -> None:
    """The store's put waits until `writers` calls have reached it (or 5 s passed): every racing write has
    passed the registry's own version check before any of them writes."""
    put, arrived, everyone = store.put, [0], asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> Any:
        arrived[0] += 1
        if arrived[0] >= writers:
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), 5.0)
        except TimeoutError:
            pass
        return await put(*args, **kwargs)
    store.put = held


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
@pytest.mark.parametrize("how", ["If-Match", "expected_version"])
def test_racing_writes_on_one_version_one_lands(tmp_path: Path, backend: str, how: str) -> None:
    prefix = f"test-cas-{uuid.uuid4().hex[:10]}:"
    store = f"store: {{url: '{REDIS_URL}', prefix: '{prefix}'}}\n" if backend == "redis" else ""

    async def go() -> None:
        async with in_process(_config(store), tmp_path) as (app, client):
            r = await client.post("/v1/admin/policies", headers=ADMIN,
                                  json={"id": "race", "type": "contains", "keywords": ["a"]})
            assert r.status_code == 201, r.text
            registry = app._registry
            assert registry is not None
            _hold_puts(registry.store, 2)

            def edit(word: str):
                if how == "If-Match":
                    return client.patch(URL, headers={**ADMIN, "If-Match": "1"}, json={"keywords": [word]})
                return client.patch(URL, headers=ADMIN, json={"keywords": [word], "expected_version": 1})
            answers = await asyncio.gather(edit("b"), edit("c"))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200, 409], [a.text for a in answers]
            won = next(a for a in answers if a.status_code == 200).json()
            error = next(a for a in answers if a.status_code == 409).json()["error"]
            assert error["code"] == "version_conflict" and error["param"] == how
            assert "is at version 2, not 1" in error["message"]
            history = await registry.store.versions("policy", "race")
            assert [v.version for v in history] == [1, 2] and won["version"] == 2
            assert history[-1].body["keywords"] == won["keywords"]
            current = (await client.get(URL, headers=ADMIN)).json()
            assert current["version"] == 2 and current["keywords"] == won["keywords"]

    try:
        asyncio.run(go())
    finally:
        if backend == "redis":
            drop_prefix(REDIS_URL, prefix)


CREATES = {
    "policy": ("/v1/admin/policies", {"id": "twin", "type": "contains", "keywords": ["a"]}, "policy_exists", "id"),
    "stage": ("/v1/admin/stages", {"name": "twin", "on": "input", "scope": "central",
                                   "rulesets": [{"name": "long", "rules": [{"metric": "length", "op": "gt", "value": 9}]}]},
              "stage_exists", "name"),
    "application": ("/v1/admin/applications", {"id": "twin"}, "application_exists", "id"),
}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
@pytest.mark.parametrize("kind", sorted(CREATES))
def test_racing_creates_of_one_id_one_lands(tmp_path: Path, backend: str, kind: str) -> None:
    """Two creates of one id, both past the 'exists already' check: the store's create-only put lets one
    land; the other answers the same 409 as a late create would (policy_exists, stage_exists,
    application_exists), and the store holds version 1 only."""
    prefix = f"test-cas-{uuid.uuid4().hex[:10]}:"
    store = f"store: {{url: '{REDIS_URL}', prefix: '{prefix}'}}\n" if backend == "redis" else ""
    url, body, code, param = CREATES[kind]

    async def go() -> None:
        async with in_process(_config(store), tmp_path) as (app, client):
            registry = app._registry
            assert registry is not None
            _hold_puts(registry.store, 2)
            answers = await asyncio.gather(*(client.post(url, headers=ADMIN, json=body) for _ in range(2)))
            assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
            error = next(a for a in answers if a.status_code == 409).json()["error"]
            assert (error["code"], error["param"]) == (code, param)
            history = await registry.store.versions(kind, "twin")
            assert [v.version for v in history] == [1]

    try:
        asyncio.run(go())
    finally:
        if backend == "redis":
            drop_prefix(REDIS_URL, prefix)


def test_a_stored_model_policy_with_a_key_of_an_earlier_release_still_loads(tmp_path: Path) -> None:
    """Earlier releases stored any key on model-based policies; writes now refuse them (400 naming the
    key), but a store that holds one keeps compiling: the key is dropped when the policy loads, so an
    upgrade never takes the stored stages down."""

    async def go() -> None:
        async with in_process(_config(""), tmp_path) as (app, client):
            registry = app._registry
            assert registry is not None
            await registry.store.put("policy", {"id": "old", "type": "detector", "detector": "toxicity",
                                                "trainable": False, "colour": "red", "owner": "central"}, "central")
            old_body = (await registry.store.get("policy", "old")).body
            assert old_body["colour"] == "red"
            await registry.load()
            assert registry.unloadable is None
            stage = {"name": "s", "on": "input", "scope": "central",
                     "rulesets": [{"name": "r", "rules": [{"metric": "old"}], "action": {"type": "block"}}]}
            r = await client.post("/v1/admin/stages", headers=ADMIN, json=stage)
            assert r.status_code == 201, r.text
            # the console saves every field it shows: a carried-over key sent back unchanged is dropped
            r = await client.patch("/v1/admin/policies/old", headers=ADMIN, json={"rule": "none", "colour": "red"})
            assert r.status_code == 200 and "colour" not in r.json(), r.text
            r = await client.patch("/v1/admin/policies/old", headers=ADMIN, json={"rule": "no insults"})
            assert r.status_code == 200, r.text
            assert not {"colour", "trainable"} & set((await registry.store.get("policy", "old")).body)
            # leaving a type drops its parameters (the next save would otherwise be refused for them)
            r = await client.patch("/v1/admin/policies/old", headers=ADMIN, json={"type": "jailbreak"})
            assert r.status_code == 200 and "detector" not in r.json(), r.text
            r = await client.patch("/v1/admin/policies/old", headers=ADMIN, json={"rule": "again"})
            assert r.status_code == 200, r.text
            r = await client.patch("/v1/admin/policies/old", headers=ADMIN, json={"shade": "blue"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "shade", r.text
            r = await client.post("/v1/admin/policies", headers=ADMIN,
                                  json={"id": "new", "type": "detector", "detector": "harmful", "colour": "red"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "colour", r.text

    asyncio.run(go())
