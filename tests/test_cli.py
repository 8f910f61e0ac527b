"""The CLI as users run it: `check`, `serve` with a bad config, and `demo` against its local echo."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import openai

from gateway.echo import create_echo_app
from tests.conftest import free_port, start_gateway, stop_process

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)


def test_check_ok_example_config() -> None:
    result = run_cli("check", "config/gateway.yaml")
    assert result.returncode == 0, result.stderr
    assert "config/gateway.yaml: OK" in result.stdout


def test_check_prints_every_error_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 0}\nupstreams:\n  - {name: u, base_url: nope, models: [m], api_key: sk-zzz-secret}\n"
                   "applications: [{id: a, keys: []}]\n")
    result = run_cli("check", str(bad))
    assert result.returncode == 1
    assert f"{bad}: 3 error(s)" in result.stderr
    assert "server.port:" in result.stderr
    assert "upstreams[0].base_url: must be an http:// or https:// URL with a host (got 'nope')" in result.stderr
    assert "applications[0].keys: must list at least 1 item(s)" in result.stderr
    assert "Traceback" not in result.stderr and "sk-zzz-secret" not in result.stderr


def test_check_missing_file() -> None:
    result = run_cli("check", "does/not/exist.yaml")
    assert result.returncode == 1
    assert "does/not/exist.yaml" in result.stderr and "file not found" in result.stderr
    assert "--config" in result.stderr and "GATEWAY_CONFIG" in result.stderr  # how to name another one
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_bad_config_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: [{name: u, base_url: 'http://127.0.0.1:1/v1', models: [m], timeout_s: zero}]\n")
    result = run_cli("serve", "--config", str(bad), "--port", str(free_port()))
    assert result.returncode == 1
    assert "upstreams[0].timeout_s" in result.stderr and "Traceback" not in result.stderr


def test_python_dash_m_and_console_script_agree() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and "guardrail-gateway" in result.stdout


def test_demo_serves_the_example_config_in_front_of_a_local_echo(tmp_path: Path) -> None:
    port = free_port()
    gw = start_gateway(ROOT / "config" / "gateway.yaml", port, tmp_path / "demo.log", command="demo")
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-demo-key", max_retries=0, timeout=20)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi!"}])
        assert reply.choices[0].message.content == "Echo: Hi!"
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "one two"}]) if c.choices)
        assert streamed == "Echo: one two"
        masked = client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "mail me at jane@example.com"}])
        assert masked.choices[0].message.content == "Echo: mail me at <EMAIL_ADDRESS>"
        blocked = client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "my key is AKIAIOSFODNN7EXAMPLE"}])
        assert blocked.choices[0].finish_reason == "content_filter"
        # A text part the input stages cannot read is refused by the gateway, not echoed unchecked.
        odd = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-demo-key"}, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "kept"}, {"type": "text", "text": [1]}]}]}, timeout=20)
        assert odd.status_code == 400 and odd.json()["error"]["param"] == "messages[0].content[1].text"
        assert "LOCAL MODEL SIMULATOR" in gw.logs()
    finally:
        stop_process(gw.process, gw.log_path)
    assert gw.process.returncode == 0


def test_the_echo_upstream_echoes_text_parts_and_skips_odd_ones() -> None:
    # Content parts of odd shapes (a fuzz run found the echo answering them with a bare 500).
    transport = httpx.ASGITransport(app=create_echo_app())

    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://echo") as echo:
            return await echo.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": None}, {"type": "text", "text": "kept"}, {"type": "text", "text": [1]}]}]})

    odd = asyncio.run(ask())
    assert odd.status_code == 200, odd.text
    assert odd.json()["choices"][0]["message"]["content"] == "Echo: kept"


def test_a_reader_that_leaves_early_stops_the_command_quietly(tmp_path: Path) -> None:
    """`score ... | head -1`: once the reader has gone, the command stops with 141 (128 + SIGPIPE) and no
    traceback, as other filters do."""
    lines = tmp_path / "texts.jsonl"
    lines.write_text("".join(f'{{"text": "text number {i}"}}\n' for i in range(20000)))
    with lines.open("rb") as stdin:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "score", "--metric", "length"], stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b'{"score": ')
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_score_prints_a_number_metric_as_it_is_and_names_the_labels_found() -> None:
    lines = '{"text": "hello 1"}\n{"text": "mail me at a.b@example.com"}\n'
    length = subprocess.run([sys.executable, "-m", "gateway", "score", "--metric", "length"], input=lines,
                            capture_output=True, text=True, timeout=60)
    assert length.returncode == 0, length.stderr
    assert [json.loads(x) for x in length.stdout.splitlines()] == [{"score": 7.0}, {"score": 26.0}]
    pii = subprocess.run([sys.executable, "-m", "gateway", "score", "--metric", "pii"], input=lines,
                         capture_output=True, text=True, timeout=60)
    out = [json.loads(x) for x in pii.stdout.splitlines()]
    assert out[0] == {"score": 0.0, "labels": []}
    assert out[1]["labels"] == ["EMAIL_ADDRESS"] and 0.5 < out[1]["score"] <= 1.0
