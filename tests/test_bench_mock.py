"""The benchmark's mock upstream answers like OpenAI (httpx and the official client), the load
generators' output parsers read captured samples, the stream timer reads the mock, and the guarded
target's config is valid and really guards."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam

from gateway.bench.load import LoadSpec, parse_hey, parse_wrk, wrk_script
from gateway.bench.mock import CONTENT, STREAM_CONTENT
from gateway.bench.procs import BenchError, stop_child
from gateway.bench.targets import gateway_config, start_gateway, stream_text, verify, verify_stream
from gateway.bench.ttft import has_content, measure_ttft
from gateway.bench.workload import as_stream, chat_body, prompt_text

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello, how are you?"}]
BODY = {"model": "gpt-bench", "messages": MESSAGES}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway.bench.mock", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mock did not become ready in 15 s"
            time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def test_completion_with_httpx(mock_url: str) -> None:
    response = httpx.post(f"{mock_url}/v1/chat/completions", json=BODY,
                          headers={"Authorization": "Bearer x"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["object"] == "chat.completion"
    assert {"id", "created", "model", "usage"} <= data.keys()
    assert data["choices"][0]["message"] == {"role": "assistant", "content": CONTENT}
    assert data["choices"][0]["finish_reason"] == "stop"


def test_stream_with_httpx(mock_url: str) -> None:
    events = []
    with httpx.stream("POST", f"{mock_url}/v1/chat/completions", json={**BODY, "stream": True},
                      timeout=5) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == STREAM_CONTENT
    assert len(chunks) > 40  # many small deltas, so a guard's hold-back and per-chunk checks matter
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_official_client(mock_url: str) -> None:
    client = openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-test", timeout=5, max_retries=0)
    try:
        completion = client.chat.completions.create(model="gpt-bench", messages=MESSAGES)
        assert completion.choices[0].message.content == CONTENT
        stream = client.chat.completions.create(model="gpt-bench", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == STREAM_CONTENT
        assert [m.id for m in client.models.list()] == ["gpt-bench"]
    finally:
        client.close()


def test_pipelined_requests_split_across_reads(mock_url: str) -> None:
    """Two requests in one byte stream, sent a few bytes at a time, get two answers in order."""
    body = json.dumps(BODY).encode()
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
           b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (len(body), body))
    port = int(mock_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for i in range(0, len(raw), 7):
            sock.sendall(raw[i:i + 7])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    first, second = received.split(b"HTTP/1.1 200 OK")[1:]
    assert CONTENT.encode() in first
    assert b'"object":"list"' in second and b"connection: close" in second


def test_unknown_path_is_404(mock_url: str) -> None:
    assert httpx.get(f"{mock_url}/v1/nothing", timeout=5).status_code == 404


WRK_SAMPLE = """\
Running 10s test @ http://127.0.0.1:18002/v1/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.37s   260.11ms   1.94s    70.00%
    Req/Sec    45.10     20.10    90.00     62.00%
  Latency Distribution
     50%    1.37s
     75%    1.52s
     90%    1.70s
     99%    1.94s
  295 requests in 10.00s, 420.00KB read
  Socket errors: connect 0, read 0, write 0, timeout 42
  Non-2xx or 3xx responses: 3
Requests/sec:     29.52
Transfer/sec:     42.00KB
"""

WRK_FAST_SAMPLE = """\
Running 3s test @ http://127.0.0.1:18001/v1/chat/completions
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   260.17us  505.46us   8.23ms   95.45%
    Req/Sec     5.70k     1.13k    9.22k    70.00%
  Latency Distribution
     50%  139.00us
     75%  221.00us
     90%  391.00us
     99%    2.72ms
  16994 requests in 3.00s, 5.80MB read
