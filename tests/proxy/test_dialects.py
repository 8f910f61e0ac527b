"""Endpoint dialects (gateway/proxy/dialects/): what is specific to one endpoint lives in its dialect, so
the request flow never compares endpoint names (issue 26, review 5.1: "keep it true")."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from gateway.proxy.dialects import DIALECTS, Dialect, dialect, of
from gateway.proxy.openai import CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS, RESPONSES

ROOT = Path(__file__).resolve().parent.parent.parent
_NAMES = "|".join(DIALECTS)
# An endpoint's name compared with ==, != or in, or an `endpoint.name ==`.
_COMPARED = re.compile(rf'(==|!=|\bin\b)\s*[(\[{{]?"({_NAMES})"|endpoint\.name\s*(==|!=)')


def test_no_endpoint_name_is_compared_outside_the_dialects() -> None:
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "gateway").rglob("*.py")) if "dialects" not in path.parts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if _COMPARED.search(line)]
    assert found == []


def test_every_proxied_route_has_its_dialect() -> None:
    for endpoint in (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MODERATIONS):
        assert of(endpoint).endpoint is endpoint
        assert of(endpoint).name == endpoint.name
    assert type(dialect("no_such_endpoint")) is Dialect  # reads nothing, answers a stop with an error
    assert dialect("no_such_endpoint").read_request({"input": "x"}) == ([], None)


def test_what_answers_in_its_own_shape_and_streams_choices() -> None:
    shaped = {name for name, d in DIALECTS.items() if d.answers_in_shape}
    assert shaped == {"chat_completions", "completions", "responses"}
    assert {name for name, d in DIALECTS.items() if d.choices is not None} == {"chat_completions", "completions"}
    assert {name for name, d in DIALECTS.items() if d.whole_when_guarded} == {"responses"}


def test_refusal_stream_tells_the_refusal() -> None:
    note = {"request_id": "r"}
    for name in ("chat_completions", "completions"):
        events = dialect(name).refusal_stream("m", "no.", note, "r")
        assert events.endswith(b"data: [DONE]\n\n")
        chunks = [orjson.loads(line[len(b"data: "):]) for line in events.split(b"\n\n") if line and b"[DONE]" not in line]
        assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter" and chunks[-1]["guardrail"] == note
    body = dialect("responses").refusal("m", "no.", note, "r")
    assert body["status"] == "incomplete" and body["output"][0]["content"][0]["text"] == "no."
    assert b"response.incomplete" in dialect("responses").refusal_stream("m", "no.", note, "r")
