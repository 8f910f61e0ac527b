"""SIGTERM: the gateway stops accepting, lets an in-flight stream finish, then exits 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import CLIENT_KEY, UPSTREAM_KEY, free_port, gateway_config, start_gateway


def test_sigterm_drains_an_in_flight_stream_and_exits_zero(upstream: str, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_config(upstream, port))
    gw = start_gateway(config, port, tmp_path / "gateway.log", env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    received: list[bytes] = []
    first = threading.Event()

    def read_stream() -> None:
        with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "gpt-test", "stream": True,
                                "messages": [{"role": "user", "content": "x" * 40}]}) as r:
            for chunk in r.iter_bytes():
                received.append(chunk)
                first.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    try:
        assert first.wait(10), "the stream did not start"
        gw.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = False
        try:
            httpx.get(gw.url + "/healthz", timeout=2)
        except httpx.TransportError:
            refused = True
        assert refused, "a new connection was accepted after SIGTERM"
        reader.join(timeout=20)
        assert gw.process.wait(timeout=20) == 0
    finally:
        if gw.process.poll() is None:
            gw.process.kill()
        reader.join(timeout=5)
    body = b"".join(received)
    assert body.endswith(b"data: [DONE]\n\n"), body[-200:]
    assert body.count(b'"content":"xxxx"') + body.count(b'"content": "xxxx"') >= 9  # 45 chars in 4-char chunks


def test_sigusr1_writes_every_threads_stack_to_the_log_and_the_gateway_goes_on(upstream: str, tmp_path: Path) -> None:
    """How an operator (and the test helper, before it kills a gateway that will not stop) sees where a
    stuck process waits. Without the handler, SIGUSR1 would end the process."""
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_config(upstream, port))
    gw = start_gateway(config, port, tmp_path / "gateway.log", env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        gw.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "Current thread" not in gw.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        logs = gw.logs()
        assert "Current thread" in logs and 'File "' in logs, logs[-2000:]
        assert "serving.py" in logs or "uvicorn" in logs, logs[-2000:]
        assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
        assert gw.process.poll() is None
    finally:
        gw.process.send_signal(signal.SIGTERM)
        code = gw.process.wait(timeout=20)
    assert code == 0
