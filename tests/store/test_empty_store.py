"""A store that comes back empty or behind is a degraded state, not a new truth; a replica that never read
its store fails closed (issue 23 item 2).

Real gateway processes against a private `redis-server` (no persistence, loopback, a free port) that the
tests restart, flush and stop; the registry-level tests use the same kind of server.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway.store import open_store
from tests.conftest import Gateway, free_port, running_gateway

CENTRAL, APP_ADMIN, KEY_A = "admin-central", "admin-app-a", "sk-app-a"
BLOCKED = "blocked by the stored policy"


class RedisServer:
    """A private redis-server without persistence: restarting it loses everything, like the probe's."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                                      "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    s = RedisServer(tmp_path / "redis")
    yield s
    s.stop()


def config(upstream: str, store_url: str) -> Callable[[int], str]:
    return lambda port: f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*"]}}]
applications: [{{id: app-a, keys: ["{KEY_A}"]}}]
admin:
  tokens:
    - {{token: {CENTRAL}, role: central}}
    - {{token: {APP_ADMIN}, role: "app:app-a"}}
store: {{url: "{store_url}", timeout_s: 0.2, poll_interval_s: 0.1}}
"""


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def chat(g: Gateway, text: str) -> httpx.Response:
    return httpx.post(g.url + "/v1/chat/completions", headers=h(KEY_A), timeout=10,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})


def answer(g: Gateway, text: str) -> str:
    r = chat(g, text)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def store_check(g: Gateway) -> tuple[int, str]:
    r = httpx.get(g.url + "/readyz")
    return r.status_code, r.json()["checks"]["store"]


def metric(g: Gateway, name: str) -> float:
    for line in httpx.get(g.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def wait_for(what: str, check: Callable[[], bool], seconds: float = 10.0,
             detail: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{detail()}"
        time.sleep(0.05)


def create_blocking_policy(g: Gateway) -> None:
    r = httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL),
                   json={"id": "fruit", "type": "contains", "keywords": ["forbidden fruit"]})
    assert r.status_code == 201, r.text
    r = httpx.post(g.url + "/v1/admin/policies/fruit/apply", headers=h(CENTRAL),
                   json={"application": "app-a", "action": {"type": "block", "message": BLOCKED}})
    assert r.status_code == 201, r.text
    assert answer(g, "the forbidden fruit") == BLOCKED


@pytest.mark.parametrize("how", ["restart", "flush"])
def test_a_store_that_comes_back_empty_keeps_the_last_good_plan(upstream: str, tmp_path: Path,
                                                                server: RedisServer, how: str) -> None:
    server.start()
    with running_gateway(tmp_path, config(upstream, server.url)) as g:
        create_blocking_policy(g)
        assert store_check(g) == (200, "ok")
        if how == "restart":  # Redis restarted without persistence: it comes back empty
            server.stop()
            server.start()
        else:
            redis.Redis(port=server.port).flushall()
        time.sleep(1.0)  # ten polls of the empty store
        for _ in range(5):  # the admin-created policy is still enforced, poll after poll
            assert answer(g, "the forbidden fruit") == BLOCKED
            time.sleep(0.1)
        wait_for("/readyz to report the regression", lambda: store_check(g)[1].startswith("regressed"))
        status, store = store_check(g)
        assert status == 200 and "went back" in store, store  # still serving: the last good plan is enforced
        assert metric(g, "gateway_store_regressed") == 1.0
        # Admin writes would land in a store the replica does not enforce: refused until adopted.
        r = httpx.post(g.url + "/v1/admin/policies", headers=h(CENTRAL),
                       json={"id": "other", "type": "contains", "keywords": ["x"]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "store_regressed", r.text
        status_body = httpx.get(g.url + "/v1/admin/store", headers=h(CENTRAL)).json()
        assert status_body["regressed"] and status_body["loaded"] is True
        # Only a central token may adopt the empty store; then it is the truth.
        r = httpx.post(g.url + "/v1/admin/store/adopt", headers=h(APP_ADMIN))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert httpx.post(g.url + "/v1/admin/store/adopt").status_code == 401
        r = httpx.post(g.url + "/v1/admin/store/adopt", headers=h(CENTRAL))
        assert r.status_code == 200 and r.json()["adopted"] is True and r.json()["was_regressed"], r.text
        assert answer(g, "the forbidden fruit") == "echo:the forbidden fruit"
        assert store_check(g) == (200, "ok") and metric(g, "gateway_store_regressed") == 0.0
        create_blocking_policy(g)  # writes work again


def test_a_replica_started_while_redis_is_down_fails_closed_until_it_loads(upstream: str, tmp_path: Path,
                                                                          server: RedisServer) -> None:
    with running_gateway(tmp_path, config(upstream, server.url)) as g:  # nothing listens on server.port yet
        started = time.monotonic()
        r = chat(g, "the forbidden fruit")
        assert time.monotonic() - started < 1.0
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        err = r.json()["error"]
        assert err["code"] == "policies_not_loaded" and err["type"] == "server_error"
        r = httpx.post(g.url + "/v1/guard/evaluate", headers=h(KEY_A),
                       json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "policies_not_loaded"
        status, store = store_check(g)
        assert status == 503 and store.startswith("not loaded"), store
        assert metric(g, "gateway_store_loaded") == 0.0
        assert metric(g, "gateway_store_not_loaded_refusals_total") >= 2
        assert httpx.get(g.url + "/healthz").status_code == 200  # alive, only not ready
        # Redis comes up holding a policy applied to app-a: the replica loads it by itself and enforces it.
        server.start()

        async def populate() -> None:
            s = open_store(server.url)
            try:
                await s.put("policy", {"id": "fruit", "type": "contains", "keywords": ["forbidden fruit"],
                                       "owner": "central"}, "central")
                await s.put("stage", {"id": "fruit-stage", "owner": "central", "applications": ["app-a"],
                                      "spec": {"name": "fruit-stage", "on": "input", "scope": "application",
                                               "rulesets": [{"name": "fruit", "rules": [{"metric": "fruit"}],
                                                             "action": {"type": "block", "message": BLOCKED}}]}},
                            "central")
            finally:
                await s.close()
        asyncio.run(populate())
        wait_for("the replica to load the store", lambda: store_check(g) == (200, "ok"), seconds=15)
        assert metric(g, "gateway_store_loaded") == 1.0
        # it may have loaded between the two writes above; the stage follows within a poll interval
        wait_for("the stored policy to be enforced", lambda: answer(g, "the forbidden fruit") == BLOCKED, seconds=5,
                 detail=lambda: httpx.get(g.url + "/v1/admin/store", headers=h(CENTRAL)).text + "\n"
                 + g.logs()[-4000:])
        assert answer(g, "hello") == "echo:hello"


# --- the registry's rules, against the real Redis (a unique key prefix, deleted afterwards) ------------


class Flow:
    plan = None


@pytest.fixture()
def prefix() -> Iterator[str]:
    import uuid

    p = f"test-{uuid.uuid4().hex[:10]}:"
    yield p
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter(p + "*"))
    if keys:
        client.delete(*keys)


def _registry(store):
    from gateway.policies.registry import Registry
    from gateway.config.schema import GatewayConfig

    return Registry(GatewayConfig.model_validate({}), store, Flow())


def _policy(i: int) -> dict:
    return {"id": f"p{i}", "type": "contains", "keywords": [f"word{i}"], "owner": "central"}


def test_documents_that_vanish_without_writes_are_not_adopted(prefix: str) -> None:
    """The revision moved forward, but more documents vanished than writes happened: not a new truth
    (e.g. a failover to an emptied replica whose revision counter was rewritten). A later store whose
    revision moved past with the documents consistent (a lagging replica that caught up) is adopted."""
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)

    async def body() -> None:
        store = open_store("redis://127.0.0.1:6379/0", prefix=prefix)
        reg = _registry(store)
        try:
            for i in range(3):
                await store.put("policy", _policy(i), "central")
            assert await reg.load() and set(reg.flow.plan.policies) == {"p0", "p1", "p2"}
            # Every policy vanishes and the counter says one write happened.
            client.delete(f"{prefix}cur:policy")
            client.incr(f"{prefix}revision")
            assert not await reg.load()
            assert reg.regressed and "3 documents vanished" in reg.regressed
            assert set(reg.flow.plan.policies) == {"p0", "p1", "p2"}  # the last good plan
            # Writing through this replica is refused; the regressed store is not read again until it moves.
            from gateway.policies.registry import StoreRegressed

            with pytest.raises(StoreRegressed):
                await reg.write("policy", _policy(9), "central")
            assert not await reg.load()
            # The documents come back and more writes happen: consistent and newer, adopted on its own.
            for i in range(3):
                client.hset(f"{prefix}cur:policy", f"p{i}", "1")
            await store.put("policy", _policy(3), "central")
            assert await reg.load() and reg.regressed is None
            assert set(reg.flow.plan.policies) == {"p0", "p1", "p2", "p3"}
            # Deleting documents through the store (one revision each) is an ordinary change.
            await store.delete("policy", "p0", "central")
            await store.delete("policy", "p1", "central")
            assert await reg.load() and reg.regressed is None and set(reg.flow.plan.policies) == {"p2", "p3"}
        finally:
            await store.close()
    asyncio.run(body())


def test_a_revision_that_goes_back_is_not_adopted_until_it_passes(prefix: str) -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)

    async def body() -> None:
        store = open_store("redis://127.0.0.1:6379/0", prefix=prefix)
        reg = _registry(store)
        try:
            for i in range(3):
                await store.put("policy", _policy(i), "central")
            await reg.load()
            assert reg.revision == 3
            # A replica that lags: the revision is 1 and p1, p2 are not there yet.
            client.set(f"{prefix}revision", 1)
            client.hdel(f"{prefix}cur:policy", "p1", "p2")
            assert not await reg.load() and reg.regressed and "went back from 3 to 1" in reg.regressed
            assert set(reg.flow.plan.policies) == {"p0", "p1", "p2"}
            # It reaches the same revision number with different content: still not adopted.
            client.set(f"{prefix}revision", 3)
            assert not await reg.load() and reg.regressed
            # The admin adopts it as it is.
            result = await reg.adopt()
            assert result["revision"] == 3 and reg.regressed is None and set(reg.flow.plan.policies) == {"p0"}
        finally:
            await store.close()
    asyncio.run(body())


def test_a_first_read_that_does_not_compile_is_not_loaded(prefix: str) -> None:
    """Found by a review: a replica whose first read of the store met one document that does not compile
    (a stage naming a missing policy: a race between two admins, a model file missing on one node) set
    itself loaded with none of the stored stages and reported ready. It stays not loaded (guarded traffic
    refused, /readyz 503 saying why) until the store compiles."""
    async def body() -> None:
        store = open_store("redis://127.0.0.1:6379/0", prefix=prefix)
        reg = _registry(store)
        try:
            await store.put("policy", _policy(0), "central")
            await store.put("stage", {"id": "s", "owner": "central", "applications": ["a"], "spec": {
                "name": "s", "on": "input", "rulesets": [{"name": "r", "rules": [{"metric": "missing"}]}]}}, "central")
            assert not await reg.load()
            assert not reg.loaded and reg.unloadable and "missing" in reg.unloadable
            await store.put("stage", {"id": "s", "owner": "central", "applications": ["a"], "spec": {
                "name": "s", "on": "input", "rulesets": [{"name": "r", "rules": [{"metric": "p0"}]}]}}, "central")
            assert await reg.load() and reg.loaded and reg.unloadable is None
        finally:
            await store.close()
    asyncio.run(body())
