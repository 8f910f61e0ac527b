"""The demo as a newcomer meets it (issue 27): `demo` from any directory, and the SDK matrix against the
local model simulator through the gateway with the example config (Python SDK sync and async, curl-like
raw HTTP, Node's fetch decoding base64 as the Node SDK does when node is installed)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import BaseModel

from gateway.echo import LEAK_ANSWER, TRIGGER, example_value
from tests.conftest import Gateway, free_port, start_gateway, stop_process

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-demo-key"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
                                     "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "unit", "days"], "additionalProperties": False}}}


class Event(BaseModel):
    name: str
    attendees: list[str]
    day: int
    confirmed: bool


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("demo")
    gw = start_gateway(ROOT / "config" / "gateway.yaml", free_port(), tmp / "demo.log", command="demo",
                       env={"GATEWAY_DATA_DIR": str(tmp / "data")})
    try:
        yield gw
    finally:
        stop_process(gw.process)


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


def test_demo_runs_from_any_directory_with_the_packaged_config(tmp_path: Path) -> None:
    """The README's `demo` step from a directory without config/: it answers, its banner comes after the
    port is bound, and Ctrl-C prints the shutdown lines once."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--port", str(port)], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                                    headers={"Authorization": f"Bearer {KEY}"},
                                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert answer is not None, log.read_text()
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "Echo: Hi"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "gateway/data/gateway.yaml" in text  # the packaged example
    assert (tmp_path / "xdg" / "guardrail-gateway").is_dir()  # its store is in the user's data dir
    assert text.index("Uvicorn running on") < text.index("Try it:")  # the banner once the port is bound
    assert text.count("Shutting down") == 1 and text.count("Finished server process") == 1
    assert "Please consider to run pre-processing" not in text


def test_packaged_example_config_is_the_repository_one() -> None:
    assert (ROOT / "gateway" / "data" / "gateway.yaml").read_text() == (ROOT / "config" / "gateway.yaml").read_text()


def test_python_sdk_chat_stream_n_and_usage(demo: Gateway) -> None:
    c = client(demo)
    reply = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi!"}], n=3)
    assert [ch.message.content for ch in reply.choices] == ["Echo: Hi!"] * 3
    assert reply.usage is not None and reply.usage.total_tokens > 0
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "one two"}],
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Echo: one two"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_python_sdk_tools_streamed_and_not(demo: Gateway) -> None:
    c = client(demo)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    reply = c.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city", "unit", "days"}
    with c.chat.completions.stream(model="gpt-4o-mini", messages=messages, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]
    assert streamed.function.name == "get_weather" and streamed.function.arguments == call.function.arguments
    # the tool's result is answered in text
    follow = c.chat.completions.create(model="gpt-4o-mini", tools=[WEATHER], messages=[
        *messages, reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 C"}])
    assert follow.choices[0].finish_reason == "stop" and "18 C" in follow.choices[0].message.content


def test_python_sdk_json_mode_and_structured_outputs(demo: Gateway) -> None:
    c = client(demo)
    reply = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "as json"}],
                                      response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content) == {"echo": "Echo: as json"}
    parsed = c.chat.completions.parse(model="gpt-4o-mini", messages=[{"role": "user", "content": "plan it"}],
                                      response_format=Event)
    assert isinstance(parsed.choices[0].message.parsed, Event)
    resp = c.responses.parse(model="gpt-4o-mini", input="plan it", text_format=Event)
    assert isinstance(resp.output_parsed, Event)


def test_python_sdk_completions_streamed_and_not(demo: Gateway) -> None:
    c = client(demo)
    reply = c.completions.create(model="gpt-4o-mini", prompt="Say this", n=2)
    assert [ch.text for ch in reply.choices] == ["Echo: Say this"] * 2 and reply.usage.total_tokens > 0
    text = "".join(ch.choices[0].text for ch in c.completions.create(model="gpt-4o-mini", prompt="a b c", stream=True)
                   if ch.choices)
    assert text == "Echo: a b c"


