"""HTTP limits and read deadlines (issue 23 item 7), on the real server with raw sockets: header size and
count caps (431), a deadline for the headers and one for the body (408 and close), counted."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import CLIENT_KEY, Gateway, running_gateway

HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 1.0, 1.5


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    def config(port: int) -> str:
        return (f"server: {{host: 127.0.0.1, port: {port}, max_header_bytes: 8192, max_headers: 20, "
                f"header_timeout_s: {HEADER_TIMEOUT_S}, body_timeout_s: {BODY_TIMEOUT_S}}}\n"
                f"upstreams: [{{name: main, base_url: '{upstream}', models: ['gpt-*']}}]\n"
                f"applications: [{{id: app-a, keys: ['{CLIENT_KEY}']}}]\n")

    with running_gateway(tmp_path_factory.mktemp("limits"), config) as gw:
        yield gw


def connect(gw: Gateway) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (bounded by the socket's timeout)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def status_and_error(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)["error"]


def start(extra: bytes = b"", length: int = 2) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\nContent-Length: %d\r\n" % length + extra)


def test_headers_too_large_are_a_431_and_the_connection_closes(gw: Gateway) -> None:
    with connect(gw) as sock:
        sock.sendall(start(b"X-Big: " + b"a" * 9000 + b"\r\n\r\n") + b"{}")
        status, err = status_and_error(read_all(sock))
    assert status == 431 and err["code"] == "header_too_large"


def test_an_unfinished_header_past_the_cap_is_refused_before_it_ends(gw: Gateway) -> None:
    with connect(gw) as sock:
        sock.sendall(start(b"X-Endless: "))
        for _ in range(40):  # 40 x 1 KB, never a line end: refused once past 8 KB, not buffered on
            try:
                sock.sendall(b"a" * 1024)
            except OSError:
                break
            time.sleep(0.005)
        status, err = status_and_error(read_all(sock))
    assert status == 431 and err["code"] == "header_too_large"


def test_too_many_headers_are_a_431(gw: Gateway) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
    with connect(gw) as sock:
        sock.sendall(start(many + b"\r\n") + b"{}")
        status, err = status_and_error(read_all(sock))
    assert status == 431 and err["code"] == "too_many_headers"


@pytest.mark.parametrize("opening", [b"", b"POST /v1/chat/co", b"GET /healthz HTTP/1.1\r\nHost: gw\r\n"])
def test_headers_that_do_not_arrive_in_time_are_a_408_and_close(gw: Gateway, opening: bytes) -> None:
    with connect(gw) as sock:
        t0 = time.monotonic()
        sock.sendall(opening)
        raw = read_all(sock)
        elapsed = time.monotonic() - t0
    status, err = status_and_error(raw)
    assert status == 408 and err["code"] == "request_timeout"
    assert HEADER_TIMEOUT_S * 0.95 <= elapsed < HEADER_TIMEOUT_S + 2


def test_a_body_that_does_not_arrive_in_time_is_a_408_and_close(gw: Gateway) -> None:
    with connect(gw) as sock:
        t0 = time.monotonic()
        sock.sendall(start(b"\r\n", length=100) + b'{"model": "gpt-x", ')  # 19 of 100 bytes, then silence
        raw = read_all(sock)
        elapsed = time.monotonic() - t0
    status, err = status_and_error(raw)
    assert status == 408 and "body" in err["message"]
    assert BODY_TIMEOUT_S * 0.95 <= elapsed < BODY_TIMEOUT_S + 2


def test_a_kept_alive_connection_serves_several_requests_each_timed_afresh(gw: Gateway) -> None:
    body = b'{"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}'
    with connect(gw) as sock:
        for _ in range(3):
            sock.sendall(start(b"\r\n", length=len(body)) + body)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            time.sleep(HEADER_TIMEOUT_S * 0.6)  # under the deadline each time; more than it in total


def test_ordinary_requests_pass_and_refusals_are_counted(gw: Gateway) -> None:
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {CLIENT_KEY}"},
                   json={"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    metrics = httpx.get(gw.url + "/metrics").text
    for reason in ("header_too_large", "too_many_headers", "header_timeout", "body_timeout"):
        assert f'gateway_http_rejected_total{{reason="{reason}"}}' in metrics, reason
