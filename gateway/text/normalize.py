# size: one normaliser: its character tables, then normalize / normalize_text with their fast paths
# and the offset map back to the original; the docstring is its specification
"""Text normalisation for lexical matching, with a map back to the original text's offsets.

`normalize(text)` returns `(norm, offsets)`: `norm` is the text after, in effect,

1. NFKC (fullwidth forms, ligatures, mathematical letters, compatibility spaces...),
2. case folding (`str.casefold`, then NFKC again so the result is stable),
3. removal of invisible characters: Unicode category Cf (zero-width space/joiners, bidi controls,
   word joiner, BOM, soft hyphen, tags...), variation selectors, the combining grapheme joiner,
   Hangul fillers and a few other blank-rendering marks (`_EXTRA_INVISIBLE`),
4. collapsing every run of whitespace (anything `str.isspace`) to one ASCII space (no stripping),
5. folding the common Cyrillic/Greek/Armenian/Latin look-alikes of ASCII letters (the small tables
   `_UPPER_HOMOGLYPHS`, applied before case folding, and `_LOWER_HOMOGLYPHS`, after it: whether a
   letter looks like an ASCII one depends on its case, e.g. Greek Η looks like H but η like n).

`offsets[i]` is the index in the ORIGINAL text of the first character of the source of `norm[i]`;
`offsets` is non-decreasing. It is `None` when the map is the identity (the normalised text has the
same length and `norm[i]` comes from `text[i]`): no change at all, or only ASCII-style lowercasing.
That is the fast path for ordinary ASCII prose. `normalize_text(text)` returns the same string
without building the map, and is several times faster: a matcher scans `normalize_text(text)` and
calls `normalize` only when it found something and needs original offsets.

Use `original_span(text, offsets, start, end)` to turn a match `norm[start:end]` into original
coordinates: it covers every original character that produced the match (a whitespace run a
collapsed space came from, a combining sequence, an expanding ligature) and nothing after it except
what is needed. So `normalize(text[s:e])[0]` always contains `norm[start:end]`, and equals it unless
the match starts or ends inside the expansion of one character (half of a "ﬁ" ligature) or next to
a combining mark carried by whitespace (" \u0301", or "¯" which NFKC turns into space + macron).

Why a hand-kept homoglyph table and not the `confusable-homoglyphs` package: that package answers
"is this string confusable?" from a ~900 KB JSON loaded at import and maps in both directions with
many-to-many groups (1/l/I, 0/O...), which would make folding over-eager; it has no skeleton
function and its last release is from early 2024. The table below is small, reviewed, and folds only
letters that render like an ASCII letter in the same case.

Design: the text is cut into "units", a starter character plus the characters that NFKC may compose
onto it (combining marks, the second half of a primary composite, Hangul vowel/trailing jamo and
characters whose compatibility decomposition starts with one of those). Each unit is normalised on
its own (`_fold_unit`), so normalisation is local and each output character has one source unit.
Speed: ASCII is folded by one `bytes.translate` of the UTF-8 encoding; the other characters that
fold to exactly one character and never join a unit by one `str.replace` per distinct character;
only the regions around the rest (invisible, combining, expanding characters; found with
`str.find`) go through the per-unit loop. About 8 us for 2 KB of English (`normalize_text`), 25 us
with a few accents, ligatures and zero-width characters, 40-90 us for 2 KB of CJK or Cyrillic; the
offset map adds about 50 us. The classification tables are built once, lazily (about 0.1 s, or
call `warm_up()` at start-up), under a lock; afterwards everything is read-only and thread-safe.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

__all__ = ["normalize", "normalize_text", "original_span", "warm_up"]

# Letters that look like an ASCII letter, by case. Keys are looked up on the NFKC form before case
# folding (the uppercase table) and after it (the lowercase table), because the look-alike depends
# on the case: Greek Η looks like H but η like n; Greek Ν like N but ν like v; Υ like Y but υ like u.
_UPPER_HOMOGLYPHS = {
    # Cyrillic capitals
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c",
    "Т": "t", "Х": "x", "У": "y", "Ү": "y", "Ѕ": "s", "І": "i", "Ј": "j", "Ԁ": "d", "Ӏ": "l",
    "Һ": "h", "Ԛ": "q", "Ԝ": "w",
    # Greek capitals
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "Ϲ": "c", "Ϳ": "j",
    # Armenian capitals
    "Օ": "o", "Ս": "u",
}
_LOWER_HOMOGLYPHS = {
    # Cyrillic small letters (в к м н т look like small capitals and are used the same way)
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "х": "x", "у": "y", "ү": "y", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ӏ": "l",
    "һ": "h", "ԛ": "q", "ԝ": "w", "ѵ": "v",
    # Greek small letters (not μ: the micro sign folds to it and "µm" must not become "mm")
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
    # Armenian small letters
    "օ": "o", "ս": "u", "ո": "n", "հ": "h",
    # Latin letters outside ASCII that look like ASCII ones
    "ɑ": "a", "ɡ": "g", "ı": "i", "ȷ": "j", "ɩ": "i",
}

# Invisible characters that are not in category Cf (which is removed wholesale): variation
# selectors, the combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian
# variation selectors. Plus the ones the brief names, for the record (all Cf as of Unicode 15).
_EXTRA_INVISIBLE = [
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x2060, 0x2064), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xE0000, 0xE007F), (0xE0100, 0xE01EF),
]


# Code points scanned to build the tables. 0x4000-0x9FFF (CJK ideographs, Yi syllables), 0xAC00-0xD7A3
# (Hangul syllables) and everything from 0x20000 up except the compatibility ideographs and plane 14
# (CJK extensions, private use, unassigned) are NFKC- and casefold-stable, not Cf and never join a
# unit: skipping them halves the build time (tests/metrics/test_normalize.py checks the claim).
_SCAN = ((0x0000, 0x3FFF), (0xA000, 0xABFF), (0xD7A4, 0xD7FF), (0xE000, 0x1FFFF), (0x2F800, 0x2FA1F),
         (0xE0000, 0xE0FFF))
_HANGUL_VT = (0x1161, 0x11FF)  # conjoining vowel and trailing jamo: compose onto a preceding L/LV

_SPACE_RUN = re.compile(" {2,}")
_UPPER_TRANS = str.maketrans(_UPPER_HOMOGLYPHS)
_LOWER_TRANS = str.maketrans(_LOWER_HOMOGLYPHS)
# UTF-8 byte tables: ASCII case folding plus ASCII whitespace -> space (bytes >= 0x80 untouched, so a
# translate of the UTF-8 encoding folds the ASCII characters of any text in one C pass).
_ASCII_FOLD = bytes(
    b + 32 if 65 <= b <= 90 else 32 if b in b"\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f" else b for b in range(256))
_ASCII_BYTES = bytes(range(128))
_WS_TRANS = str.maketrans({ch: " " for ch in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"})


def _invisible(ch: str) -> bool:
    cp = ord(ch)
    return unicodedata.category(ch) == "Cf" or any(lo <= cp <= hi for lo, hi in _EXTRA_INVISIBLE)


def _fold(unit: str) -> str:
    """Normalise one unit (a starter and what composes onto it), its invisible characters already gone."""
    text = unicodedata.normalize("NFKC", unit).translate(_UPPER_TRANS)
    text = unicodedata.normalize("NFKC", text.casefold())
    folded = text.translate(_LOWER_TRANS)
    if folded != text:  # a look-alike became ASCII and may now compose with its marks ("ı́" -> "í")
        text = unicodedata.normalize("NFKC", folded)
    if text.isascii():
        return text.translate(_WS_TRANS)
    # Whitespace becomes a space (runs are squeezed later); drop what a compatibility mapping made
    # invisible, if anything does.
    return "".join(" " if ch.isspace() else ch for ch in text if not _invisible(ch))


_fold_unit = lru_cache(maxsize=8192)(_fold)


class _Tables:
    """Per-character classes: dropped, joining the unit before, or folding 1:1 (with the result)."""

    __slots__ = ("drop", "join", "slow", "slow_chars", "trans")

    def __init__(self) -> None:
        drop = {chr(cp) for lo, hi in _EXTRA_INVISIBLE for cp in range(lo, hi + 1)}
        composite_second: set[str] = set()
        assigned: list[str] = []
        for lo, hi in _SCAN:
            for cp in range(lo, hi + 1):
                ch = chr(cp)
                category = unicodedata.category(ch)
                if category in ("Cn", "Cs"):
                    continue
                if category == "Cf":
                    drop.add(ch)
                    continue
                assigned.append(ch)
                decomposition = unicodedata.decomposition(ch)
                if decomposition and decomposition[0] != "<":
                    parts = decomposition.split()
                    if len(parts) == 2 and unicodedata.normalize("NFC", ch) == ch:
                        second = chr(int(parts[1], 16))
                        if unicodedata.combining(second) == 0:
                            composite_second.add(second)  # e.g. Indic two-part vowels
        join = {chr(cp) for cp in range(_HANGUL_VT[0], _HANGUL_VT[1] + 1)} | composite_second
        trans: dict[int, str] = {}
        multi: set[str] = set()
        for ch in assigned:
            if ch in drop or ch in join:
                continue
            head = unicodedata.normalize("NFKD", ch)[:1]
            if unicodedata.combining(ch) or (head and (unicodedata.combining(head) or head in join)):
                join.add(ch)
                continue
            if ch.isascii():
                continue  # folded by _ASCII_FOLD
            if ch.casefold() == ch and ch not in _LOWER_HOMOGLYPHS and not ch.isspace() \
                    and unicodedata.is_normalized("NFKC", ch):
                continue  # stable, the common case
            folded = _fold(ch)
            if len(folded) != 1:
                multi.add(ch)  # expands (ß, ﬁ, ㎏) or vanishes
            elif folded != ch:
                trans[ord(ch)] = folded
        self.drop = frozenset(drop)
        self.join = frozenset(join - drop)
        self.trans = trans
        self.slow_chars = frozenset(self.drop | self.join | multi)
        # Runs of characters the 1:1 path cannot take, for texts with many of them. All astral
        # characters are included so that the class compiles to one bitmap plus one range (fast);
        # the unit loop handles them exactly.
        bmp = sorted(ord(ch) for ch in self.drop | self.join | multi if ord(ch) < 0x10000)
        self.slow = re.compile(f"[{_char_class(bmp)}\U00010000-\U0010ffff]+")


def _char_class(cps: list[int]) -> str:
    out: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = re.escape(chr(cps[i])), re.escape(chr(cps[j]))
        out.append(lo if i == j else f"{lo}-{hi}")
        i = j + 1
    return "".join(out)


_tables_built: _Tables | None = None
_tables_lock = threading.Lock()


def _tables() -> _Tables:
    global _tables_built
    tables = _tables_built
    if tables is None:
        with _tables_lock:
            if _tables_built is None:
                _tables_built = _Tables()
            tables = _tables_built
    return tables


def warm_up() -> None:
    """Build the classification tables now (about 0.1 s) rather than on the first non-ASCII text."""
    _tables()


def normalize(text: str) -> tuple[str, list[int] | None]:
    """Normalise `text`; return it with the map from each normalised index to its original index.

    The map is `None` when it is the identity (see the module docstring).
    """
    if text.isascii():
        return _squeeze(text.encode("ascii").translate(_ASCII_FOLD).decode("ascii"), None)
    tables = _tables()
    present = _present(text)
    slow = present & tables.slow_chars
    if not slow:
        return _squeeze(_fold_plain(text, tables, present), None)
    pieces: list[str] = []
    offsets: list[int] = []
    pos = 0
    for start, end in _slow_runs(text, slow, tables):
        if start > pos:
            start -= 1  # the unit starter that its first character may compose onto
            pieces.append(_fold_plain(text[pos:start], tables))
            offsets.extend(range(pos, start))
        _fold_region(text, start, end, tables, pieces, offsets)
        pos = end
    if pos < len(text):
        pieces.append(_fold_plain(text[pos:], tables))
        offsets.extend(range(pos, len(text)))
    return _squeeze("".join(pieces), offsets)


def normalize_text(text: str) -> str:
    """`normalize(text)[0]`, without building the offset map (several times faster)."""
    if text.isascii():
        return _squeeze_text(text.encode("ascii").translate(_ASCII_FOLD).decode("ascii"))
    tables = _tables()
    present = _present(text)
    slow = present & tables.slow_chars
    if not slow:
        return _squeeze_text(_fold_plain(text, tables, present))
    pieces: list[str] = []
    pos = 0
    for start, end in _slow_runs(text, slow, tables):
        if start > pos:
            start -= 1
            pieces.append(_fold_plain(text[pos:start], tables))
        _fold_region(text, start, end, tables, pieces, None)
        pos = end
    pieces.append(_fold_plain(text[pos:], tables))
    return _squeeze_text("".join(pieces))


def _slow_runs(text: str, slow: set[str], tables: _Tables) -> list[tuple[int, int]]:
    """Maximal runs of slow characters, in order: found with `str.find` when there are few of them
    (each distinct character costs a pass over the text), else with one regex scan."""
    if len(slow) > 16 or sum(text.count(ch) for ch in slow) > 64:
        return [match.span() for match in tables.slow.finditer(text)]
    positions: list[int] = []
    for ch in slow:
        i = text.find(ch)
        while i >= 0:
            positions.append(i)
            i = text.find(ch, i + 1)
    positions.sort()
    runs: list[tuple[int, int]] = []
    for i in positions:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _present(text: str) -> set[str]:
    """The distinct non-ASCII characters of `text` (C-speed: drop the ASCII bytes of its UTF-8)."""
    return set(text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES)
               .decode("utf-8", "surrogatepass"))


def _fold_plain(text: str, tables: _Tables, present: set[str] | None = None) -> str:
    """Fold text that has no slow character (`present`: its non-ASCII characters, if known)."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_FOLD).decode("ascii")
    folded = text.encode("utf-8", "surrogatepass").translate(_ASCII_FOLD).decode("utf-8", "surrogatepass")
    trans = tables.trans
    changes = [(ch, trans[ord(ch)]) for ch in (_present(text) if present is None else present) if ord(ch) in trans]
    if len(changes) > 24:  # one replace per character costs O(len(text)) each: translate instead
        return folded.translate(trans)
    for ch, target in changes:  # never a character that itself folds: folding is idempotent
        folded = folded.replace(ch, target)
    return folded


