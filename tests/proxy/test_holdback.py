"""The hold-back arithmetic, sans-IO (gateway/proxy/holdback.py): for random texts cut into random chunks
(down to one character each, empty ones included), random hold-back and look-back, eager or not, a
span of at most `holdback` characters never half leaves before a check saw it whole, every character
leaves exactly once and in order, each window covers the unreleased text and the look-back before it,
and a rewrite of text already sent is reported as such. No engine and no event loop: a small driver
below plays the stream guard's part (proxy/stream_guard.py), a "check" being just a look at the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.proxy.holdback import HoldBack, Pending

ALPHABET = "ab c"
texts = st.text(ALPHABET, max_size=60)
holdbacks = st.one_of(st.none(), st.integers(0, 12))
lookbacks = st.one_of(st.none(), st.integers(0, 20))
needles = st.text(ALPHABET, min_size=1, max_size=12)  # what an eager stage looks for


@dataclass
class Check:
    start: int  # where its window began
    length: int  # the text's length when it ran (its window is text[start:length])
    released: int  # released before it
    upto: int  # released after it
    final: bool
    window: str


@dataclass
class Run:
    text: str = ""  # the choice's text as the guard holds it (after rewrites)
    released: int = 0
    checked: int = 0
    sent: list[str] = field(default_factory=list)  # each release, in order
    checks: list[Check] = field(default_factory=list)


def needle_pending(needle: str) -> Pending:
    """An eager stage's `pending_from` for one literal `needle`: the earliest index from which the text's
    end is a proper prefix of it (a match that could still complete there), else the text's length."""
    def pending(part: str) -> int:
        for i in range(len(part) + 1):
            rest = part[i:]
            if len(rest) < len(needle) and needle.startswith(rest):
                return i
        return len(part)  # unreachable: the empty rest is a proper prefix of any non-empty needle
    return pending


