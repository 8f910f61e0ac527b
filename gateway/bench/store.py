"""`guardrail-gateway store bench`: what the policy store costs a request, with baselines from one run.

The same gateway (one central input stage, so every request writes a monitoring record) in front of
the bench mock upstream, with four stores:

- `sqlite`: the embedded default, a file in a temporary directory (the baseline);
- `redis`: a live Redis under a private key prefix (removed afterwards);
- `redis+churn`: the same, while another client changes a policy through this replica's admin API
  every `--churn-ms` for the whole run (each change is a store write, a pub/sub message and a plan
  compile and swap; the compile's CPU falls on the other stores' rounds too, on 2 shared cores);
- `redis-down`: a private `redis-server` (no persistence) that is stopped once the gateway has loaded
  from it (the degraded path: the last good plan is enforced, records wait in the outbox). A gateway
  that never reached its store refuses guarded requests (503), so it would measure nothing here.

Requests go one at a time (concurrency 1), interleaved in rounds so the machine's noise falls on every
store alike. Printed: p50/p95/p99 per store, the ratio of each p50 to the sqlite p50, and how many
monitoring records reached the store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.bench.procs import Child, child_env, free_port, start_child, stop_child, wait_ready
from gateway.bench.targets import CHAT_PATH, CLIENT_KEY, start_mock

ADMIN = "bench-admin-token"
STORES = ("sqlite", "redis", "redis+churn", "redis-down")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _config(port: int, mock_port: int, store: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "access_log": False},
        "upstreams": [{"name": "mock", "base_url": f"http://127.0.0.1:{mock_port}/v1", "models": ["*"]}],
        "applications": [{"id": "bench", "keys": [CLIENT_KEY]}],
        "admin": {"tokens": [{"token": ADMIN, "role": "central"}]},
        "policies": [{"id": "codes", "type": "regex", "patterns": ["PRJ-[0-9]{4}"], "threshold": 0.5}],
        "stages": [{"name": "org", "on": "input", "scope": "central", "rulesets": [
            {"name": "codes", "rules": [{"metric": "codes"}], "action": {"type": "block"}}]}],
        "store": store,
    }


def _start(name: str, mock_port: int, workdir: Path, store: dict[str, Any]) -> tuple[Child, str]:
    port = free_port()
    path = workdir / f"{name.replace('+', '-')}.yaml"
    path.write_text(yaml.safe_dump(_config(port, mock_port, store), sort_keys=False))
    env = child_env({"GATEWAY_DATA_DIR": str(workdir / f"data-{name.replace('+', '-')}")})
    child = start_child(name, [sys.executable, "-m", "gateway", "serve", "--config", str(path)], env)
    wait_ready(child, f"http://127.0.0.1:{port}/healthz", 120)
    return child, f"http://127.0.0.1:{port}"


class _Churn:
    """Changes the stage's policy through the admin API every `every_s` until stopped."""

    def __init__(self, url: str, every_s: float) -> None:
        self.url, self.every_s, self.writes, self.errors = url, every_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as client:
            body = {"id": "churn", "type": "contains", "keywords": ["never-seen-0"]}
            client.post(self.url + "/v1/admin/policies", json=body)
            while not self._stop.wait(self.every_s):
                r = client.patch(self.url + "/v1/admin/policies/churn",
                                 json={"keywords": [f"never-seen-{self.writes + 1}"]})
                if r.status_code == 200:
                    self.writes += 1
                else:
                    self.errors += 1

    def __enter__(self) -> _Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _series(client: httpx.Client, url: str, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        body = {"model": "gpt-bench", "messages": [{"role": "user", "content": f"{tag} {i}: where is the "
                                                                               "quarterly report stored?"}]}
        start = time.perf_counter()
        r = client.post(url + CHAT_PATH, json=body)
        elapsed = (time.perf_counter() - start) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
        out.append(elapsed)
    return out


def _stored_records(url: str) -> int:
    r = httpx.get(url + "/v1/monitoring?limit=1000", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    body = r.json()
    return len(body["data"]) if body.get("source") == "store" else 0


def bench_store(rounds: int, per_round: int, churn_ms: float, redis_url: str) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    dead_port = free_port()
    dead = f"redis://127.0.0.1:{dead_port}/0"
    stores = {"sqlite": {"poll_interval_s": 0.25},
              "redis": {"url": redis_url, "prefix": prefix + "a:"},
              "redis+churn": {"url": redis_url, "prefix": prefix + "b:"},
              "redis-down": {"url": dead, "timeout_s": 0.2}}
    children: list[Child] = []
    urls: dict[str, str] = {}
    timings: dict[str, list[float]] = {name: [] for name in STORES}
    with tempfile.TemporaryDirectory() as tmp:
        mock, mock_port, _ = start_mock(30, "{}")
        children.append(mock)
        doomed = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(dead_port),
                                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for name in STORES:
                child, urls[name] = _start(name, mock_port, Path(tmp), stores[name])  # type: ignore[arg-type]
                children.append(child)
            _lose_redis(urls["redis-down"], doomed)
            with httpx.Client(headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=30) as client:
                for name in STORES:
                    _series(client, urls[name], 20, "warm-up")
                with _Churn(urls["redis+churn"], churn_ms / 1000) as churn:
                    for r in range(rounds):
                        for name in STORES:
                            timings[name] += _series(client, urls[name], per_round, f"r{r}")
                churn_writes, churn_errors = churn.writes, churn.errors
            time.sleep(1.0)  # let the outboxes flush
            stored = {name: _stored_records(urls[name]) for name in STORES}
        finally:
            if doomed.poll() is None:
                doomed.terminate()
                doomed.wait(timeout=10)
            for child in reversed(children):
                stop_child(child)
            _drop_keys(redis_url, prefix)
    figures: dict[str, Any] = {"requests_per_store": rounds * per_round, "rounds": rounds,
                               "churn_every_ms": churn_ms, "churn_writes": churn_writes,
                               "churn_errors": churn_errors, "stores": _store_figures(timings, stored)}
    return figures


def _lose_redis(url: str, doomed: subprocess.Popen) -> None:
    """Once the `redis-down` gateway at `url` has loaded from its Redis (ready), that Redis goes away."""
    deadline = time.monotonic() + 60
    while httpx.get(url + "/readyz", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the redis-down gateway never loaded its store")
        time.sleep(0.1)
    doomed.terminate()
    doomed.wait(timeout=10)


def _drop_keys(redis_url: str, prefix: str) -> None:
    """The bench's keys removed from the measured Redis (best effort)."""
    try:
        import redis

        client_r = redis.Redis.from_url(redis_url)
        keys = list(client_r.scan_iter(prefix + "*"))
        if keys:
            client_r.delete(*keys)
    except Exception:  # noqa: BLE001 - cleaning up is best effort
        pass


def _store_figures(timings: dict[str, list[float]], stored: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per store: latency percentiles, its p50 against SQLite's, and how many of the last 1,000 records it holds."""
    base = _pct(timings["sqlite"], 0.5)
    figures: dict[str, dict[str, Any]] = {}
    for name in STORES:
        t = timings[name]
        figures[name] = {"p50_ms": _pct(t, 0.5), "p95_ms": _pct(t, 0.95), "p99_ms": _pct(t, 0.99),
                         "p50_ratio_to_sqlite": _pct(t, 0.5) / base, "records_in_store_of_last_1000": stored[name]}
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--per-round", type=int, default=50, help="requests per store per round (default 50)")
    parser.add_argument("--churn-ms", type=float, default=200.0,
                        help="admin writes interval for redis+churn (default 200)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the Redis to measure")
    parser.add_argument("--json", help="also write the figures to this file")


def run(args: argparse.Namespace) -> int:
    figures = bench_store(args.rounds, args.per_round, args.churn_ms, args.redis_url)
    print(json.dumps(figures), flush=True)
    print(f"\ngateway request latency at concurrency 1, {figures['requests_per_store']} requests per store "
          f"in {figures['rounds']} interleaved rounds (a central input stage; every request logged):")
    print(f"{'store':<12} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p50/sqlite':>11} {'records stored':>15}")
    for name, f in figures["stores"].items():
        print(f"{name:<12} {f['p50_ms']:>8.2f} {f['p95_ms']:>8.2f} {f['p99_ms']:>8.2f} "
              f"{f['p50_ratio_to_sqlite']:>11.2f} {f['records_in_store_of_last_1000']:>15}")
    print(f"redis+churn: {figures['churn_writes']} admin writes (plan swaps), {figures['churn_errors']} failed")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0
