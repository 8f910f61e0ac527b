"""Probe of the HTTP limits (issue 23 item 7): the gateway's RSS and open connections while clients send
unfinished 4 MB headers or trickle a request a byte at a time.

    .venv/bin/python tools/slow_client_probe.py [--clients 50]

Starts the gateway (the example config, no upstream needed) on a free port, opens the connections, and
prints RSS before, at the peak, and how many of the connections the gateway had closed after the
header deadline (server.header_timeout_s, 10 s by default).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--header-mb", type=float, default=4.0)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.yaml"
        config.write_text(f"server: {{port: {port}, access_log: false}}\n"
                          "upstreams: [{name: u, base_url: 'http://127.0.0.1:9/v1', models: ['*']}]\n"
                          "applications: [{id: a, keys: [k-1]}]\n")
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            before = rss_mb(proc.pid)
            socks, refused = [], 0
            chunk = b"a" * 65536
            for _ in range(args.clients):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.settimeout(2)
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ")
                try:
                    for _ in range(int(args.header_mb * 16)):  # never ends the header line
                        sock.sendall(chunk)
                except OSError:
                    refused += 1
                socks.append(sock)
            peak = rss_mb(proc.pid)
            trickle = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.clients)]
            for t in trickle:
                t.sendall(b"P")
            start = time.monotonic()
            closed = 0
            for t in trickle:
                t.settimeout(max(0.1, 15 - (time.monotonic() - start)))
                try:
                    data = t.recv(4096)
                    closed += data.startswith(b"HTTP/1.1 408") or data == b""
                except OSError:
                    pass
            print(f"RSS before {before:.0f} MB; after {args.clients} unfinished {args.header_mb:g} MB headers "
                  f"{peak:.0f} MB ({refused} of them cut off by the gateway before the client finished sending)")
            print(f"trickling connections answered 408 and closed within 15 s: {closed} of {args.clients} "
                  f"(after {time.monotonic() - start:.1f} s)")
            for s in socks + trickle:
                s.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
