"""Opt-in pass-through of the other /v1 routes (issue 24, the whole OpenAI surface): upstreams[].passthrough
globs; the gateway's keys, limits, metrics and header hygiene; input stages on JSON text fields (an image
prompt, the text of speech); multipart uploads and binary audio relayed byte for byte; 404 naming the
config key elsewhere. The official openai client, the app in process, the fake upstream in memory
(tests/memupstream.py); through the real server, on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from tests.fakeopenai import AUDIO, Fake, fake_app, memory_fake, serve_fake
from tests.inprocess import in_process
from tests.proxy.test_moderations import STAGES
from tests.proxy.test_routing import metric

SECRET = "sk-upstream-secret-0123456789"
AUTH = {"authorization": "Bearer k-1"}


def config(fake: Fake, app: str = "{id: a, keys: [k-1]}", extra: str = STAGES, server: str = "") -> str:
    return (server + "upstreams:\n"
            f"  - {{name: plain, base_url: '{fake.url}/v1', models: ['other-*']}}\n"
            f"  - {{name: oa, base_url: '{fake.url}/v1', api_key: {SECRET}, models: ['gpt-*', 'dall-e-*', 'tts-*'],\n"
            f"     passthrough: ['/images/*', '/audio/*', '/files*', '/responses/*']}}\n"
            f"applications:\n  - {app}\n" + extra)


def client_for(http) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="k-1", http_client=http, max_retries=0)


def test_image_prompt_passes_input_stages_and_key_hygiene(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("oa")) as fake:
            async with in_process(config(fake), tmp_path, upstream_app=fake_app(fake)) as (_, http):
                client = client_for(http)
                image = await client.images.generate(model="dall-e-3", prompt="a cat mailing bob@example.com")
                assert image.data[0].b64_json == "aW1hZ2U="
                seen = fake.last()
                assert (seen.method, seen.path) == ("POST", "/v1/images/generations")
                assert "bob@example.com" not in seen.json()["prompt"] and seen.json()["prompt"].startswith("a cat")
                assert seen.headers["authorization"] == f"Bearer {SECRET}" and "k-1" not in str(seen.headers)
                before = len(fake.seen)
                with pytest.raises(openai.BadRequestError):
                    await client.images.generate(model="dall-e-3", prompt="something forbidden")
                assert len(fake.seen) == before  # blocked before the upstream
                m = (await http.get("/metrics")).text
                assert metric(m, "gateway_requests_total", route="passthrough", application="a", status="200") == 1
                assert metric(m, "gateway_requests_total", route="passthrough", application="a", status="400") == 1
    asyncio.run(go())


def test_multipart_upload_and_binary_speech_pass_byte_for_byte(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("oa")) as fake:
            async with in_process(config(fake), tmp_path, upstream_app=fake_app(fake)) as (_, http):
                client = client_for(http)
                content = AUDIO + b'{"custom_id": "r1"}\n'
                made = await client.files.create(file=("data.jsonl", content), purpose="batch")
                assert made.id == "file-1"
                seen = fake.last()
                assert (seen.method, seen.path) == ("POST", "/v1/files")
                assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
                assert content in seen.body  # every byte value, unparsed, untouched
                assert seen.headers.get("content-length") == str(len(seen.body))  # not re-chunked
                assert seen.headers["authorization"] == f"Bearer {SECRET}"

                speech = await client.audio.speech.create(model="tts-1", voice="alloy", input="call 555 at a@b.example")
                assert speech.read() == AUDIO and speech.response.headers["content-type"] == "audio/mpeg"
                sent = fake.last().json()
                assert fake.last().path == "/v1/audio/speech" and "a@b.example" not in sent["input"]

                r = await http.get("/v1/files", params={"purpose": "batch"}, headers=AUTH)
                assert fake.last().path == "/v1/files" and fake.last().query == {"purpose": "batch"}
                retrieved = await client.responses.retrieve("resp_123")
                assert retrieved.id == "resp_123" and fake.last().path == "/v1/responses/resp_123"
                assert r.status_code == 404  # the fake has no file list: its answer relayed as it came
    asyncio.run(go())


def test_routes_not_passed_through_are_404_naming_the_config_key(tmp_path: Path) -> None:
    async def go() -> None:
        async with memory_fake(Fake("oa")) as fake:
            async with in_process(config(fake), tmp_path, upstream_app=fake_app(fake)) as (_, http):
                r = await http.post("/v1/batches", json={"input_file_id": "file-1"}, headers=AUTH)
                assert r.status_code == 404 and "upstreams[].passthrough" in r.json()["error"]["message"]
                with pytest.raises(openai.NotFoundError) as closed:  # routed by model to an upstream without it
                    await client_for(http).images.generate(model="other-x", prompt="a cat")
                assert closed.value.code == "passthrough_disabled"
                assert "'plain'" in closed.value.message and "upstreams[].passthrough" in closed.value.message
                r = await http.get("/v1/models/gpt-x", headers=AUTH)  # the gateway's own route stays its own
                assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
                assert [s.path for s in fake.seen] == ["/v1/models", "/v1/models"]  # the model lists only
    asyncio.run(go())


def test_auth_limits_body_cap_and_scrubbed_errors(tmp_path: Path) -> None:
    async def go() -> None:
        fake = Fake("oa", status=401, error_text=f"Incorrect API key provided: {SECRET}")
        async with memory_fake(fake) as fake:
            cfg = config(fake, "{id: a, keys: [k-1], rpm: 4}", server="server: {max_body_bytes: 65536}\n")
            async with in_process(cfg, tmp_path, upstream_app=fake_app(fake)) as (_, http):
                r = await http.get("/v1/files", headers={"authorization": "Bearer nope"})
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key" and not fake.seen
                r = await http.get("/v1/files/file-1", headers=AUTH)
                assert r.status_code == 401 and SECRET not in r.text and "Incorrect API key" in r.text
                files = {"file": ("big.bin", b"x" * 100_000)}
                r = await http.post("/v1/files", files=files, data={"purpose": "batch"}, headers=AUTH)
                assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

                async def chunks():
                    for _ in range(20):
                        yield b"y" * 8192

                r = await http.post("/v1/files", content=chunks(), headers={
                    **AUTH, "content-type": "application/octet-stream"})
                assert r.status_code == 413  # no declared length: cut off at the cap as it streams
                r = await http.post("/v1/audio/transcriptions", content=b"RIFF", headers={
                    **AUTH, "content-type": "audio/wav"})  # a form's prompt is not read: refused under stages
                assert r.status_code == 400 and r.json()["error"]["code"] == "unreadable_input"
                assert len(fake.seen) == 1
                assert (await http.get("/v1/files/file-1", headers=AUTH)).status_code == 401  # the 4th counted
                r = await http.get("/v1/files/file-1", headers=AUTH)
                assert r.status_code == 429 and len(fake.seen) == 2 and "x-ratelimit-limit-requests" in r.headers
    asyncio.run(go())


def test_enforcing_output_stages_refuse_answers_with_text(tmp_path: Path) -> None:
    out = ("policies:\n  - {id: said, type: contains, keywords: ['secret']}\n"
           "stages:\n  - name: out\n    on: output\n    scope: central\n"
           "    rulesets: [{name: s, rules: [{metric: said}], action: {type: block}}]\n")

    async def go() -> None:
        async with memory_fake(Fake("oa")) as fake:
            async with in_process(config(fake, extra=out), tmp_path, upstream_app=fake_app(fake)) as (_, http):
                r = await http.get("/v1/responses/resp_1", headers=AUTH)
                assert r.status_code == 403 and r.json()["error"]["code"] == "unguarded_passthrough"
                assert not fake.seen
                r = await http.post("/v1/images/generations", json={"model": "dall-e-3", "prompt": "a cat"},
                                    headers=AUTH)  # an image is no text: it passes
                assert r.status_code == 200 and len(fake.seen) == 1
    asyncio.run(go())


def test_through_the_real_server_upload_and_binary_answer(tmp_path: Path) -> None:
    """The same relays through the gateway's own HTTP server (a process), not the in-process ASGI transport:
    a 300 KB multipart upload arrives whole and unparsed, binary speech comes back byte for byte."""
    from tests.conftest import running_gateway

    async def go() -> None:
        async with serve_fake(Fake("oa")) as fake:
            with running_gateway(tmp_path, lambda port: f"server: {{port: {port}}}\n" + config(fake)) as gw:
                client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="k-1", max_retries=0)
                content = AUDIO * 20  # 320 KiB
                made = await client.files.create(file=("data.jsonl", content), purpose="batch")
                assert made.id == "file-1" and content in fake.last().body
                assert fake.last().headers["authorization"] == f"Bearer {SECRET}"
                speech = await client.audio.speech.create(model="tts-1", voice="alloy", input="hello")
                assert speech.read() == AUDIO
                await client.close()
    asyncio.run(go())


@pytest.mark.parametrize("path", [
    "/v1/images/%252E%252E/chat/completions",             # decodes once to %2E%2E, which the upstream URL resolved
    "/v1/images/%252e%252e/%252e%252e/anything",          # out of /v1 altogether
    "/v1/images/generations%3F",                          # a decoded ? cut the path the checks read
    "/v1/images/generations%23x",
    "/v1/audio/transcriptions%3F",
    "/v1/images/a%20b",
])
def test_paths_that_could_reach_another_route_are_not_passed(tmp_path: Path, path: str) -> None:
    """Found by a review: a double-encoded dot segment passed the glob and the checks, then the upstream
    URL resolved it to /v1/chat/completions with the upstream's key and no input stage; a %3F or %23 made
    the checks read one path and the upstream get another."""
    async def go() -> tuple[int, int]:
        async with memory_fake(Fake("oa")) as fake:
            async with in_process(config(fake), tmp_path, upstream_app=fake_app(fake)) as (_, http):
                r = await http.post(path, headers=AUTH, json={
                    "model": "gpt-4o", "prompt": "something forbidden, mail bob@example.com",
                    "messages": [{"role": "user", "content": "something forbidden"}]})
                return r.status_code, len(fake.seen)

    status, reached = asyncio.run(go())
    assert status in (400, 404) and reached == 0


def test_json_routes_refuse_other_bodies_and_form_models_are_checked(tmp_path: Path) -> None:
    """A JSON-only route sent as text/plain was streamed on unread (its prompt past the input stages, its
    model past the allowed list); a form upload's model field cannot be checked under a model restriction."""
    async def go() -> None:
        app = "{id: a, keys: [k-1], models: ['gpt-4o-mini']}"
        async with memory_fake(Fake("oa")) as fake:
            async with in_process(config(fake, app=app), tmp_path, upstream_app=fake_app(fake)) as (_, http):
                body = b'{"model": "dall-e-3", "prompt": "something forbidden"}'
                for ctype in ("text/plain", None):
                    headers = {**AUTH, **({"content-type": ctype} if ctype else {})}
                    r = await http.post("/v1/images/generations", headers=headers, content=body)
                    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text
                r = await http.post("/v1/audio/transcriptions", headers=AUTH,
                                    files={"file": ("a.mp3", AUDIO)}, data={"model": "whisper-1"})
                assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed", r.text
                assert fake.seen == []
    asyncio.run(go())


