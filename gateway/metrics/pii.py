"""`pii`: personal data and secrets found by validated patterns, as typed spans (Presidio entity names).

Params:
  entities:  optional list of entity types to look for (default: all of ENTITY_TYPES). An unknown name
             is a ParamError naming its index.
  normalize: true (default): also look in the normalised and joined views of the text
             (`gateway.metrics.evasion`: NFKC, invisible characters removed, look-alike letters and
             other scripts' digits folded, case kept; separators inside digit runs, between
             spaced-apart characters and inside a split upper-case token removed), so "4111.1111.
             1111.1111", fullwidth digits or a zero-width space inside a key are found. false: no.
  decode:    true (default): also look in the decoded views (base64, hex, URL and HTML escapes, up to
             two levels). false: no.
             A span found in a view is reported on the original characters it came from (a decoded
             base64 or hex run as a whole). With either on, `max_span_chars` is
             `evasion.span_bound` of the longest type (6 x + 16).

Entities (recognisers in `pii_recognizers` and `secrets`; all standard-library `re`, linear time):
  EMAIL_ADDRESS   local@domain.tld (ASCII; the local part up to 64 characters, the address up to 254).
  PHONE_NUMBER    international (+CC / 00CC / 011CC, optional "(0)"), NANP ((415) 555-0100,
                  415-555-0100, 1 415 555 0100) and European groupings (0490 75 40 81, 03.93.92.16.85,
                  07700 063 966), with an optional extension. 7-12 digits nationally, 8-15 with a
                  country code. A separator, a "+" or an "(area)" is required; dates, years, decimals,
                  dotted quads, thousands groupings, amounts ($, %, EUR) and numbers after "order",
                  "invoice", "#"... are rejected. Unseparated numbers, two groups ("467 3395": as often
                  a street and house number), thousands-like ("699 956 915"), SSN-shaped and all-short
                  groups ("70-70-75-70") need a phone word nearby ("phone", "tel", "call", "fax",
                  "mobile", ... before; "fax", "office", ... right after).
                  A number read on into the next one ("+1 415 555 2671 10.20.30.40", "415-555-2671
                  2024") is cut back before the space that ends it; a run of like groups is not cut.
  CREDIT_CARD     13-19 digits (12 for Maestro, which issues them), unseparated or in groups of 3+
                  joined by one kind of separator (space or dash); Luhn-valid, with a prefix and length
                  its network issues (Visa, Mastercard incl. 2-series, Amex, Discover, Diners, JCB (any
                  35xx, as test-card generators use), UnionPay, Mir, Maestro, RuPay, Troy).
  IBAN_CODE       country code, check digits, BBAN; the country's length, mod-97; any letter case;
                  spaces only between groups of four.
  US_SSN          AAA-GG-SSSS or AAA GG SSSS; not area 000/666/900-999, group 00, serial 0000, one
                  repeated digit, nor the well-known invalid ones (078-05-1120, 219-09-9999, 123-45-6789).
  IP_ADDRESS      IPv4 (octets 0-255, no leading zeros, not part of a longer dotted number) and IPv6
                  (full and compressed, IPv4-suffixed; checked with `ipaddress`; needs a digit).
  URL             http:// and https:// URLs, and www. ones; a host name with a TLD, an IP or
                  localhost; trailing punctuation and unbalanced closing brackets are not part of it.
  AWS_ACCESS_KEY, GOOGLE_API_KEY, OPENAI_API_KEY, ANTHROPIC_API_KEY, GITHUB_TOKEN, SLACK_TOKEN,
  STRIPE_KEY, JWT, PRIVATE_KEY: see `gateway.metrics.secrets`.

Value: frozenset of the entity types found. Spans: `Span(start, end, type, score)`, sorted by start and
non-overlapping: where candidates overlap, the higher score wins, then the longer span, then the
earlier one; the value lists the types of the spans kept (an IP inside a URL is reported as the URL).

Scores (confidence that the span is that entity): a validated checksum (Luhn + network, mod-97, the
GitHub CRC) or a decodable structure (JWT) -> 0.95-1.0; a specific format (e-mail 0.9, URL 0.8-0.9,
IPv4 0.85, IPv6 0.9-0.95, SSN with dashes 0.85) -> 0.8-0.95; phone numbers by format: international
or NANP 0.75, national with a trunk 0 0.6, other groupings 0.45, +0.3 with a phone word nearby (at most
0.95), 0.7 for a number that is only accepted because of one; SSN with spaces 0.5, 1.0 with
"SSN"/"social security" nearby; a 12-digit Maestro number 0.8 without "card" nearby. A policy's
calibrated threshold (0.5) therefore ignores the weak phone groupings while `pii contains_any [...]`
rules see every type found.

`max_span_chars`: the longest span of the enabled types (MAX_SPAN_CHARS): 4096 with PRIVATE_KEY or
JWT (an RSA-4096 PEM block is about 3.3K characters), 2048 with URL (longer URLs are cut there), else
at most 300 (API tokens) or 254 (e-mail). A longer private-key block or JWT is still matched whole in a
whole text, but in a stream it can outgrow the guard's window. A BEGIN line without its END line is
reported with the key lines after it (a truncated paste), so a streamed key is caught as soon as its
BEGIN line arrives: with `block`/`override` nothing of the key leaves; with `redact` only the lines
already seen are replaced and later lines are not recognisable alone, so prefer a terminal action for
PRIVATE_KEY in output stages.

Speed: cheap gates run first ("@" for e-mail, "://"/"www." for URLs, ":" for IPv6, each secret's
literal prefix with `str.find`); numbers are one regex pass over a translated copy of the text (see
`pii_recognizers`), classified in Python only when a digit run can hold an entity. On a 2 KB English
prompt (CPython 3.11): about 15 us without PII, 35 us with an e-mail and a phone number, 70 us with
five entities. 200 KB of adversarial input takes at most a few hundred milliseconds (linear).

Not recognised: names, locations, street addresses, dates, organisations and other entities that need
a language model (PERSON, LOCATION, STREET_ADDRESS, DATE_TIME, ORGANIZATION, NRP, US_DRIVER_LICENSE,
...); non-ASCII digits, internationalised e-mail addresses; bare domains without www. or a scheme;
phone numbers of fewer than 7 digits; unseparated or two-group numbers with no phone word nearby.
`python -m gateway.metrics.pii_eval FILE.jsonl` measures span-level precision and recall.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.metrics.types import MetricValue, ParamError, Span
from gateway.metrics.evasion import match_views, span_bound, view_found
from gateway.metrics.pending import pii_pending, pending_with_views
from gateway.metrics.pii_recognizers import (
    URL_MAX_CHARS,
    Found,
    find_emails,
    find_ipv6,
    find_numbers,
    find_urls,
)
from gateway.metrics.secrets import SECRET_MAX_CHARS, find_secrets

# Longest span each type can match (see the module docstring).
MAX_SPAN_CHARS: dict[str, int] = {
    "EMAIL_ADDRESS": 254,
    "PHONE_NUMBER": 64,
    "CREDIT_CARD": 24,
    "IBAN_CODE": 42,
    "US_SSN": 11,
    "IP_ADDRESS": 45,
    "URL": URL_MAX_CHARS,
    **SECRET_MAX_CHARS,
}
ENTITY_TYPES: frozenset[str] = frozenset(MAX_SPAN_CHARS)
_NUMBER_TYPES = frozenset({"PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS"})
_SECRET_TYPES = frozenset(SECRET_MAX_CHARS)
_ALLOWED = ("entities", "normalize", "decode")
_KNOWN = ", ".join(sorted(ENTITY_TYPES))
_NOTHING = MetricValue(frozenset())


class PiiMetric:
    """PII and secret spans; thread-safe (no state after construction)."""

    __slots__ = ("_email", "_ip", "_numbers", "_secrets", "_url", "decode", "entities", "max_span_chars",
                 "normalized")

    def __init__(self, entities: Iterable[str] | None = None, *, normalized: bool = True,
                 decode: bool = True) -> None:
        if entities is None:
            chosen = ENTITY_TYPES
        else:
            names = list(entities)
            if not names:
                raise ParamError(("entities",), f"must not be empty (omit it for all types); known: {_KNOWN}")
            for i, name in enumerate(names):
                if not isinstance(name, str):
                    raise ParamError(("entities", i), f"must be a string, not {type(name).__name__}")
                if name not in ENTITY_TYPES:
                    raise ParamError(("entities", i), f"unknown entity {name!r}; known: {_KNOWN}")
            chosen = frozenset(names)
        self.entities: frozenset[str] = chosen
        self.normalized = normalized
        self.decode = decode
        longest = max(MAX_SPAN_CHARS[name] for name in chosen)
        self.max_span_chars: int = span_bound(longest) if normalized or decode else longest
        self._numbers = bool(chosen & _NUMBER_TYPES)
        self._email = "EMAIL_ADDRESS" in chosen
        self._url = "URL" in chosen
        self._ip = "IP_ADDRESS" in chosen
        self._secrets = bool(chosen & _SECRET_TYPES)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PiiMetric:
        unknown = [key for key in params if key not in _ALLOWED]
        if unknown:
            raise ParamError((unknown[0],), f"unknown parameter; allowed: {', '.join(_ALLOWED)}")
        views = {}
        for key in ("normalize", "decode"):
            views[key] = params.get(key, True)
            if not isinstance(views[key], bool):
                raise ParamError((key,), "must be true or false")
        entities = params.get("entities")
        if entities is not None and (isinstance(entities, (str, bytes)) or not isinstance(entities, Iterable)
                                     or isinstance(entities, Mapping)):
            raise ParamError(("entities",), f"must be a list of entity types; known: {_KNOWN}")
        return cls(entities, normalized=views["normalize"], decode=views["decode"])

    def measure(self, text: str) -> MetricValue:
        found = self._find(text)
        if self.normalized or self.decode:
            for view in match_views(text, normalize=self.normalized, decode=self.decode):
                for start, end, label, score in self._find(view.text):
                    where = view_found(view, text, start, end)
                    if where is not None:
                        found.append((*where, label, score))
        if not found:
            return _NOTHING
        if len(found) > 1:
            found.sort()
            if any(found[k][1] > found[k + 1][0] for k in range(len(found) - 1)):
                found = _resolve(found)
        kept = found
        return MetricValue(frozenset(f[2] for f in kept),
                           tuple(Span(start, end, label, score) for start, end, label, score in kept))

    def pending_from(self, text: str) -> int:
        """The earliest index of `text` where a PII or secret span could still start: the token being
        written, a number near the end, an open private-key block, in the text and its views, or a
        disguise still growing (gateway.metrics.pending)."""
        return pending_with_views(text, pii_pending, normalize=self.normalized, decode=self.decode)

    def _find(self, text: str) -> list[Found]:
        found: list[Found] = []
        enabled = self.entities
        if self._numbers:
            find_numbers(text, found, enabled)
        if self._email and "@" in text:
            find_emails(text, found)
        if self._url and ((":" in text and "://" in text) or "www." in text or ("W" in text and "WWW." in text)):
            find_urls(text, found)
        if self._ip and ":" in text:
            find_ipv6(text, found)
        if self._secrets:
            find_secrets(text, found, enabled)
        return found

    def __repr__(self) -> str:
        views = "" if self.normalized and self.decode else f", normalize={self.normalized}, decode={self.decode}"
        if self.entities == ENTITY_TYPES:
            return f"PiiMetric(all entities{views})"
        return f"PiiMetric({sorted(self.entities)!r}{views})"


def _resolve(found: list[Found]) -> list[Found]:
    """Non-overlapping spans, sorted by start: higher score first, then longer, then earlier."""
    starts: list[int] = []
    ends: list[int] = []
    kept: list[Found] = []
    for item in sorted(found, key=lambda f: (-f[3], f[0] - f[1], f[0])):
        start, end = item[0], item[1]
        k = bisect_right(starts, start)
        if (k and ends[k - 1] > start) or (k < len(starts) and starts[k] < end):
            continue
        starts.insert(k, start)
        ends.insert(k, end)
        kept.insert(k, item)
    return kept
