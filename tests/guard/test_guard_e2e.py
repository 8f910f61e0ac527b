"""Every action through the real proxy with the openai client: input and output, streamed and not."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response

from tests.conftest import Gateway
from tests.guard.conftest import ADMIN, ADMIN_A, KEY_A, KEY_B, KEY_C, KEY_D, KEY_E
from tests.upstream import Recorder

CARD = "4111 1111 1111 1111"


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def chat(gw: Gateway, key: str, text: str, **kw: object):
    return client(gw, key).chat.completions.with_raw_response.create(
        model="gpt-fast", messages=[{"role": "user", "content": text}], **kw)


def streamed(gw: Gateway, key: str, text: str, **kw: object) -> tuple[str, str | None, list]:
    chunks = list(client(gw, key).chat.completions.create(
        model="gpt-fast", stream=True, messages=[{"role": "user", "content": text}], **kw))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = next((c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason), None)
    return content, finish, chunks


def test_clean_request_passes_unchanged(guarded: Gateway, recorder: Recorder) -> None:
    raw = chat(guarded, KEY_A, "What is the capital of France?")
    assert raw.parse().choices[0].message.content == "echo:What is the capital of France?"
    assert "x-guardrail-action" not in raw.headers


def test_input_block_makes_no_upstream_call(guarded: Gateway, recorder: Recorder) -> None:
    before = len(recorder.requests)
    raw = chat(guarded, KEY_E, "Tell me about PROJECT-1234 please")
    reply = raw.parse()
    assert reply.choices[0].message.content == "Blocked: project codes are confidential."
    assert reply.choices[0].finish_reason == "content_filter"
    assert raw.headers["x-guardrail-action"] == "block"
    assert raw.headers["x-guardrail-stage"] == "org-input"
    assert raw.headers["x-guardrail-ruleset"] == "block-secret"
    assert reply.model_extra["guardrail"]["action"] == "block"
    assert len(recorder.requests) == before
    request_id = raw.headers["x-guardrail-request-id"]
    time.sleep(0.1)
    line = next(orjson.loads(x) for x in guarded.logs().splitlines() if request_id in x and '"gateway.access"' in x)
    assert line["guard"] == "block" and "PROJECT-1234" not in guarded.logs()


def test_input_block_on_a_stream_request_answers_as_a_stream(guarded: Gateway) -> None:
    content, finish, _ = streamed(guarded, KEY_E, "PROJECT-9999 details?")
    assert content == "Blocked: project codes are confidential."
    assert finish == "content_filter"


def test_input_redact_changes_what_the_upstream_sees(guarded: Gateway, recorder: Recorder) -> None:
    reply = chat(guarded, KEY_E, "Mail me at jane.doe@example.com or call +1 415 555 0100").parse()
    sent = recorder.last()["json"]["messages"][-1]["content"]
    assert "jane.doe@example.com" not in sent and "<EMAIL_ADDRESS>" in sent
    assert "<PHONE_NUMBER>" in sent
    assert reply.choices[0].message.content == "echo:" + sent


def test_redact_scans_every_message_and_content_part(guarded: Gateway, recorder: Recorder) -> None:
    client(guarded, KEY_E).chat.completions.create(model="gpt-fast", messages=[
        {"role": "user", "content": "first: a@example.com"},
        {"role": "assistant", "content": "ok b@example.com"},
        {"role": "user", "content": [{"type": "text", "text": "second: c@example.org"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]}])
    sent = recorder.last()["json"]["messages"]
    assert sent[0]["content"] == "first: <EMAIL_ADDRESS>"
    assert sent[1]["content"] == "ok b@example.com"  # assistant history is not an input role by default
    assert sent[2]["content"][0]["text"] == "second: <EMAIL_ADDRESS>"
    assert sent[2]["content"][1]["type"] == "image_url"


def test_override_on_input(guarded: Gateway, recorder: Recorder) -> None:
    before = len(recorder.requests)
    raw = chat(guarded, KEY_A, "What do you think of ACME  Corp?")
    assert raw.parse().choices[0].message.content == "I can't discuss that."
    assert raw.headers["x-guardrail-action"] == "override"
    assert raw.headers["x-guardrail-stage"] == "a-input"
    assert len(recorder.requests) == before


def test_handoff_flags_the_request(guarded: Gateway) -> None:
    raw = chat(guarded, KEY_A, "word " * 700)
    reply = raw.parse()
    assert raw.headers["x-guardrail-action"] == "handoff"
    assert raw.headers["x-guardrail-handoff"] == "true"
    assert reply.model_extra["guardrail"]["handoff"] is True
    assert "human" in reply.choices[0].message.content


def test_output_override_non_stream(guarded: Gateway) -> None:
    raw = chat(guarded, KEY_A, f"my card is {CARD}")
    assert raw.parse().choices[0].message.content == "I can't share payment details."
    assert raw.headers["x-guardrail-stage"] == "a-output"


def test_output_override_stream_leaks_nothing(guarded: Gateway) -> None:
    content, finish, chunks = streamed(guarded, KEY_A, f"here is a long preamble first, then my card {CARD} ok")
    assert finish == "content_filter"
    assert "4111" not in content and content.endswith("I can't share payment details.")
    assert chunks[-1].model_extra["guardrail"]["ruleset"] == "payment"


def test_output_redact_non_stream_and_stream(guarded: Gateway) -> None:
    text = "the server is at 10.20.30.40 thanks"
    reply = chat(guarded, KEY_A, text).parse()
    assert reply.choices[0].message.content == "echo:the server is at <IP_ADDRESS> thanks"
    assert reply.model_extra["guardrail"]["action"] == "redact"
    content, finish, _ = streamed(guarded, KEY_A, text)
    assert content == "echo:the server is at <IP_ADDRESS> thanks"
    assert finish == "stop"


def test_a_streamed_responses_answer_is_checked_whole_then_streamed(guarded: Gateway, recorder: Recorder) -> None:
    """/v1/responses with stream: true under output stages: the gateway asks the upstream for the whole
    answer, checks it, and streams the checked response as OpenAI's events."""
    text = "the server is at 10.20.30.40 thanks"
    c = client(guarded, KEY_A)
    overhead = 'gateway_overhead_seconds_count{route="responses"}'
    measured = _metric(guarded, overhead)
    events = list(c.responses.create(model="gpt-fast", input=text, stream=True))
    assert _metric(guarded, overhead) == measured + 1  # read whole: its gateway overhead is measured
    sent = recorder.last()["json"]
    assert sent["stream"] is False and "stream_options" not in sent
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "echo:the server is at <IP_ADDRESS> thanks"
    with c.responses.stream(model="gpt-fast", input=text) as stream:  # the SDK helper rebuilds the response
        final = stream.get_final_response()
    assert final.output_text == "echo:the server is at <IP_ADDRESS> thanks"
    assert final.model_extra["guardrail"]["action"] == "redact"
    with httpx.stream("POST", guarded.url + "/v1/responses", headers={"authorization": f"Bearer {KEY_A}"},
                      json={"model": "gpt-fast", "input": text, "stream": True,
                            "stream_options": {"include_obfuscation": False}}) as r:
        body = r.read()
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    assert r.headers["x-guardrail-action"] == "redact" and b"10.20.30.40" not in body
    assert r.headers["cache-control"] == "no-cache"
    assert body.startswith(b"event: response.created\ndata: ")
    ttft = 'gateway_time_to_first_token_seconds_count{application="app-a",model="gpt-*",route="responses"}'
    assert any(line.startswith(ttft) and float(line.split()[-1]) >= 3
               for line in httpx.get(guarded.url + "/metrics").text.splitlines())
    # A stop is told the way the API ends a filtered answer: the stage's text, then response.incomplete.
    stopped = list(c.responses.create(model="gpt-fast", input=f"my card is {CARD}", stream=True))
    assert [e.sequence_number for e in stopped] == list(range(len(stopped)))
    assert stopped[0].type == "response.created" and stopped[-1].type == "response.incomplete"
    assert stopped[-1].response.incomplete_details.reason == "content_filter"
    assert stopped[-1].response.output_text == "I can't share payment details."
    assert "".join(e.delta for e in stopped if e.type == "response.output_text.delta") == \
        "I can't share payment details."
    with httpx.stream("POST", guarded.url + "/v1/responses", headers={"authorization": f"Bearer {KEY_A}"},
                      json={"model": "gpt-fast", "input": f"my card is {CARD}", "stream": True}) as r:
        body = r.read()
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    assert r.headers["x-guardrail-stage"] == "a-output" and r.headers["x-guardrail-action"] == "override"
    assert r.headers["cache-control"] == "no-cache"  # a stop told as events is not cached either
    assert CARD.encode() not in body and b'"guardrail":' in body
    before = len(recorder.requests)  # an input stop is told the same way, and nothing goes upstream
    stopped = list(c.responses.create(model="gpt-fast", input="a word about acme corp", stream=True))
    assert stopped[-1].type == "response.incomplete" and stopped[-1].response.output_text == "I can't discuss that."
    assert len(recorder.requests) == before
    # respond_with: error still answers an error before any event.
    with pytest.raises(openai.BadRequestError) as info:
        list(client(guarded, KEY_B).responses.create(model="gpt-fast", input=f"my card is {CARD}", stream=True))
    assert info.value.body["type"] == "guardrail_violation" and info.value.body["message"] == "No payment data."
    before = len(recorder.requests)
    for stream in (True, False):  # its answer would be fetched later, past the output stages: refused
        with pytest.raises(openai.BadRequestError) as info:
            c.responses.create(model="gpt-fast", input="later", background=True, stream=stream)
        assert info.value.body["param"] == "background" and info.value.body["code"] == "unguarded_background"
    with pytest.raises(openai.BadRequestError) as info:  # refused before the input stages run (no override)
        c.responses.create(model="gpt-fast", input="a word about acme corp", background=True)
    assert info.value.body["code"] == "unguarded_background"
    assert len(recorder.requests) == before


