"""Resilient routing end to end (issue 24): model groups over several loopback upstreams that fail on cue,
through the whole app in-process. Retries happen exactly on connection failures, resets, first-byte
stalls, 429 and 5xx, never after a stream's first byte; one deadline bounds all attempts; fallbacks,
ejection and recovery, the retry budget, aliases, metrics and access-log fields."""

from __future__ import annotations

import asyncio
from gateway.guard.plan import plan_issues
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.cueupstream import Cue, refused_url, serve_cue
from tests.inprocess import in_process

AUTH = {"authorization": "Bearer k-1"}


def chat(model: str = "m", text: str = "hi", stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


@contextlib.asynccontextmanager
async def cues(*cues: Cue) -> AsyncIterator[list[Cue]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(serve_cue(c)) for c in cues]


def upstreams(*cues: Cue, extra: str = "") -> str:
    lines = ["upstreams:"]
    for c in cues:
        url = c.url or refused_url()
        lines.append(f"  - {{name: {c.name}, base_url: '{url}', connect_timeout_s: 1{extra}}}")
    return "\n".join(lines) + "\n"


def group(name: str, models: str, deployments: str, **more: str) -> str:
    text = f"    - name: {name}\n      models: [{models}]\n      deployments: [{deployments}]\n"
    for key, value in more.items():
        text += f"      {key}: {value}\n"
    return text


def config(ups: str, groups: str, aliases: str = "") -> str:
    out = ups + "routing:\n  groups:\n" + groups
    if aliases:
        out += f"  aliases: {aliases}\n"
    return out + "applications:\n  - {id: a, keys: [k-1]}\n"


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run(coro) -> None:
    asyncio.run(coro)


def test_a_5xx_is_retried_on_the_other_deployment_and_counted(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("bad", default="status:500"), Cue("good")) as (bad, good):
            cfg = config(upstreams(bad, good), group("g", "m", "{upstream: bad, weight: 1000}, {upstream: good, weight: 0.001}",
                                                     retry="{max_retries: 2, backoff_s: 0}"))
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == "from good"
                assert (bad.count, good.count) == (1, 1)  # one retry, to the deployment not yet tried
                m = (await client.get("/metrics")).text
                assert metric(m, "gateway_upstream_attempts_total", group="g", upstream="bad", outcome="server_error") == 1
                assert metric(m, "gateway_upstream_attempts_total", group="g", upstream="good", outcome="ok") == 1
                assert metric(m, "gateway_upstream_retries_total", group="g", reason="server_error") == 1
    run(go())


@pytest.mark.parametrize("failure", ["reset", "refused", "stall"])
def test_connection_failures_and_stalls_before_the_headers_are_retried(tmp_path: Path, failure: str) -> None:
    async def go() -> None:
        async with cues(Cue("flaky", cues=[failure] if failure != "refused" else []), Cue("good")) as (flaky, good):
            if failure == "refused":
                flaky.url = refused_url()
            ups = upstreams(flaky, good, extra=", first_byte_timeout_s: 0.3")
            cfg = config(ups, group("g", "m", "{upstream: flaky, weight: 1000}, {upstream: good, weight: 0.001}",
                                    retry="{max_retries: 1, backoff_s: 0}"))
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == "from good"
                assert good.count == 1
    run(go())


def test_a_4xx_other_than_429_is_not_retried(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("u", cues=["status:400"])) as (u,):
            cfg = config(upstreams(u), group("g", "m", "{upstream: u}", retry="{max_retries: 3, backoff_s: 0}"))
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                assert r.status_code == 400 and u.count == 1
    run(go())


def test_retry_after_is_waited_up_to_the_cap_and_a_longer_one_is_not(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("u", cues=["status:429:0.4"]), Cue("v", cues=["status:429:30"])) as (u, v):
            cfg = config(upstreams(u, v), group("g", "m", "{upstream: u}", retry="{max_retries: 2, backoff_s: 0, "
                                                "retry_after_cap_s: 1}")
                         + group("h", "n", "{upstream: v}", retry="{max_retries: 2, backoff_s: 0, retry_after_cap_s: 1}"))
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                assert r.status_code == 200 and u.count == 2
                gap = u.times[1] - u.times[0]
                assert 0.4 <= gap < 0.8, gap  # the deployment's Retry-After, not the (zero) backoff
                start = time.monotonic()
                r = await client.post("/v1/chat/completions", json=chat("n"), headers=AUTH)
                # 30 s is past the 1 s cap: the 429 goes back to the client at once, Retry-After intact
                assert r.status_code == 429 and v.count == 1 and time.monotonic() - start < 0.5
                assert r.headers["retry-after"] == "30"
    run(go())


def test_a_stream_that_sent_bytes_is_never_retried(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("u", cues=["stream_reset"])) as (u,):
            cfg = config(upstreams(u), group("g", "m", "{upstream: u}", retry="{max_retries: 3, backoff_s: 0}"))
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(stream=True), headers=AUTH)
                assert r.status_code == 200
                assert "from u" in r.text and "upstream_unreachable" in r.text  # the error event ends it
                assert u.count == 1
    run(go())


