"""Sans-IO: the hold-back arithmetic of a streamed choice (what to check, what to release, what to hold).

A choice's streamed text grows; `released` characters of it have left, and `checked` is its length at
the last check. `HoldBack` answers, from those counters alone, the questions the stream guard asks
(proxy/stream_guard.py, which awaits the engine in between):

- `due`: is a check due? Always on the final check; never before it when `holdback` is None (hold
  everything until the choice ends); otherwise once more than `holdback` characters are unreleased,
  or, when eager, once anything new arrived since the last check.
- `start`: where the checked window begins: `lookback` characters before the unreleased text
  (`lookback` is at least `holdback`), or 0 on the final check and when `holdback` is None.
- `reaches_sent`: whether a stage's rewrite of the window changes characters that already left: they
  cannot be taken back, so the stream ends instead.
- `release`: how far the text may be released after a check passed: all on the final check, else all
  but the last `holdback` characters, raised, when eager, to where a match could still start
  (`pending`), and never lowered.

So a span of at most `holdback` characters is never half released: while it is incomplete it sits in
the held-back tail (or, when eager, behind the position `pending` reports for its start).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["HoldBack", "Pending"]

# Given the tail of a choice's text, the earliest index in it where a match could still start
# (0 <= index <= len(tail)): `Stage.pending_from`, the minimum over the stages.
Pending = Callable[[str], int]


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

    def start(self, released: int, final: bool) -> int:
        """Where the window of this check begins. The final check reads the whole answer: rules on all
        of it (a length, a span longer than any window) get their say before the tail is released."""
        if final or self.holdback is None:
            return 0
        return max(0, released - self.lookback)

    @staticmethod
    def reaches_sent(window: str, changed: str, sent: int) -> bool:
        """Whether `changed`, a stage's rewrite of `window` whose first `sent` characters already left,
        alters those (only a span longer than the hold-back can do this)."""
        return changed[:sent] != window[:sent]

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
            # by the hold-back cap anyway; the rest of the tail gives the views their context.
            tail = max(0, len(text) - 2 * hold - 32)
            upto = max(upto, tail + self._pending(text[tail:]))
        return max(released, upto)
