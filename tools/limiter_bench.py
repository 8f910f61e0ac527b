"""Added latency of the rate limiter (issue 24): p50/p99 of one request's check (app + key, requests and
tokens: 4 cells, one Lua script) against Redis on loopback, in-process, and a bare PING on the same
connection as the floor. Prints figures; run: .venv/bin/python tools/limiter_bench.py [redis-url]"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid

from gateway.proxy.limits import Limiter, Rule


async def timed(n: int, call) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def show(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    print(f"{name:<34} p50 {statistics.median(ms):.3f} ms   p99 {ms[int(len(ms) * 0.99)]:.3f} ms")


async def main(url: str, n: int = 5000) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:6]}:"
    rule = Rule(rpm=10**9, tpm=10**9)
    cells = Limiter.cells("app", rule, "key0", Rule(rpm=10**9, tpm=10**9))
    redis = Limiter(url, prefix)
    local = Limiter(None)
    await redis.check(cells)  # connect, load the script
    assert (await redis.check(cells)).backend == "redis"
    for _ in range(2):  # the second round is the one reported (warm)
        ping = await timed(n, lambda: redis._redis.call("PING"))
        red = await timed(n, lambda: redis.check(cells))
        loc = await timed(n, lambda: local.check(cells))
    show("PING on the same connection", ping)
    show("check, Redis on loopback (4 cells)", red)
    show("check, in-process (4 cells)", loc)
    print(f"Redis check minus PING p50: {statistics.median(red) - statistics.median(ping):.3f} ms")
    redis.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
