"""A phone number followed by a space and another number (an address, a year, an amount, a second phone).

The phone pattern read the number on into the next one ("+1 415 555 2671 10.20.30" of
"+1 415 555 2671 10.20.30.40"), the whole failed validation (too many digits, mixed separators) and the
phone number was dropped, so a redacting stage sent it out raw, streamed or not. Now a failed candidate
is cut back before a space where that space ends the number (gateway/metrics/pii_recognizers.py
`_shorter`); a run of same-looking groups (a card, an IBAN, an order number) is not cut.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.guard.redact import redact
from gateway.metrics.pii import PiiMetric
from tests.guard.test_stream_redact import STAGES, cut, stream, whole

ALL = PiiMetric()
RAW = PiiMetric(normalized=False)  # the text itself, without the joined and decoded views


def redacted(text: str, metric: PiiMetric = ALL) -> str:
    return redact(text, metric.measure(text).spans, "<{label}>")


# text -> what a redacting stage answers (the same with or without the views)
FOUND = {
    # the report: the phone number before an IPv4 address, with a +CC and spaces, or with dashes
    "call +1 415 555 2671 10.20.30.40 ok": "call <PHONE_NUMBER> <IP_ADDRESS> ok",
    "call 415-555-2671 10.20.30.40 ok": "call <PHONE_NUMBER> <IP_ADDRESS> ok",
    "Phone: +44 20 7946 0958 192.168.1.254 is the host": "Phone: <PHONE_NUMBER> <IP_ADDRESS> is the host",
    # then a year
    "call 415-555-2671 2024": "call <PHONE_NUMBER> 2024",
    "call +44 20 7946 0958 2024 was fine": "call <PHONE_NUMBER> 2024 was fine",
    "tel. 415.555.2671 1999": "tel. <PHONE_NUMBER> 1999",
    "call (415) 555-2671 2024": "call <PHONE_NUMBER> 2024",  # before: "(415) 555-" left, "2671 2024" redacted
    # then an amount or a count
    "call 415 555 2671 12.50 USD": "call <PHONE_NUMBER> 12.50 USD",
    "call 415-555-2671 12 times": "call <PHONE_NUMBER> 12 times",
    # two phone numbers, a space apart
    "call 415-555-2671 212-555-0199": "call <PHONE_NUMBER> <PHONE_NUMBER>",
    # a year, then a phone number, then a year
    "in 2023 call 555-123-4567 2024": "in 2023 call <PHONE_NUMBER> 2024",
}

# Already found before the fix (a comma or a sentence's full stop ends the number): kept as they are.
STILL_FOUND = {
    "call +1 415 555 2671, +1 212 555 0100": "call <PHONE_NUMBER>, <PHONE_NUMBER>",
    "call 415-555-2671, 212-555-0199": "call <PHONE_NUMBER>, <PHONE_NUMBER>",
    "call +1 415 555 2671, 10.20.30.40": "call <PHONE_NUMBER>, <IP_ADDRESS>",
    "Call me at 415-555-2671. 2024 was a good year.": "Call me at <PHONE_NUMBER>. 2024 was a good year.",
    "Call me at 415-555-2671. 10.20.30.40 is the host": "Call me at <PHONE_NUMBER>. <IP_ADDRESS> is the host",
    "Call me at +44 20 7946 0958. 2024 was a good year.": "Call me at <PHONE_NUMBER>. 2024 was a good year.",
}


@pytest.mark.parametrize(("text", "expected"), list(FOUND.items()) + list(STILL_FOUND.items()))
def test_a_phone_number_before_another_number_is_redacted(text: str, expected: str) -> None:
    assert redacted(text) == expected
    assert redacted(text, RAW) == expected


@pytest.mark.parametrize(("text", "expected"), list(FOUND.items()))
@pytest.mark.parametrize("step", [1, 3])
def test_a_redact_stage_redacts_it_whole_and_streamed(text: str, expected: str, step: int) -> None:
    assert whole(STAGES, text) == expected
    assert stream(STAGES, text, cut(text, [step])).text == expected


@pytest.mark.parametrize("text", [
    "call +1 415 555 2671 2024",  # +1 then 14 digits is a valid E.164 length: the year is read into the number
    "Call +1 415 555 2671. 2024 was a good year.",  # the joined view reads "+141555526712024"
])
def test_known_over_redaction_keeps_no_digit_of_the_phone_number(text: str) -> None:
    """Where the number is read on into the next one, the whole is redacted: more than the phone number,
    none of it left."""
    out = redacted(text)
    assert "<PHONE_NUMBER>" in out and "415" not in out and "2671" not in out


@pytest.mark.parametrize(("text", "expected"), [
    # runs of same-looking groups are not cut into a phone number and a rest
    ("card 4111 1111 1111 1112 2024", "card 4111 1111 1111 1112 2024"),  # Luhn-invalid card, then a year
    ("card 4111 1111 1111 1112 10.20.30.40", "card 4111 1111 1111 1112 <IP_ADDRESS>"),
    ("card 4111-1111-1111-1112 2024", "card 4111-1111-1111-1112 2024"),
    ("call 0123 4567 8901 2345 2024", "call 0123 4567 8901 2345 2024"),  # 16 digits in fours
    ("GB83 WEST 1234 5698 7654 32 2024", "GB83 WEST 1234 5698 7654 32 2024"),  # IBAN with a bad checksum
    ("id 9876 5432 1098 7654 3210 10.20.30.40", "id 9876 5432 1098 7654 3210 <IP_ADDRESS>"),
    # a validated card, then a year: the card, no phone number inside it
    ("card 4111 1111 1111 1111 2024", "card <CREDIT_CARD> 2024"),
    # an order number stays one with a number after it
    ("order 415-555-2671 2024", "order 415-555-2671 2024"),
    ("order #123-456-7890 10.20.30.40", "order #123-456-7890 <IP_ADDRESS>"),
    # timestamps, dates, versions and years
    ("at 2024-01-15 10.30.00", "at 2024-01-15 10.30.00"),
    ("call at 20240115 103000", "call at 20240115 103000"),
    ("version 1.2.3 4.5.6.7 2024", "version 1.2.3 4.5.6.7 2024"),
    ("build 2024.01.15 1234567", "build 2024.01.15 1234567"),
    ("1990 2000 2010 2020", "1990 2000 2010 2020"),
    ("from 2019-2020 1990 2000", "from 2019-2020 1990 2000"),
    ("ISBN 978-3-16-148410-0 2024", "ISBN 978-3-16-148410-0 2024"),
])
def test_longer_digit_runs_that_are_not_phone_numbers_stay(text: str, expected: str) -> None:
    assert redacted(text) == expected
    assert redacted(text, RAW) == expected


def test_digit_groups_separated_by_spaces_scan_in_linear_time() -> None:
    """2,000 characters of digit groups separated by spaces (each failed candidate is cut back at most
    five times, each cut a bounded match), the same 100 times longer, and 1,980 characters of phone
    numbers each before an address, in a child process: hundredths of a second, and tenths for the long
    ones, here; 60 s is a hang, not a timing."""
    code = """
import random
from gateway.metrics.pii import PiiMetric
metric = PiiMetric()
rng = random.Random(5)
units = ["1234 ", "123 ", "1 ", "123456789 ", "123456789012 ", "415 555 2671 ",
         " ".join(str(rng.randrange(10 ** rng.randint(1, 12))) for _ in range(400)) + " "]
for unit in units:
    text = (unit * (2000 // len(unit) + 1))[:2000]
    metric.measure(text)
    metric.measure(text * 100)
text = "call +1 415 555 2671 10.20.30.40 " * 60
print(sorted(span.label for span in metric.measure(text).spans).count("PHONE_NUMBER"))
"""
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        raise AssertionError("the PII scan of digit groups did not finish within 60 s") from None
    assert int(done.stdout) == 60  # every phone number before its address
