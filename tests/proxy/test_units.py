"""Unit tests of the proxy's sans-IO pieces: routing, header hygiene, key lookup, request parsing."""

from __future__ import annotations

import orjson
import pytest

from gateway.config.schema import ApplicationConfig, UpstreamConfig
from gateway.proxy.auth import KeyRing
from gateway.proxy.openai import CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, OpenAIError, parse_request
from gateway.proxy.upstream import Router, client_response_headers, make_upstream, upstream_request_headers


def upstream(name: str, models: list[str], key: str | None = None, **extra: object):
    return make_upstream(UpstreamConfig(name=name, base_url="http://127.0.0.1:1/v1", models=tuple(models),
                                        api_key=key, **extra))  # type: ignore[arg-type]


def test_router_first_glob_match_wins_and_labels_with_the_glob() -> None:
    a, b = upstream("a", ["gpt-4*", "o1"]), upstream("b", ["gpt-*", "*"])
    router = Router([a, b])
    assert router.route("gpt-4o").upstream is a and router.route("gpt-4o").label == "gpt-4*"
    assert router.route("gpt-3.5").upstream is b and router.route("gpt-3.5").label == "gpt-*"
    assert router.route("o1").upstream is a
    assert router.route("o1-mini").upstream is b and router.route("o1-mini").label == "*"


def test_router_no_match_and_case_sensitivity() -> None:
    router = Router([upstream("a", ["gpt-*"])])
    assert router.route("GPT-4") is None
    assert router.route("claude") is None


def test_router_cache_stays_bounded() -> None:
    router = Router([upstream("a", ["*"])])
    for i in range(10_000):
        router.route(f"model-{i}")
    assert len(router._cache) <= 4096


def test_request_headers_drop_hop_by_hop_and_credentials() -> None:
    up = upstream("a", ["*"], key="sk-up", headers={"OpenAI-Organization": "org-gw"})
    raw = [(b"host", b"gw"), (b"authorization", b"Bearer client"), (b"connection", b"close, x-named"),
           (b"x-named", b"1"), (b"keep-alive", b"5"), (b"transfer-encoding", b"chunked"), (b"te", b"trailers"),
           (b"x-api-key", b"k"), (b"api-key", b"k"), (b"cookie", b"c=1"), (b"openai-organization", b"org-client"),
           (b"accept-encoding", b"br"), (b"content-length", b"10"), (b"x-keep", b"yes"), (b"expect", b"100-continue"),
           (b"content-type", b"application/json"), (b"user-agent", b"OpenAI/Python")]
    out = upstream_request_headers(raw, up)
    assert out == [("x-keep", "yes"), ("content-type", "application/json"), ("user-agent", "OpenAI/Python"),
                   ("openai-organization", "org-gw"), ("authorization", "Bearer sk-up")]


def test_request_headers_without_upstream_key_send_no_authorization() -> None:
    out = upstream_request_headers([(b"authorization", b"Bearer client")], upstream("a", ["*"]))
    assert out == []


def test_response_headers_drop_hop_by_hop_cookies_and_encoding() -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", b"5"), (b"content-encoding", b"gzip"),
           (b"set-cookie", b"a=1"), (b"connection", b"x-named"), (b"x-named", b"v"), (b"date", b"d"),
           (b"server", b"s"), (b"x-ratelimit-remaining-requests", b"9"), (b"transfer-encoding", b"chunked")]
    assert client_response_headers(raw) == [(b"content-type", b"application/json"),
                                            (b"x-ratelimit-remaining-requests", b"9")]


def test_keyring() -> None:
    ring = KeyRing([ApplicationConfig(id="a", keys=("k1", "k2")), ApplicationConfig(id="b", keys=("k3",))])
    assert ring.application("Bearer k2").id == "a"
    assert ring.application("bearer   k3").id == "b"
    for value in (None, "", "Bearer", "Bearer ", "k1", "Basic k1", "Bearer k4", "Bearer k1x"):
        assert ring.application(value) is None, value


@pytest.mark.parametrize("endpoint,body,param", [
    (CHAT, {"model": "m"}, "messages"),
    (CHAT, {"model": "m", "messages": "hi"}, "messages"),
    (COMPLETIONS, {"model": "m"}, "prompt"),
    (COMPLETIONS, {"model": "m", "prompt": None}, "prompt"),
    (EMBEDDINGS, {"model": "m"}, "input"),
    (RESPONSES, {"input": "x"}, "model"),
    (CHAT, {"model": "", "messages": [{"role": "user", "content": "x"}]}, "model"),
    (CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
])
def test_parse_request_rejects_with_the_param_named(endpoint, body, param) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_request(orjson.dumps(body), endpoint)
    assert info.value.status == 400 and info.value.param == param
    err = orjson.loads(info.value.body())["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_parse_request_accepts_and_keeps_unknown_fields() -> None:
    parsed = parse_request(b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true, '
                           b'"vendor_field": {"a": 1}}', CHAT)
    assert parsed.model == "m" and parsed.stream is True and parsed.payload["vendor_field"] == {"a": 1}
    assert parse_request(b'{"model": "m", "input": "x", "stream": true}', EMBEDDINGS).stream is False
    assert parse_request(b'{"model": "m", "input": "x"}', RESPONSES).stream is False
