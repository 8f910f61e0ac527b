"""The things measured: the mock itself (direct), our gateway and LiteLLM, both in front of the mock.

Each `start_*` returns a ready child process and the Target to load, or raises BenchError.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from gateway.bench.mock import CONTENT
from gateway.bench.procs import BenchError, Child, child_env, free_port, start_child, stop_child, wait_ready

CHAT_PATH = "/v1/chat/completions"
CLIENT_KEY = "sk-bench-client"
REQUEST_BODY = json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": "Hello, how are you?"}]},
                          separators=(",", ":"))
# Variables that could point LiteLLM at a database, a cache or another config: it must run bare.
_LITELLM_DROP = ("DATABASE_", "DIRECT_URL", "REDIS_", "LITELLM_", "CONFIG_FILE_PATH", "STORE_MODEL_IN_DB")


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the full chat completions URL
    api_key: str

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


def start_mock(timeout_s: float) -> tuple[Child, int, Target]:
    port = free_port()
    child = start_child("mock", [sys.executable, "-m", "gateway.bench.mock", "--port", str(port)], child_env())
    _ready_or_stop(child, f"http://127.0.0.1:{port}/healthz", timeout_s)
    return child, port, Target("direct", f"http://127.0.0.1:{port}{CHAT_PATH}", CLIENT_KEY)


def start_gateway(mock_port: int, workdir: Path, timeout_s: float) -> tuple[Child, float, Target]:
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "upstreams": [{"name": "mock", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                       "api_key": "sk-mock-upstream", "models": ["*"]}],
        "applications": [{"id": "bench", "keys": [CLIENT_KEY]}],
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path),
           "--host", "127.0.0.1", "--port", str(port)]
    child = start_child("gateway", cmd, child_env())
    startup = _ready_or_stop(child, f"http://127.0.0.1:{port}/healthz", timeout_s)
    return child, startup, Target("gateway", f"http://127.0.0.1:{port}{CHAT_PATH}", CLIENT_KEY)


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


def verify(target: Target, timeout_s: float = 60.0) -> None:
    """One real request must come back 200 with the mock's answer: measuring errors is worthless."""
    headers = {**target.headers, "Content-Type": "application/json"}
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            response = client.post(target.url, content=REQUEST_BODY, headers=headers)
    except httpx.HTTPError as exc:
        raise BenchError(f"{target.name}: test request failed: {exc!r}") from exc
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    if response.status_code != 200 or content != CONTENT:
        raise BenchError(f"{target.name}: test request got HTTP {response.status_code}, "
                         f"not the mock's answer: {response.text[:300]!r}")
