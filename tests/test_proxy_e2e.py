"""End to end: the official openai client and raw httpx against a real gateway and a real test upstream."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import orjson
import pytest

from tests.conftest import CLIENT_KEY, CLIENT_KEY_B, UPSTREAM_KEY, Gateway
from tests.upstream import CHUNK_DELAY_S, Recorder


def client(gw: Gateway, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def aclient(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def headers_of(entry: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in entry["headers"]:
        out.setdefault(k, []).append(v)
    return out


def test_chat_non_stream_sync(gateway: Gateway, recorder: Recorder) -> None:
    result = client(gateway).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hello"}],
        extra_body={"x_unknown_field": {"nested": [1, 2]}, "guardrails_later": True})
    assert result.choices[0].message.content == "echo:hello"
    sent = recorder.last()
    assert sent["json"]["x_unknown_field"] == {"nested": [1, 2]}
    assert sent["json"]["guardrails_later"] is True


def test_request_body_forwarded_byte_for_byte(gateway: Gateway, recorder: Recorder) -> None:
    body = b'{"model": "gpt-test",   "messages": [{"role": "user", "content": "caf\\u00e9"}], "z": 1.50}'
    r = httpx.post(gateway.url + "/v1/chat/completions", content=body,
                   headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"})
    assert r.status_code == 200
    assert recorder.last()["body"] == body


def test_header_hygiene(gateway: Gateway, recorder: Recorder) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions",
                   json={"model": "gpt-test", "messages": [{"role": "user", "content": "h"}]},
                   headers={"authorization": f"Bearer {CLIENT_KEY}", "x-trace-id": "trace-1",
                            "connection": "keep-alive, x-hop-named", "x-hop-named": "drop-me",
                            "proxy-authorization": "Basic abc", "te": "trailers", "api-key": "client-secret",
                            "openai-organization": "org-client", "cookie": "session=1"})
    assert r.status_code == 200
    sent = headers_of(recorder.last())
    assert sent["authorization"] == [f"Bearer {UPSTREAM_KEY}"]
    assert sent["x-trace-id"] == ["trace-1"]
    for dropped in ("x-hop-named", "proxy-authorization", "te", "api-key", "openai-organization", "cookie"):
        assert dropped not in sent, dropped
    assert CLIENT_KEY not in str(recorder.last()["headers"])
    # Response side: upstream's useful headers kept, its cookies and hop-by-hop ones not.
    assert r.headers["x-request-id"] == "up-123"
    assert r.headers["x-ratelimit-remaining"] == "99"
    assert "set-cookie" not in r.headers
    assert r.headers["x-guardrail-request-id"].startswith("gw-")
    assert int(r.headers["content-length"]) == len(r.content)
    assert UPSTREAM_KEY not in str(r.headers) + r.text


def test_expect_100_continue_is_answered_by_the_gateway_and_never_forwarded(gateway: Gateway,
                                                                             recorder: Recorder) -> None:
    import socket

    body = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "h"}]}'
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\nExpect: 100-continue\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        interim = sock.recv(4096)  # the client waits for the go-ahead before it sends the body
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK", answer[:200]
    assert "expect" not in headers_of(recorder.last())


def test_compressed_upstream_body_is_relayed_decoded(gateway: Gateway) -> None:
    r = post(gateway, {**CHAT_OK, "model": "gzip-1"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.json()["choices"][0]["message"]["content"] == "echo:x"


def test_chat_stream_sync_relays_as_it_arrives(gateway: Gateway, recorder: Recorder) -> None:
    text = "abcdefghijklmnopqrst"  # five upstream chunks, CHUNK_DELAY_S apart
    stream = client(gateway).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": text}], stream=True)
    received, arrival = [], []
    for chunk in stream:
        arrival.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "echo:" + text
    # The first chunk reached us well before the upstream finished: no buffering of the whole answer.
    assert arrival[-1] - arrival[0] >= 4 * CHUNK_DELAY_S * 0.8


@pytest.mark.anyio
async def test_chat_async_stream_and_non_stream(gateway: Gateway) -> None:
    async with aclient(gateway) as c:
        result = await c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "a"}])
        assert result.choices[0].message.content == "echo:a"
        stream = await c.chat.completions.create(model="gpt-test", stream=True,
                                                 messages=[{"role": "user", "content": "async"}])
        parts = [ch.choices[0].delta.content async for ch in stream if ch.choices and ch.choices[0].delta.content]
        assert "".join(parts) == "echo:async"


def test_completions_embeddings_responses(gateway: Gateway, recorder: Recorder) -> None:
    c = client(gateway)
    assert c.completions.create(model="text-test", prompt="p").choices[0].text == "echo:p"
    assert recorder.last()["path"] == "/v1/completions"
    assert c.embeddings.create(model="embed-test", input="x").data[0].embedding == [0.1, 0.2, 0.3]
    assert recorder.last()["path"] == "/v1/embeddings"
    # No input stage applies to this application, so input the guard could not read is forwarded as sent.
    assert c.embeddings.create(model="embed-test", input=[[101, 202]]).data[0].embedding == [0.1, 0.2, 0.3]
    assert recorder.last()["json"]["input"] == [[101, 202]]
    assert c.responses.create(model="gpt-test", input="r").output_text == "echo:r"
    assert recorder.last()["path"] == "/v1/responses"


def test_models_union_of_upstream_lists_and_config_names(gateway: Gateway) -> None:
    ids = [m.id for m in client(gateway).models.list()]
    assert "gpt-test" in ids and "gpt-other" in ids  # from the upstream, routed to `main`
    assert "literal-model" in ids                     # a literal name from config
    assert len(ids) == len(set(ids))


def post(gw: Gateway, body: bytes | dict, key: str | None = CLIENT_KEY, path: str = "/v1/chat/completions",
         **kw: object) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    kw.setdefault("timeout", 20)
    return httpx.post(gw.url + path, content=content, headers=headers, **kw)  # type: ignore[arg-type]


def assert_openai_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    return err


CHAT_OK = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize("body,param", [
    (b"{not json", None), (b"[1, 2]", None), (b"", None),
    (orjson.dumps({"messages": [{"role": "user", "content": "x"}]}), "model"),
    (orjson.dumps({"model": "gpt-test"}), "messages"),
    (orjson.dumps({"model": "gpt-test", "messages": []}), "messages"),
    (orjson.dumps({"model": 5, "messages": [{"role": "user", "content": "x"}]}), "model"),
])
def test_400_bad_requests(gateway: Gateway, body: bytes, param: str | None) -> None:
    err = assert_openai_error(post(gateway, body), 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param


def test_400_via_openai_client(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway).completions.create(model="text-test", prompt=None)  # type: ignore[arg-type]
    assert info.value.status_code == 400


@pytest.mark.parametrize("authorization", [
    None, "Bearer sk-wrong-key-zzz", "Bearer", "Basic dXNlcjpwYXNz", CLIENT_KEY, f"Token {CLIENT_KEY}"])
def test_401_unknown_key(gateway: Gateway, authorization: str | None) -> None:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    r = httpx.post(gateway.url + "/v1/chat/completions", content=orjson.dumps(CHAT_OK), headers=headers)
    assert_openai_error(r, 401, "invalid_api_key")
    assert "sk-" not in r.text


def test_401_via_openai_client(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-not-a-gateway-key").chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}])


def test_404_no_upstream_for_model(gateway: Gateway) -> None:
    err = assert_openai_error(post(gateway, {**CHAT_OK, "model": "claude-unrouted"}), 404, "model_not_found")
    assert err["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client(gateway).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_404_unknown_path_is_openai_shaped(gateway: Gateway) -> None:
    assert_openai_error(httpx.get(gateway.url + "/v1/nothing-here"), 404)


def test_413_body_too_large(gateway: Gateway) -> None:
    big = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert_openai_error(post(gateway, big), 413, "request_too_large")


def test_413_chunked_body_without_content_length(gateway: Gateway) -> None:
    payload = orjson.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "y" * 70_000}]})

    def chunks():  # a generator body makes httpx send Transfer-Encoding: chunked
        for i in range(0, len(payload), 8192):
            yield payload[i:i + 8192]

    r = httpx.post(gateway.url + "/v1/chat/completions", content=chunks(), timeout=20,
                   headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"})
    assert_openai_error(r, 413, "request_too_large")


def test_502_upstream_unreachable(gateway: Gateway) -> None:
    r = post(gateway, {**CHAT_OK, "model": "down-1"})
    err = assert_openai_error(r, 502, "upstream_unreachable")
    assert "down" in err["message"]
    assert "SECRET" not in r.text and "127.0.0.1" not in r.text


def test_504_upstream_timeout(gateway: Gateway) -> None:
    r = post(gateway, {**CHAT_OK, "model": "slow-1"})
    assert_openai_error(r, 504, "upstream_timeout")
    assert "SECRET" not in r.text


@pytest.mark.parametrize("status", [429, 500, 503])
def test_upstream_errors_relayed_as_they_are(gateway: Gateway, status: int) -> None:
    r = post(gateway, {**CHAT_OK, "model": f"status-{status}"})
    assert r.status_code == status
    assert r.json() == {"error": {"message": f"upstream says {status}", "type": "upstream_test", "param": None,
                                  "code": "test_code"}}
    assert r.headers["retry-after"] == "7"
    assert r.headers["x-upstream-extra"] == "yes"


@pytest.mark.parametrize("status", [500, 502])
def test_upstream_error_without_an_openai_body_becomes_one(gateway: Gateway, status: int) -> None:
    r = post(gateway, {**CHAT_OK, "model": f"html-{status}"})
    assert_openai_error(r, status, "upstream_error")
    assert r.headers["content-type"] == "application/json" and r.headers["retry-after"] == "3"
    assert "html" not in r.text and "x-guardrail-request-id" in r.headers
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway).chat.completions.create(model=f"html-{status}", stream=True,
                                                messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status and info.value.body["code"] == "upstream_error"


def test_upstream_error_on_stream_request_relayed(gateway: Gateway) -> None:
    with pytest.raises(openai.RateLimitError):
        client(gateway).chat.completions.create(model="status-429", stream=True,
                                                messages=[{"role": "user", "content": "x"}])


def test_client_disconnect_cancels_upstream(gateway: Gateway, recorder: Recorder) -> None:
    model = f"hang-{uuid.uuid4().hex[:8]}"
    closed = recorder.closed_event(model)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=20,
                      headers={"authorization": f"Bearer {CLIENT_KEY}"},
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
        chunks = r.iter_bytes()  # keep a reference: a collected iterator closes the response early
        assert b"first" in next(chunks)
        time.sleep(0.3)
        assert not closed.is_set(), "the upstream stream ended while the client was still reading"
    # The upstream stream sleeps 30 s; it is closed early only if the gateway cancelled it.
    assert closed.wait(timeout=5), "upstream stream was not cancelled after the client left"


def test_client_disconnect_cancels_non_streamed_upstream_call(gateway: Gateway, recorder: Recorder) -> None:
    model = f"wait-{uuid.uuid4().hex[:8]}"
    closed = recorder.closed_event(model)
    with pytest.raises(httpx.ReadTimeout):
        post(gateway, {**CHAT_OK, "model": model}, timeout=0.5)
    assert closed.wait(timeout=5), "upstream call was not cancelled after the client left"
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'route="chat_completions",status="499"' in metrics


def test_upstream_dies_mid_stream_raw(gateway: Gateway) -> None:
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=20,
                      headers={"authorization": f"Bearer {CLIENT_KEY}"},
                      json={"model": "die-1", "stream": True,
                            "messages": [{"role": "user", "content": "abcdefghijkl"}]}) as r:
        body = r.read()  # raises if the gateway did not end its response cleanly
    events = [e for e in body.split(b"\n\n") if e]
    assert events[0].startswith(b"data: {")
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "upstream_unreachable"
    assert "ended early" in last["error"]["message"]


def test_upstream_dies_mid_stream_openai_client(gateway: Gateway) -> None:
    stream = client(gateway).chat.completions.create(model="die-2", stream=True,
                                                     messages=[{"role": "user", "content": "abcdefghijkl"}])
    got = []
    with pytest.raises(openai.APIError, match="ended early"):
        for chunk in stream:
            got.append(chunk)
    assert got, "chunks before the failure were relayed"


def test_health_ready_and_metrics(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    client(gateway, CLIENT_KEY_B).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "m"}])
    post(gateway, {**CHAT_OK, "model": "down-3"})
    list(client(gateway).chat.completions.create(model="gpt-test", stream=True,
                                                 messages=[{"role": "user", "content": "m"}]))
    text = httpx.get(gateway.url + "/metrics").text
    assert 'gateway_requests_total{application="app-b",model="gpt-*",route="chat_completions",status="200"}' in text
    assert 'gateway_requests_total{application="unknown",model="unknown",route="chat_completions",status="401"}' in text
    assert "gateway_time_to_first_token_seconds_count" in text
    assert 'gateway_upstream_duration_seconds_count{route="chat_completions",upstream="main"}' in text
    assert 'gateway_in_flight_requests{route="chat_completions"} 0.0' in text
    assert 'gateway_upstream_errors_total{kind="unreachable",upstream="down"}' in text
    # Client-chosen model names never become label values: only config globs do.
    assert "claude-unrouted" not in text and "hang-" not in text.replace('"hang-*"', "")


def test_logs_are_json_and_carry_no_secrets(gateway: Gateway) -> None:
    post(gateway, CHAT_OK)
    post(gateway, {**CHAT_OK, "model": "down-2"})
    post(gateway, CHAT_OK, key="sk-wrong-key-in-logs")
    time.sleep(0.2)
    logs = gateway.logs()
    for secret in (UPSTREAM_KEY, CLIENT_KEY, CLIENT_KEY_B, "sk-wrong-key-in-logs", "SECRET"):
        assert secret not in logs
    access = [orjson.loads(line) for line in logs.splitlines()
              if line.startswith("{") and '"gateway.access"' in line]
    assert access, logs[-2000:]
    assert {"request_id", "route", "application", "model", "status", "duration_ms"} <= set(access[-1])
