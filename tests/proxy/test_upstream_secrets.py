"""The upstreams' secrets and headers through the real proxy: an upstream that echoes its key in an error,
headers that pose as the gateway's verdict, a code metric whose exception carries a key."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from gateway.config.schema import UpstreamConfig
from gateway.proxy.upstream import client_response_headers
from gateway.scrub import SecretScrubber
from tests.conftest import Gateway, running_gateway

MAIN_KEY = "sk-proj-LEAKME-0123456789abcdefWXYZ"
OTHER_KEY = "sk-other-SECRET-9876543210zz"
AZURE_KEY = "azure-api-key-55aa66bb77cc"
PLAIN, GUARDED, CODE = "sk-secrets-plain", "sk-secrets-guarded", "sk-secrets-code"


def config(upstream: str, port: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams:
  - {{name: other, base_url: "{upstream}", api_key: {OTHER_KEY}, headers: {{api-key: {AZURE_KEY}}},
     models: ["leak-other-*"]}}
  - {{name: main, base_url: "{upstream}", api_key: "${{TEST_LEAK_KEY}}", models: ["leak-*", "spoof-*", "gpt-*"]}}
applications:
  - {{id: plain, keys: ["{PLAIN}"]}}
  - {{id: guarded, keys: ["{GUARDED}"], stages: [mask-out]}}
  - {{id: code, keys: ["{CODE}"], stages: [leaky-in]}}
policies:
  - {{id: codes, type: regex, patterns: ["PROJECT-[0-9]{{4}}"]}}
  - {{id: leaky, type: code, function: "tests.guard.sample_metrics:leaky"}}
stages:
  - name: mask-out
    on: output
    rulesets:
      - {{name: mask, rules: [{{metric: codes}}], action: {{type: redact}}}}
  - name: leaky-in
    on: input
    on_error: allow
    rulesets:
      - {{name: flaky, rules: [{{metric: leaky, op: gt, value: 0.5}}], action: {{type: block}}}}
"""


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("secrets"), lambda port: config(upstream, port),
                         env={"TEST_LEAK_KEY": MAIN_KEY}) as g:
        yield g


def client(gw: Gateway, key: str = PLAIN) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def chat(model: str, text: str = "hi") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def assert_no_secret(text: str) -> None:
    for secret in (MAIN_KEY, OTHER_KEY, AZURE_KEY, MAIN_KEY[:8] + "*", MAIN_KEY[-12:], OTHER_KEY[-12:]):
        assert secret not in text, secret


def test_upstream_error_echoing_the_key_is_relayed_without_it(gw: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gw).chat.completions.create(**chat("leak-1"))
    err = caught.value
    assert err.status_code == 401
    message = err.body["message"]
    assert message.startswith("Incorrect API key provided: [REDACTED]. You can find your API key")
    assert "(sent: [REDACTED], api-key: None)" in message
    assert err.body["code"] == "invalid_api_key"  # the rest of the upstream's error is relayed as it was
    assert_no_secret(err.response.text + str(err.response.headers))
    assert err.response.headers["www-authenticate"] == 'Bearer realm="api", error="[REDACTED]"'


def test_every_upstreams_secrets_are_redacted_streamed_or_not(gw: Gateway) -> None:
    for stream in (False, True):
        r = httpx.post(gw.url + "/v1/chat/completions", json={**chat("leak-other-1"), "stream": stream},
                       headers={"authorization": f"Bearer {PLAIN}"}, timeout=20)
        assert r.status_code == 401
        assert r.json()["error"]["message"].endswith("(sent: [REDACTED], api-key: [REDACTED])")
        assert_no_secret(r.text + str(r.headers))


def test_upstream_cannot_pose_as_the_gateway_or_show_its_account(gw: Gateway) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(**chat("spoof-1"))
    assert raw.parse().choices[0].message.content == "echo:hi"
    assert "x-guardrail-action" not in raw.headers
    assert "x-guardrail-stage" not in raw.headers
    assert "openai-organization" not in raw.headers
    assert raw.headers["x-guardrail-request-id"].startswith("gw-")  # the gateway's own, once
    assert raw.headers.get_list("x-guardrail-request-id") == [raw.headers["x-guardrail-request-id"]]
    assert raw.headers["x-upstream-debug"] == "key=[REDACTED]; ok"  # a header value carrying the key
    assert raw.headers["x-request-id"] == "up-123"
    assert_no_secret(str(raw.headers))


