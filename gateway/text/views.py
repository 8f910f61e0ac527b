"""Bounded decoded views of a text: what a disguised instruction says once its disguise is removed; and
the trailing request of a long text, read apart from the document before it.

An attack hidden as base64, hex, ROT13, URL or HTML escapes, leetspeak, letters spaced apart, reversed,
or split by invisible characters and look-alike letters reads as noise to a classifier. `decoded_views`
returns the readable forms of such a text so a detector can score them too and keep the most severe
score. An ordinary text has no view (the checks are a few regular-expression scans), so it costs
nothing more; an encoded benign text decodes to benign text and scores as such.

Bounds (every decoder is linear in its input; the patterns are written so that a failed match cannot
backtrack more than a bounded number of steps from any start):
- at most `MAX_DEPTH` (2) levels: a view is decoded once more (base64 inside hex, ROT13 of base64...);
- all views together hold at most `size_factor` (3) times the input's characters, and at most
  `MAX_VIEWS` (8) views; decoding stops when either is reached;
- only the first `MAX_SCAN_CHARS` (32,000) characters are examined, as the encoder reads no more;
- a decoded byte run is a view only if it is valid UTF-8 and mostly printable (a hash or a binary blob
  in hex or base64 is not text, and is not a view).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import html
import re
import unicodedata
from urllib.parse import unquote

from gateway.text.normalize import normalize_text

__all__ = ["decoded_views", "detector_views", "trailing_request", "MAX_DEPTH", "MAX_VIEWS"]

MAX_DEPTH = 2
MAX_VIEWS = 8
MAX_SCAN_CHARS = 32_000
MIN_ENCODED = 16  # characters of a base64 or hex run worth decoding (12 bytes of base64, 8 of hex)

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{%d,}={0,2}" % MIN_ENCODED)
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:(?:0x)?[0-9A-Fa-f]{2}[\s:,\\x]{0,2}){%d,}" % (MIN_ENCODED // 2))
_HEX_HINT = re.compile(r"[0-9A-Fa-f]{2}(?:[\s:,]|\\x|0x)?[0-9A-Fa-f]{2}(?:[\s:,]|\\x|0x)?[0-9A-Fa-f]{2}"
                       r"(?:[\s:,]|\\x|0x)?[0-9A-Fa-f]{2}(?:[\s:,]|\\x|0x)?[0-9A-Fa-f]{2}")
_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_HTML_ESCAPE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z]{2,8});")
# letters spaced apart: "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e" (five or more single characters)
# Letters ([^\W_]) and separators are disjoint and a run is at most 64 letters (a longer one is matched
# in pieces), so a failed match costs at most 64 steps from each start: linear, never exponential
# (with `_` in both, 44 underscores took 2 s).
_SPACED = re.compile(r"(?<![^\W_])(?:[^\W_][ .\-_*|/]{1,3}){4,64}[^\W_](?![^\W_])")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"})
_LEET_TOKEN = re.compile(r"(?<!\S)(?:[A-Za-z]+[0-9@$!|+]|[0-9@$!|+]+[A-Za-z])[A-Za-z0-9@$!|+]*(?!\S)")
_HEX_TOKEN = re.compile(r"(?:0x)?[0-9A-Fa-f]+")
_LEET_RUN = re.compile(r"(?<!\S)[A-Za-z0-9@$!|+]+(?!\S)")
# invisible characters (format, variation selectors), compatibility forms NFKC changes, or a word that
# mixes Latin letters with Cyrillic or Greek ones: then the normalised text is a view
_INVISIBLE = re.compile("[\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff]")
_INSIDE_WORD = re.compile(r"\w%s+\w" % _INVISIBLE.pattern)  # a leading right-to-left mark is no disguise
_MIXED_WORD = re.compile(r"[A-Za-z][\u0370-\u03ff\u0400-\u04ff]|[\u0370-\u03ff\u0400-\u04ff][A-Za-z]")
_WORD = re.compile(r"[a-z]{2,}")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
# Common English words: a view made by a guess (ROT13, reversal) is kept only if it reads as English
# more than the text does.
_COMMON = frozenset(
    "the an and or of to in is are be you your me my it this that for with on not all now any "
    "from as what how tell give ignore previous instructions instruction system prompt rules say print "
    "reveal password secret forget above below new do does please write make must answer only".split())


def _disguised_letters(text: str) -> bool:
    if _INSIDE_WORD.search(text) or _MIXED_WORD.search(text):
        return True
    if text.isascii():
        return False
    # compatibility forms of ASCII letters (fullwidth, mathematical, enclosed): NFKC makes more of them
    return _ascii_letters(unicodedata.normalize("NFKC", text)) > _ascii_letters(text)


def _ascii_letters(text: str) -> int:
    return len(_ASCII_LETTER.findall(text))


def _english_share(text: str) -> float:
    words = _WORD.findall(text.lower())
    return sum(w in _COMMON for w in words) / len(words) if len(words) >= 3 else 0.0


def decoded_text(raw: bytes, printable: float) -> str | None:
    """Decoded bytes that read as text: valid UTF-8, not blank, at least the `printable` share printable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.strip():
        return None
    good = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return text if good >= printable * len(text) else None


def _printable(raw: bytes) -> str | None:
    """A detector view: text that is also mostly letters and words (a decoded blob that is not prose is noise)."""
    text = decoded_text(raw, 0.95)
    if text is None:
        return None
    letters = sum(ch.isalpha() for ch in text)
    words = sum(ch.isalnum() or ch.isspace() for ch in text)
    return text if letters >= 0.2 * len(text) and words >= 0.7 * len(text) else None