def test_the_stored_chat_completions_list_is_refused_under_output_stages(tmp_path: Path) -> None:
    """GET /v1/chat/completions lists stored completions (model text) that output stages would never read."""
    async def go() -> int:
        async with memory_fake(Fake("oa")) as fake:
            out = ("  - name: out\n    on: output\n    scope: central\n"
                   "    rulesets: [{name: banned, rules: [{metric: banned}], action: {type: block}}]\n")
            cfg = config(fake, extra=STAGES + out).replace("'/responses/*']", "'/responses/*', '/chat/*']")
            async with in_process(cfg, tmp_path, upstream_app=fake_app(fake)) as (_, http):
                r = await http.get("/v1/chat/completions", headers=AUTH)
                assert fake.seen == [], "the stored completions were fetched"
                return r.status_code if r.json()["error"]["code"] == "unguarded_passthrough" else -r.status_code
    assert asyncio.run(go()) == 403


def test_a_client_leaving_mid_upload_is_a_499_not_an_upstream_failure(tmp_path: Path) -> None:
    """A streamed upload whose client goes away half-way was answered and counted as the upstream's
    failure (502, gateway_upstream_errors_total, an 'upstream failure' warning): any client could raise a
    healthy upstream's error rate by hanging up. It is the client's 499 now."""
    import socket
    import time

    import httpx

    from tests.conftest import running_gateway

    async def go() -> None:
        async with serve_fake(Fake("oa")) as fake:
            with running_gateway(tmp_path, lambda port: f"server: {{port: {port}}}\n" + config(fake)) as gw:
                host, port = gw.url.removeprefix("http://").split(":")
                head = (f"POST /v1/files HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer k-1\r\n"
                        "content-type: multipart/form-data; boundary=xyz\r\ncontent-length: 1000000\r\n\r\n")
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    s.sendall(head.encode() + b"--xyz\r\n" + b"x" * 20_000)
                    await asyncio.sleep(0.5)  # the upload has reached the upstream, then the client leaves
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    m = httpx.get(gw.url + "/metrics").text
                    if metric(m, "gateway_requests_total", route="passthrough", application="a", status="499"):
                        break
                    await asyncio.sleep(0.1)
                assert metric(m, "gateway_requests_total", route="passthrough", application="a", status="499") == 1
                assert not metric(m, "gateway_requests_total", route="passthrough", application="a", status="502")
                assert not metric(m, "gateway_upstream_errors_total", upstream="oa", kind="unreachable")
                assert "upstream failure" not in gw.log_path.read_text()
    asyncio.run(go())


