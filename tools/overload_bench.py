"""Overload benchmark (issue 23 item 10): the guarded gateway in front of the bench mock, 256 concurrent
clients, with and without an admission cap, plus the capped gateway's latency when it is not overloaded.

    .venv/bin/python tools/overload_bench.py [--clients 256] [--seconds 10] [--cap 16] [--pending 16] [--backoff 1]

Prints, per row, requests answered 200 and 503, and p50/p99 latency of each. The load generator is
Python (aiohttp) on the same machine: on 2 shared cores it competes with the gateway for CPU, so compare
rows within one run, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from gateway.bench.load import percentile
from gateway.bench.procs import child_env, free_port, start_child, stop_child, wait_ready
from gateway.bench.targets import CLIENT_KEY, gateway_config, start_mock
from gateway.bench.workload import chat_body


async def load(url: str, body: bytes, clients: int, seconds: float, backoff_s: float = 1.0) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    stop = time.monotonic() + seconds
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    status = r.status
            except aiohttp.ClientError:
                status = 0
            out.setdefault(status, []).append(time.perf_counter() - start)
            if status == 503:
                await asyncio.sleep(backoff_s)  # a refused client waits before it tries again

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(worker(session) for _ in range(clients)))
    return out


def row(name: str, results: dict[int, list[float]]) -> str:
    parts = [f"{name:<34}"]
    for status in sorted(results):
        lat = sorted(results[status])
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        parts.append(f"HTTP {status}: {len(lat):>6}  p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms")
    return "   ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cap", type=int, default=16)
    ap.add_argument("--pending", type=int, default=16)
    ap.add_argument("--backoff", type=float, default=1.0, help="seconds a refused client waits (Retry-After: 1)")
    args = ap.parse_args()
    body = chat_body().encode()
    mock, mock_port, _ = start_mock(30, body.decode())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for name, server, clients in (
                    ("guarded, no cap", {}, args.clients),
                    (f"guarded, cap {args.cap} + {args.pending} pending", {
                        "max_concurrent_requests": args.cap, "max_pending_requests": args.pending}, args.clients),
                    (f"guarded, cap {args.cap}, {args.cap} clients", {
                        "max_concurrent_requests": args.cap, "max_pending_requests": args.pending}, args.cap)):
                port = free_port()
                config = gateway_config(port, mock_port, guarded=True)
                config["server"].update(server, access_log=False)
                path = Path(tmp) / "gateway.yaml"
                path.write_text(yaml.safe_dump(config, sort_keys=False))
                child = start_child("gateway", [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                                    child_env())
                try:
                    wait_ready(child, f"http://127.0.0.1:{port}/readyz", 120)
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    asyncio.run(load(url, body, 8, 2.0))  # warm-up
                    rows.append(row(f"{name} ({clients} clients)" if clients != args.cap else name,
                                    asyncio.run(load(url, body, clients, args.seconds, args.backoff))))
                finally:
                    stop_child(child)
                print(rows[-1], flush=True)
    finally:
        stop_child(mock)


if __name__ == "__main__":
    main()
