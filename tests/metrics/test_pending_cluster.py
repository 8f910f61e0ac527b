"""The PII pending rule's number-cluster pattern (gateway/metrics/pending.py): the same leftmost match as
the pattern it replaced, without that pattern's exponential backtracking on long digit runs."""

from __future__ import annotations

import re
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.metrics.pending import _CLUSTER_BACK

# The earlier pattern: a digit could be read by the class or by `\d`, so a failed match tried every split.
AMBIGUOUS = re.compile(r"[A-Za-z]{0,2}[+(]{0,2}(?:[\d \t._\-/*·•():]{0,3}\d)*\Z")


@settings(max_examples=2000, deadline=None)
@given(st.text("0123456789 \t._-/*·•():+(abXY", max_size=24))
def test_the_cluster_starts_where_the_earlier_pattern_said(text: str) -> None:
    for end in range(len(text) + 1):
        old, new = AMBIGUOUS.search(text, 0, end), _CLUSTER_BACK.search(text, 0, end)
        assert (old.start() if old else None) == (new.start() if new else None), (text, end)


def test_long_digit_runs_do_not_backtrack() -> None:
    """A run of digits 65 to 96 characters before the number being written, then something no cluster
    reads (a letter): the earlier pattern tried every split of the run (seven groups: 18.7 s, about ten
    times longer per group), holding the GIL. With nine it would take many minutes; it runs in a child
    process, and 20 s there is a hang, not a timing."""
    tail = "4111" * 9 + " " + "x" * 63 + " 5"
    code = f"from gateway.metrics.pending import pii_pending; print(pii_pending({tail!r}))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    except subprocess.TimeoutExpired:
        raise AssertionError("pii_pending did not finish within 20 s") from None
    assert int(done.stdout) > tail.index("x")  # the number being written is held, the run far back is not