def test_a_stream_is_retried_before_its_headers(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("u", default="stream", cues=["status:503"])) as (u,):
            cfg = config(upstreams(u), group("g", "m", "{upstream: u}", retry="{max_retries: 1, backoff_s: 0}"))
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(stream=True), headers=AUTH)
                assert r.status_code == 200 and "from u" in r.text and "[DONE]" in r.text and u.count == 2
    run(go())


def test_one_deadline_bounds_all_attempts(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("a", default="stall"), Cue("b", default="stall")) as (a, b):
            ups = upstreams(a, b, extra=", first_byte_timeout_s: 0.4")
            cfg = config(ups, group("g", "m", "{upstream: a}, {upstream: b}", deadline_s="1.0",
                                    retry="{max_retries: 10, backoff_s: 0}"))
            async with in_process(cfg, tmp_path) as (_, client):
                start = time.monotonic()
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                elapsed = time.monotonic() - start
                assert r.status_code == 504
                assert 0.95 <= elapsed < 1.2, elapsed  # not 0.4 s x 11 attempts
                assert a.count + b.count == 3  # 0.4 + 0.4 + what was left of the second
    run(go())


def test_fallbacks_in_order_after_the_group_failed(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("a", default="status:500"), Cue("b", default="status:503"), Cue("c")) as (a, b, c):
            cfg = config(upstreams(a, b, c),
                         group("first", "m", "{upstream: a}", retry="{max_retries: 1, backoff_s: 0}",
                               fallbacks="[second-model, third-model]")
                         + group("second", "second-model", "{upstream: b}", retry="{max_retries: 0}")
                         + group("third", "third-model", "{upstream: c, model: real-third}"))
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "from c"
                assert (a.count, b.count, c.count) == (2, 1, 1)
                assert b.seen[0]["model"] == "second-model" and c.seen[0]["model"] == "real-third"
                m = (await client.get("/metrics")).text
                assert metric(m, "gateway_upstream_fallbacks_total", group="first", to="second") == 1
                assert metric(m, "gateway_upstream_fallbacks_total", group="first", to="third") == 1
                a.default = "ok"  # a group that answers uses no fallback
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                assert r.json()["choices"][0]["message"]["content"] == "from a" and c.count == 1
    run(go())