def test_python_sdk_responses_streamed_and_not_and_tools(demo: Gateway) -> None:
    c = client(demo)
    resp = c.responses.create(model="gpt-4o-mini", input="Hello there")
    assert resp.output_text == "Echo: Hello there" and resp.usage.total_tokens > 0
    with c.responses.stream(model="gpt-4o-mini", input="Hello there") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    # (the example config's output stages have the gateway fetch it whole and tell it as one delta)
    assert "".join(deltas) == "Echo: Hello there" == final.output_text
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    called = c.responses.create(model="gpt-4o-mini", input="Weather?", tools=[tool])
    assert called.output[0].type == "function_call" and set(json.loads(called.output[0].arguments)) == {
        "city", "unit", "days"}


def test_python_sdk_embeddings_float_and_base64_with_dimensions(demo: Gateway) -> None:
    c = client(demo)
    floats = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=12,
                                 encoding_format="float")
    default = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=12)  # base64 asked
    assert [len(d.embedding) for d in floats.data] == [12, 12]
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert floats.usage.total_tokens > 0 and abs(sum(v * v for v in floats.data[0].embedding) - 1) < 1e-5


def test_python_sdk_models_and_async(demo: Gateway) -> None:
    assert "gpt-4o-mini" in {m.id for m in client(demo).models.list()}

    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=demo.url + "/v1", api_key=KEY, max_retries=0, timeout=30) as ac:
            reply = await ac.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
            stream = await ac.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                      messages=[{"role": "user", "content": "y z"}])
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
            return reply.choices[0].message.content, text

    assert asyncio.run(run()) == ("Echo: x", "Echo: y z")


def test_the_trigger_phrase_shows_output_guarding(demo: Gateway) -> None:
    c = client(demo)
    reply = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": TRIGGER}])
    content = reply.choices[0].message.content
    assert content != LEAK_ANSWER and "4111" not in content and "<CREDIT_CARD>" in content
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": TRIGGER}], stream=True) if ch.choices)
    assert "4111" not in streamed and "<CREDIT_CARD>" in streamed


