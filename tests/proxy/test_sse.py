"""Tests for the sans-IO SSE decoder and encoder."""

from __future__ import annotations

import json
import random
import re

import pytest

from gateway.proxy.sse import DONE, Event, SSEDecoder, encode

BOM = b"\xef\xbb\xbf"


def _chunk(content: str | None, *, role: str | None = None, finish: str | None = None) -> bytes:
    delta: dict[str, str] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    payload = {
        "id": "chatcmpl-9abcDEF",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


OPENAI_STREAM = b"".join(
    [
        _chunk("", role="assistant"),
        _chunk("Héllo"),
        b": keep-alive\n\n",
        _chunk(" wörld "),
        _chunk("👋 — ☃"),
        _chunk(None, finish="stop"),
        DONE,
    ]
)


def _with_endings(stream: bytes, ending: bytes) -> bytes:
    return stream.replace(b"\n", ending)


STREAMS = {
    "lf": OPENAI_STREAM,
    "crlf": _with_endings(OPENAI_STREAM, b"\r\n"),
    "cr": _with_endings(OPENAI_STREAM, b"\r"),
    "bom+crlf": BOM + _with_endings(OPENAI_STREAM, b"\r\n"),
    "fields": (
        b"retry: 3000\nevent: message\nid: 7\ndata: a\ndata: b\n\n"
        b": comment\r\n\r\n"
        b"\n"
        b"data\r\nevent:x\rid\n\r\n"
        b"data: \xe2\x98\x83\n\n"
        b"data: tail-not-terminated\n"
    ),
}


def feed_all(chunks: list[bytes]) -> tuple[list[Event], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[Event] = []
    fed = b""
    for chunk in chunks:
        events += decoder.feed(chunk)
        fed += chunk
        assert b"".join(e.raw for e in events) + decoder.pending == fed
    return events, decoder


def decode_all(chunks: list[bytes]) -> list[Event]:
    """Feed, then close: a stream ending in a bare "\r" blank line only completes at close()."""
    events, decoder = feed_all(chunks)
    return events + decoder.close()


Fields = tuple[str | None, str | None, str | None, int | None]


def fields(events: list[Event]) -> list[Fields]:
    return [(e.data, e.event, e.id, e.retry) for e in events]


def one(stream: bytes) -> Event:
    events, decoder = feed_all([stream])
    assert len(events) == 1, events
    assert decoder.pending == b""
    return events[0]


def reference(stream: bytes) -> list[Fields]:
    """A deliberately naive, whole-input reading of the spec to check the decoder against."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    *lines, _unterminated = re.split(r"\r\n|\r|\n", text)
    out: list[Fields] = []
    data: list[str] = []
    event: str | None = None
    id_: str | None = None
    retry: int | None = None
    for line in lines:
        if line == "":
            out.append(("\n".join(data) if data else None, event, id_, retry))
            data, event, id_, retry = [], None, None, None
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            id_ = value
        elif name == "retry" and re.fullmatch(r"[0-9]+", value):
            retry = int(value)
    return out


# --- realistic OpenAI streams and chunkings ---


def test_openai_stream_fed_at_once() -> None:
    events, decoder = feed_all([OPENAI_STREAM])
    assert decoder.pending == b""
    assert len(events) == 7
    assert events[2].data is None and events[2].raw == b": keep-alive\n\n"
    assert events[-1].data == "[DONE]" and events[-1].raw == DONE
    payloads = [json.loads(e.data) for e in events if e.data not in (None, "[DONE]")]
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads) == "Héllo wörld 👋 — ☃"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert b"".join(e.raw for e in events) == OPENAI_STREAM


def test_one_event_per_chunk_as_the_network_delivers_it() -> None:
    pieces = [_chunk("a"), _chunk("b"), DONE]
    decoder = SSEDecoder()
    for piece in pieces:
        (event,) = decoder.feed(piece)
        assert event.raw == piece
        assert decoder.pending == b""


@pytest.mark.parametrize("name", STREAMS)
def test_byte_by_byte_matches_whole(name: str) -> None:
    stream = STREAMS[name]
    whole = decode_all([stream])
    bytewise = decode_all([stream[i : i + 1] for i in range(len(stream))])
    assert bytewise == whole
    assert fields(whole) == reference(stream)


@pytest.mark.parametrize("name", STREAMS)
def test_every_split_point_matches_whole(name: str) -> None:
    stream = STREAMS[name]
    whole = decode_all([stream])
    for i in range(len(stream) + 1):
        split = decode_all([stream[:i], stream[i:]])
        assert split == whole, f"split at {i}"


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_line_endings_give_same_fields_as_lf(ending: bytes) -> None:
    lf, _ = feed_all([OPENAI_STREAM])
    other = decode_all([_with_endings(OPENAI_STREAM, ending)])
    assert fields(other) == fields(lf)
    assert [e.raw for e in other] == [e.raw.replace(b"\n", ending) for e in lf]


def test_several_events_in_one_chunk_then_partial() -> None:
    events, decoder = feed_all([_chunk("a") + _chunk("b") + b"data: {\"par"])
    assert [json.loads(e.data or "")["choices"][0]["delta"]["content"] for e in events] == ["a", "b"]
    assert decoder.pending == b'data: {"par'
    (last,) = decoder.feed(b'tial": 1}\n\n')
    assert last.data == '{"partial": 1}'
    assert last.raw == b'data: {"partial": 1}\n\n'


# --- line endings ---


def test_mixed_line_endings_in_one_block() -> None:
    event = one(b"data: a\r\ndata: b\rdata: c\ndata: d\n\r\n")
    assert event.data == "a\nb\nc\nd"


def test_cr_at_chunk_end_then_lf_is_one_line_ending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n") == []  # "\r" + "\n" ended the data line; no blank line yet
    assert decoder.pending == b"data: x\r\n"
    (event,) = decoder.feed(b"\r\n")
    assert event.data == "x" and event.raw == b"data: x\r\n\r\n"


def test_blank_line_cr_at_chunk_end_keeps_following_lf_in_the_same_block() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\n\r") == []  # the "\n" may still come
    first, second = decoder.feed(b"\ndata: y\r\n\r\n")  # no spurious empty block from the "\n"
    assert first.raw == b"data: x\r\n\r\n" and first.data == "x"
    assert second.raw == b"data: y\r\n\r\n"
    assert decoder.pending == b""


def test_blank_line_cr_then_non_lf_emits_block() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\r") == []
    (event,) = decoder.feed(b"d")
    assert event.raw == b"data: x\r\r" and event.data == "x"
    assert decoder.pending == b"d"


def test_cr_cr_is_two_line_endings_not_one() -> None:
    events, decoder = feed_all([b"data: a\r\rdata: b\r\r"])
    assert [e.data for e in events] == ["a"]
    assert decoder.pending == b"data: b\r\r"  # held back: a "\n" may follow
    (last,) = decoder.close()
    assert last.data == "b" and last.raw == b"data: b\r\r"
    assert decoder.pending == b""


def test_lone_lf_at_stream_start_is_an_empty_block() -> None:
    events, decoder = feed_all([b"\n\r\n\rdata: x\n\n"])
    assert [e.raw for e in events] == [b"\n", b"\r\n", b"\r", b"data: x\n\n"]
    assert fields(events[:3]) == [(None, None, None, None)] * 3


# --- fields ---


def test_multi_line_data_is_joined_with_lf() -> None:
    assert one(b"data: line one\ndata:\ndata: line three\n\n").data == "line one\n\nline three"


def test_comment_only_block_is_reported_with_data_none() -> None:
    event = one(b": ping\n\n")
    assert event == Event(raw=b": ping\n\n", data=None, event=None, id=None, retry=None)
    assert one(b":\n:another\n\n").data is None


def test_event_id_retry_fields() -> None:
    event = one(b"event: delta\nid: 42\nretry: 1500\ndata: {}\n\n")
    assert (event.data, event.event, event.id, event.retry) == ("{}", "delta", "42", 1500)


@pytest.mark.parametrize("value", [b"15a", b"", b"  1", b"-1", b"1.5", "\uff11\uff12".encode(), b"\xc2\xb2"])
def test_retry_that_is_not_ascii_digits_is_ignored(value: bytes) -> None:
    assert one(b"retry:" + value + b"\ndata: x\n\n").retry is None


def test_retry_absurdly_long_is_ignored_not_an_error() -> None:
    assert one(b"retry: " + b"9" * 10_000 + b"\n\n").retry is None


def test_id_with_nul_is_ignored() -> None:
    assert one(b"id: a\x00b\ndata: x\n\n").id is None


def test_last_field_value_wins() -> None:
    event = one(b"event: a\nevent: b\nid: 1\nid: 2\n\n")
    assert (event.event, event.id) == ("b", "2")


def test_field_without_colon_has_empty_value() -> None:
    assert one(b"data\n\n").data == ""
    assert one(b"data\ndata\n\n").data == "\n"
    event = one(b"event\nid\n\n")
    assert (event.event, event.id, event.data) == ("", "", None)


def test_only_one_space_after_colon_is_stripped() -> None:
    assert one(b"data:x\n\n").data == "x"
    assert one(b"data:  x \n\n").data == " x "
    assert one(b"data: a:b: c\n\n").data == "a:b: c"


def test_unknown_fields_are_ignored_and_names_are_case_sensitive() -> None:
    event = one(b"foo: bar\nData: no\nDATA: no\nevent : no\ndata: yes\n\n")
    assert (event.data, event.event) == ("yes", None)


# --- BOM and UTF-8 ---


def test_leading_bom_is_ignored_but_kept_in_raw() -> None:
    events, decoder = feed_all([BOM + b"data: x\n\n" + BOM + b"data: y\n\n"])
    assert events[0].data == "x" and events[0].raw == BOM + b"data: x\n\n"
    assert events[1].data is None  # only the stream's first bytes may be a BOM: "\ufeffdata" is unknown


def test_bom_split_across_chunks() -> None:
    stream = BOM + b"data: x\n\n"
    for chunks in ([stream[:1], stream[1:2], stream[2:]], [stream[:2], stream[2:]], [stream[:3], stream[3:]]):
        events, decoder = feed_all(chunks)
        assert fields(events) == [("x", None, None, None)]
        assert b"".join(e.raw for e in events) == stream


def test_bom_followed_directly_by_blank_line() -> None:
    events, _ = feed_all([BOM + b"\ndata: x\n\n"])
    assert [e.raw for e in events] == [BOM + b"\n", b"data: x\n\n"]
    assert events[0].data is None


def test_partial_bom_that_is_not_a_bom() -> None:
    events, decoder = feed_all([b"\xef", b"\xbb", b"x\n\n"])
    assert len(events) == 1 and events[0].raw == b"\xef\xbbx\n\n"


def test_multibyte_utf8_split_anywhere() -> None:
    stream = "data: é€𝄞👋 ünï\n\n".encode()
    for i in range(len(stream) + 1):
        events, _ = feed_all([stream[:i], stream[i:]])
        assert [e.data for e in events] == ["é€𝄞👋 ünï"], f"split at {i}"


def test_invalid_utf8_is_replaced() -> None:
    assert one(b"data: a\xffb\xe2\x82\n\n").data == "a\ufffdb\ufffd"


# --- invariant and end of stream ---


def test_raw_plus_pending_equals_everything_fed() -> None:
    stream = b"".join(STREAMS.values())
    decoder = SSEDecoder()
    raws = b""
    for i in range(len(stream)):
        raws += b"".join(e.raw for e in decoder.feed(stream[i : i + 1]))
        assert raws + decoder.pending == stream[: i + 1]


def test_close_discards_unterminated_block_and_keeps_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: done\n\ndata: cut off\n") != []
    assert decoder.close() == []
    assert decoder.pending == b"data: cut off\n"


def test_close_on_clean_stream() -> None:
    decoder = SSEDecoder()
    decoder.feed(OPENAI_STREAM)
    assert decoder.close() == []
    assert decoder.pending == b""


# --- encoder ---


@pytest.mark.parametrize(
    ("data", "event", "id_"),
    [
        ('{"choices":[]}', None, None),
        ("", None, None),
        ("multi\nline\n\ndata\n", "message", "17"),
        (" leading space", "e", ""),
        ("é👋", None, "x"),
        (":not a comment", None, None),
    ],
)
def test_encode_round_trips(data: str, event: str | None, id_: str | None) -> None:
    raw = encode(data, event=event, id=id_)
    assert raw.endswith(b"\n\n")
    decoded = one(raw)
    assert (decoded.raw, decoded.data, decoded.event, decoded.id) == (raw, data, event, id_)


def test_encode_exact_bytes() -> None:
    assert encode("x") == b"data: x\n\n"
    assert encode("a\nb", event="delta", id="3") == b"event: delta\nid: 3\ndata: a\ndata: b\n\n"


def test_encode_carriage_returns_become_separate_data_lines() -> None:
    raw = encode("a\r\nb\rc")
    assert raw == b"data: a\ndata: b\ndata: c\n\n"
    assert one(raw).data == "a\nb\nc"


@pytest.mark.parametrize("kwargs", [{"event": "a\nb"}, {"event": "a\rb"}, {"id": "1\n"}, {"id": "1\x00"}])
def test_encode_rejects_field_injection(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        encode("x", **kwargs)


def test_done() -> None:
    assert DONE == b"data: [DONE]\n\n"
    assert encode("[DONE]") == DONE
    assert one(DONE).data == "[DONE]"


# --- randomized chunkings ---


def _random_stream(rng: random.Random) -> bytes:
    endings = [b"\n", b"\r\n", b"\r"]
    lines = [b"data: x", b"data:", b"data", b": c", b"event: e", b"id: 9", b"retry: 12", b"retry: x", b"z: q",
             "data: ñ€👋".encode(), b"data: a\xff", b""]
    out = [BOM] if rng.random() < 0.2 else []
    for _ in range(rng.randint(0, 30)):
        out += [rng.choice(lines), rng.choice(endings)]
    return b"".join(out)


def test_random_chunkings_match_one_piece_and_reference() -> None:
    rng = random.Random(0)
    for _ in range(300):
        stream = _random_stream(rng)
        whole = decode_all([stream])
        assert fields(whole) == reference(stream), stream
        for _ in range(5):
            cuts = sorted(rng.sample(range(len(stream) + 1), k=min(len(stream) + 1, rng.randint(1, 12))))
            chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
            events, decoder = feed_all(chunks)
            events += decoder.close()
            assert events == whole, (stream, chunks)
            assert b"".join(e.raw for e in events) + decoder.pending == stream
