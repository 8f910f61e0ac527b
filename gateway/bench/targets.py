"""The things measured: the mock itself (direct), our gateway without and with guard rules (guarded)
and LiteLLM, all in front of the mock.

Each `start_*` returns a ready child process and the Target to load, or raises BenchError.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.bench.mock import CONTENT, STREAM_CONTENT
from gateway.bench.procs import BenchError, Child, child_env, free_port, start_child, stop_child, wait_ready
from gateway.bench.workload import as_stream, guard_policies, guard_stages

CHAT_PATH = "/v1/chat/completions"
CLIENT_KEY = "sk-bench-client"
# LiteLLM's body (the direct, gateway and guarded targets send `workload.chat_body(--prompt-bytes)`).
REQUEST_BODY = json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": "Hello, how are you?"}]},
                          separators=(",", ":"))
# Variables that could point LiteLLM at a database, a cache or another config: it must run bare.
_LITELLM_DROP = ("DATABASE_", "DIRECT_URL", "REDIS_", "LITELLM_", "CONFIG_FILE_PATH", "STORE_MODEL_IN_DB")


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the full chat completions URL
    api_key: str
    body: str = REQUEST_BODY  # the JSON body every measured request sends

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _ready_or_stop(child: Child, url: str, timeout_s: float) -> float:
    """wait_ready, but a child that never became ready is stopped before the error propagates."""
    try:
        return wait_ready(child, url, timeout_s)
    except BaseException:
        stop_child(child)
        raise


def start_mock(timeout_s: float, body: str, delay_ms: float = 0.0) -> tuple[Child, int, Target]:
    port = free_port()
    child = start_child("mock", [sys.executable, "-m", "gateway.bench.mock", "--port", str(port),
                                 "--delay-ms", str(delay_ms)], child_env())
    _ready_or_stop(child, f"http://127.0.0.1:{port}/healthz", timeout_s)
    return child, port, Target("direct", f"http://127.0.0.1:{port}{CHAT_PATH}", CLIENT_KEY, body)


def gateway_config(port: int, mock_port: int, guarded: bool) -> dict[str, Any]:
    """Our gateway in front of the mock; `guarded` adds the central input and output stages."""
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "upstreams": [{"name": "mock", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                       "api_key": "sk-mock-upstream", "models": ["*"]}],
        "applications": [{"id": "bench", "keys": [CLIENT_KEY]}],
    }
    if guarded:
        config["policies"] = guard_policies()
        config["stages"] = guard_stages()
    return config


def start_gateway(mock_port: int, workdir: Path, timeout_s: float, body: str,
                  guarded: bool = False) -> tuple[Child, float, Target]:
    name, port = ("guarded" if guarded else "gateway"), free_port()
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(gateway_config(port, mock_port, guarded), sort_keys=False))
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path),
           "--host", "127.0.0.1", "--port", str(port)]
    child = start_child(name, cmd, child_env())
    startup = _ready_or_stop(child, f"http://127.0.0.1:{port}/healthz", timeout_s)
    return child, startup, Target(name, f"http://127.0.0.1:{port}{CHAT_PATH}", CLIENT_KEY, body)


def litellm_cli(venv: str | None) -> tuple[Path | None, str]:
    """The LiteLLM CLI in `venv`, or None and why the LiteLLM row is skipped."""
    if not venv:
        return None, "no --litellm-venv given"
    cli = Path(venv) / "bin" / "litellm"
    if not cli.is_file():
        return None, f"{cli} not found (pip install 'litellm[proxy]' into that venv)"
    return cli, ""


def start_litellm(cli: Path, mock_port: int, workdir: Path, timeout_s: float) -> tuple[Child, float, Target]:
    port = free_port()
    config = {"model_list": [{"model_name": "gpt-bench", "litellm_params": {
        "model": "openai/gpt-bench", "api_base": f"http://127.0.0.1:{mock_port}/v1", "api_key": "sk-mock"}}]}
    path = workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # Recent LiteLLM refuses to start without a master key; a random one keeps auth on (like our
    # gateway's key check) without a database.
    master_key = "sk-" + secrets.token_hex(32)
    env = child_env(drop_prefixes=_LITELLM_DROP, extra={
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOG": "ERROR",
        # Use the bundled copies instead of fetching from the network at start-up.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOCAL_BLOG_POSTS": "True",
        "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
        "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    })
    cmd = [str(cli), "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    # Run in the temp dir so LiteLLM does not pick up a .env file from the caller's directory.
    child = start_child("litellm", cmd, env, cwd=str(workdir))
    startup = _ready_or_stop(child, f"http://127.0.0.1:{port}/health/liveliness", timeout_s)
    return child, startup, Target("litellm", f"http://127.0.0.1:{port}{CHAT_PATH}", master_key)


def _post(target: Target, body: str, timeout_s: float) -> httpx.Response:
    headers = {**target.headers, "Content-Type": "application/json"}
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            return client.post(target.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise BenchError(f"{target.name}: test request failed: {exc!r}") from exc


def _check(target: Target, response: httpx.Response, content: str | None, expected: str) -> None:
    """200, the mock's text, and no guard rule fired (a blocked or redacted request measures nothing real)."""
    action = response.headers.get("x-guardrail-action")
    if response.status_code != 200 or content != expected or action is not None:
        fired = f" (x-guardrail-action: {action}, ruleset {response.headers.get('x-guardrail-ruleset')})"
        raise BenchError(f"{target.name}: test request got HTTP {response.status_code}"
                         f"{fired if action else ''}, not the mock's answer: {response.text[:300]!r}")


def verify(target: Target, timeout_s: float = 60.0) -> None:
    """One real request must come back 200 with the mock's answer: measuring errors is worthless."""
    response = _post(target, target.body, timeout_s)
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    _check(target, response, content, CONTENT)


def stream_text(sse: str) -> str | None:
    """The content of a chat completions SSE body, or None if it did not end normally with [DONE]."""
    events = [line[5:].strip() for line in sse.splitlines() if line.startswith("data:")]
    if not events or events[-1] != "[DONE]":
        return None
    try:
        chunks = [json.loads(e) for e in events[:-1]]
        choices: list[dict[str, Any]] = [c["choices"][0] for c in chunks if c.get("choices")]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if not choices or choices[-1].get("finish_reason") != "stop":
        return None
    return "".join((c.get("delta") or {}).get("content") or "" for c in choices)


def verify_stream(target: Target, timeout_s: float = 60.0) -> None:
    """The streamed answer must be the mock's whole STREAM_CONTENT, finished with `stop`, nothing fired."""
    response = _post(target, as_stream(target.body), timeout_s)
    _check(target, response, stream_text(response.text), STREAM_CONTENT)
