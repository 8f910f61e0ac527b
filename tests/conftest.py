"""Fixtures that start real servers on loopback: the test upstream (a thread) and the gateway (a process)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.upstream import Recorder, ServerThread, create_upstream

UPSTREAM_KEY = "sk-upstream-SECRET-main-0123456789"
CLIENT_KEY = "sk-client-a-abcdef"
CLIENT_KEY_B = "sk-client-b-ghijkl"
MAX_BODY = 65536


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gateway(config_path: Path, port: int, log_path: Path, env: dict[str, str] | None = None,
                  command: str = "serve") -> Gateway:
    """Run `python -m gateway <command>` and wait until /healthz answers (bounded)."""
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", command, "--config", str(config_path), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return Gateway(url, proc, log_path)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"gateway did not become healthy:\n{log_path.read_text()}")


@contextlib.contextmanager
def running_gateway(tmp: Path, config_for: Callable[[int], str],
                    env: dict[str, str] | None = None) -> Iterator[Gateway]:
    """Write the config `config_for(port)` under `tmp`, serve it, and stop it afterwards."""
    port = free_port()
    config = tmp / "gateway.yaml"
    config.write_text(config_for(port))
    gw = start_gateway(config, port, tmp / "gateway.log", env=env)
    try:
        yield gw
    finally:
        stop_process(gw.process, gw.log_path)


def stop_process(proc: subprocess.Popen[bytes], log_path: Path | None = None) -> None:
    """SIGTERM, then SIGKILL after 10 s. A gateway still alive by then is first asked (SIGUSR1) to write
    its threads' stacks into its log, and the log's end is printed, so a test that then fails on the
    exit code shows where the process was waiting."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        if log_path is not None:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
        proc.kill()
        proc.wait(timeout=5)
        if log_path is not None:
            print(f"--- {log_path} (the process did not stop within 10 s of SIGTERM) ---\n"
                  + log_path.read_text(errors="replace")[-20000:], file=sys.stderr)


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def scoring_runtime():  # -> gateway.scoring.runtime.ScoringRuntime
    """The tests' own scoring runtime (default settings), shared by the session so that the encoder and
    the heads load once: no module of the gateway holds one; the app builds its own (create_app)."""
    from gateway.scoring.runtime import ScoringRuntime

    return ScoringRuntime()


@pytest.fixture(scope="session")
def upstream(recorder: Recorder) -> Iterator[str]:
    server = ServerThread(create_upstream(recorder), free_port())
    server.start()
    yield f"http://127.0.0.1:{server.port}/v1"
    server.stop()


def gateway_config(upstream_url: str, port: int) -> str:
    down = free_port()  # nothing listens there: connections are refused
    return f"""
server: {{host: 127.0.0.1, port: {port}, max_body_bytes: {MAX_BODY}}}
upstreams:
  - name: slowpoke
    base_url: {upstream_url}
    api_key: sk-upstream-SECRET-slow
    models: ["slow-*"]
    timeout_s: 0.5
  - name: down
    base_url: http://127.0.0.1:{down}/v1
    api_key: sk-upstream-SECRET-down
    models: ["down-*"]
    connect_timeout_s: 2
  - name: main
    base_url: {upstream_url}
    api_key: ${{TEST_UPSTREAM_KEY}}
    models: ["gpt-*", "status-*", "die-*", "hang-*", "text-*", "embed-*", "gzip-*", "wait-*", "html-*", "literal-model"]
applications:
  - {{id: app-a, keys: ["{CLIENT_KEY}"]}}
  - {{id: app-b, keys: ["{CLIENT_KEY_B}"]}}
"""


@pytest.fixture(scope="session")
def gateway(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gateway"), lambda port: gateway_config(upstream, port),
                         env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as gw:
        yield gw


# What makes a test slow here: it starts a process (a gateway, a CLI command, redis-server, Prometheus,
# Chromium) or builds or trains a model. Such tests are marked `slow`; `pytest -m "not slow"` is the fast
# loop (the app in process, the sans-IO parts, the metrics), the README's command runs everything.
_SLOW_FIXTURES = frozenset({"gateway", "guarded", "gw", "demo", "browser", "fresh_build", "upstream_gateway"})
_SLOW_SOURCE = ("running_gateway(", "start_gateway(", "subprocess.", "Popen(", "redis-server", "sync_playwright",
                "train_detectors(", "encoder_files(tmp")
_slow_modules: dict[str, bool] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import inspect

    for item in items:
        module = getattr(item, "module", None)
        if module is None:
            continue
        slow = _slow_modules.get(module.__name__)
        if slow is None:
            try:
                source = inspect.getsource(module)
            except (OSError, TypeError):
                source = ""
            slow = _slow_modules[module.__name__] = any(token in source for token in _SLOW_SOURCE)
        if slow or _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
