"""Redactions as edits of the text they were found in (gateway/guard/redact.py): several redactions in a row
(one per stage) are tracked back to the text they all started from, so a stream guard can release them
one by one (gateway/proxy/holdback.py `HoldBack.settle`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guard.redact import apply_edits, edits_between, kept_after, redact, redaction_edits
from gateway.metrics.types import Span

texts = st.text("ab<>X ", max_size=40)


def spans_in(length: int) -> st.SearchStrategy[list[Span]]:
    pair = st.tuples(st.integers(0, length), st.integers(0, length)).filter(lambda p: p[0] < p[1])
    return st.lists(pair.map(lambda p: Span(p[0], p[1], "L", 1.0)),
                    max_size=5)


@settings(max_examples=400, deadline=None)
@given(text=texts, data=st.data(), placeholders=st.lists(st.sampled_from(["<{label}>", "", "X", "<<{label}>>"]),
                                                         min_size=1, max_size=4))
def test_redactions_in_a_row_are_edits_of_the_original_text(text: str, data: st.DataObject,
                                                            placeholders: list[str]) -> None:
    current, kept = text, [(0, len(text), 0)]
    for placeholder in placeholders:
        spans = data.draw(spans_in(len(current)))
        edits = redaction_edits(spans, placeholder)
        assert apply_edits(current, edits) == redact(current, spans, placeholder)
        assert all(a < b for a, b, _ in edits) and all(e[1] <= f[0] for e, f in zip(edits, edits[1:]))
        kept = kept_after(kept, edits)
        current = apply_edits(current, edits)
    edits = edits_between(len(text), kept, current)
    assert apply_edits(text, edits) == current
    assert all(a <= b for a, b, _ in edits) and all(e[1] < f[0] for e, f in zip(edits, edits[1:]))
    # what is kept is the original's characters, in order
    assert all(current[a:b] == text[o:o + b - a] for a, b, o in kept)


def test_a_redaction_of_a_placeholder_widens_to_the_value_it_replaced() -> None:
    text = "mail jane@x.io now"
    first = [(5, 14, "<EMAIL_ADDRESS>")]
    kept = kept_after([(0, len(text), 0)], first)
    once = apply_edits(text, first)
    second = [(6, 11, "#")]  # a later stage's span inside the placeholder
    kept = kept_after(kept, second)
    assert edits_between(len(text), kept, apply_edits(once, second)) == [(5, 14, "<#_ADDRESS>")]
