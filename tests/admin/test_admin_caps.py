"""Admin input caps and incremental compiles (issue 23 item 11).

Caps: a real gateway process (SQLite store) answers 400 in OpenAI's error shape, `param` naming the
field, for too many or too long regex patterns and contains keywords; nothing is stored. The per-store
cap and the compile cache are checked on the Registry with a real SQLite store (the per-store cap is
lowered for the test: filling 100,000 patterns would only make it slow). Nothing here is timed: the
figures are in tools/admin_write_bench.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.policies import limits
from tests.conftest import Gateway, running_gateway

CENTRAL, APP_ADMIN = "admin-central", "admin-app-a"


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    def config(port: int) -> str:
        return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*"]}}]
applications: [{{id: app-a, keys: ["sk-app-a"]}}]
admin:
  tokens:
    - {{token: {CENTRAL}, role: central}}
    - {{token: {APP_ADMIN}, role: "app:app-a"}}
"""
    with running_gateway(tmp_path_factory.mktemp("caps"), config) as g:
        yield g


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


LONG = "x" * (limits.MAX_ENTRY_CHARS + 1)


@pytest.mark.parametrize(("body", "param"), [
    ({"type": "regex", "patterns": [f"p{i}-[0-9]" for i in range(limits.MAX_ENTRIES_PER_POLICY + 1)]}, "patterns"),
    ({"type": "regex", "patterns": ["ok", "a" * 100_000]}, "patterns[1]"),  # the probe's 100 KB literal
    ({"type": "regex", "patterns": ["ok", {"name": "big", "pattern": LONG}]}, "patterns[1].pattern"),
    ({"type": "regex", "patterns": [{"name": "n" * (limits.MAX_NAME_CHARS + 1), "pattern": "x"}]},
     "patterns[0].name"),
    ({"type": "contains", "keywords": ["fine", "also fine", LONG]}, "keywords[2]"),
    ({"type": "contains", "keywords": [f"k{i}" for i in range(limits.MAX_ENTRIES_PER_POLICY + 1)]}, "keywords"),
])
@pytest.mark.parametrize("token", [CENTRAL, APP_ADMIN])
def test_oversized_policies_are_refused_naming_the_field(gw: Gateway, body: dict, param: str, token: str) -> None:
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(token), json={"id": "big", **body}, timeout=60)
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["code"] == "invalid_policy", err
    assert err["message"].startswith(param + ": at most"), err
    assert httpx.get(gw.url + "/v1/admin/policies/big", headers=h(CENTRAL)).status_code == 404


def test_an_edit_over_the_cap_is_refused_and_the_policy_kept(gw: Gateway) -> None:
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(CENTRAL),
                   json={"id": "small", "type": "regex", "patterns": ["PRJ-[0-9]{3}"]})
    assert r.status_code == 201, r.text
    try:
        r = httpx.patch(gw.url + "/v1/admin/policies/small", headers=h(CENTRAL), json={"patterns": ["ok", LONG]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "patterns[1]", r.text[:300]
        doc = httpx.get(gw.url + "/v1/admin/policies/small", headers=h(CENTRAL)).json()
        assert doc["version"] == 1 and doc["patterns"] == ["PRJ-[0-9]{3}"]
        # At the caps exactly: accepted.
        r = httpx.patch(gw.url + "/v1/admin/policies/small", headers=h(CENTRAL),
                        json={"patterns": ["y" * limits.MAX_ENTRY_CHARS]})
        assert r.status_code == 200, r.text[:300]
    finally:
        httpx.delete(gw.url + "/v1/admin/policies/small", headers=h(CENTRAL))


# --- the registry, with a real SQLite store -----------------------------------------------------------


class Flow:
    plan = None


def _registry(path: Path):
    from gateway.policies.registry import Registry
    from gateway.config.schema import GatewayConfig
    from gateway.store import open_store

    return Registry(GatewayConfig.model_validate({}), open_store(f"sqlite:///{path}"), Flow())


def _regex(i: int, n: int) -> dict:
    return {"id": f"p{i}", "type": "regex", "patterns": [f"p{i}-{j}-[0-9]{{4}}" for j in range(n)]}


def test_the_store_cap_counts_every_stored_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.policies.registry import InvalidChange

    monkeypatch.setattr(limits, "MAX_ENTRIES_PER_STORE", 25)

    async def body() -> None:
        reg = _registry(tmp_path / "store.db")
        try:
            await reg.load()
            await reg.write("policy", _regex(0, 10), "central")
            await reg.write("policy", {"id": "kw", "type": "contains", "keywords": ["a", "b", "c", "d", "e"]},
                            "central")
            with pytest.raises(InvalidChange) as info:  # 10 + 5 + 11 = 26 > 25
                await reg.write("policy", _regex(1, 11), "central")
            assert info.value.param == "patterns" and "26" in info.value.message
            assert await reg.store.get("policy", "p1") is None
            await reg.write("policy", _regex(1, 10), "central")  # 25: at the cap
            with pytest.raises(InvalidChange) as info:  # growing a stored policy counts too
                await reg.write("policy", {"id": "kw", "type": "contains", "keywords": list("abcdef")}, "central")
            assert info.value.param == "keywords"
            # A store over the cap (written before it existed) may still shrink.
            monkeypatch.setattr(limits, "MAX_ENTRIES_PER_STORE", 10)
            await reg.write("policy", _regex(1, 2), "central")
            assert len((await reg.store.get("policy", "p1")).body["patterns"]) == 2
        finally:
            await reg.store.close()
    asyncio.run(body())


def test_a_write_compiles_only_the_policy_it_changes(tmp_path: Path) -> None:
    """Every admin write used to compile every stored policy (twice: to validate, then to swap)."""
    async def body() -> None:
        reg = _registry(tmp_path / "store.db")
        try:
            await reg.load()
            for i in range(5):
                await reg.write("policy", _regex(i, 50), "central")
            assert reg.cache.misses == 5 and set(reg.flow.plan.policies) == {f"p{i}" for i in range(5)}
            compiled = reg.flow.plan.policies["p0"]
            await reg.write("policy", _regex(5, 50), "central")  # a new one: one compile
            assert reg.cache.misses == 6
            await reg.write("policy", {**_regex(2, 50), "threshold": 0.7}, "central")  # an edit: one compile
            assert reg.cache.misses == 7 and reg.flow.plan.policies["p2"].threshold == 0.7
            await reg.remove("policy", "p3", "central")  # a delete: none
            assert reg.cache.misses == 7 and "p3" not in reg.flow.plan.policies
            assert reg.flow.plan.policies["p0"] is compiled  # the same compiled object, reused
            # Another replica (a second registry on the same store) compiles each stored policy once.
            other = _registry(tmp_path / "store.db")
            try:
                await other.load()
                assert other.cache.misses == 5 and set(other.flow.plan.policies) == set(reg.flow.plan.policies)
            finally:
                await other.store.close()
        finally:
            await reg.store.close()
    asyncio.run(body())
