"""Where a match could still start: what a stream guard must keep holding back (issue 24, first tokens).

A pattern metric's `pending_from(text)` is the earliest index of `text` at which a span that the metric
could report for some continuation `text + more` (and does not report for `text` itself) could start.
Text before it can leave a stream guard now: no match can still start there. A metric without it is
held back by its stage's whole `holdback_chars`, as before (model-based detectors need text in their
window, not a match start).

The answer is conservative by construction, from three sources, each cheap:

- **the raw text**: per pattern, the characters a match can start with and its literal prefix (from
  the pattern's syntax, `Starter`); a `contains` keyword's prefixes (`Prefixes`); the PII shapes (a
  run of digits, an `@` or a URL or key in the token still being written, a `-----BEGIN` block).
- **runs still growing** (`growing`): the trailing token (a base64, hex, URL-escape, HTML-reference or
  zero-width-joined run, a key, an e-mail address), a trailing run of characters spaced apart, of hex
  bytes with separators, of an upper-case token in pieces, of digits with separators. A view built
  once such a run is complete may match from its first character, so it is held whole while it grows.
- **the views** of the text (`gateway.metrics.evasion.match_views`): the raw rules and the growing
  runs applied to each view's text, the position mapped back to the original characters (a decoded
  base64 run maps to its start), so a look-alike or escaped prefix is held like a plain one.

Callers pass the text's tail (the stream guard: about twice its hold-back, the rest is released by the
hold-back cap anyway), so the cost per check is a few regular-expression passes over a few hundred
characters.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from gateway.metrics.evasion import View, match_views

__all__ = ["Prefixes", "Starter", "growing", "pending_with_views", "pii_pending"]

# Trailing runs that a view may still turn into a match (see the module docstring). Each ends at \Z;
# re.search finds the leftmost start. The text passed is a bounded tail, so these stay cheap.
_GROWING = (
    re.compile(r"\S+\Z"),                                                   # the token being written
    re.compile(r"(?<!\S)(?:\S\s{1,4})+\S?\Z"),                             # c h a r s  spaced apart
    re.compile(r"(?<![0-9A-Za-z\\])(?:(?:\\x|0x)?[0-9A-Fa-f]{2}[ :,]?)+(?:\\x?|0x?|[0-9A-Fa-f])?\Z"),  # hex bytes
    re.compile(r"(?<![A-Za-z0-9])[A-Z0-9][A-Z0-9-]*(?:[ .][A-Z0-9][A-Z0-9-]*)*[ .]?\Z"),  # AKIA IOSF ODNN
    re.compile(r"[0-9](?:[ \t._\-/*·•]{0,2}[0-9])*[ \t._\-/*·•]{0,2}\Z"),  # 4111 1111 11
)


def growing(text: str) -> int:
    """The start of the longest trailing run that is still growing into a possible disguise."""
    start = len(text)
    for pattern in _GROWING:
        m = pattern.search(text)
        if m is not None and m.start() < start:
            start = m.start()
    return start


def _mapped(view: View, text_len: int, at: int) -> int:
    """A position of `view.text` as a position of the original text (its end: the original's end)."""
    if at >= len(view.text):
        return text_len
    return view.original(at, at + 1)[0]


def pending_with_views(text: str, raw: Callable[[str], int], *, normalize: bool, decode: bool) -> int:
    """min(raw(text), growing runs) over the text and, when a view is on, over its views (mapped back)."""
    at = raw(text)
    if normalize or decode:
        at = min(at, growing(text))
        for view in match_views(text, normalize=normalize, decode=decode):
            if at == 0:
                break
            at = min(at, _mapped(view, len(text), min(raw(view.text), growing(view.text))))
    return at


# ---- regex: first characters and literal prefixes, from the pattern's syntax ------------------------

def _any(ch: str) -> bool:
    return True


def _none(ch: str) -> bool:
    return False


Test = Callable[[str], bool]


def _eq(x: str) -> Test:
    return lambda c: c == x


def _ne(x: str) -> Test:
    return lambda c: c != x


def _between(lo: int, hi: int) -> Test:
    return lambda c: lo <= ord(c) <= hi


def _folded(test: Test) -> Test:
    return lambda c: test(c) or test(c.lower()) or test(c.upper())


def _category(name: str) -> Callable[[str], bool]:
    # RE2's classes are ASCII-only; the broader Unicode tests are conservative.
    tests: dict[str, Callable[[str], bool]] = {
        "CATEGORY_DIGIT": str.isdigit, "CATEGORY_SPACE": str.isspace,
        "CATEGORY_WORD": lambda c: c.isalnum() or c == "_",
    }
    if name in tests:
        return tests[name]
    if name.startswith("CATEGORY_NOT_") and "CATEGORY_" + name[13:] in tests:
        test = tests["CATEGORY_" + name[13:]]
        return lambda c: not test(c)
    return _any


def _class(items: Sequence[tuple]) -> Callable[[str], bool]:
    tests: list[Callable[[str], bool]] = []
    negate = False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            tests.append(_eq(chr(av)))
        elif name == "RANGE":
            tests.append(_between(av[0], av[1]))
        elif name == "CATEGORY":
            tests.append(_category(str(av)))
        else:
            return _any  # an item this reading does not know: anything may start here
    if negate:
        return lambda c: not any(t(c) for t in tests)
    return lambda c: any(t(c) for t in tests)


def _first(items: Iterable[tuple]) -> tuple[Callable[[str], bool], bool]:
    """(a test for the characters a match of `items` can start with, whether `items` can match empty)."""
    tests: list[Callable[[str], bool]] = []
    for op, av in items:
        name = str(op)
        nullable = False
        if name == "LITERAL":
            tests.append(_eq(chr(av)))
        elif name == "NOT_LITERAL":
            tests.append(_ne(chr(av)))
        elif name == "ANY":
            return _any, False
        elif name == "IN":
            tests.append(_class(av))
        elif name == "AT":
            nullable = True  # an anchor or \b: zero width
        elif name == "SUBPATTERN":
            test, nullable = _first(av[-1])
            tests.append(test)
        elif name == "BRANCH":
            alts = [_first(alt) for alt in av[1]]
            tests.extend(t for t, _ in alts)
            nullable = any(n for _, n in alts)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            test, inner = _first(av[2])
            tests.append(test)
            nullable = inner or av[0] == 0
        else:
            return _any, False  # lookaround, backreferences...: RE2 has none; stay safe
        if not nullable:
            return (lambda c: any(t(c) for t in tests)), False
    return (lambda c: any(t(c) for t in tests)) if tests else _none, True


def _literal_prefix(items: Sequence[tuple]) -> str:
    out: list[str] = []
    for op, av in items:
        name = str(op)
        if name == "AT" and not out:
            continue
        if name != "LITERAL":
            break
        out.append(chr(av))
    return "".join(out)


class Starter:
    """Where a match of one of `sources` could start in a text's tail, from each pattern's first
    characters and literal prefix. A pattern this reading cannot parse may start anywhere."""

    __slots__ = ("_candidates", "_starts", "width")

    def __init__(self, sources: Sequence[str], width: int, ignorecase: bool) -> None:
        import re._parser as sre_parser  # the stdlib parser (private): any failure falls back to "anywhere"

        self.width = width
        starts: list[tuple[Callable[[str], bool], str, bool]] = []
        for source in sources:
            try:
                parsed = sre_parser.parse(source)
                test, nullable = _first(list(parsed))
                prefix = _literal_prefix(list(parsed))
                fold = ignorecase or bool(parsed.state.flags & re.IGNORECASE)
            except Exception:
                test, nullable, prefix, fold = _any, True, "", False
            if nullable:
                test, prefix = _any, ""
            if fold:
                test = _folded(test)
                prefix = prefix.casefold()
            starts.append((test, prefix, fold))
        self._starts = tuple(starts)
        ascii_chars = "".join(chr(c) for c in range(128) if any(t(chr(c)) for t, _, _ in starts))
        # one C-level pass finds the characters worth a closer look (any non-ASCII one included)
        self._candidates = re.compile("[" + re.escape(ascii_chars) + "\u0080-\U0010ffff]")

    def __call__(self, text: str) -> int:
        n = len(text)
        for m in self._candidates.finditer(text, max(0, n - self.width - 1)):
            i = m.start()
            for test, prefix, fold in self._starts:
                if test(text[i]):
                    seen = text[i:i + len(prefix)]
                    if prefix.startswith(seen.casefold() if fold else seen):  # the literal prefix so far, or all of it
                        return i
        return n


# ---- contains: keyword prefixes -------------------------------------------------------------------

class Prefixes:
    """Whether a string begins some keyword (a sorted list and a binary search)."""

    __slots__ = ("_keys", "longest")

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = sorted(set(keys))
        self.longest = max((len(k) for k in self._keys), default=0)

    def begins(self, s: str) -> bool:
        i = bisect_left(self._keys, s)
        return i < len(self._keys) and self._keys[i].startswith(s)

    def earliest(self, text: str) -> int:
        """The earliest index whose rest of `text` is a keyword's prefix (len(text): none)."""
        n = len(text)
        for i in range(max(0, n - self.longest), n):
            if self.begins(text[i:]):
                return i
        return n


# ---- pii ------------------------------------------------------------------------------------------

_NUMBER_REACH = 64  # a number's span (IBAN 42 characters) plus the words after it that change its score
_DIGIT = re.compile(r"\d")
# A number's cluster back from its first digit: an IBAN's letters, "+" or "(", then digit runs joined by
# at most three separators. Written so a digit can be read one way only: the equivalent
# `(?:[\d<separators>]{0,3}\d)*` backtracked exponentially on long digit runs (13 s for one 90-character tail).
_SEP = r"[ \t._\-/*·•():]"
_CLUSTER_BACK = re.compile(r"[A-Za-z]{0,2}[+(]{0,2}(?:" + _SEP + r"{0,3}\d+(?:" + _SEP + r"{1,3}\d+)*)?\Z")
_PEM = "-----BEGIN"


def pii_pending(text: str) -> int:
    """The raw rule for the PII shapes: the token being written (an e-mail address, a URL, a key, a JWT,
    an IPv6 address), a number within reach of the end (from the start of its cluster: separators,
    a "+" or "(", an IBAN's country letters), an open private-key block."""
    n = len(text)
    at = n
    m = re.search(r"\S+\Z", text)
    if m is not None:
        at = m.start()
    d = _DIGIT.search(text, max(0, n - _NUMBER_REACH))
    if d is not None:
        back = _CLUSTER_BACK.search(text, max(0, d.start() - 96), d.start() + 1)
        at = min(at, back.start() if back is not None else d.start())
    pem = text.rfind(_PEM)
    if pem >= 0 and "-----END" not in text[pem:]:
        at = min(at, pem)
    return at
