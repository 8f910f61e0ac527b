"""The hold-back arithmetic, sans-IO (gateway/proxy/holdback.py): for random texts cut into random chunks
(down to one character each, empty ones included), random hold-back and look-back, eager or not, a
span of at most `holdback` characters never half leaves before a check saw it whole, every character
leaves exactly once and in order, each window covers the unreleased text and the look-back before it,
and a rewrite of text already sent is reported as such. Redactions are released span by span: a value
still being written is redacted whole, never its first part with the rest after the placeholder, the
held text stays within `bound`, and no character of a value the whole text's redaction replaces leaves.
No engine and no event loop: a small driver below plays the stream guard's part (proxy/stream_guard.py),
a "check" being just a look at the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guard.redact import Edit, apply_edits
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
    text: str = ""  # the choice's text as received (a rewrite never changes it: it leaves as edits)
    released: int = 0
    checked: int = 0
    sent: list[str] = field(default_factory=list)  # each release, in order
    checks: list[Check] = field(default_factory=list)
    redacted: list[Edit] = field(default_factory=list)  # the edits that left
    stopped: bool = False  # a rewrite reached from sent text into held text: the stream ended
    late: int = 0  # values found wholly in sent text, other than as they left, each once (the stream went on)
    noted: int = 0  # the end of the last of those
    idle: int = 0  # eager checks that skipped the engine: nothing would have left after them

    @property
    def output(self) -> str:
        return "".join(self.sent)


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


def reversed_rest(window: str, sent: int) -> list[Edit]:
    """A rewrite of the window's unsent part (as a redaction would): all of it replaced."""
    return [(sent, len(window), "<" + window[sent:][::-1] + ">")] if sent < len(window) else []


def step(hold: HoldBack, run: Run, final: bool, rewrite: bool | Callable[[str], list[Edit]] = False) -> None:
    """What the stream guard does with one choice after a read: check it if due, then release. A check
    passes; `rewrite` (a function: the edits it makes of a window; True: `reversed_rest`) redacts."""
    if run.stopped or not hold.due(len(run.text), run.released, run.checked, final):
        return
    run.checked = len(run.text)
    upto = hold.release(run.text, run.released, final)
    if hold.idle(len(run.text), run.released, upto, final):
        run.idle += 1
        return  # nothing would leave: the engine is not asked
    start = hold.start(run.released, final, run.redacted)
    window = run.text[start:]
    edits: list[Edit] = []
    if rewrite is True:
        edits = reversed_rest(window, run.released - start)
    elif rewrite:
        edits = rewrite(window)
    edits = [(a + start, b + start, r) for a, b, r in edits]
    if hold.reaches_sent(edits, run.released):
        run.stopped = True
        return
    late = hold.late(edits, run.released, run.redacted, run.noted)
    if late:
        run.late += len(late)
        run.noted = late[-1][1]
    edits = [e for e in edits if e[0] >= run.released]
    count, upto = hold.settle(len(run.text), run.released, upto, edits, final)
    run.checks.append(Check(start, run.checked, run.released, upto, final, window))
    at = run.released
    run.sent.append(apply_edits(run.text[at:upto], [(a - at, b - at, r) for a, b, r in edits[:count]]))
    run.redacted += edits[:count]
    run.released = upto


def stream(hold: HoldBack, chunks: list[str], rewrites: Sequence[bool] = (), last: bool = False,
           redact: Callable[[str], list[Edit]] | None = None) -> Run:
    """Feed `chunks` then finish (`last`: the finish comes with the last chunk, not after it); `redact`:
    every check redacts what it finds."""
    run = Run()
    for i, chunk in enumerate(chunks):
        run.text += chunk
        final = last and i == len(chunks) - 1
        step(hold, run, final, redact or (bool(rewrites) and rewrites[i % len(rewrites)]))
        if final:
            return run
    step(hold, run, True, redact or False)
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
    assert run.text == text and not run.stopped  # the text as received; a rewrite of unsent text goes on
    assert run.output == apply_edits(text, run.redacted)  # each character once, in order, or its redaction
    assert all(c.released <= c.upto for c in run.checks)
    assert all(c.upto == d.released for c, d in zip(run.checks, run.checks[1:]))
    assert run.checks[-1].final and run.released == len(run.text)
    assert [c for c in run.checks if c.final] == run.checks[-1:]  # one final check, and nothing after it
    if holdback is None:  # nothing leaves before the choice ends
        assert all(c.upto == 0 for c in run.checks if not c.final)
    else:  # the held-back tail never grows past the hold-back between reads (the bound with a redaction)
        assert all(c.length - c.upto <= holdback for c in run.checks if not c.final and not any(rewrites))
        assert all(c.length - c.upto <= 2 * holdback == hold.bound for c in run.checks if not c.final)


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
        else:  # or from the start of a redaction that left, which it would cut
            at = c.released - min(hold.lookback, c.released)
            assert c.start == at or any(a == c.start < at < b for a, b, _ in run.redacted)
        assert c.start + len(c.window) == c.length  # up to the text's end: all the unreleased text