def test_ejection_grows_recovers_and_spares_the_last_healthy(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("bad", default="status:500"), Cue("good")) as (bad, good):
            cfg = config(upstreams(bad, good), group(
                "g", "m", "{upstream: bad}, {upstream: good}", strategy="least_in_flight",
                retry="{max_retries: 1, backoff_s: 0, budget_burst: 1000}",
                health="{consecutive_failures: 2, ejection_s: 0.5, max_ejection_s: 5}"))
            async with in_process(cfg, tmp_path) as (app, client):
                async def burst(n: int) -> None:
                    for _ in range(n):
                        r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                        assert r.status_code == 200
                await burst(10)
                assert bad.count == 2  # two failures in a row: ejected, every request then goes to good
                await asyncio.sleep(0.6)
                await burst(10)
                assert bad.count == 3  # re-probed once after 0.5 s; one more failure ejects it again (for 1 s)
                await asyncio.sleep(0.6)
                await burst(5)
                assert bad.count == 3  # still ejected: the interval doubled
                await asyncio.sleep(0.5)
                bad.default = "ok"  # recovered
                await burst(20)
                assert bad.count > 5
                m = (await client.get("/metrics")).text
                assert metric(m, "gateway_upstream_ejections_total", group="g", upstream="bad") == 2
                good.default = "status:500"  # both fail now: only one may be ejected, never both
                for _ in range(20):
                    await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                deps = app._handler.routing.groups[0].deployments
                assert sum(d.ejected(time.monotonic()) for d in deps) == 1
    run(go())


def test_the_retry_budget_keeps_retries_near_20_percent_when_an_upstream_fails_entirely(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("down", default="status:503")) as (down,):
            cfg = config(upstreams(down), group("g", "m", "{upstream: down}",
                                                retry="{max_retries: 3, backoff_s: 0, budget_ratio: 0.2, budget_burst: 5}"))
            async with in_process(cfg, tmp_path) as (_, client):
                for _ in range(100):
                    r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                    assert r.status_code == 503
                # 100 first attempts, 5 retries from the burst, then 0.2 per request
                assert 120 <= down.count <= 126, down.count
                m = (await client.get("/metrics")).text
                assert metric(m, "gateway_upstream_retry_budget_exhausted_total", group="g") > 50
    run(go())


def test_weights_and_least_in_flight(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("heavy"), Cue("light"), Cue("x"), Cue("y")) as (heavy, light, x, y):
            cfg = config(upstreams(heavy, light, x, y),
                         group("w", "w", "{upstream: heavy, weight: 3}, {upstream: light, weight: 1}")
                         + group("l", "l", "{upstream: x}, {upstream: y}", strategy="least_in_flight"))
            async with in_process(cfg, tmp_path) as (_, client):
                for _ in range(200):
                    await client.post("/v1/chat/completions", json=chat("w"), headers=AUTH)
                share = heavy.count / 200
                assert 0.63 <= share <= 0.87, share
                x.cues, y.cues = ["slow:1"], ["slow:1"]
                slow = asyncio.ensure_future(client.post("/v1/chat/completions", json=chat("l"), headers=AUTH))
                while x.count + y.count == 0:
                    await asyncio.sleep(0.01)
                busy, idle = (x, y) if x.count else (y, x)
                idle.cues = []
                for _ in range(10):  # one request in flight on `busy`: all ten go to `idle`
                    await client.post("/v1/chat/completions", json=chat("l"), headers=AUTH)
                assert (busy.count, idle.count) == (1, 10)
                await slow
    run(go())


def test_aliases_route_under_the_real_name_and_are_listed(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("u")) as (u,):
            cfg = config(upstreams(u), group("g", "gpt-real, gpt-other-*", "{upstream: u}"), aliases="{fast: gpt-real}")
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat("fast"), headers=AUTH)
                assert r.status_code == 200 and u.seen[-1]["model"] == "gpt-real"
                listed = [m["id"] for m in (await client.get("/v1/models", headers=AUTH)).json()["data"]]
                assert "fast" in listed and "gpt-real" in listed and not any("*" in m for m in listed)
    run(go())