def test_raw_http_base64_is_little_endian_float32(demo: Gateway) -> None:
    raw = httpx.post(demo.url + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": "text-embedding-3-small", "input": "a", "dimensions": 5,
                           "encoding_format": "base64"}).json()
    data = base64.b64decode(raw["data"][0]["embedding"])
    assert len(data) == 20 and len(struct.unpack("<5f", data)) == 5 and raw["usage"]["total_tokens"] > 0


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_fetch_decodes_base64_embeddings_as_the_node_sdk_does(demo: Gateway) -> None:
    """The Node SDK asks for base64 and reads it as a Float32Array; the npm `openai` package is not
    available offline here, so this does the SDK's decoding with node's own fetch and Buffer."""
    script = f"""
    const r = await fetch({json.dumps(demo.url + '/v1/embeddings')}, {{method: 'POST', headers: {{
      'Authorization': 'Bearer {KEY}', 'Content-Type': 'application/json'}},
      body: JSON.stringify({{model: 'text-embedding-3-small', input: 'a', dimensions: 12, encoding_format: 'base64'}})}});
    const body = await r.json();
    const buf = Buffer.from(body.data[0].embedding, 'base64');
    const v = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    console.log(JSON.stringify({{n: v.length, first: v[0], usage: body.usage.total_tokens}}));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    floats = client(demo).embeddings.create(model="text-embedding-3-small", input="a", dimensions=12,
                                            encoding_format="float")
    assert got["n"] == 12 and got["first"] == pytest.approx(floats.data[0].embedding[0]) and got["usage"] > 0


def test_example_value_is_valid_for_common_schemas() -> None:
    schema = Event.model_json_schema()
    assert Event.model_validate(example_value(schema))
    nested = {"type": "object", "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}},
                                                "required": ["x"]}},
              "properties": {"p": {"$ref": "#/$defs/P"}, "q": {"anyOf": [{"type": "null"}, {"type": "boolean"}]}},
              "required": ["p", "q"]}
    assert example_value(nested) == {"p": {"x": 1.0}, "q": True}


def test_the_simulator_itself_streams_responses_and_completions_in_pieces() -> None:
    from gateway.echo import create_echo_app

    async def run() -> tuple[list[str], list[str]]:
        transport = httpx.ASGITransport(app=create_echo_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://echo/v1") as http:
            ac = openai.AsyncOpenAI(base_url="http://echo/v1", api_key="x", http_client=http, max_retries=0)
            async with ac.responses.stream(model="m", input="one two three") as stream:
                deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            chunks = await ac.completions.create(model="m", prompt="a b", stream=True)
            texts = [ch.choices[0].text async for ch in chunks if ch.choices]
            return deltas, texts

    deltas, texts = asyncio.run(run())
    assert deltas == ["Echo:", " one", " two", " three"] and "".join(texts) == "Echo: a b"


def test_body_and_headers_agree_on_input_redaction_and_the_log_keeps_the_asked_model(demo: Gateway) -> None:
    """Issue 27 item 8: with output stages that pass the answer, the body's `guardrail` field said no
    action while x-guardrail-action said redact; the monitoring log said model '*' (the route's glob)."""
    raw = httpx.post(demo.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                     json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mail a@example.com"}]})
    note = raw.json()["guardrail"]
    assert raw.headers["x-guardrail-action"] == note["action"] == "redact"
    assert raw.headers["x-guardrail-stage"] == note["stage"] and raw.headers["x-guardrail-ruleset"] == note["ruleset"]
    assert any(s["on"] == "input" and s["action"] == "redact" for s in note["stages"])
    mine: list = []
    for _ in range(50):  # the records reach the store within a flush interval (0.2 s)
        log = httpx.get(demo.url + "/v1/monitoring?limit=20", headers={"Authorization": "Bearer admin-demo-token"})
        records = log.json()["data"]
        mine = [r for r in records if r["id"] == note["request_id"]]
        if mine:
            break
        time.sleep(0.1)
    assert mine and {r["model"] for r in mine} == {"gpt-4o-mini"} and all(r["route"] for r in mine)


def test_node_sdk_matrix(demo: Gateway) -> None:
    """The official OpenAI Node SDK (tests/node, pinned; installed by the README's test command with
    `npm ci --prefix tests/node`) through the demo gateway: chat, stream with usage, n, tools streamed and
    not, JSON mode, structured outputs, completions streamed and not, responses streamed and not,
    embeddings base64 (the SDK's default) and float, models, and output guarding."""
    node_dir = ROOT / "tests" / "node"
    node = shutil.which("node")
    assert node, "Node.js is not installed (the README's test command needs node and npm)"
    assert (node_dir / "node_modules" / "openai").is_dir(), "run: npm ci --prefix tests/node"
    done = subprocess.run([node, str(node_dir / "sdk_matrix.mjs"), demo.url + "/v1", KEY], capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 15, done.stdout + done.stderr
    assert all(line.startswith("ok ") for line in lines), done.stdout


def test_langchain_chat_openai(demo: Gateway) -> None:
    """LangChain's ChatOpenAI through the demo gateway: invoke, stream, tools and structured output."""
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel as LCModel

    class City(LCModel):
        name: str
        population: int

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=demo.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
    assert llm.invoke("Hi").content == "Echo: Hi"
    assert "".join(str(chunk.content) for chunk in llm.stream("Hello there")) == "Echo: Hello there"
    called = llm.bind_tools([WEATHER], tool_choice="required").invoke("Weather in Paris?")
    assert called.tool_calls and called.tool_calls[0]["name"] == "get_weather"
    city = llm.with_structured_output(City, method="json_schema").invoke("A city")
    assert isinstance(city, City) and isinstance(city.population, int)