@settings(max_examples=400, deadline=None)
@given(data=st.data(), released=st.integers(0, 30))
def test_a_redaction_from_sent_into_held_text_is_reported_and_one_wholly_in_sent_text_counted(
        data: st.DataObject, released: int) -> None:
    """A redaction that starts in sent text and ends in held text ends the stream (part of its value left);
    one wholly in sent text cannot be helped by that and is counted instead, unless it left as such."""
    sent = [e for e in data.draw(edit_lists(60)) if e[1] <= released]  # a redaction that left ends by then
    edits = data.draw(edit_lists(60))
    assert HoldBack.reaches_sent(edits, released) == any(a < released < b for a, b, _ in edits)
    assert not HoldBack.reaches_sent([e for e in edits if e[0] >= released], released)  # unsent text only
    assert not HoldBack.reaches_sent([e for e in edits if e[1] <= released], released)  # sent text only
    left = {(a, b) for a, b, _ in sent}
    after = data.draw(st.integers(0, 30))
    assert HoldBack.late(edits, released, sent) == [e for e in edits if e[1] <= released and e[:2] not in left]
    assert HoldBack.late(sent, released, sent) == []  # the same redactions again
    assert HoldBack.late(edits, released) == [e for e in edits if e[1] <= released]
    assert HoldBack.late(edits, released, (), after) == [e for e in edits if e[1] <= released and e[0] >= after]


def test_a_value_found_only_in_a_later_window_does_not_end_the_stream() -> None:
    """The window's cut: 'x' right after 'ab' is no value while 'ab' is read with it, and one once the
    window begins after 'ab'. It left as it was; found wholly in sent text later, it is counted, and the
    stream goes on (ending it would help nothing: no character of it is left to hold back)."""
    def found(window: str) -> list[Edit]:
        return [(k, k + 1, "<X>") for k, ch in enumerate(window) if ch == "x" and not window[:k].endswith("ab")]

    hold = HoldBack(2, 4, lambda part: len(part))
    text = "abx" + "." * 20
    run = stream(hold, list(text), redact=found)
    assert not run.stopped and run.output == text and run.late == 1  # once, though later windows see it too
    # a value that starts in sent text and ends in held text still ends it: "111" made as found past the
    # bound, then grown
    run = stream(HoldBack(1, 4), ["a1", "1", "1", "1"], redact=ones)
    assert run.stopped and run.output == "a<>"


def test_an_eager_check_skips_the_engine_only_when_nothing_would_leave() -> None:
    hold = HoldBack(4, None, needle_pending("key"))
    assert hold.idle(10, 8, 8, False) and not hold.idle(10, 8, 9, False) and not hold.idle(10, 8, 8, True)
    assert not HoldBack(4).idle(10, 8, 8, False)  # not eager: a check is due only when text leaves anyway
    assert not hold.idle(20, 8, 8, False)  # past the bound: `settle` makes a value as found
    run = stream(hold, list("a key b k"))
    assert run.idle and all(c.upto > c.released or c.final for c in run.checks)


def edit_lists(length: int) -> st.SearchStrategy[list[Edit]]:
    """Sorted, disjoint, non-empty edits of a text of `length` characters."""
    def build(cuts: list[int]) -> list[Edit]:
        points = sorted(set(cuts))
        return [(a, b, "<X>") for a, b in zip(points[::2], points[1::2])]
    return st.lists(st.integers(0, length), max_size=10).map(build)


# --- span by span: a value being written is redacted whole ---

def ones(text: str) -> list[Edit]:
    """A toy recogniser: every run of two or more "1"s is a value, found as far as it is written (like
    "10.20.30.4", a valid address already, of "10.20.30.40")."""
    edits, at = [], 0
    while (at := text.find("11", at)) >= 0:
        end = at
        while end < len(text) and text[end] == "1":
            end += 1
        edits.append((at, end, "<>"))
        at = end
    return edits


def ones_pending(part: str) -> int:
    """Where a run of "1"s could still start or grow: the trailing run."""
    return len(part.rstrip("1"))


values = st.text("ab 1", max_size=80)