def test_a_client_stalling_mid_upload_is_a_408_not_an_upstream_timeout(tmp_path: Path) -> None:
    """Found by a review: a streamed upload whose client went quiet ran inside the upstream's first-byte
    deadline, so it ended as 504 upstream_timeout counted against a healthy upstream. A deadline that
    passes while the body is still arriving is the client's 408."""
    import socket
    import time

    import httpx

    from tests.conftest import running_gateway

    async def go() -> None:
        async with serve_fake(Fake("oa")) as fake:
            text = config(fake).replace("passthrough: ['/images/*'", "first_byte_timeout_s: 1.0, passthrough: ['/images/*'")
            assert "first_byte_timeout_s" in text
            with running_gateway(tmp_path, lambda port: f"server: {{port: {port}}}\n" + text) as gw:
                host, port = gw.url.removeprefix("http://").split(":")
                head = (f"POST /v1/files HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer k-1\r\n"
                        "content-type: multipart/form-data; boundary=xyz\r\ncontent-length: 1000000\r\n\r\n")
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    s.sendall(head.encode() + b"--xyz\r\n" + b"x" * 20_000)
                    s.settimeout(8)
                    answer = b""
                    deadline = time.monotonic() + 8
                    while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
                        piece = s.recv(4096)
                        if not piece:
                            break
                        answer += piece
                assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
                m = httpx.get(gw.url + "/metrics").text
                assert metric(m, "gateway_requests_total", route="passthrough", application="a", status="408") == 1
                assert not metric(m, "gateway_upstream_errors_total", upstream="oa", kind="timeout")
    asyncio.run(go())