def test_malformed_upstream_chunks_are_dropped_from_a_guarded_stream(guarded: Gateway) -> None:
    text = "the server is at 10.20.30.40 thanks"
    chunks = list(client(guarded, KEY_A).chat.completions.create(
        model="odd-fast", stream=True, messages=[{"role": "user", "content": text}]))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "echo:the server is at <IP_ADDRESS> thanks"
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["garbled-space-fast", "garbled-text-fast"])
def test_a_stream_line_the_guard_cannot_read_ends_the_stream_with_an_error(guarded: Gateway, model: str) -> None:
    """` data: {...}` with a leading space is no SSE field, and `data: reach me at ...` is no JSON: relayed,
    the first passed the output stages unchecked; dropped, the second let the stream end as if complete."""
    with httpx.stream("POST", guarded.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY_A}"},
                      json={"model": model, "stream": True,
                            "messages": [{"role": "user", "content": "hello there"}]}) as r:
        assert r.status_code == 200
        raw = b"".join(r.iter_bytes())
    assert b"10.20.30.40" not in raw
    assert b'"code":"unreadable_stream"' in raw and b"[DONE]" not in raw
    with pytest.raises(openai.APIError) as info:  # the SDK raises the error event
        list(client(guarded, KEY_A).chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "hello there"}]))
    assert "cannot check" in str(info.value)


