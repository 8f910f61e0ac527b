"""Benchmark (issue 23 item 11): the time to create a large regex policy through the admin API while the
store already holds many patterns, and the longest stall of the data plane meanwhile.

    .venv/bin/python tools/admin_write_bench.py [--stored 45000] [--new 5000] [--per-policy 5000]

It starts a private `redis-server` (no persistence, loopback, a free port), writes `--stored` regex
patterns into it as stored policies of `--per-policy` patterns each (directly through the store, not
timed), starts a gateway process on that store, and then, while a prober thread sends `GET /healthz`
(answered by the same event loop as proxied requests) back to back, POSTs one policy of `--new`
patterns to `/v1/admin/policies`. It prints the POST's wall time and the prober's latencies (median
and max before the write, max during it): the max during the write, less the median, is the stall.
Figures depend on the machine; run it before and after a change on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def patterns(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}-[0-9]{{4}}" for i in range(n)]


async def fill(url: str, stored: int, per_policy: int) -> None:
    from gateway.store import open_store

    store = open_store(url, prefix="bench:", timeout_s=10)
    try:
        for n, start in enumerate(range(0, stored, per_policy)):
            count = min(per_policy, stored - start)
            await store.put("policy", {"id": f"stored-{n}", "type": "regex", "rule": "bench",
                                       "patterns": patterns(f"stored{n}", count), "owner": "central"}, "central")
    finally:
        await store.close()


def wait_until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stored", type=int, default=45_000, help="patterns already in the store")
    ap.add_argument("--per-policy", type=int, default=5_000, help="patterns per stored policy")
    ap.add_argument("--new", type=int, default=5_000, help="patterns in the policy created")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="admin-bench-"))
    redis_port, gw_port = free_port(), free_port()
    redis_proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gw = None
    try:
        url = f"redis://127.0.0.1:{redis_port}/0"
        import redis as redis_sync

        wait_until(lambda: redis_sync.Redis(port=redis_port).ping(), 10, "redis-server")
        asyncio.run(fill(url, args.stored, args.per_policy))
        (tmp / "gateway.yaml").write_text(f"""
server: {{host: 127.0.0.1, port: {gw_port}}}
upstreams: [{{name: main, base_url: "http://127.0.0.1:9/v1", models: ["*"]}}]
admin: {{tokens: [{{token: {TOKEN}, role: central}}]}}
store: {{url: "{url}", prefix: "bench:", timeout_s: 5}}
""")
        log = (tmp / "gateway.log").open("wb")
        started = time.monotonic()
        gw = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(tmp / "gateway.yaml"),
                               "--port", str(gw_port)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        base = f"http://127.0.0.1:{gw_port}"
        wait_until(lambda: httpx.get(base + "/readyz", timeout=1).status_code == 200, 300, "the gateway")
        print(f"gateway ready with {args.stored} stored patterns after {time.monotonic() - started:.1f} s")

        samples: list[tuple[float, float]] = []  # (sent at, latency)
        stop = threading.Event()

        def probe() -> None:
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    t0 = time.monotonic()
                    client.get(base + "/healthz")
                    samples.append((t0, time.monotonic() - t0))
                    time.sleep(0.005)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        time.sleep(2.0)
        body = {"id": "new-policy", "type": "regex", "rule": "bench", "patterns": patterns("new", args.new)}
        t0 = time.monotonic()
        r = httpx.post(base + "/v1/admin/policies", json=body, headers={"authorization": f"Bearer {TOKEN}"},
                       timeout=600)
        t1 = time.monotonic()
        time.sleep(1.0)
        stop.set()
        prober.join()
        if r.status_code != 201:
            raise SystemExit(f"create answered {r.status_code}: {r.text[:300]}")
        before = [lat for at, lat in samples if at < t0]
        during = [lat for at, lat in samples if t0 <= at <= t1] or [0.0]
        # A probe sent just before the write may have waited through it too.
        overlapping = [lat for at, lat in samples if at + lat >= t0 and at <= t1] or [0.0]
        print(f"create a {args.new}-pattern policy with {args.stored} stored: {t1 - t0:.2f} s (HTTP {r.status_code})")
        print(f"/healthz latency before: median {statistics.median(before) * 1000:.1f} ms, "
              f"max {max(before) * 1000:.1f} ms ({len(before)} probes)")
        print(f"/healthz latency during the write: max {max(overlapping) * 1000:.1f} ms "
              f"({len(during)} probes sent during it)")
    finally:
        if gw is not None:
            gw.terminate()
            try:
                gw.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gw.kill()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