def test_access_log_names_attempts_and_failures(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    async def go() -> None:
        async with cues(Cue("u", cues=["status:500", "reset"])) as (u,):
            cfg = config(upstreams(u), group("g", "m", "{upstream: u}", retry="{max_retries: 2, backoff_s: 0}"))
            async with in_process(cfg, tmp_path) as (_, client):
                assert (await client.post("/v1/chat/completions", json=chat(), headers=AUTH)).status_code == 200
    run(go())
    lines = [orjson.loads(line) for line in capfd.readouterr().err.splitlines() if '"gateway.access"' in line]
    entry = next(e for e in lines if e.get("route") == "chat_completions")
    assert entry["attempts"] == 3 and entry["retries"] == 2 and entry["fallbacks"] == 0
    assert entry["failed_attempts"] == ["u:server_error", "u:unreachable"] and entry["model"] == "g"


def test_configs_name_known_upstreams_and_served_models() -> None:
    from gateway.config.errors import ConfigError
    from gateway.config.loader import parse_config

    text = ("upstreams:\n  - {name: a, base_url: 'http://x/v1'}\n  - {name: b, base_url: 'http://x/v1'}\n"
            "routing:\n  groups:\n    - {name: g, models: [m], deployments: [{upstream: a}, {upstream: nope}], "
            "fallbacks: [ghost]}\n  aliases: {fast: nothing}\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yaml", {}, check=plan_issues)
    errs = "\n".join(str(i) for i in caught.value.issues)
    assert re.search(r"upstreams\[1\]\.models: must list at least 1", errs)  # b serves nothing
    assert "upstreams[0].models" not in errs  # a is a deployment: no globs of its own needed
    with pytest.raises(ConfigError) as caught:
        parse_config(text.replace("name: b, base_url: 'http://x/v1'", "name: b, base_url: 'http://x/v1', models: [n]"),
                     "t.yaml", {}, check=plan_issues)
    errs = "\n".join(str(i) for i in caught.value.issues)
    assert "routing.groups[0].deployments[1].upstream: no upstream named 'nope'" in errs
    assert "routing.groups[0].fallbacks[0]: no group or upstream serves 'ghost'" in errs
    assert "routing.aliases.fast: no group or upstream serves 'nothing'" in errs


def test_get_one_model_and_a_wrong_method(tmp_path: Path) -> None:
    async def go() -> None:
        async with cues(Cue("u")) as (u,):
            cfg = config(upstreams(u), group("g", "gpt-real", "{upstream: u}"), aliases="{fast: gpt-real}")
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.get("/v1/models/fast", headers={"x-api-key": "k-1"})
                assert r.status_code == 200 and r.json()["id"] == "fast" and r.json()["object"] == "model"
                r = await client.get("/v1/models/nope", headers=AUTH)
                assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
                assert (await client.get("/v1/models/fast")).status_code == 401
                r = await client.get("/v1/chat/completions", headers=AUTH)
                assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    run(go())


def test_a_corrector_model_served_only_by_a_routing_group_is_found(tmp_path: Path) -> None:
    """The `correct` action's model is routed like any request (aliases, groups, then globs): a corrector
    that only a routing group serves, behind an alias, answers, and a failing deployment of its group is
    skipped for the next one."""
    async def go() -> None:
        async with cues(Cue("u"), Cue("down", default="status:503"), Cue("fix")) as (u, down, fix):
            cfg = config(upstreams(u, down, fix),
                         group("g", "m", "{upstream: u}")
                         + group("fixers", "fixer-real", "{upstream: down, weight: 1000}, {upstream: fix, weight: 0.001}"),
                         aliases="{fixer: fixer-real}")
            cfg += ("policies:\n  - {id: said_u, type: contains, keywords: ['from u']}\n"
                    "stages:\n  - name: out\n    on: output\n    scope: central\n    rulesets:\n"
                    "      - name: fix\n        rules: [{metric: said_u}]\n"
                    "        action: {type: correct, model: fixer}\n")
            async with in_process(cfg, tmp_path) as (_, client):
                r = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == "from fix"
                assert (u.count, down.count, fix.count) == (1, 1, 1)
                assert fix.seen[0]["model"] == "fixer-real"  # sent under the real name, as aliases are
    run(go())
