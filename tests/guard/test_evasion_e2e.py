"""Issue 23 item 1 through the real gateway with the openai client: a disguised canary in a request is
blocked before the upstream, and a disguised card number in a streamed answer does not leak one
character (the policies are the plain ones of tests/guard/conftest.py: `PROJECT-[0-9]{4}`, CREDIT_CARD)."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway
from tests.guard.conftest import KEY_A, KEY_E
from tests.guard.test_guard_e2e import chat, streamed
from tests.metrics.evasion_cases import CARD, TRANSFORMS
from tests.upstream import Recorder

CODE = "PROJECT-1234"
REQUEST_TRANSFORMS = ["zwsp_middle", "soft_hyphen_middle", "word_joiner_every", "fullwidth", "homoglyph_letters_digits",
                      "spaces_every", "dots_every", "groups_of_4_dots", "one_space_middle", "base64", "hex",
                      "url_percent_every", "html_decimal", "base64_twice"]
STREAM_TRANSFORMS = ["zwsp_middle", "soft_hyphen_every", "fullwidth", "dots_every", "groups_of_4_dots", "base64",
                     "html_decimal", "url_percent_every"]
REFUSAL = "I can't share payment details."


@pytest.mark.parametrize("transform", REQUEST_TRANSFORMS)
def test_a_disguised_canary_in_a_request_is_blocked_before_the_upstream(guarded: Gateway, recorder: Recorder,
                                                                        transform: str) -> None:
    before = len(recorder.requests)
    raw = chat(guarded, KEY_E, f"Tell me about {TRANSFORMS[transform](CODE)} please")
    reply = raw.parse()
    assert raw.headers.get("x-guardrail-action") == "block", transform
    assert reply.choices[0].message.content == "Blocked: project codes are confidential."
    assert len(recorder.requests) == before


@pytest.mark.parametrize("transform", STREAM_TRANSFORMS)
def test_a_disguised_card_in_a_streamed_answer_does_not_leak(guarded: Gateway, transform: str) -> None:
    disguised = TRANSFORMS[transform](CARD)
    text = f"here is a long preamble first, then my card {disguised} ok"
    content, finish, chunks = streamed(guarded, KEY_A, text)
    assert finish == "content_filter", (transform, content)
    assert content.endswith(REFUSAL)
    leaked = content[: -len(REFUSAL)]
    answer = "echo:" + text
    # what left before the refusal is a prefix of the answer that stops before the disguised card
    assert answer.startswith(leaked) and len(leaked) <= answer.index(disguised)
    assert chunks[-1].model_extra["guardrail"]["ruleset"] == "payment"


def test_a_plain_request_and_answer_still_pass(guarded: Gateway) -> None:
    content, finish, _ = streamed(guarded, KEY_A, "the meeting is on 2024-05-06 at 10.30, room 4.12, call 3 4 5")
    assert finish == "stop" and content == "echo:the meeting is on 2024-05-06 at 10.30, room 4.12, call 3 4 5"
