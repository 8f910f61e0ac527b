"""Key governance end to end (issue 24, part 2): allowed models, RPM and TPM per application and per key,
key expiry, OpenAI-shaped 429s; limits shared by two gateway processes through the real Redis, and kept
per replica (never unlimited, never an error) when Redis is unreachable."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import running_gateway
from tests.cueupstream import Cue, serve_cue
from tests.inprocess import in_process
from tests.proxy.test_routing import metric


def chat(model: str = "m", stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], "stream": stream}


def cfg(url: str, app: str, store: str = "") -> str:
    text = f"upstreams:\n  - {{name: u, base_url: '{url}', models: ['*']}}\napplications:\n{app}"
    return text + (f"store: {{url: '{store}', prefix: 'gg-{uuid.uuid4().hex[:8]}:'}}\n" if store else "")


def post(client: httpx.AsyncClient, key: str = "k-1", model: str = "m", stream: bool = False):
    return client.post("/v1/chat/completions", json=chat(model, stream), headers={"authorization": f"Bearer {key}"})


def test_allowed_models_per_application_and_key(tmp_path: Path) -> None:
    async def go() -> None:
        async with serve_cue(Cue("u")) as u:
            app = ("  - id: a\n    models: ['gpt-*']\n    keys: [k-1, {key: k-2, models: ['gpt-mini']}]\n")
            async with in_process(cfg(u.url, app), tmp_path) as (_, client):
                assert (await post(client, model="gpt-4")).status_code == 200
                r = await post(client, model="claude")
                assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
                assert (await post(client, "k-2", "gpt-mini")).status_code == 200
                assert (await post(client, "k-2", "gpt-4")).status_code == 403  # the key narrows its application
                assert u.count == 2
    asyncio.run(go())


def test_requests_per_minute_429_in_openai_shape(tmp_path: Path) -> None:
    async def go() -> None:
        async with serve_cue(Cue("u")) as u:
            async with in_process(cfg(u.url, "  - {id: a, keys: [k-1], rpm: 3}\n"), tmp_path) as (_, client):
                for i in range(3):
                    r = await post(client)
                    assert r.status_code == 200
                    assert r.headers["x-ratelimit-limit-requests"] == "3"
                    assert r.headers["x-ratelimit-remaining-requests"] == str(2 - i)
                r = await post(client)
                assert r.status_code == 429 and u.count == 3
                err = r.json()["error"]
                assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
                assert 15 <= int(r.headers["retry-after"]) <= 21  # 60 s / 3: the next request's room
                assert r.headers["x-ratelimit-remaining-requests"] == "0"
                assert r.headers["x-ratelimit-reset-requests"].endswith("s")
                m = (await client.get("/metrics")).text
                assert metric(m, "gateway_rate_limited_total", application="a", kind="requests") == 1
    asyncio.run(go())


def test_tokens_per_minute_from_usage_and_estimated_for_streams(tmp_path: Path) -> None:
    async def go() -> None:
        async with serve_cue(Cue("u")) as u:
            app = "  - {id: a, keys: [k-1], tpm: 30}\n  - {id: b, keys: [k-2]}\n"
            async with in_process(cfg(u.url, app), tmp_path) as (_, client):
                for _ in range(3):  # 12 tokens each (the upstream's usage): 0, 12, 24 used before each
                    assert (await post(client)).status_code == 200
                    await asyncio.sleep(0.02)  # the debit runs after the answer
                r = await post(client)
                assert r.status_code == 429 and r.json()["error"]["type"] == "tokens"
                assert r.headers["x-ratelimit-limit-tokens"] == "30"
                u.default = "stream"  # no usage in the stream: estimated
                assert (await post(client, "k-2", stream=True)).status_code == 200
                m = (await client.get("/metrics")).text
                assert metric(m, "gateway_tokens_total", application="a", kind="prompt") == 21
                assert metric(m, "gateway_tokens_total", application="a", kind="completion") == 15
                assert metric(m, "gateway_tokens_total", application="b", kind="completion") == 2  # "from u" / 4
                assert metric(m, "gateway_tokens_total", application="b", kind="prompt") > 0
    asyncio.run(go())


def test_key_expiry_and_other_key_headers(tmp_path: Path) -> None:
    async def go() -> None:
        async with serve_cue(Cue("u")) as u:
            app = ("  - id: a\n    keys: [k-1, {key: k-old, expires_at: '2001-01-01T00:00:00Z'},"
                   " {key: k-new, expires_at: '2999-01-01T00:00:00'}]\n")
            async with in_process(cfg(u.url, app), tmp_path) as (_, client):
                r = await post(client, "k-old")
                assert r.status_code == 401 and r.json()["error"]["code"] == "expired_api_key"
                assert (await post(client, "k-new")).status_code == 200
                for header in ("x-api-key", "api-key"):
                    r = await client.post("/v1/chat/completions", json=chat(), headers={header: "k-1"})
                    assert r.status_code == 200, header
                assert u.count == 3
    asyncio.run(go())


def _redis_ok() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_ok(), reason="no Redis on 127.0.0.1:6379")
def test_limits_are_shared_by_two_gateway_processes_through_redis(tmp_path: Path, upstream: str) -> None:
    prefix = f"gg-{uuid.uuid4().hex[:8]}:"

    def config(port: int) -> str:
        return (f"server: {{port: {port}, access_log: false}}\nupstreams:\n  - {{name: u, base_url: '{upstream}', "
                f"models: ['*']}}\napplications:\n  - {{id: a, keys: [k-1], rpm: 6}}\n"
                f"store: {{url: 'redis://127.0.0.1:6379/0', prefix: '{prefix}'}}\n")

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_gateway(tmp_path / "a", config) as one, running_gateway(tmp_path / "b", config) as two:
        codes = []
        for i in range(10):
            url = (one if i % 2 else two).url
            r = httpx.post(url + "/v1/chat/completions", json=chat(), headers={"authorization": "Bearer k-1"})
            codes.append(r.status_code)
        assert codes.count(200) == 6 and codes.count(429) == 4, codes  # 6 in all, not 6 per replica


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
def test_redis_down_falls_back_to_per_replica_limits(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)

        async def go() -> None:
            async with serve_cue(Cue("u")) as u:
                store = f"redis://127.0.0.1:{port}/0"
                async with in_process(cfg(u.url, "  - {id: a, keys: [k-1], rpm: 4}\n", store), tmp_path) as (app, client):
                    assert (await post(client)).status_code == 200  # counted in Redis
                    server.terminate()
                    server.wait(5)
                    codes = [(await post(client)).status_code for _ in range(6)]
                    # per replica now, from a fresh local count: 4 more, then 429; never a 5xx, never unlimited
                    assert codes == [200, 200, 200, 200, 429, 429], codes
                    assert app._handler.limiter.fallbacks == 6
        asyncio.run(go())
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        os.environ.pop("_unused", None)


def test_admin_api_creates_keys_with_limits_and_refuses_unknown_fields(tmp_path: Path) -> None:
    async def go() -> None:
        async with serve_cue(Cue("u")) as u:
            text = cfg(u.url, "  - {id: a, keys: [k-1]}\n") + "admin:\n  tokens: [{token: adm, role: central}]\n"
            async with in_process(text, tmp_path) as (app, client):
                adm = {"authorization": "Bearer adm"}
                r = await client.post("/v1/admin/applications", headers=adm,
                                      json={"id": "team", "rpm": 5, "models": ["m*"], "limit": 3})
                assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
                r = await client.post("/v1/admin/applications", headers=adm,
                                      json={"id": "team", "rpm": 5, "models": ["m*"], "key": {"rpm": 2, "burst": 1}})
                assert r.status_code == 400 and r.json()["error"]["param"] == "key.burst"
                r = await client.post("/v1/admin/applications", headers=adm,
                                      json={"id": "team", "rpm": 5, "models": ["m*"], "key": {"rpm": 2}})
                assert r.status_code == 201, r.text
                first = r.json()["key"]
                assert r.json()["rpm"] == 5 and r.json()["key_rules"] == [{"models": [], "rpm": 2, "tpm": None,
                                                                           "expires_at": None}]
                r = await client.post("/v1/admin/applications/team/keys", headers=adm,
                                      json={"expires_at": "2001-01-01T00:00:00Z"})
                expired = r.json()["key"]
                for _ in range(50):  # the replica picks the store's change up (poll)
                    if (await post(client, first, "m1")).status_code != 401:
                        break
                    await asyncio.sleep(0.05)
                assert (await post(client, first, "m1")).status_code == 200  # the second of its own rpm 2
                assert (await post(client, first, "m1")).status_code == 429
                assert (await post(client, first, "other")).status_code == 403  # the application's models
                r = await post(client, expired, "m1")
                assert r.status_code == 401 and r.json()["error"]["code"] == "expired_api_key"
                r = await client.patch("/v1/admin/applications/team", headers=adm, json={"tpm": 0})
                assert r.status_code == 400 and r.json()["error"]["param"] == "tpm"
    asyncio.run(go())


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_token_debits_past_the_window_are_all_kept(backend: str) -> None:
    """Found by a review: a debit (check 0) on a cell already past its window counted as refused and was
    not written, so five concurrent answers of 20k tokens each under tpm 10,000 left the cell 120 s ahead
    instead of about 600 s."""
    import uuid

    from gateway.proxy.limits import Cell, Limiter

    async def go() -> int:
        limiter = Limiter("redis://127.0.0.1:6379/0" if backend == "redis" else None, f"test-{uuid.uuid4().hex[:8]}:")
        cells = [Cell("app:a:t", 10_000, "tokens", "application")]
        for _ in range(5):
            await limiter.debit_tokens(cells, 20_000)
        verdict = await limiter.check(cells)
        assert verdict.denied is not None
        return round(verdict.retry_after_s)

    owed = asyncio.run(go())  # 100,000 tokens at 10,000 a minute: the cell is 600 s ahead, 540 s past the window
    assert 530 <= owed <= 541, owed


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_prompt_tokens_are_reserved_at_admission_and_settled(backend: str) -> None:
    """Requests admitted together see each other's prompts: each reserves its estimate; the answer's
    usage settles it (debit the rest or credit the excess); a credit never leaves more than a full cell."""
    from gateway.proxy.limits import Cell, Limiter

    async def go() -> None:
        limiter = Limiter("redis://127.0.0.1:6379/0" if backend == "redis" else None, f"test-{uuid.uuid4().hex[:8]}:")
        cells = [Cell("app:a:t", 100, "tokens", "application")]
        admitted = [(await limiter.check(cells, reserve_tokens=40)).denied is None for _ in range(4)]
        assert admitted == [True, True, True, False]  # 0, 40, 80 reserved before each; 120 before the 4th
        await limiter.debit_tokens(cells, -120)  # the three answers used nothing: all credited back
        v = await limiter.check(cells, reserve_tokens=0)
        assert v.denied is None and dict(v.headers or [])[b"x-ratelimit-remaining-tokens"] in (b"99", b"100")
        await limiter.debit_tokens(cells, -10_000)  # more credit than owed: the cell is full, no more
        assert (await limiter.check(cells, reserve_tokens=100)).denied is None
        assert (await limiter.check(cells, reserve_tokens=1)).denied is not None
        limiter.close()
    asyncio.run(go())


def test_concurrent_requests_cannot_overdraw_the_token_limit(tmp_path: Path) -> None:
    """Before reservations, every request admitted while the others were in flight saw the whole minute
    free: eight concurrent requests under tpm 100 all went through (about 8 x 23 prompt tokens)."""
    async def go() -> None:
        async with serve_cue(Cue("u", default="slow:0.4")) as u:
            async with in_process(cfg(u.url, "  - {id: a, keys: [k-1], tpm: 100}\n"), tmp_path) as (_, client):
                codes = [r.status_code for r in await asyncio.gather(*(post(client) for _ in range(8)))]
                estimate = -(-len(orjson.dumps(chat())) // 4)
                assert codes.count(200) == -(-100 // estimate), (codes, estimate)  # each admitted while room
                assert codes.count(429) == 8 - codes.count(200)
    asyncio.run(go())


def test_a_request_without_an_answer_gets_its_reservation_back(tmp_path: Path) -> None:
    async def go() -> None:
        async with serve_cue(Cue("u", default="status:500")) as u:
            async with in_process(cfg(u.url, "  - {id: a, keys: [k-1], tpm: 60}\n"), tmp_path) as (_, client):
                for _ in range(5):  # about 23 tokens reserved each, then credited back: no usage came
                    assert (await post(client)).status_code >= 500
                    await asyncio.sleep(0.02)  # the credit runs after the answer
                u.default = "ok"
                assert (await post(client)).status_code == 200
    asyncio.run(go())


def test_media_and_long_prompts_do_not_hold_the_whole_minute(tmp_path: Path) -> None:
    """Found by a review: the reservation was the body's size / 4, so one chat request carrying a base64
    image reserved the whole token limit and every other request of the application got a 429 with a 60 s
    Retry-After until it finished. base64 runs are not counted, and a reservation is at most half the
    tightest token limit."""
    import base64

    image = "data:image/png;base64," + base64.b64encode(os.urandom(30_000)).decode()
    with_image = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": image}}]}]}
    long_text = {"model": "m", "messages": [{"role": "user", "content": "word " * 400}]}  # ~500 tokens

    async def go() -> None:
        async with serve_cue(Cue("u", default="slow:0.6")) as u:
            app = "  - {id: a, keys: [k-1], tpm: 1000}\n  - {id: b, keys: [k-2], tpm: 300}\n"
            async with in_process(cfg(u.url, app), tmp_path) as (_, client):
                for key, big in (("k-1", with_image), ("k-2", long_text)):
                    auth = {"authorization": f"Bearer {key}"}
                    first = asyncio.ensure_future(client.post("/v1/chat/completions", json=big, headers=auth))
                    await asyncio.sleep(0.2)  # the big request is admitted and in flight
                    small = await post(client, key)
                    assert small.status_code == 200, (key, small.status_code, small.text)
                    assert (await first).status_code == 200
    asyncio.run(go())


def test_reset_durations_round_before_splitting_minutes() -> None:
    from gateway.proxy.limits import _duration

    assert [_duration(s) for s in (0.05, 1, 60, 119.7, 360)] == ["50ms", "1s", "1m0s", "2m0s", "6m0s"]  # not 1m60s


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_a_drained_reservation_credits_nothing_back(backend: str) -> None:
    """Found by a review: a request whose reservation had already drained credited it back anyway,
    taking it from the reservations made after it. A credit is bounded by what of the reservation is
    still ahead in each cell."""
    from gateway.proxy.limits import Cell, Limiter

    def remaining(v) -> int:
        return int(dict(v.headers or [])[b"x-ratelimit-remaining-tokens"])

    async def go() -> None:
        limiter = Limiter("redis://127.0.0.1:6379/0" if backend == "redis" else None, f"test-{uuid.uuid4().hex[:8]}:")
        cells = [Cell("app:a:t", 600, "tokens", "application")]  # one token per 100 ms
        a = await limiter.check(cells, reserve_tokens=2)
        await asyncio.sleep(0.35)  # A's 2 tokens (200 ms) have drained
        b = await limiter.check(cells, reserve_tokens=50)
        await limiter.settle(cells, 2, 0, a.reserved_until)  # A used nothing: its reservation is gone already
        after = await limiter.check(cells, reserve_tokens=0)
        assert remaining(after) - remaining(b) <= 1, (remaining(b), remaining(after))  # at most 100 ms of drain
        c = await limiter.check(cells, reserve_tokens=30)  # a fresh reservation settled at once: all credited
        await limiter.settle(cells, 30, 0, c.reserved_until)
        assert remaining(await limiter.check(cells, reserve_tokens=0)) >= remaining(after)
        limiter.close()
    asyncio.run(go())
