"""Which texts of OpenAI bodies the guard reads, and writing a changed text back in place."""

from __future__ import annotations

from gateway.proxy.texts import request_texts, response_texts, write_back


def test_chat_request_every_message_and_part() -> None:
    payload = {"messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "type": "function",
                                                               "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": "tool out"},
        {"role": "user", "content": "b"}]}
    found = [(s.role, s.text, p) for s, p in request_texts("chat_completions", payload)]
    assert found == [("system", "sys", ("messages", 0, "content")),
                     ("user", "a", ("messages", 1, "content", 0, "text")),
                     ("assistant", "{\"x\":1}", ("messages", 2, "tool_calls", 0, "function", "arguments")),
                     ("tool", "tool out", ("messages", 3, "content")),
                     ("user", "b", ("messages", 4, "content"))]
    write_back(payload, ("messages", 1, "content", 0, "text"), "A")
    assert payload["messages"][1]["content"][0]["text"] == "A"


def test_other_endpoints() -> None:
    assert [s.text for s, _ in request_texts("completions", {"prompt": ["p1", [1, 2], "p2"]})] == ["p1", "p2"]
    assert [s.text for s, _ in request_texts("embeddings", {"input": "e"})] == ["e"]
    responses = request_texts("responses", {"instructions": "be nice", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "q"}]},
        {"type": "function_call_output", "call_id": "c", "output": "result"}]})
    assert [(s.role, s.text) for s, _ in responses] == [("system", "be nice"), ("user", "q"), ("tool", "result")]


def test_response_every_choice_and_tool_call() -> None:
    payload = {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": "one"}},
        {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}
    assert [(s.text, p) for s, p in response_texts("chat_completions", payload)] == [
        ("one", ("choices", 0, "message", "content")),
        ("{}", ("choices", 1, "message", "tool_calls", 0, "function", "arguments"))]
    out = response_texts("responses", {"output": [{"type": "message", "role": "assistant", "content": [
        {"type": "output_text", "text": "hi"}]}]})
    assert [(s.role, s.text) for s, _ in out] == [("assistant", "hi")]