def test_streamed_answer_drops_the_spoofed_headers_too(gw: Gateway) -> None:
    with client(gw).chat.completions.with_streaming_response.create(**chat("spoof-fast-1"), stream=True) as raw:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        headers = raw.headers
    assert text == "echo:hi"
    assert "x-guardrail-action" not in headers and "openai-organization" not in headers
    assert headers["x-upstream-debug"] == "key=[REDACTED]; ok"


def test_the_gateways_own_verdict_headers_are_its_own(gw: Gateway) -> None:
    for stream in (False, True):
        r = httpx.post(gw.url + "/v1/chat/completions", json={**chat("spoof-fast-2", "see PROJECT-1234"),
                                                              "stream": stream},
                       headers={"authorization": f"Bearer {GUARDED}"}, timeout=20)
        assert r.status_code == 200
        assert "PROJECT-1234" not in r.text
        # a stream's headers leave before its output is checked: then the verdict is in the stream alone
        assert r.headers.get_list("x-guardrail-action") == ([] if stream else ["redact"])
        assert r.headers.get_list("x-guardrail-stage") == ([] if stream else ["mask-out"])
        assert "openai-organization" not in r.headers


def test_code_metric_exception_is_logged_by_type_with_a_redacted_short_message(gw: Gateway) -> None:
    raw = client(gw, CODE).chat.completions.with_raw_response.create(**chat("gpt-1", "hello"))
    assert raw.parse().choices[0].message.content == "echo:hello"  # on_error: allow
    time.sleep(0.1)
    failed = [orjson.loads(line) for line in gw.logs().splitlines() if '"metric failed"' in line]
    assert failed, gw.logs()
    entry = failed[-1]
    assert entry["metric"] == "leaky" and entry["error_type"] == "RuntimeError"
    assert entry["error"].startswith("RuntimeError: scorer refused key [REDACTED]: detail detail")
    assert len(entry["error"]) <= len("RuntimeError: ") + 200 + 3
    assert_no_secret(gw.logs())


# The scrubber itself, on what the e2e tests do not reach.

def upstreams(*keys: str | None, **headers: str) -> list[UpstreamConfig]:
    return [UpstreamConfig(name=f"u{i}", base_url="http://x/v1", api_key=key, models=("*",), headers=headers)
            for i, key in enumerate(keys)]


def test_scrubber_forms_and_limits() -> None:
    scrub = SecretScrubber.from_upstreams(upstreams("sk-abcdefghijklmnop", "short", None,
                                                    Authorization="Bearer tok-0123456789"))
    assert scrub.text("k=sk-abcdefghijklmnop!") == "k=[REDACTED]!"
    assert scrub.text("provided: sk-abcde*********mnop. You") == "provided: [REDACTED]. You"
    assert scrub.text("auth Bearer tok-0123456789") == "auth [REDACTED]"
    assert scrub.text("tok-0123456789") == "[REDACTED]"
    assert scrub.text("short and sweet, sk-abc") == "short and sweet, sk-abc"  # under 8 chars: no secret
    assert scrub.bytes(b'{"m": "sk-abcdefghijklmnop"}') == b'{"m": "[REDACTED]"}'
    quoted = SecretScrubber(['pa"ss\\word-123'])
    assert quoted.bytes(orjson.dumps({"m": 'x pa"ss\\word-123'})) == b'{"m":"x [REDACTED]"}'
    assert not SecretScrubber.from_upstreams(upstreams(None))
    same = [(b"a", b"1")]
    assert scrub.headers(same) is same  # nothing found: the list as it came


def test_response_headers_drop_the_upstreams_guardrail_and_organization_headers() -> None:
    raw = [(b"content-type", b"application/json"), (b"x-guardrail-action", b"allow"),
           (b"x-guardrail-request-id", b"up"), (b"openai-organization", b"org-x"), (b"openai-project", b"proj-x"),
           (b"openai-version", b"2020"),
           (b"x-debug", b"Bearer sk-abcdefghijklmnop")]
    scrub = SecretScrubber(["sk-abcdefghijklmnop"])
    assert client_response_headers(raw, scrub) == [(b"content-type", b"application/json"),
                                                   (b"openai-version", b"2020"), (b"x-debug", b"Bearer [REDACTED]")]
