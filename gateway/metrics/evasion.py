# size: one view builder per disguise (normalised, joined, decoded) and the bounded recursion that
# nests them; the docstring is their specification and the limits that keep them linear
"""Views of a text for the pattern metrics (`regex`, `contains`, `pii`), each with a map back to the text.

A disguised secret (a zero-width space or a soft hyphen inside it, fullwidth or look-alike characters,
spaces or dots between its characters, or its base64/hex/URL/HTML-escaped form) does not match a pattern
written for the plain form. `match_views(text)` returns the forms a matcher should also scan, each as a
`View` whose `original(start, end)` turns a match in the view into the characters of `text` it came
from, so a redaction replaces exactly the disguised characters.

Views (each is only built when the text shows the disguise, see "Speed"):
- **normalised** (`normalize`): NFKC (fullwidth, mathematical and other compatibility forms), Unicode
  format characters (category Cf: zero-width space/joiners, word joiner, soft hyphen, BOM, bidi
  controls, tags) and other invisible marks removed, look-alike Cyrillic/Greek/Armenian letters folded
  to the ASCII letter of the same case, decimal digits of any script to ASCII digits, other whitespace
  to a space. Case is kept: a pattern decides its own case sensitivity.
- **joined** (`normalize`): separators removed where they only pull a token apart: inside a run of
  digits ("4111.1111 1111-1111", at least 8 digits), between characters spaced apart by one kind of
  spacer ("P R O J E C T", "A.K.I.A", "4-1-1-1": four or more single characters), and between the
  pieces of an upper-case/digit token split by single spaces or dots ("AKIA IOSF ODNN 7EXA MPLE"; the
  run holds a digit and 10 or more characters).
- **decoded** (`decode`): base64 (standard or URL-safe, 16+ characters) and hex runs (16+ digits, with
  optional `\\x`/`0x`, spaces, colons or commas) that decode to printable UTF-8 text; runs of URL escapes
  (`%41`); HTML character references (`&#65;`, `&#x41;`, `&amp;`). A match inside a decoded base64 or
  hex run maps to the whole run (the run is what gets redacted); a URL or HTML escape maps to itself.

Bounds: a view is decoded again at most once more (`MAX_DEPTH` = 2 levels, e.g. base64 inside hex, or
a zero-width space inside base64), at most `MAX_VIEWS` (10) views, all views together at most
`SIZE_FACTOR` (4) times the text's characters plus 1,024, and only the first `MAX_SCAN_CHARS` (64,000)
characters are viewed. Every builder is a linear regular-expression pass.

Spans: a view is a list of pieces, each either linear (view character k comes from text character
o + k) or a block (every view character comes from the whole original range, e.g. a decoded base64 run
or an NFKC expansion). `original(start, end)` is the original start of the first matched character to
the original end of the last: characters dropped in between (a zero-width space) are inside the span.

Speed: plain ASCII text without a hint of any disguise costs one RE2 scan (`_HINT`) and builds nothing.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import unquote_to_bytes

import re2  # type: ignore[import-untyped]

from gateway.metrics.types import MetricValue, Span
from gateway.text.normalize import _LOWER_HOMOGLYPHS, _UPPER_HOMOGLYPHS, _tables
from gateway.text.views import decoded_text

__all__ = ["View", "match_views", "span_bound", "view_found", "with_views", "MAX_DEPTH", "MAX_VIEWS", "SIZE_FACTOR", "EXPANSION"]

MAX_DEPTH = 2
MAX_VIEWS = 10
SIZE_FACTOR = 4
MAX_SCAN_CHARS = 64_000
# How much longer in the original a match can be than in its view, for the stream guard's hold-back:
# an HTML reference is at most 6 characters for an ASCII character (`&#126;`, `&#x7e;`), a URL escape 3,
# a hex byte 2-4, base64 4/3, a zero-width character doubles a character. Two levels of encoding, or
# padding with several invisible characters per character, can exceed it: such a match is still found in
# a whole text, but a streamed one may outgrow the hold-back.
EXPANSION = 6


def span_bound(longest: int) -> int:
    """The `max_span_chars` for matches of at most `longest` characters once views are on."""
    return EXPANSION * longest + 16


class View:
    """A view's text and its piecewise map back to its parent (None: the original text)."""

    __slots__ = ("_los", "_pieces", "kind", "parent", "text")

    def __init__(self, text: str, pieces: list[list], kind: str, parent: View | None) -> None:
        self.text = text
        self._pieces = pieces  # [view_start, view_end, orig_start, orig_end, linear]
        self._los = [p[0] for p in pieces]
        self.kind = kind
        self.parent = parent

    def _point(self, i: int) -> tuple[int, int]:
        piece = self._pieces[bisect_right(self._los, i) - 1]
        if piece[4]:
            o = piece[2] + i - piece[0]
            return o, o + 1
        return piece[2], piece[3]

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The range of the original text that view characters [start, end) (start < end) come from."""
        lo = self._point(start)[0]
        hi = self._point(end - 1)[1]
        if self.parent is not None:
            return self.parent.original(lo, max(hi, lo + 1))
        return lo, hi

    def __repr__(self) -> str:
        return f"View({self.kind!r}, {self.text[:40]!r})"


class _Builder:
    __slots__ = ("n", "parts", "pieces")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pieces: list[list] = []
        self.n = 0

    def copy(self, text: str, a: int, b: int) -> None:
        if b <= a:
            return
        self.linear(text[a:b], a)

    def linear(self, s: str, a: int) -> None:
        """`s` whose character k comes from original character a + k."""
        last = self.pieces[-1] if self.pieces else None
        if last is not None and last[4] and last[1] == self.n and last[3] == a:
            last[1] += len(s)
            last[3] += len(s)
        else:
            self.pieces.append([self.n, self.n + len(s), a, a + len(s), True])
        self.parts.append(s)
        self.n += len(s)

    def block(self, s: str, a: int, b: int) -> None:
        """`s`, every character of which comes from original characters [a, b)."""
        if not s:
            return
        if len(s) == 1 and b == a + 1:
            self.linear(s, a)
            return
        self.pieces.append([self.n, self.n + len(s), a, b, False])
        self.parts.append(s)
        self.n += len(s)

    def view(self, kind: str, parent: View | None) -> View:
        return View("".join(self.parts), self.pieces, kind, parent)


# ---- normalised view --------------------------------------------------------------------------------

_CASED_HOMOGLYPHS = {**{k: v.upper() for k, v in _UPPER_HOMOGLYPHS.items()}, **_LOWER_HOMOGLYPHS}
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    if ch in _tables().drop:
        return ""
    out = []
    for c in unicodedata.normalize("NFKC", _CASED_HOMOGLYPHS.get(ch, ch)):
        if c.isascii():
            out.append(c)
        elif c in _tables().drop:
            continue
        elif c.isspace():
            out.append(" ")
        elif c.isdecimal():
            out.append(str(unicodedata.decimal(c)))
        else:
            out.append(_CASED_HOMOGLYPHS.get(c, c))
    return "".join(out)


def _normalised(text: str, parent: View | None) -> View | None:
    if text.isascii():
        return None
    b = _Builder()
    pos = 0
    changed = False
    for m in _NON_ASCII.finditer(text):
        b.copy(text, pos, m.start())
        for j in range(m.start(), m.end()):
            ch = text[j]
            folded = _fold_char(ch)
            if folded != ch:
                changed = True
            b.block(folded, j, j + 1)
        pos = m.end()
    b.copy(text, pos, len(text))
    return b.view("normalised", parent) if changed else None


# ---- joined view ------------------------------------------------------------------------------------

_DIGIT_SEP = r"[ \t._\-/*·•]"
_JOIN_SPACERS = ".-_*|/·•,"
_DATE = re.compile(r"(?:19|20)[0-9]{2}([-/.])[01]?[0-9]\1[0-3]?[0-9]|[0-3]?[0-9]([-/.])[01]?[0-9]\2(?:19|20)[0-9]{2}")
_JOIN = re.compile(
    # digits with separators inside: at least 8 digits (cards, account numbers, keys' digit groups)
    r"(?P<digits>(?<![0-9])[0-9](?:%s{0,2}[0-9]){7,}(?![0-9]))" % _DIGIT_SEP
    # single characters spaced apart by one or two spaces
    + r"|(?P<ws>(?<!\S)(?:\S[ \t]{1,2}){3,}\S(?!\S))"
    # single characters spaced apart by one kind of punctuation (the spacer itself may be an element)
    + "".join(r"|(?P<p%d>(?<![^\s%s])(?:(?:[^\s%s]|%s(?=%s))%s){3,}[^\s%s](?![^\s%s]))"
              % ((k,) + (re.escape(s),) * 7) for k, s in enumerate(_JOIN_SPACERS))
)
# an upper-case/digit token split by single spaces or dots (a second pass: it would otherwise swallow
# characters spaced apart that the first pass joins)
_GROUPS = re.compile(
    r"(?P<groups>(?<![A-Za-z0-9])[A-Z0-9][A-Z0-9-]{0,23}(?:[ .][A-Z0-9][A-Z0-9-]{0,23})+(?![A-Za-z0-9]))")


def _joined(text: str, parent: View | None) -> list[View]:
    """The text with spaced-apart characters and digit runs joined, and that with split upper-case
    tokens joined too (when each differs)."""
    views = []
    first = _join_pass(text, parent, _JOIN)
    if first is not None:
        views.append(first)
    second = _join_pass(text if first is None else first.text, first or parent, _GROUPS)
    if second is not None:
        views.append(second)
    if first is not None:  # the first pass may have glued a number onto a split token's last piece
        third = _join_pass(text, parent, _GROUPS)
        if third is not None:
            views.append(third)
    return views


def _join_pass(text: str, parent: View | None, pattern: re.Pattern[str]) -> View | None:
    b = _Builder()
    pos = 0
    changed = False
    for m in pattern.finditer(text):
        kind = m.lastgroup
        run = m.group()
        start = m.start()
        if kind == "digits":
            if run.isdigit() or _DATE.search(run):  # nothing to join, or a date and time
                continue
            keep = [k for k, c in enumerate(run) if c.isdigit()]
        elif kind == "ws":
            keep = [k for k, c in enumerate(run) if c not in " \t"]
        elif kind == "groups":
            if sum(c.isalnum() for c in run) < 10 or not any(c.isdigit() for c in run):
                continue
            keep = [k for k, c in enumerate(run) if c not in " ."]
        else:  # one spacer character: elements and spacers alternate
            keep = list(range(0, len(run), 2))
        b.copy(text, pos, start)
        for k in keep:
            b.linear(run[k], start + k)
        pos = m.end()
        changed = True
    if not changed:
        return None
    b.copy(text, pos, len(text))
    return b.view("joined", parent)


# ---- decoded views ----------------------------------------------------------------------------------

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
# (a run ends at a word's end: "...34 32 beta" is not a run ending in the byte 0xbe)
_HEX = re.compile(r"(?<![0-9A-Za-z\\])(?:(?:\\x|0x)?[0-9A-Fa-f]{2}(?:[ :,]|(?=\\x|0x))?){8,}(?![0-9A-Za-z])")
_URL_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_HTML_REF = re.compile(r"&(?:#[0-9]{1,7};?|#[xX][0-9A-Fa-f]{1,6};?|[A-Za-z][A-Za-z0-9]{1,31};)")


def _text_of(raw: bytes) -> str | None:
    """Decoded bytes that read as text: valid UTF-8, at least 90% printable, not blank."""
    return decoded_text(raw, 0.9)


def _b64(run: str) -> str | None:
    core = run.rstrip("=")
    if len(core) % 4 == 1:
        return None
    try:
        raw = base64.b64decode((core + "=" * (-len(core) % 4)).replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _text_of(raw)


_UNSPACED_HEX = re.compile(r"[^ ]{16,}")
_HEX_NOISE = re.compile(r"\\x|0x|[^0-9A-Fa-f]")


def _hex(run: str) -> str | None:
    digits = _HEX_NOISE.sub("", run)
    if len(digits) % 2 or len(digits) < 16:
        return None
    return _text_of(bytes.fromhex(digits))


def _runs(text: str, parent: View | None, pattern: re.Pattern[str], decode: Callable[[str], str | None],
          kind: str, pad: bool) -> View | None:
    b = _Builder()
    pos = 0
    changed = False
    for m in pattern.finditer(text):
        run = m.group().rstrip(" :,") if kind == "hex" else m.group()
        if kind == "hex" and " " in run and _UNSPACED_HEX.search(run):
            # a long hex string next to a number ("...4242 0000"), not bytes spaced apart: its parts alone
            pieces = [(m.start() + p.start(), p.group(), decode(p.group())) for p in _UNSPACED_HEX.finditer(run)]
        else:
            pieces = [(m.start(), run, decode(run))]
            if kind == "hex" and pieces[0][2] is None and " " in run:
                offset, part, decoded = _hex_trimmed(run)
                pieces = [(m.start() + offset, part, decoded)]
        for start, part, decoded in pieces:
            if decoded is None or decoded == part:
                continue
            b.copy(text, pos, start)
            b.block(f" {decoded} " if pad else decoded, start, start + len(part))
            pos = start + len(part)
            changed = True
    if not changed:
        return None
    b.copy(text, pos, len(text))
    return b.view(kind, parent)


_PAIR = re.compile(r"(?:\\x|0x)?[0-9A-Fa-f]{2}")


def _hex_trimmed(run: str) -> tuple[int, str, str | None]:
    """Bytes spaced apart next to a number or a word's first letters ("90 50 52 ... 34 32 be"): the run
    without one or two pairs at either end, where that decodes: (its offset in the run, it, the text)."""
    pairs = list(_PAIR.finditer(run))
    for cut in range(1, 5):
        for lead in range(0, min(cut, 2) + 1):
            trail = cut - lead
            if trail > 2 or len(pairs) - cut < 8:
                continue
            a, b = pairs[lead].start(), pairs[len(pairs) - 1 - trail].end()
            decoded = _hex(run[a:b])
            if decoded is not None:
                return a, run[a:b], decoded
    return 0, run, None


def _url(run: str) -> str | None:
    try:
        return unquote_to_bytes(run).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decoded(text: str, parent: View | None) -> list[View]:
    views = []
    if len(text) >= 16:
        for pattern, decode, kind in ((_BASE64, _b64, "base64"), (_HEX, _hex, "hex")):
            view = _runs(text, parent, pattern, decode, kind, pad=True)
            if view is not None:
                views.append(view)
    if "%" in text:
        view = _runs(text, parent, _URL_RUN, _url, "url", pad=False)
        if view is not None:
            views.append(view)
    if "&" in text:
        view = _runs(text, parent, _HTML_REF, html.unescape, "html", pad=False)
        if view is not None:
            views.append(view)
    return views


# One RE2 pass decides whether an ASCII text shows any disguise at all (the usual answer is no).
_HINT = re2.compile(
    r"[A-Za-z0-9+/_-]{16}"                      # a base64 or hex run
    r"|(?:[0-9A-Fa-f]{2}[ :,]){7}|\\x[0-9A-Fa-f]{2}|%[0-9A-Fa-f]{2}"  # spaced hex, \x escapes, URL escapes
    r"|&#?[A-Za-z0-9]{2,}"                       # an HTML reference
    r"|(?:[0-9][ \t._/*-]{0,2}){7}[0-9]"          # a digit run, maybe with separators inside
    r"|(?:^|\s)\S[ \t.\-_*|/,]{1,2}\S[ \t.\-_*|/,]{1,2}\S[ \t.\-_*|/,]{1,2}\S"  # spaced-apart characters
    r"|[A-Z0-9][ .][A-Z0-9]"                     # an upper-case token in pieces
)


def _hinted(text: str) -> bool:
    return not text.isascii() or _HINT.search(text) is not None


def _level(text: str, parent: View | None, normalize: bool, decode: bool, skip: str) -> list[View]:
    views: list[View] = []
    if normalize:
        if skip != "normalised":
            view = _normalised(text, parent)
            if view is not None:
                views.append(view)
        if skip != "joined":
            # joined on the normalised text when there is one ("４１１１.１１１１...")
            base = views[0] if views else None
            source = base.text if base is not None else text
            views.extend(_joined(source, base if base is not None else parent))
    if decode:
        views.extend(_decoded(text, parent))
    return views


def match_views(text: str, *, normalize: bool = True, decode: bool = True) -> list[View]:
    """The views of `text` a pattern matcher should scan besides `text` itself (see the module
    docstring); empty for ordinary text."""
    if not (normalize or decode) or not _hinted(text):
        return []
    text = text[:MAX_SCAN_CHARS]
    budget = SIZE_FACTOR * len(text) + 1024
    seen = {text}
    views: list[View] = []
    level: list[View | None] = [None]
    for depth in range(MAX_DEPTH):
        following: list[View | None] = []
        for source in level:
            source_text = text if source is None else source.text
            if source is not None and not _hinted(source_text):
                continue
            for view in _level(source_text, source, normalize, decode, "" if source is None else source.kind):
                if view.text in seen:
                    continue
                if len(views) >= MAX_VIEWS or len(view.text) > budget:
                    return views
                seen.add(view.text)
                views.append(view)
                following.append(view)
                budget -= len(view.text)
        level = following
        if not level:
            break
    return views


def with_views(text: str, value: MetricValue, measure: Callable[[str], MetricValue], *,
               normalize: bool, decode: bool) -> MetricValue:
    """`value` (what `measure(text)` found) joined with what `measure` finds in the views of `text`, the
    views' spans mapped back to `text` (exact duplicates dropped, sorted by start)."""
    views = match_views(text, normalize=normalize, decode=decode)
    if not views:
        return value
    labels = set(value.value) if isinstance(value.value, frozenset) else set()
    spans = set(value.spans)
    for view in views:
        found = measure(view.text)
        if not found.value:
            continue
        for span in found.spans:
            start, end = view.original(span.start, span.end)
            if view.text[span.start:span.end] != text[start:end]:  # else the text itself has it
                labels.add(span.label)
                spans.add(Span(start, end, span.label, span.score))
    if not labels:
        return value
    if isinstance(value.value, frozenset) and labels == value.value and len(spans) == len(value.spans):
        return value
    return MetricValue(frozenset(labels), tuple(sorted(spans, key=lambda s: (s.start, s.end, s.label, -s.score))))


def view_found(view: View, text: str, start: int, end: int) -> tuple[int, int] | None:
    """The original range of a match [start, end) in `view`, or None when the view's characters there
    are the text's own (the text itself has that match; a view can only cut it shorter)."""
    lo, hi = view.original(start, end)
    return None if view.text[start:end] == text[lo:hi] else (lo, hi)