def _fold_region(text: str, start: int, end: int, tables: _Tables, pieces: list[str],
                 offsets: list[int] | None) -> None:
    """Cut text[start:end] into units (dropping invisible characters first) and fold each unit."""
    drop, join = tables.drop, tables.join
    unit = ""
    unit_start = start
    for i in range(start, end):
        ch = text[i]
        if ch in drop:
            continue
        if unit and ch in join:
            unit += ch
            continue
        if unit:
            folded = _fold_unit(unit)
            pieces.append(folded)
            if offsets is not None:
                offsets.extend([unit_start] * len(folded))
        unit, unit_start = ch, i
    if unit:
        folded = _fold_unit(unit)
        pieces.append(folded)
        if offsets is not None:
            offsets.extend([unit_start] * len(folded))


def _squeeze_text(text: str) -> str:
    """Squeeze runs of spaces (the only whitespace left after folding) to one."""
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _squeeze(text: str, offsets: list[int] | None) -> tuple[str, list[int] | None]:
    """Squeeze runs of spaces to one, carrying the offset map along (None = identity)."""
    if "  " not in text:
        return text, offsets
    pieces: list[str] = []
    out: list[int] = []
    pos = 0
    for match in _SPACE_RUN.finditer(text):
        start, end = match.span()
        pieces.append(text[pos:start + 1])
        out.extend(range(pos, start + 1) if offsets is None else offsets[pos:start + 1])
        pos = end
    pieces.append(text[pos:])
    out.extend(range(pos, len(text)) if offsets is None else offsets[pos:])
    return "".join(pieces), out


def original_span(text: str, offsets: list[int] | None, start: int, end: int) -> tuple[int, int]:
    """Map the normalised match `norm[start:end]` (start < end) to `(start, end)` in `text`.

    The start is the first original character of the first matched unit; the end is just past the
    last matched unit (for a collapsed space, past the whole whitespace run), not counting invisible
    characters that merely follow it.
    """
    if offsets is None:
        return start, end
    n = len(offsets)
    begin = offsets[start]
    last = offsets[end - 1]
    j = end
    while j < n and offsets[j] == last:
        j += 1
    stop = offsets[j] if j < n else len(text)
    while stop - 1 > last and not text[stop - 1].isascii() and text[stop - 1] in _tables().drop:
        stop -= 1
    return begin, stop