def chunked(text: str, cuts: list[int] | None) -> list[str]:
    """`text` cut at `cuts` (repeats give empty chunks); None: one character per chunk."""
    if cuts is None:
        return list(text)
    bounds = [0, *sorted(min(c, len(text)) for c in cuts), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def step(hold: HoldBack, run: Run, final: bool, rewrite: bool = False) -> None:
    """What the stream guard does with one choice after a read: check it if due, then release. A check
    passes; with `rewrite` it also rewrites the window's unsent part (as a redaction would)."""
    if not hold.due(len(run.text), run.released, run.checked, final):
        return
    run.checked = len(run.text)
    start = hold.start(run.released, final)
    window = run.text[start:]
    if rewrite:
        sent = run.released - start
        changed = window[:sent] + "<" + window[sent:][::-1] + ">"
        assert not hold.reaches_sent(window, changed, sent)
        run.text = run.text[:start] + changed
    upto = hold.release(run.text, run.released, final)
    run.checks.append(Check(start, run.checked, run.released, upto, final, window))
    run.sent.append(run.text[run.released:upto])
    run.released = upto


def stream(hold: HoldBack, chunks: list[str], rewrites: Sequence[bool] = (), last: bool = False) -> Run:
    """Feed `chunks` then finish (`last`: the finish comes with the last chunk, not after it)."""
    run = Run()
    for i, chunk in enumerate(chunks):
        run.text += chunk
        final = last and i == len(chunks) - 1
        step(hold, run, final, bool(rewrites) and rewrites[i % len(rewrites)])
        if final:
            return run
    step(hold, run, True)
    return run


chunkings = st.one_of(st.none(), st.lists(st.integers(0, 70), max_size=30))


@settings(max_examples=400, deadline=None)
@given(text=texts, cuts=chunkings, holdback=holdbacks, lookback=lookbacks, needle=needles,
       eager=st.booleans(), last=st.booleans())
def test_a_span_within_the_holdback_never_half_leaves_before_a_check_saw_it_whole(
        text: str, cuts: list[int] | None, holdback: int | None, lookback: int | None, needle: str, eager: bool,
        last: bool) -> None:
    # Eager, the guard holds only what its stages say could still match: here, occurrences of `needle`
    # (within the hold-back); otherwise every span of at most `holdback` characters is one to protect.
    needle = needle[:holdback] if holdback else needle[:1]
    hold = HoldBack(holdback, lookback, needle_pending(needle) if eager else None)
    run = stream(hold, chunked(text, cuts), last=last)
    width = len(text) if holdback is None else holdback  # no hold-back: every span is held whole
    if hold.eager:
        spans = [(a, a + len(needle)) for a in range(len(text)) if text.startswith(needle, a)]
    else:
        spans = [(a, b) for a in range(len(text)) for b in range(a + 1, min(a + width, len(text)) + 1)]
    for a, b in spans:
        first = next(i for i, c in enumerate(run.checks) if c.upto > a)  # the release that sent text[a]
        assert any(c.start <= a and c.length >= b for c in run.checks[:first + 1]), (a, b, run.checks)


@settings(max_examples=400, deadline=None)
@given(text=texts, cuts=chunkings, holdback=holdbacks, lookback=lookbacks, needle=needles,
       eager=st.booleans(), last=st.booleans(), rewrites=st.lists(st.booleans(), max_size=5))
def test_every_character_leaves_exactly_once_in_order_and_the_final_check_releases_all(
        text: str, cuts: list[int] | None, holdback: int | None, lookback: int | None, needle: str, eager: bool,
        last: bool, rewrites: list[bool]) -> None:
    hold = HoldBack(holdback, lookback, needle_pending(needle) if eager else None)
    run = stream(hold, chunked(text, cuts), rewrites, last)
    if not any(rewrites):
        assert run.text == text
    assert "".join(run.sent) == run.text  # each character once, in order (rewrites never touch sent text)
    assert all(c.released <= c.upto for c in run.checks)
    assert all(c.upto == d.released for c, d in zip(run.checks, run.checks[1:]))
    assert run.checks[-1].final and run.released == len(run.text)
    assert [c for c in run.checks if c.final] == run.checks[-1:]  # one final check, and nothing after it
    if holdback is None:  # nothing leaves before the choice ends
        assert all(c.upto == 0 for c in run.checks if not c.final)
    else:  # the held-back tail never grows past the hold-back between reads
        assert all(c.length - c.upto <= holdback for c in run.checks if not c.final and not any(rewrites))


@settings(max_examples=400, deadline=None)
@given(text=texts, cuts=chunkings, holdback=holdbacks, lookback=lookbacks, needle=needles,
       eager=st.booleans(), last=st.booleans(), rewrites=st.lists(st.booleans(), max_size=5))
def test_each_window_covers_the_unreleased_text_and_the_lookback_before_it(
        text: str, cuts: list[int] | None, holdback: int | None, lookback: int | None, needle: str, eager: bool,
        last: bool, rewrites: list[bool]) -> None:
    hold = HoldBack(holdback, lookback, needle_pending(needle) if eager else None)
    assert hold.lookback == max(lookback or 0, holdback or 0)  # the look-back is at least the hold-back
    run = stream(hold, chunked(text, cuts), rewrites, last)
    for c in run.checks:
        if c.final or holdback is None:
            assert c.start == 0  # the last check reads the whole answer
        else:
            assert c.start == c.released - min(hold.lookback, c.released)
        assert c.start + len(c.window) == c.length  # up to the text's end: all the unreleased text


@settings(max_examples=400, deadline=None)
@given(window=st.text(ALPHABET, max_size=30), data=st.data())
def test_a_rewrite_of_sent_text_is_reported_and_one_of_unsent_text_is_not(window: str, data: st.DataObject) -> None:
    sent = data.draw(st.integers(0, len(window)))
    rest = data.draw(st.text(ALPHABET + "#", max_size=30))
    assert not HoldBack.reaches_sent(window, window[:sent] + rest, sent)
    if sent:
        at = data.draw(st.integers(0, sent - 1))
        other = data.draw(st.sampled_from([ch for ch in ALPHABET + "#" if ch != window[at]]))
        assert HoldBack.reaches_sent(window, window[:at] + other + window[at + 1:] + rest, sent)  # one character
        assert HoldBack.reaches_sent(window, window[:at] + rest.replace(window[at], ""), sent)  # cut short, or
        assert HoldBack.reaches_sent(window, window[:at] + "#" + window[at:], sent)  # shifted by an insertion


# --- edge cases ---


def test_without_a_holdback_nothing_is_checked_or_released_until_the_end() -> None:
    hold = HoldBack(None, 50)
    assert not hold.eager and hold.lookback == 50
    assert not hold.due(10_000, 0, 0, False)
    assert hold.release("x" * 10_000, 0, False) == 0
    assert hold.due(10_000, 0, 0, True) and hold.start(0, True) == 0
    assert hold.release("x" * 10_000, 0, True) == 10_000
    assert not HoldBack(None, None, needle_pending("ab")).eager  # eager means nothing without a hold-back
    run = stream(HoldBack(None), ["ab", "", "cd"])
    assert [(c.start, c.window, c.upto, c.final) for c in run.checks] == [(0, "abcd", 4, True)]


def test_a_zero_holdback_checks_and_releases_every_new_character() -> None:
    hold = HoldBack(0)
    assert hold.lookback == 0
    assert not hold.due(3, 3, 3, False) and hold.due(4, 3, 3, False)
    assert hold.start(3, False) == 3 and hold.release("abcd", 3, False) == 4
    run = stream(hold, ["ab", "", "c"])
    assert [(c.window, c.upto) for c in run.checks] == [("ab", 2), ("c", 3), ("abc", 3)]  # the final one reads all
    eager = HoldBack(0, 0, lambda part: 0)  # a zero hold-back releases all: where a match could start is moot
    assert eager.release("abcd", 0, False) == 4


def test_empty_chunks_start_no_check() -> None:
    run = stream(HoldBack(2), ["abc", "", "", "d", ""])
    assert [(c.window, c.upto) for c in run.checks] == [("abc", 1), ("abcd", 2), ("abcd", 4)]
    eager = stream(HoldBack(2, None, needle_pending("cx")), ["abc", "", "", "d", ""])
    assert [(c.window, c.upto) for c in eager.checks] == [("abc", 2), ("abcd", 4), ("abcd", 4)]


def test_the_lookback_is_raised_to_the_holdback_and_reaches_back_from_the_released_text() -> None:
    assert HoldBack(8, 3).lookback == 8 and HoldBack(8, 20).lookback == 20 and HoldBack(8).lookback == 8
    hold = HoldBack(4, 6)
    assert [hold.start(released, False) for released in (0, 5, 6, 30)] == [0, 0, 0, 24]
    assert hold.start(30, True) == 0


def test_eager_releases_up_to_where_a_match_could_start_never_less_than_the_holdback_cap() -> None:
    hold = HoldBack(4, None, needle_pending("key"))
    assert hold.due(5, 0, 4, False) and not hold.due(5, 0, 5, False)  # new text, not an unreleased count
    assert hold.release("hello k", 0, False) == 6  # "k" could start "key"
    assert hold.release("hello", 0, False) == 5  # nothing could
    assert hold.release("hello", 3, False) == 5
    lazy = HoldBack(4, None, lambda part: 0)  # a stage that can never say: the hold-back cap still applies
    assert lazy.release("0123456789", 0, False) == 6 and lazy.release("0123456789", 7, False) == 7


def test_the_eager_position_is_looked_for_in_the_tail_only() -> None:
    seen: list[str] = []

    def pending(part: str) -> int:
        seen.append(part)
        return len(part)

    hold = HoldBack(3, None, pending)
    text = "x" * 100
    assert hold.release(text, 0, False) == 100
    assert seen == [text[100 - 2 * 3 - 32:]]


@pytest.mark.parametrize("final", [False, True])
def test_what_was_released_is_never_taken_back(final: bool) -> None:
    assert HoldBack(4).release("abc", 5, final) == 5  # text shortened behind the released count
    assert HoldBack(None).release("abc", 5, final) == 5