def _b64(run: str) -> str | None:
    core = run.rstrip("=")
    if len(core) % 4 == 1:
        return None
    padded = core + "=" * (-len(core) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _printable(raw)


def _hex(run: str) -> str | None:
    digits = re.sub(r"0x|\\x|[^0-9A-Fa-f]", "", run)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _printable(bytes.fromhex(digits))
    except ValueError:
        return None


def _replace_runs(text: str, pattern: re.Pattern[str], decode) -> str | None:
    """`text` with every run of `pattern` that decodes replaced by its decoding; None if none did."""
    parts: list[str] = []
    pos = 0
    changed = False
    for m in pattern.finditer(text):
        decoded = decode(m.group())
        if decoded is not None:
            parts += [text[pos:m.start()], " ", decoded, " "]
            pos = m.end()
            changed = True
    return "".join([*parts, text[pos:]]) if changed else None


def _despace(run: re.Match[str]) -> str:
    # a wider gap than the one between letters separates words
    words = re.split(r"[ .\-_*|/]{2,}", run.group())
    return " ".join(re.sub(r"[ .\-_*|/]", "", w) for w in words)


def _reads_as_english(guess: str, share: float) -> bool:
    """A guessed decoding (ROT13, reversal) is a view only if it reads as English clearly more than the
    text: five words or more, two distinct common words of three letters or more (two-letter ones are
    the ROT13 or mirror image of ordinary Tagalog or Italian words)."""
    words = _WORD.findall(guess.lower())
    long_common = {w for w in words if len(w) >= 3 and w in _COMMON}
    return len(words) >= 5 and len(long_common) >= 2 and _english_share(guess) >= max(share + 0.1, 0.3)


def _one_level(text: str) -> list[str]:
    """The views of one decoding step, each different from `text`."""
    views: list[str] = []
    if _disguised_letters(text):
        views.append(normalize_text(text))  # NFKC, invisible characters removed, look-alikes folded
    for pattern, hint, decode in ((_BASE64, _BASE64, _b64), (_HEX, _HEX_HINT, _hex)):
        if hint.search(text):
            decoded = _replace_runs(text, pattern, decode)
            if decoded is not None:
                views.append(decoded)
    if len(_URL_ESCAPE.findall(text)) >= 3:
        views.append(unquote(text))
    if _HTML_ESCAPE.search(text):
        unescaped = html.unescape(text)
        if unescaped != text:
            views.append(unescaped)
    if _SPACED.search(text):
        views.append(_SPACED.sub(_despace, text))
    # (a hex dump's "6c" or "0a" is not leetspeak)
    leet_tokens = [t for t in _LEET_TOKEN.findall(text) if len(t) <= 20 and not _HEX_TOKEN.fullmatch(t)]
    if len(leet_tokens) >= 3 and len(leet_tokens) >= 0.2 * len(text.split()):
        # a text written in leetspeak: its numbers are letters too ("70" is "to")
        views.append(_LEET_RUN.sub(lambda m: m.group().translate(_LEET) if len(m.group()) <= 20 else m.group(), text))
    share = _english_share(text)
    if share < 0.3:  # a guess is worth a view only where the text does not already read as English
        for guess in (codecs.decode(text, "rot13"), text[::-1]):
            if _reads_as_english(guess, share):
                views.append(guess)
    return [v for v in views if v and v != text]


def decoded_views(text: str, size_factor: float = 3.0, max_depth: int = MAX_DEPTH) -> list[str]:
    """The distinct decoded views of `text` (never `text` itself), breadth first, within the bounds
    in the module's docstring. Empty for ordinary text."""
    text = text[:MAX_SCAN_CHARS]
    budget = int(size_factor * len(text))
    seen = {text, text.lower()}
    views: list[str] = []
    level = [text]
    for _ in range(max_depth):
        following: list[str] = []
        for source in level:
            for view in _one_level(source):
                if view in seen:
                    continue
                if len(views) >= MAX_VIEWS or len(view) > budget:
                    return views
                seen.add(view)
                views.append(view)
                following.append(view)
                budget -= len(view)
        level = following
    return views


TRAILING_MIN_CHARS = 400      # a text shorter than this is read whole
TRAILING_MAX_CHARS = 2_000    # a last paragraph longer than this is a document, not a request
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def trailing_request(text: str) -> str | None:
    """The last paragraph of a long text, alone (None if there is none to read apart): a request after a
    pasted document is diluted in the whole text's score. The last blank-line-separated paragraph, else
    the last line; at most TRAILING_MAX_CHARS and under half the text."""
    body = text.rstrip()[-MAX_SCAN_CHARS:]  # the end of a text past the limit: padding must not hide it
    if len(body) < TRAILING_MIN_CHARS:
        return None
    breaks = list(_PARAGRAPH_BREAK.finditer(body))
    start = breaks[-1].end() if breaks else body.rfind("\n") + 1
    last = body[start:].strip()
    if not start or not last or len(last) > TRAILING_MAX_CHARS or len(last) * 2 > len(body):
        return None
    return last


def detector_views(text: str) -> tuple[str, ...]:
    """What a detector scores besides the text itself: its decoded views and its trailing request. The
    last few texts' views are kept (each detector of a stage asks for the same text's)."""
    return _detector_views(text) if len(text) <= _CACHED_CHARS else _views_of(text)


_CACHED_CHARS = 64_000  # longer texts are not kept (the cache holds at most 32 texts)


def _views_of(text: str) -> tuple[str, ...]:
    views = decoded_views(text)
    last = trailing_request(text)
    if last is not None and last not in views:
        views.append(last)
    return tuple(views)


_detector_views = functools.lru_cache(maxsize=32)(_views_of)