Requests/sec:   5661.54
Transfer/sec:      1.93MB
"""


def test_parse_wrk() -> None:
    fast = parse_wrk(WRK_FAST_SAMPLE, 1)
    assert (fast.requests, fast.rps, fast.errors) == (16994, 5661.54, 0)
    assert fast.p50_ms == pytest.approx(0.139) and fast.p99_ms == pytest.approx(2.72)
    slow = parse_wrk(WRK_SAMPLE, 64)
    assert slow.p50_ms == pytest.approx(1370.0) and slow.p99_ms == pytest.approx(1940.0)
    assert (slow.rps, slow.errors, slow.concurrency) == (29.52, 45, 64)


def test_parse_hey() -> None:
    sample = ("Summary:\n  Requests/sec:\t15366.6355\n\nLatency distribution:\n  10% in 0.0000 secs\n"
              "  50% in 0.0002 secs\n  99% in 0.0013 secs\n\nStatus code distribution:\n"
              "  [200]\t30760 responses\n  [502]\t4 responses\n\nError distribution:\n"
              "  [2]\tGet http://x: context deadline exceeded\n")
    result = parse_hey(sample, 16)
    assert result.rps == 15366.6355 and result.requests == 30766 and result.errors == 6
    assert result.p50_ms == pytest.approx(0.2) and result.p99_ms == pytest.approx(1.3)


def test_wrk_script_escapes_body_and_headers() -> None:
    script = wrk_script(LoadSpec("http://x/", '{"a":"b\\"c"}', {"Authorization": "Bearer k"}))
    assert 'wrk.body = "{\\"a\\":\\"b\\\\\\"c\\"}"' in script
    assert 'wrk.headers["Authorization"] = "Bearer k"' in script


@pytest.mark.parametrize("size", [1, 100, 2048, 5000])
def test_prompt_has_the_requested_size(size: int) -> None:
    assert len(prompt_text(size).encode()) == size
    body = json.loads(chat_body(size))
    assert body["messages"][0]["content"] == prompt_text(size) and "stream" not in body
    assert json.loads(as_stream(chat_body(size)))["stream"] is True


def test_stream_timer_reads_the_mock(mock_url: str) -> None:
    result = measure_ttft(f"{mock_url}/v1/chat/completions", chat_body(stream=True), {}, 20)
    assert (result.requests, result.errors) == (20, 0)
    assert result.ttft_p50_ms is not None and result.total_p50_ms is not None
    assert 0 < result.ttft_p50_ms <= result.total_p50_ms


def test_stream_text_needs_a_normal_end() -> None:
    def event(delta: dict[str, str], finish: str | None = None) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    whole = event({"role": "assistant", "content": ""}) + event({"content": "Hi"}) + event({}, "stop")
    assert stream_text(whole + "data: [DONE]\n\n") == "Hi"
    assert stream_text(whole) is None  # no [DONE]
    assert stream_text(event({"content": "x"}) + event({}, "content_filter") + "data: [DONE]\n\n") is None
    assert has_content(event({"content": "x"}).strip().encode())
    assert not has_content(event({"role": "assistant", "content": ""}).strip().encode())


def test_guarded_config_passes_check(tmp_path: Path) -> None:
    path = tmp_path / "guarded.yaml"
    path.write_text(yaml.safe_dump(gateway_config(_free_port(), _free_port(), guarded=True), sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "gateway", "check", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 polic(ies), 2 stage(s)" in done.stdout


def test_guarded_target_passes_the_prompt_and_blocks_a_code(mock_url: str, tmp_path: Path) -> None:
    """The bench's checks accept the guarded target, and its rules are live (not a no-op config)."""
    child, _, target = start_gateway(int(mock_url.rsplit(":", 1)[1]), tmp_path, 60.0, chat_body(), guarded=True)
    try:
        verify(target)
        verify_stream(target)
        leaked = chat_body().replace("planning meeting", "planning meeting about PROJECT-1234", 1)
        response = httpx.post(target.url, content=leaked, headers=target.headers, timeout=10)
        assert response.headers.get("x-guardrail-action") == "block", response.text
        with pytest.raises(BenchError, match="x-guardrail-action: block"):
            verify(replace(target, body=leaked))
    finally:
        stop_child(child)


def test_store_bench_runs_every_store_and_counts_records(tmp_path: Path) -> None:
    """`guardrail-gateway store bench` starts the four gateways, measures, and finds every logged request
    in the SQLite and Redis stores (and none in the unreachable one)."""
    out = tmp_path / "store.json"
    done = subprocess.run([sys.executable, "-m", "gateway", "store", "bench", "--rounds", "1", "--per-round", "5",
                           "--churn-ms", "100", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    stores = figures["stores"]
    assert set(stores) == {"sqlite", "redis", "redis+churn", "redis-down"}
    for name in ("sqlite", "redis", "redis+churn"):
        assert stores[name]["records_in_store_of_last_1000"] == 25, (name, stores[name])  # 20 warm-up + 5
    assert stores["redis-down"]["records_in_store_of_last_1000"] == 0
    assert all(0 < s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] for s in stores.values())
    assert "p50/sqlite" in done.stdout


def test_mock_delay_holds_answers(tmp_path: Path) -> None:
    """`--delay-ms` (the models bench's slow upstream) answers no earlier than asked, in OpenAI's shape."""
    from gateway.bench.targets import start_mock

    child, port, _ = start_mock(15, "{}", delay_ms=300)
    try:
        with httpx.Client(timeout=10) as client:
            client.get(f"http://127.0.0.1:{port}/healthz")  # connect first: time only the answer
            start = time.perf_counter()
            r = client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY)
            elapsed = time.perf_counter() - start
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == CONTENT
        assert elapsed >= 0.29
    finally:
        stop_child(child)