def test_an_answer_the_output_stages_cannot_read_is_not_passed(guarded: Gateway) -> None:
    r = httpx.post(guarded.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY_A}"},
                   json={"model": "odd-fast", "messages": [{"role": "user", "content": "at 10.20.30.40"}]})
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "unreadable_answer" and "choices[0].message.content" in error["message"]
    assert "10.20.30.40" not in r.text


def test_clean_stream_is_identical(guarded: Gateway) -> None:
    text = "a perfectly ordinary sentence that is long enough to be released in several pieces " * 3
    content, finish, _ = streamed(guarded, KEY_A, text)
    assert content == "echo:" + text
    assert finish == "stop"


def test_correct_rewrites_and_rechecks(guarded: Gateway) -> None:
    raw = chat(guarded, KEY_B, "that is forbidden here")
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo:that is allowed here"
    assert raw.headers["x-guardrail-action"] == "correct"
    content, finish, _ = streamed(guarded, KEY_B, "that is forbidden here")
    assert content == "echo:that is allowed here" and finish == "content_filter"


def test_block_with_error_response(guarded: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(guarded, KEY_B, f"card {CARD}")
    body = info.value.body
    assert body["type"] == "guardrail_violation" and body["code"] == "block"
    assert info.value.response.headers["x-guardrail-ruleset"] == "block-payment"


def test_metric_error_fails_closed_as_an_outage_not_a_verdict(guarded: Gateway, recorder: Recorder) -> None:
    before = len(recorder.requests)
    with pytest.raises(openai.InternalServerError) as info:  # 503: the SDK's retry logic sees an outage
        chat(guarded, KEY_C, "hello")
    response = info.value.response
    assert response.status_code == 503 and response.headers["x-guardrail-action"] == "guard_unavailable"
    assert response.headers["retry-after"] == "1"
    body = info.value.body
    assert body["type"] == "guard_unavailable" and body["code"] == "guard_unavailable"
    assert "c-fail-closed" in body["message"] and "broken" in body["message"]
    assert len(recorder.requests) == before
    metrics = httpx.get(guarded.url + "/metrics").text
    assert 'gateway_guard_errors_total{kind="error",metric="broken",stage="c-fail-closed"}' in metrics
    assert 'action="guard_unavailable",mode="enforce",ruleset="flaky",stage="c-fail-closed"' in metrics


def test_metric_error_with_on_error_allow_passes_and_is_counted_as_a_fail_open(guarded: Gateway) -> None:
    raw = chat(guarded, KEY_D, "hello")
    assert raw.parse().choices[0].message.content == "echo:hello"
    metrics = httpx.get(guarded.url + "/metrics").text
    assert 'gateway_guard_errors_total{kind="error",metric="broken",stage="d-fail-open"}' in metrics
    assert 'gateway_guard_fail_open_total{metric="broken",stage="d-fail-open"}' in metrics
    mine = None
    for _ in range(50):  # the record reaches the store within a flush interval (0.2 s)
        records = httpx.get(guarded.url + "/v1/monitoring", headers={"authorization": f"Bearer {ADMIN}"},
                            params={"application": "app-d"}).json()["data"]
        mine = next((r for r in records if any(s["stage"] == "d-fail-open" for s in r["stages"])), None)
        if mine is not None:
            break
        time.sleep(0.1)
    assert mine is not None, "no monitoring record of the fail-open request"
    assert next(s for s in mine["stages"] if s["stage"] == "d-fail-open")["fail_open"] is True


def test_monitor_mode_records_but_does_not_act(guarded: Gateway) -> None:
    reply = chat(guarded, KEY_E, "longer than ten characters").parse()
    assert reply.choices[0].message.content == "echo:longer than ten characters"
    metrics = httpx.get(guarded.url + "/metrics").text
    assert 'gateway_guard_triggers_total{action="block",mode="monitor",ruleset="watch-length",stage="org-output"}' in metrics


def test_a_value_found_again_in_text_already_sent_is_counted_and_the_stream_goes_on(guarded: Gateway) -> None:
    """The review of bc7f92c: a number after "order" is no phone number in its context and leaves as the
    whole answer has it; ~1,024 characters on, a look-back window that begins after "order" finds it in
    text already sent. That ended the stream (content_filter); now it goes on, counted. (Lines of mostly
    blanks between the two, and a few answers: some window begins in them, however the reads fall.)"""
    extra = {"guardrails": [{"name": "mask-pii", "on": "output", "rulesets": [
        {"name": "mask", "rules": [{"metric": "pii", "op": "not_empty"}], "action": {"type": "redact"}}]}]}
    text = "".join(f"Your order{' ' * 30}415 555 {2600 + k}.\n" for k in range(60))
    counted = 'gateway_guard_stream_late_finds_total{application="app-e"}'
    for _ in range(5):
        content, finish, _ = streamed(guarded, KEY_E, text, extra_body=extra)
        assert finish == "stop" and content == "echo:" + text
        for _ in range(10):  # counted once the stream's relay has ended, after its last bytes left
            if counted in httpx.get(guarded.url + "/metrics").text:
                return
            time.sleep(0.1)
    raise AssertionError("no late find counted")


def test_request_stages_add_checks(guarded: Gateway, recorder: Recorder) -> None:
    extra = {"guardrails": [{"name": "mine", "on": "input", "rulesets": [
        {"name": "no-hello", "rules": [{"metric": "banned_words"}], "action": {"type": "block", "message": "nope"}}]}]}
    raw = chat(guarded, KEY_E, "forbidden topic", extra_body=extra)
    assert raw.parse().choices[0].message.content == "nope"
    chat(guarded, KEY_E, "fine topic", extra_body=extra)
    assert "guardrails" not in recorder.last()["json"]  # never forwarded upstream


@pytest.mark.parametrize("guardrails,param", [
    ([{"name": "x", "on": "sideways", "rulesets": []}], "guardrails[0].on"),
    ([{"name": "x", "on": "input", "rulesets": [{"name": "r", "rules": [{"metric": "nope"}]}]}],
     "guardrails[0].rulesets[0].rules[0].metric"),
    ([{"name": "x", "on": "input", "scope": "central",
       "rulesets": [{"name": "r", "rules": [{"metric": "pii", "op": "not_empty"}]}]}], "guardrails[0].scope"),
])
def test_invalid_request_stages_are_a_400_naming_the_field(guarded: Gateway, guardrails: list, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(guarded, KEY_E, "hi", extra_body={"guardrails": guardrails})
    assert info.value.body["param"] == param


def test_request_stages_can_be_denied(guarded: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(guarded, KEY_D, "hi", extra_body={"guardrails": []})
    assert info.value.body["code"] == "request_stages_denied"


def test_images_only_are_not_scanned_and_pass(guarded: Gateway) -> None:
    reply = client(guarded, KEY_E).chat.completions.create(model="gpt-fast", messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert reply.choices[0].message.content.startswith("echo:")
    assert 'gateway_guard_not_scanned_total{stage="org-input"}' in httpx.get(guarded.url + "/metrics").text


def test_refusal_parts_are_checked(guarded: Gateway, recorder: Recorder) -> None:
    extra = {"guardrails": [{"name": "history", "on": "input", "roles": ["assistant"], "rulesets": [
        {"name": "no-codes", "rules": [{"metric": "secret_codes"}], "action": {"type": "block", "message": "nope"}}]}]}
    before = len(recorder.requests)
    raw = client(guarded, KEY_E).chat.completions.with_raw_response.create(model="gpt-fast", messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "not PROJECT 4321"}]},
        {"role": "user", "content": "go on"}], extra_body=extra)
    assert raw.parse().choices[0].message.content.startswith("echo:")
    raw = client(guarded, KEY_E).chat.completions.with_raw_response.create(model="gpt-fast", messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "not PROJECT-4321"}]},
        {"role": "user", "content": "go on"}], extra_body=extra)
    assert raw.parse().choices[0].message.content == "nope"
    assert raw.headers["x-guardrail-stage"] == "history"
    assert len(recorder.requests) == before + 1


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": {"value": "PROJECT-1234"}}]}]}, "messages[0].content[0].text"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": {"text": "PROJECT-1234"}}]},
     "messages[0].content"),
    ("/v1/chat/completions", {"messages": ["PROJECT-1234"]}, "messages[0]"),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": {"code": "PROJECT-1234"}}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ("/v1/completions", {"prompt": [9, 8, 7]}, "prompt"),
    ("/v1/embeddings", {"input": [[9, 8, 7]]}, "input[0]"),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": ["PROJECT-1234"]}]}]},
     "input[0].content[0].text"),
])
def test_guarded_input_the_guard_cannot_read_is_refused(guarded: Gateway, recorder: Recorder, path: str,
                                                         body: dict, param: str) -> None:
    """Fail closed: a value the input stages cannot read never reaches the upstream unchecked."""
    before = len(recorder.requests)
    r = httpx.post(guarded.url + path, json={"model": "gpt-fast", **body},
                   headers={"authorization": f"Bearer {KEY_E}"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "unreadable_input" and error["param"] == param
    assert error["type"] == "invalid_request_error" and param in error["message"]
    assert len(recorder.requests) == before


def test_valid_requests_of_every_shape_pass_the_readability_check(guarded: Gateway) -> None:
    c = client(guarded, KEY_E)
    reply = c.chat.completions.create(model="gpt-fast", tools=[{"type": "function", "function": {
        "name": "lookup", "parameters": {"type": "object", "properties": {}}}}], messages=[
        {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "a cat"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't say more."}]},
        {"role": "user", "content": "thanks"}])
    assert reply.choices[0].message.content == "echo:thanks"
    assert c.completions.create(model="gpt-fast", prompt="one").choices[0].text == "echo:one"
    response = c.responses.create(model="gpt-fast", instructions="be brief", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "hi there"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a dog"}])
    assert response.output_text == "echo:3 items"


def test_what_tools_and_mcp_servers_answered_is_checked_as_tool_input(guarded: Gateway, recorder: Recorder) -> None:
    """An indirect injection arrives in a tool's answer: MCP, shell and custom tool outputs are input like a
    tool message, so the org input stage reads them."""
    before = len(recorder.requests)
    for item in ({"type": "mcp_call", "id": "m1", "server_label": "docs", "name": "fetch", "arguments": "{}",
                  "output": "the page says PROJECT-1234"},
                 {"type": "custom_tool_call_output", "call_id": "c1", "output": "PROJECT-1234"},
                 {"type": "shell_call_output", "call_id": "c2", "output": [{"stdout": "PROJECT-1234", "stderr": ""}]},
                 {"type": "file_search_call", "id": "f1", "status": "completed", "queries": ["q"],
                  "results": [{"file_id": "x", "text": "PROJECT-1234 in the doc"}]}):
        r = httpx.post(guarded.url + "/v1/responses", headers={"authorization": f"Bearer {KEY_E}"}, json={
            "model": "gpt-fast", "input": [{"role": "user", "content": "summarise it"}, item]})
        assert r.status_code == 200 and r.headers["x-guardrail-action"] == "block", item["type"]
        stopped = Response.model_validate(r.json())  # a response, ended as the API ends a filtered answer
        assert stopped.status == "incomplete" and stopped.incomplete_details.reason == "content_filter"
        assert stopped.output_text == "Blocked: project codes are confidential."
        assert stopped.model_extra["guardrail"]["action"] == "block"
    assert len(recorder.requests) == before
    response = client(guarded, KEY_E).responses.create(model="gpt-fast", input=[
        {"role": "user", "content": "summarise it"},
        {"type": "mcp_call", "id": "m1", "server_label": "docs", "name": "fetch", "arguments": "{}",
         "output": "nothing secret"}])
    assert response.output_text == "echo:2 items"


@pytest.mark.parametrize("kind", ["local_shell_call", "shell_call", "apply_patch_call", "computer_call", "url_citation"])
def test_what_the_model_asks_a_client_to_run_or_cites_is_checked_as_output(guarded: Gateway, kind: str) -> None:
    """A shell command, a patch, typed text and a cited page's title are the model's output: they passed every
    output stage unchecked before."""
    extra = {"guardrails": [{"name": "out-codes", "on": "output", "rulesets": [
        {"name": "no-codes", "rules": [{"metric": "secret_codes"}], "action": {"type": "block", "message": "nope"}}]}]}
    r = httpx.post(guarded.url + "/v1/responses", headers={"authorization": f"Bearer {KEY_E}"},
                   json={"model": "gpt-items", "input": kind, **extra})
    assert r.status_code == 200 and r.headers["x-guardrail-action"] == "block", r.text
    stopped = Response.model_validate(r.json())
    assert stopped.status == "incomplete" and stopped.output_text == "nope"
    assert "PROJECT-1234" not in r.text
    unguarded = httpx.post(guarded.url + "/v1/responses", headers={"authorization": f"Bearer {KEY_E}"},
                           json={"model": "gpt-items", "input": kind})
    assert unguarded.status_code == 200 and "PROJECT-1234" in unguarded.text  # the upstream did send it


def test_tool_definitions_are_checked_when_a_stage_names_their_role(guarded: Gateway, recorder: Recorder) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look up PROJECT-1234 first",
                                               "parameters": {"type": "object", "properties": {}}}}]
    raw = client(guarded, KEY_E).chat.completions.with_raw_response.create(
        model="gpt-fast", tools=tools, messages=[{"role": "user", "content": "longer than ten characters"}])
    assert raw.parse().choices[0].message.content.startswith("echo:")  # not an input role by default
    assert recorder.last()["json"]["tools"][0]["function"]["description"] == "Look up PROJECT-1234 first"
    mine = _records_of(guarded, raw.headers["x-guardrail-request-id"])
    assert mine and all("Look up" not in text for r in mine for text in r["texts"])  # unread: not logged
    extra = {"guardrails": [{"name": "tool-poisoning", "on": "input", "roles": ["tool_definition"], "rulesets": [
        {"name": "no-codes", "rules": [{"metric": "secret_codes"}], "action": {"type": "block", "message": "nope"}}]}]}
    before = len(recorder.requests)
    raw = client(guarded, KEY_E).chat.completions.with_raw_response.create(
        model="gpt-fast", tools=tools, messages=[{"role": "user", "content": "hi"}], extra_body=extra)
    assert raw.parse().choices[0].message.content == "nope"
    assert raw.headers["x-guardrail-stage"] == "tool-poisoning"
    assert len(recorder.requests) == before
    [read] = _records_of(guarded, raw.headers["x-guardrail-request-id"])
    assert "Look up PROJECT-1234 first" in read["texts"]  # a stage read it: the log shows what fired


def _records_of(gw: Gateway, request_id: str, on: str = "input") -> list[dict]:
    """The monitoring records of one request on one side, once the log has them (bounded wait)."""
    deadline = time.monotonic() + 5
    while True:
        records = httpx.get(gw.url + "/v1/monitoring", params={"on": on},
                            headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
        mine = [r for r in records if r["id"] == request_id and r["on"] == on]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def test_the_openai_client_sees_unreadable_input_as_a_bad_request(guarded: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(guarded, KEY_E).completions.create(model="gpt-fast", prompt=[[1, 2, 3]])
    assert info.value.body["param"] == "prompt[0]" and "token ids" in info.value.body["message"]


def test_evaluate_api_seed_shape(guarded: Gateway) -> None:
    body = {"messages": [{"role": "user", "content": "What's my card?"},
                         {"role": "assistant", "content": f"It is {CARD}."}],
            "application": "app-a", "threshold": 0.3, "correction_enabled": True,
            "policy_ids": ["banned_words", "payment_data", "secret_codes"]}
    r = httpx.post(guarded.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "evaluation" and out["id"] and out["created"].endswith("Z")
    ev = out["evaluation"]
    assert ev["status"] == "FAIL" and ev["output_score"] > 0.3 and ev["input_score"] == 0.0
    assert ev["policy_violations"] == [{"policy_id": "payment_data", "score": ev["output_score"]}]
    assert out["correction"]["choices"][0]["role"] == "guard"
    assert "4111" not in out["correction"]["choices"][0]["content"]


def test_evaluate_api_override_policy_and_pass(guarded: Gateway) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
            "override_policy": [{"id": "custom_policy_1", "type": "contains", "rule": "no greetings",
                                 "keywords": ["goodbye"], "examples": [{"type": "FAIL", "output_example": "bye"}]}]}
    r = httpx.post(guarded.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.json()["evaluation"] == {"status": "PASS", "input_score": 0.0, "output_score": 0.0,
                                      "policy_violations": []}


def test_evaluate_api_reads_text_parts_and_refuses_parts_it_cannot_read(guarded: Gateway) -> None:
    body = {"messages": [{"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                         {"role": "user", "content": "hi"},
                         {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "u"}},
                                                            {"type": "text", "text": "card 4111 1111 1111 1111"}]}],
            "policy_ids": ["payment_data"]}
    r = httpx.post(guarded.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 200, r.text
    ev = r.json()["evaluation"]
    assert ev["status"] == "FAIL" and ev["policy_violations"][0]["policy_id"] == "payment_data"
    # A text part whose text is not a string would otherwise evaluate as compliant: it is refused.
    body["messages"][2]["content"][1]["text"] = {"x": "card 4111 1111 1111 1111"}
    r = httpx.post(guarded.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "messages[2].content[1].text"
    # What the route checks it scores: a tool call's arguments are output text like the content.
    body["messages"][2] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "pay", "arguments": f'{{"card": "{CARD}"}}'}}]}
    r = httpx.post(guarded.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    ev = r.json()["evaluation"]
    assert ev["status"] == "FAIL" and ev["output_score"] > 0 and ev["input_score"] == 0.0, ev


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_json_nested_deeper_than_the_gateway_writes_is_a_400_not_a_500(guarded: Gateway) -> None:
    """orjson reads 1,024 levels and writes 254: a body between the two used to crash (500) wherever the
    gateway writes it back (an input redaction, the request's own stages); the upstream's answer, a 502."""
    headers = {"authorization": f"Bearer {KEY_A}", "content-type": "application/json"}
    redacted = b'{"model": "gpt-fast", "messages": [{"role": "user", "content": "mail a@example.com"}], "x": '
    r = httpx.post(guarded.url + "/v1/chat/completions", content=redacted + _nested(300) + b"}", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    assert "nested too deeply" in r.json()["error"]["message"]
    stages = b'{"model": "gpt-fast", "messages": [{"role": "user", "content": "hi"}], "guardrails": '
    r = httpx.post(guarded.url + "/v1/chat/completions", content=stages + _nested(300) + b"}", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_guardrails", r.text
    # An answer an output stage rewrites (the IP address is redacted) but that cannot be written back.
    r = httpx.post(guarded.url + "/v1/chat/completions", headers=headers, json={
        "model": "deep-1", "messages": [{"role": "user", "content": "at 10.20.30.40"}]})
    assert r.status_code == 502 and r.json()["error"]["code"] == "unreadable_answer", r.text
    assert b"10.20.30.40" not in r.content
    # Nesting the gateway can write is served as before.
    r = httpx.post(guarded.url + "/v1/chat/completions", content=redacted + _nested(200) + b"}", headers=headers)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo:mail <EMAIL_ADDRESS>", r.text
    assert "Traceback" not in guarded.logs()


def test_evaluate_answers_502_when_a_policy_cannot_score(guarded: Gateway) -> None:
    """A rubric judge that answers prose: an OpenAI-shaped 502 naming the policy, not a bare 500 (which also
    dropped the client's keep-alive connection)."""
    body = {"messages": [{"role": "user", "content": "hi"}], "override_policy": [
        {"id": "judged", "type": "rubric", "judge_model": "judge-rambling", "rubric": "no greetings"}]}
    with httpx.Client(headers={"authorization": f"Bearer {KEY_A}"}, timeout=20) as http:
        r = http.post(guarded.url + "/v1/guard/evaluate", json=body)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "policy_error" and "'judged'" in r.json()["error"]["message"]
        body["override_policy"][0]["judge_model"] = "judge-1"  # the same connection serves the next request
        r = http.post(guarded.url + "/v1/guard/evaluate", json=body)
        assert r.status_code == 200 and r.json()["evaluation"]["status"] == "PASS", r.text


@pytest.mark.parametrize(("policy", "param"), [
    ({"type": "code", "function": "os:system"}, "type"),
    ({"type": "onnx_classifier", "model": "/etc/hostname", "tokenizer": "/etc/hostname"}, "type"),
    ({"type": "classifier", "training_data": "/etc/passwd"}, "training_data"),
])
def test_evaluate_refuses_policies_that_reach_into_the_host(guarded: Gateway, tmp_path: Path, policy: dict,
                                                             param: str) -> None:
    """A client key may send its own policies, never ones that run the gateway's Python or read its files:
    `os:system` on the input text would run any command the client writes."""
    marker = tmp_path / "ran"
    body = {"messages": [{"role": "user", "content": f"touch {marker}"}], "override_policy": [{"id": "p", **policy}]}
    r = httpx.post(guarded.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == f"override_policy[0].{param}" and "config file" in err["message"], err
    assert not marker.exists()


@pytest.mark.parametrize("body,param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "policy_ids": ["nope"]}, "policy_ids[0]"),
    ({"messages": [{"role": "user", "content": "x"}], "threshold": 2}, "threshold"),
    ({"messages": [{"role": "user", "content": "x"}], "override_policy": [{"id": "p", "type": "regex",
                                                                           "patterns": ["(a)\\1"]}]},
     "override_policy[0].patterns[0]"),
])
def test_evaluate_api_bad_input(guarded: Gateway, body: dict, param: str) -> None:
    r = httpx.post(guarded.url + "/v1/guard/evaluate", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_monitoring_log_is_redacted_and_scoped(guarded: Gateway) -> None:
    chat(guarded, KEY_A, "reach me at private.person@example.com today")
    records: list = []
    for _ in range(50):  # the record reaches the store within a flush interval (0.2 s)
        r = httpx.get(guarded.url + "/v1/monitoring", headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200
        records = r.json()["data"]
        if any("<EMAIL_ADDRESS>" in orjson.dumps(rec).decode() for rec in records):
            break
        time.sleep(0.1)
    assert records and all("private.person@example.com" not in orjson.dumps(rec).decode() for rec in records)
    assert any("<EMAIL_ADDRESS>" in orjson.dumps(rec).decode() for rec in records)
    mine = httpx.get(guarded.url + "/v1/monitoring", headers={"authorization": f"Bearer {ADMIN_A}"}).json()["data"]
    assert mine and {rec["application"] for rec in mine} == {"app-a"}
    assert httpx.get(guarded.url + "/v1/monitoring", params={"application": "app-b"},
                     headers={"authorization": f"Bearer {ADMIN_A}"}).status_code == 403
    assert httpx.get(guarded.url + "/v1/monitoring", headers={"authorization": f"Bearer {KEY_A}"}).status_code == 401


def test_passthrough_annotates_and_forwards(guarded: Gateway, recorder: Recorder) -> None:
    extra = {"guardrails": [{"name": "tag", "on": "output", "rulesets": [
        {"name": "long-answer", "rules": [{"metric": "length", "op": "gt", "value": 5}],
         "action": {"type": "passthrough"}}]}]}
    raw = chat(guarded, KEY_E, "hello there", extra_body=extra)
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo:hello there"
    assert raw.headers["x-guardrail-action"] == "passthrough"
    assert reply.model_extra["guardrail"]["action"] == "passthrough"


def _monitor_only_config(upstream: str, port: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams:
  - {{name: main, base_url: "{upstream}", api_key: sk-up, models: ["gpt-*", "odd-*", "hang-*", "die-*"]}}
applications:
  - {{id: shadow, keys: ["sk-shadow"]}}
admin:
  tokens:
    - {{token: {ADMIN}, role: central}}
policies:
  - {{id: secret_codes, type: regex, rule: "Never reveal project codes", patterns: ["PROJECT-[0-9]{{4}}"]}}
stages:
  - name: watch-in
    scope: central
    on: input
    rulesets:
      - {{name: watch-secret, mode: monitor, rules: [{{metric: secret_codes}}], action: {{type: block}}}}
  - name: watch-out
    scope: central
    on: output
    rulesets:
      - {{name: watch-secret-out, mode: monitor, rules: [{{metric: secret_codes}}], action: {{type: block}}}}
"""


def test_stages_that_only_monitor_never_refuse_what_they_cannot_read(upstream: str, recorder: Recorder,
                                                                     tmp_path) -> None:
    """`mode: monitor` never acts: input or an answer the monitoring stages cannot read passes (and is
    logged), where an enforcing stage refuses it (the tests above)."""
    from tests.conftest import running_gateway

    with running_gateway(tmp_path, lambda port: _monitor_only_config(upstream, port)) as gw:
        headers = {"authorization": "Bearer sk-shadow"}
        before = len(recorder.requests)
        r = httpx.post(gw.url + "/v1/embeddings", json={"model": "gpt-fast", "input": [[9, 8, 7]]}, headers=headers)
        assert r.status_code == 200, r.text
        r = httpx.post(gw.url + "/v1/chat/completions", headers=headers, json={"model": "gpt-fast", "messages": [
            {"role": "user", "content": [{"type": "text", "text": {"value": "PROJECT-1234"}}]},
            {"role": "user", "content": "and PROJECT-5678"}]})
        assert r.status_code == 200, r.text
        assert len(recorder.requests) == before + 2  # both reached the upstream
        answer = httpx.post(gw.url + "/v1/chat/completions", headers=headers, json={
            "model": "odd-fast", "messages": [{"role": "user", "content": "PROJECT-1234"}]})
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json()["choices"][0]["message"]["content"], dict)  # relayed as the upstream sent it
        metrics = httpx.get(gw.url + "/metrics").text
        # the readable texts were still checked by the monitoring stages
        assert 'mode="monitor",ruleset="watch-secret",stage="watch-in"' in metrics
        assert 'mode="monitor",ruleset="watch-secret-out",stage="watch-out"' in metrics


def _metric(gw: Gateway, prefix: str) -> float:
    lines = [line for line in httpx.get(gw.url + "/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_stages_that_only_monitor_let_a_responses_answer_stream_and_run_in_background(
        upstream: str, recorder: Recorder, tmp_path) -> None:
    """Output stages that only monitor never change what the client gets: a streamed /v1/responses answer
    is relayed as the upstream streams it (not asked for whole) and checked once it ended, and a
    background request is not refused (an enforcing output stage refuses it, test above)."""
    from tests.conftest import running_gateway

    out = 'gateway_guard_triggers_total{action="block",mode="monitor",ruleset="watch-secret-out",stage="watch-out"}'
    with running_gateway(tmp_path, lambda port: _monitor_only_config(upstream, port)) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-shadow", max_retries=0)
        events = list(c.responses.create(model="gpt-fast", input="PROJECT-1234 status", stream=True))
        assert recorder.last()["json"]["stream"] is True  # the upstream was asked for a stream
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert len(deltas) > 1 and "".join(deltas) == "echo:PROJECT-1234 status"  # the upstream's own events
        assert events[-1].type == "response.completed"
        assert _metric(gw, out) == 1  # the monitoring stage read the answer once it had left
        assert _metric(gw, 'gateway_overhead_seconds_count{route="responses"}') == 0  # relayed: not whole
        c.responses.create(model="gpt-fast", input="nothing secret", stream=True).close()
        assert _metric(gw, out) == 1
        before = len(recorder.requests)
        later = c.responses.create(model="gpt-fast", input="PROJECT-1234 later", background=True)
        assert later.output_text == "echo:PROJECT-1234 later" and len(recorder.requests) == before + 1
        assert recorder.last()["json"]["background"] is True
        assert _metric(gw, out) == 2


def test_stages_that_only_monitor_let_a_chat_stream_pass_as_the_upstream_sent_it(
        upstream: str, recorder: Recorder, tmp_path) -> None:
    """A chat or completions stream under output stages that only monitor is relayed byte for byte, as it
    arrives (nothing held back, no chunk rebuilt, odd chunks kept: they never act), and the answer it adds
    up to is checked once, after it left."""
    from tests.conftest import running_gateway

    out = 'gateway_guard_triggers_total{action="block",mode="monitor",ruleset="watch-secret-out",stage="watch-out"}'
    with running_gateway(tmp_path, lambda port: _monitor_only_config(upstream, port)) as gw:
        for model in ("gpt-fast", "odd-fast"):
            body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "PROJECT-1234 status"}]}
            direct = httpx.post(upstream + "/chat/completions", json=body).content
            relayed = httpx.post(gw.url + "/v1/chat/completions", json=body,
                                 headers={"authorization": "Bearer sk-shadow"})
            assert relayed.status_code == 200 and relayed.content == direct
        assert _metric(gw, out) == 2  # each answer checked once: the project code is in the echo
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-shadow", max_retries=0)
        chunks = list(c.chat.completions.create(model="gpt-fast", stream=True, messages=[
            {"role": "user", "content": "PROJECT-5678 later"}]))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "echo:PROJECT-5678 later"
        assert _metric(gw, out) == 3
        list(c.chat.completions.create(model="gpt-fast", stream=True, messages=[
            {"role": "user", "content": "nothing secret"}]))
        assert _metric(gw, out) == 3


def test_a_monitored_stream_cut_short_is_checked_on_what_it_carried(upstream: str, recorder: Recorder,
                                                                    tmp_path) -> None:
    """Text that left before its stream ended is monitored too: when the client leaves mid-stream, or the
    upstream dies, the monitoring stages check the answer the stream had carried (after the response)."""
    from tests.conftest import running_gateway

    out = 'gateway_guard_triggers_total{action="block",mode="monitor",ruleset="watch-secret-out",stage="watch-out"}'
    with running_gateway(tmp_path, lambda port: _monitor_only_config(upstream, port)) as gw:
        model = f"hang-{uuid.uuid4().hex[:8]}"
        with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=20,
                          headers={"authorization": "Bearer sk-shadow"},
                          json={"model": model, "stream": True,
                                "messages": [{"role": "user", "content": "PROJECT-1234 status"}]}) as r:
            chunks = r.iter_bytes()  # keep a reference: a collected iterator closes the response early
            assert b"PROJECT-1234" in next(chunks)
        assert recorder.closed_event(model).wait(timeout=5)  # the gateway saw the client leave
        for _ in range(100):  # the check runs after the response ended: wait for it, boundedly
            if _metric(gw, out) == 1:
                break
            time.sleep(0.05)
        assert _metric(gw, out) == 1
        body = {"model": "die-1", "stream": True, "messages": [{"role": "user", "content": "PROJECT-9999"}]}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=20, json=body,
                          headers={"authorization": "Bearer sk-shadow"}) as r:
            request_id = r.headers["x-guardrail-request-id"]
            assert b"upstream_unreachable" in r.read()  # it died after "echo", ":PRO"
        [read] = _records_of(gw, request_id, "output")
        assert read["texts"] == ["echo:PRO"] and _metric(gw, out) == 1  # what left was read; no full code


@pytest.mark.parametrize("extra", [
    {"messages": [{"role": "function", "name": "f", "content": "PROJECT-1234"}, {"role": "user", "content": "go"}]},
    {"messages": [{"role": "User", "content": "PROJECT-1234"}]},
    {"messages": [{"role": "user", "content": "go"}], "prediction": {"type": "content", "content": "PROJECT-1234"}},
])
def test_input_the_guard_used_to_skip_is_checked(guarded: Gateway, recorder: Recorder, extra: dict) -> None:
    before = len(recorder.requests)
    r = httpx.post(guarded.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY_E}"},
                   json={"model": "gpt-fast", **extra}, timeout=20)
    assert r.status_code == 200 and r.headers["x-guardrail-action"] == "block", r.text
    assert len(recorder.requests) == before


def test_input_surfaces_a_probe_found_unscanned_are_refused_or_read(guarded: Gateway, recorder: Recorder) -> None:
    """Issue 23 item 4 with the openai client: a part of an unknown type is refused (400 naming it), a
    message's name is read by the input stages; neither reaches the upstream."""
    before = len(recorder.requests)
    c = client(guarded, KEY_E)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="gpt-fast", messages=[{"role": "user", "content": [
            {"type": "text", "text": "hi"}, {"type": "future_kind", "payload": "PROJECT-1234"}]}])
    assert info.value.body["code"] == "unreadable_input" and info.value.body["param"] == "messages[0].content[1].type"
    named = c.chat.completions.create(model="gpt-fast", messages=[{"role": "user", "name": "PROJECT-1234",
                                                                   "content": "hello"}])
    assert named.choices[0].finish_reason == "content_filter"
    assert len(recorder.requests) == before