@settings(max_examples=500, deadline=None)
@given(text=values, cuts=chunkings, holdback=st.integers(0, 12), lookback=lookbacks, eager=st.booleans(),
       last=st.booleans())
def test_a_value_is_redacted_whole_and_the_held_text_stays_within_the_bound(
        text: str, cuts: list[int] | None, holdback: int, lookback: int | None, eager: bool, last: bool) -> None:
    hold = HoldBack(holdback, lookback, ones_pending if eager else None)
    run = stream(hold, chunked(text, cuts), last=last, redact=ones)
    whole = ones(text)
    longest = max((b - a for a, b, _ in whole), default=0)
    if longest <= holdback:  # no character of a value the whole text's redaction replaces leaves as it is
        assert all(all(any(s <= k < e for s, e, _ in run.redacted) for k in range(a, min(b, run.released)))
                   for a, b, _ in whole)
    # a value longer than the hold-back may have left in part before it was one ("1" of "11" past a cap of
    # 0), but once found, none of the rest leaves: it is made as found, and should it grow the stream ends
    assert all(min(b, run.released) <= e for a, b, _ in whole for s, e, _ in run.redacted if a <= s < b)
    assert run.output == apply_edits(run.text[:run.released], run.redacted)
    assert all(c.length - c.upto <= hold.bound for c in run.checks if not c.final)
    if longest <= holdback:  # every value fits the hold-back: the stream is the whole text's redaction
        assert not run.stopped and run.output == apply_edits(text, whole)
    elif not run.stopped:  # a value longer: redacted as found, and the stream ends if it then grows
        assert run.released == len(text)


@settings(max_examples=500, deadline=None)
@given(data=st.data(), length=st.integers(0, 60), holdback=st.integers(0, 12), final=st.booleans())
def test_settle_releases_a_redaction_only_once_its_value_is_complete(data: st.DataObject, length: int,
                                                                     holdback: int, final: bool) -> None:
    hold = HoldBack(holdback)
    released = data.draw(st.integers(0, length))
    upto = data.draw(st.integers(max(released, length - holdback), length))  # as `release` answers
    edits = [e for e in data.draw(edit_lists(length)) if e[0] >= released]
    count, done = hold.settle(length, released, upto, edits, final)
    assert released <= done <= length and 0 <= count <= len(edits)
    if final:
        assert (count, done) == (len(edits), length)
        return
    assert all(b <= done for _, b, _ in edits[:count])  # what is made leaves whole ...
    assert all(a >= done for a, _, _ in edits[count:])  # ... and nothing of the rest leaves
    assert length - done <= hold.bound  # within the bound, always
    for a, b, _ in edits[:count]:  # made: complete (before the release point, not at the end), or past the bound
        assert (b <= upto and b < length) or length - a > hold.bound
    if count < len(edits) and edits[count][0] < upto:  # it waits: it reaches the growing end
        a, b, _ = edits[count]
        assert done == a and (b > upto or b == length) and length - a <= hold.bound
    if not any(a < upto for a, _, _ in edits):
        assert done == upto  # no redaction: the release as before


def test_a_value_at_the_growing_end_waits_whole() -> None:
    """'10.20.30.4' at the end of the text may become '10.20.30.40': its redaction waits, the text before
    it leaves; once the text has gone past it, the whole value is redacted."""
    hold = HoldBack(64, None, lambda tail: len(tail) - len(tail.split(" ")[-1]))  # the token being written
    text = "the server is at 10.20.30.4"
    at = text.index("10.")
    upto = hold.release(text, 0, False)
    assert upto == at and hold.settle(len(text), 0, upto, [(at, len(text), "<IP>")], False) == (0, at)
    longer = text + "0 thanks"
    upto = hold.release(longer, at, False)
    assert hold.settle(len(longer), at, upto, [(at, at + 11, "<IP>")], False) == (1, upto) and upto > at + 11
    # past the bound (twice the hold-back) a value is made as found: none of it leaves as it is
    assert HoldBack(4).settle(20, 5, 16, [(10, 20, "<V>")], False) == (1, 20)
    assert HoldBack(4).settle(20, 5, 16, [(12, 20, "<V>")], False) == (0, 12)


def test_a_window_never_begins_inside_a_value_that_left_redacted() -> None:
    hold = HoldBack(2, 4)
    assert hold.start(20, False, [(10, 18, "<V>")]) == 10
    assert hold.start(20, False, [(16, 18, "<V>")]) == 16  # it begins there anyway
    assert hold.start(20, False, [(1, 3, "<V>"), (17, 19, "<V>")]) == 16
    assert hold.start(20, True, [(10, 18, "<V>")]) == 0


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
