"""`contains`: which configured keywords occur in the text, found with one Aho-Corasick pass.

Params:
  keywords:  list of non-empty strings (required).
  match:     "word" (default): a keyword edge that is a letter, digit or underscore must not touch
             another one in the text ("acme" is not found in "acmeist" nor in "tacme"); a keyword
             edge that is punctuation or a space needs no boundary. Characters of scripts written
             without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) count as boundaries, so CJK
             keywords match inside a sentence.
             "substring": anywhere.
  normalize: true (default): text and keywords are normalised alike (`gateway.text.normalize`:
             NFKC, case folding, invisible characters removed, whitespace runs collapsed, look-alike
             letters folded), so "PAYPAL", "pаypal" (Cyrillic а), "pay\\u200bpal" and "ＰａｙＰａｌ"
             all match "paypal". Keywords are also stripped. The text's joined view is scanned too
             (`gateway.metrics.evasion`: separators removed inside digit runs, between spaced-apart
             characters and inside a split upper-case token), so "p a y p a l" and "p.a.y.p.a.l"
             match as well.
             false: exact, case-sensitive matching on the raw text.
  decode:    true (default): also match in the decoded views of the text (base64, hex, URL and HTML
             escapes, up to two levels); an occurrence there is reported on the original characters
             (a decoded base64 or hex run as a whole). false: no decoding.

Value: frozenset of the configured keywords found (as written in the config; two keywords that
normalise alike are both reported). Spans: one per occurrence and keyword, in original-text
coordinates, labelled with the keyword.

`max_span_chars`: without normalisation or decoding, the longest keyword. With decoding,
`evasion.span_bound` (6 x + 16: an HTML reference is up to 6 characters per character). With
normalisation only, an occurrence can be longer
in the original than the keyword (zero-width characters between letters, combining sequences,
collapsed whitespace runs), so the bound is 4 x the longest keyword + 16: it covers up to three
invisible/extra characters per letter plus a long whitespace run. Padding beyond that is still
matched in a whole text, but a streamed occurrence that long may straddle the stream guard's
holdback window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import ahocorasick_rs

from gateway.metrics.types import MetricValue, ParamError, Span
from gateway.metrics.evasion import span_bound, with_views
from gateway.text.normalize import normalize, normalize_text, original_span
from gateway.metrics.pending import Prefixes, pending_with_views

_ALLOWED = ("keywords", "match", "normalize", "decode")
_MATCH_MODES = ("word", "substring")
_NOTHING = MetricValue(frozenset())
# Scripts written without spaces between words: their characters are word boundaries.
_UNSPACED = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF), (0x31F0, 0x31FF),
             (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3FFFF))


def max_span_bound(longest: int, normalized: bool) -> int:
    """The `max_span_chars` for a longest keyword of `longest` characters (see the module docstring)."""
    return 4 * longest + 16 if normalized else longest


def _is_word(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum() or ch == "_"
    if not ch.isalnum():
        return False
    cp = ord(ch)
    return not any(lo <= cp <= hi for lo, hi in _UNSPACED)


class ContainsMetric:
    """Keyword presence; thread-safe (the automaton and tables are immutable after construction)."""

    __slots__ = ("_automaton", "_labels", "_patterns", "_prefixes", "decode", "keywords", "max_span_chars", "normalized",
                 "word")

    def __init__(self, keywords: Sequence[str], *, word: bool = True, normalized: bool = True,
                 decode: bool = True) -> None:
        self.keywords = tuple(keywords)
        self.word = word
        self.normalized = normalized
        self.decode = decode
        labels: dict[str, list[str]] = {}
        for keyword in self.keywords:
            key = normalize_text(keyword).strip() if normalized else keyword
            if not key:
                raise ValueError(f"keyword {keyword!r} is empty after normalisation")
            labels.setdefault(key, [])
            if keyword not in labels[key]:
                labels[key].append(keyword)
        self._patterns = tuple(labels)
        self._labels = tuple(tuple(labels[p]) for p in self._patterns)
        self._automaton = ahocorasick_rs.AhoCorasick(self._patterns, matchkind=ahocorasick_rs.MatchKind.Standard)
        longest = max(max(len(k) for k in self.keywords), max(len(p) for p in self._patterns))
        self._prefixes = Prefixes(self._patterns)
        self.max_span_chars = span_bound(longest) if decode else max_span_bound(longest, normalized)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        unknown = [key for key in params if key not in _ALLOWED]
        if unknown:
            raise ParamError((unknown[0],), f"unknown parameter; allowed: {', '.join(_ALLOWED)}")
        if "keywords" not in params:
            raise ParamError(("keywords",), "required: a non-empty list of keywords")
        keywords = params["keywords"]
        if isinstance(keywords, (str, bytes)) or not isinstance(keywords, Sequence) or not keywords:
            raise ParamError(("keywords",), "must be a non-empty list of strings")
        match = params.get("match", "word")
        if match not in _MATCH_MODES:
            raise ParamError(("match",), f"must be one of: {', '.join(_MATCH_MODES)}")
        normalized = params.get("normalize", True)
        if not isinstance(normalized, bool):
            raise ParamError(("normalize",), "must be true or false")
        decode = params.get("decode", True)
        if not isinstance(decode, bool):
            raise ParamError(("decode",), "must be true or false")
        for i, keyword in enumerate(keywords):
            if not isinstance(keyword, str):
                raise ParamError(("keywords", i), f"must be a string, not {type(keyword).__name__}")
            if not (normalize_text(keyword).strip() if normalized else keyword):
                raise ParamError(("keywords", i), "must not be empty (after normalisation: invisible "
                                                  "characters and surrounding spaces removed)")
        return cls(keywords, word=match == "word", normalized=normalized, decode=decode)

    def measure(self, text: str) -> MetricValue:
        value = self._measure(text)
        if self.normalized or self.decode:
            return with_views(text, value, self._measure, normalize=self.normalized, decode=self.decode)
        return value

    def pending_from(self, text: str) -> int:
        """The earliest index of `text` whose rest begins a keyword (normalised like the keywords), in the
        text and its views, or where a disguise still growing starts (gateway.metrics.pending)."""
        return pending_with_views(text, self._pending_raw, normalize=self.normalized, decode=self.decode)

    def _pending_raw(self, text: str) -> int:
        if not self.normalized:
            return self._prefixes.earliest(text)
        norm, offsets = normalize(text)
        at = self._prefixes.earliest(norm)
        if at >= len(norm):
            return len(text)
        return offsets[at] if offsets is not None else at

    def _measure(self, text: str) -> MetricValue:
        haystack = normalize_text(text) if self.normalized else text
        found = self._automaton.find_matches_as_indexes(haystack, overlapping=True)
        if not found:
            return _NOTHING
        if self.word:
            found = [m for m in found if self._at_boundaries(haystack, m[1], m[2])]
            if not found:
                return _NOTHING
        offsets = None
        if self.normalized:
            norm, offsets = normalize(text)
            if norm != haystack:  # normalize and normalize_text disagree: a bug, never silently
                raise RuntimeError("normalize() and normalize_text() disagree on this text")
        spans: set[Span] = set()
        value: set[str] = set()
        for index, start, end in found:
            begin, stop = original_span(text, offsets, start, end)
            for label in self._labels[index]:
                value.add(label)
                spans.add(Span(begin, stop, label))
        return MetricValue(frozenset(value), tuple(sorted(spans, key=lambda s: (s.start, s.end, s.label))))

    @staticmethod
    def _at_boundaries(text: str, start: int, end: int) -> bool:
        if start > 0 and _is_word(text[start]) and _is_word(text[start - 1]):
            return False
        return not (end < len(text) and _is_word(text[end - 1]) and _is_word(text[end]))

    def __repr__(self) -> str:
        mode = "word" if self.word else "substring"
        return (f"ContainsMetric({len(self.keywords)} keywords, match={mode}, normalize={self.normalized}, "
                f"decode={self.decode})")
