"""Sans-IO: the hold-back arithmetic of a streamed choice (what to check, what to release, what to hold).

A choice's streamed text grows; `released` characters of it have left, and `checked` is its length at
the last check. `HoldBack` answers, from those counters alone, the questions the stream guard asks
(proxy/stream_guard.py, which awaits the engine in between):

- `due`: is a check due? Always on the final check; never before it when `holdback` is None (hold
  everything until the choice ends); otherwise once more than `holdback` characters are unreleased,
  or, when eager, once anything new arrived since the last check.
- `start`: where the checked window begins: `lookback` characters before the unreleased text
  (`lookback` is at least `holdback`), moved back to the start of a value that left redacted if it
  would cut it, or 0 on the final check and when `holdback` is None.
- `reaches_sent`: whether a stage's redactions of the window (edits of the text as received) reach
  from text that already left into text still held: part of the value left, and cannot be taken back,
  so the stream ends instead. A redaction that lies wholly in sent text ends nothing (`late` lists
  those other than the redactions that left, for the guard to count): none of its value is left to
  hold back, and most often it is the window's cut at work (a phone number right after an IBAN, or
  after "order", is no value while the IBAN or the word is read with it; the window that begins right
  after them finds it).
- `idle`: whether an eager check may skip the engine: not the final one, and nothing would leave after
  it (`release` stays where it was). Only a release can leak, and the text it would read is read by the
  next check that may release, or the final one.
- `release`: how far the text may be released after a check passed: all on the final check, else all
  but the last `holdback` characters, raised, when eager, to where a match could still start
  (`pending`), and never lowered.
- `settle`: which of a check's redactions leave now, and how far the text is released with them. The
  text is checked as received (never as a placeholder followed by the rest of a value; the look-back
  as the whole answer has it), and a redaction is made span by span: one that lies wholly before the
  release point leaves as its placeholder; one that reaches it, or the end of the text (the value may
  still grow: "10.20.30.4" of "10.20.30.40"), waits, and the release stops before its first character;
  a later check (at the latest the final one) redacts the whole value. A value waits only while the
  held text stays within `bound`, twice the hold-back: the hold-back, plus a value as long as it (the
  auto hold-back is the longest span the stage's pattern metrics match, up to its cap). Past the bound
  the value is redacted as found (fail closed: none of its characters leaves), and should it then
  grow, its next check reaches sent text and ends the stream, as for any span longer than the hold-back.

So a span of at most `holdback` characters is never half released: while it is incomplete it sits in
the held-back tail (or, when eager, behind the position `pending` reports for its start), and a
redacted span of at most `holdback` characters leaves only once it is complete, as its placeholder.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence

from gateway.guard.redact import Edit

__all__ = ["Edit", "HoldBack", "Pending"]

# Given the tail of a choice's text, the earliest index in it where a match could still start
# (0 <= index <= len(tail)): `Stage.pending_from`, the minimum over the stages.
Pending = Callable[[str], int]

# Characters before the released text that `release` gives the stages' `pending` as context.
_CONTEXT = 96


class HoldBack:
    """The hold-back rule of one stream: `holdback` and `lookback` characters, eager or not."""

    __slots__ = ("holdback", "lookback", "_pending")

    def __init__(self, holdback: int | None, lookback: int | None = None, pending: Pending | None = None) -> None:
        self.holdback = holdback  # None: hold everything until the choice ends (a `correct` stage)
        self.lookback = max(lookback or 0, holdback or 0)
        # eager (every stage says where a match could still start); meaningless without a hold-back
        self._pending = pending if holdback is not None else None

    @property
    def eager(self) -> bool:
        return self._pending is not None

    def due(self, length: int, released: int, checked: int, final: bool) -> bool:
        """Whether text of `length` characters, `released` of them sent and `checked` at the last check,
        is to be checked now."""
        if final:
            return True
        if self.holdback is None:
            return False
        if self._pending is not None:
            return length != checked
        return length - released > self.holdback

    @property
    def bound(self) -> int | None:
        """The most text held after a check (None: all of it, until the choice ends): the hold-back, plus
        as much again for a redacted value that reaches the release point while it could still grow."""
        return None if self.holdback is None else 2 * self.holdback

    def start(self, released: int, final: bool, sent: Sequence[Edit] = ()) -> int:
        """Where the window of this check begins. The final check reads the whole answer: rules on all
        of it (a length, a span longer than any window) get their say before the tail is released. A
        window never begins inside a value that left redacted (`sent`, sorted): it reads it whole."""
        if final or self.holdback is None:
            return 0
        at = max(0, released - self.lookback)
        k = bisect_right(sent, at, key=lambda edit: edit[0]) - 1  # the last one starting at or before `at`
        if k >= 0 and sent[k][0] < at < sent[k][1]:
            return sent[k][0]
        return at

    @staticmethod
    def reaches_sent(edits: Sequence[Edit], released: int) -> bool:
        """Whether one of a check's redactions `edits` (of the text as received) starts in its first
        `released` characters, which already left, and ends after them: a span that outgrew the hold-back
        (made as found past the bound, then grown), or one whose start left before its end arrived. That
        part cannot be taken back, so the stream ends instead. (A redaction that left ends where the
        release did, so it never reaches past it.)"""
        return any(start < released < end for start, end, _ in edits)

    @staticmethod
    def late(edits: Sequence[Edit], released: int, sent: Sequence[Edit] = (), after: int = 0) -> list[Edit]:
        """Those of a check's redactions `edits` (sorted) that lie wholly in the first `released` characters,
        from `after` on, other than as a redaction that left (`sent`, sorted: the same start and end): values
        that left as they are (found only in this window, its context cut off, or once text after them
        arrived). The stream goes on (nothing of them is left to hold back); the guard counts them, each
        once (`after`: the end of the last one counted, as later windows find it again). A binary search
        per redaction: no set of all that left is rebuilt per check."""
        found = []
        for edit in edits:
            start, end, _ = edit
            if end > released or start >= released:
                break
            k = bisect_right(sent, start, key=lambda sent_edit: sent_edit[0]) - 1
            if start >= after and (k < 0 or sent[k][0] != start or sent[k][1] != end):
                found.append(edit)
        return found

    def idle(self, length: int, released: int, upto: int, final: bool) -> bool:
        """Whether an eager check of a text of `length` characters, `released` of them sent, may skip the
        engine because `release` keeps it at `released` (`upto`): nothing would leave after it, and the
        held text is within `bound` (so `settle` would make nothing either). The next check that may
        release, at the latest the final one, reads all this one would have."""
        bound = self.bound
        return (not final and self._pending is not None and upto <= released
                and bound is not None and length - released <= bound)

    def settle(self, length: int, released: int, upto: int, edits: Sequence[Edit],
               final: bool) -> tuple[int, int]:
        """Of a check's redactions `edits` (sorted, disjoint, none starting before `released`) of a text
        of `length` characters that `release` would release up to `upto`: how many leave now (the first
        k), and how far the text is released with them. Before the final check one that reaches `upto`
        or the text's end waits, and the release stops before it, unless the text held would then exceed
        `bound`: it is made as found, and the release goes on past it."""
        if final:
            return len(edits), max(upto, length)
        bound = self.bound if self.bound is not None else length
        done = upto
        for k, (start, end, _) in enumerate(edits):
            if start >= done:
                return k, done
            if (end > upto or end >= length) and length - start <= bound:
                return k, start  # a value that may still grow: it waits, whole
            done = max(done, end)
        return len(edits), done

    def release(self, text: str, released: int, final: bool) -> int:
        """How far `text` may have been released once a check passed on it (at least `released`)."""
        if final:
            return max(released, len(text))
        if self.holdback is None:
            return released  # nothing leaves before the final check
        hold = self.holdback
        upto = len(text) - hold
        if self._pending is not None and hold:
            # Where a match could still start, looked for in the tail only: text further back leaves
            # by the hold-back cap anyway, and a start before `released` changes nothing; the tail gives
            # the views their context, up to `_CONTEXT` characters before what left (a run still growing
            # that began before the cut is held from the cut on, which is before `released`).
            tail = max(0, len(text) - 2 * hold - 32, released - _CONTEXT)
            upto = max(upto, tail + self._pending(text[tail:]))
        return max(released, upto)
