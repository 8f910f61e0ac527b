"""normalize(): folding steps, the offset map back to the original text, and its properties."""

from __future__ import annotations

import unicodedata
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.text import normalize as norm_module
from gateway.text.normalize import normalize, normalize_text, original_span

ZW = "\u200b"


def check_map(text: str) -> tuple[str, list[int]]:
    """normalize(text) with the map made explicit, after checking the map's invariants."""
    norm, offsets = normalize(text)
    assert normalize_text(text) == norm
    if offsets is None:
        assert len(norm) == len(text)
        offsets = list(range(len(norm)))
    assert len(offsets) == len(norm)
    assert all(0 <= o < len(text) for o in offsets)
    assert all(a <= b for a, b in pairwise(offsets))
    return norm, offsets


@pytest.mark.parametrize(("text", "expected"), [
    ("", ""),
    ("hello world", "hello world"),
    ("Hello World", "hello world"),
    (f"AC{ZW}ME  corp", "acme corp"),
    ("A C M E", "a c m e"),
    ("tab\tand\nnewline\r\n\r\nend", "tab and newline end"),
    ("  leading and trailing  ", " leading and trailing "),
    ("\u00a0nbsp\u3000ideographic\u2028line", " nbsp ideographic line"),
    ("ＡＣＭＥ　Ｃｏｒｐ", "acme corp"),  # fullwidth letters and space (NFKC)
    ("pаypal", "paypal"),  # Cyrillic а
    ("РАУРАL", "paypal"),  # Cyrillic capitals Р А У
    ("ԁеѕіјху ɡоо", "desijxy goo"),
    ("Η η Ν ν Υ υ", "h n n v y u"),  # Greek: the look-alike depends on the case
    ("µm", "μm"),  # the micro sign is NFKC-folded to Greek mu, which is not folded further
    ("pay\u00adpal pay\u2060pal pay\ufeffpal pay\u200dpal", "paypal paypal paypal paypal"),
    ("a\u202eb\u2066c", "abc"),  # bidi controls (category Cf)
    ("heart\u2764\ufe0f", "heart\u2764"),  # variation selector removed
    ("Straße", "strasse"),
    ("ﬁnance", "finance"),
    ("cafe\u0301", "café"),  # combining acute composes (NFKC)
    ("caf\u200be\u0301", "café"),  # ...even across a zero-width space
    ("ℌ𝐞𝐥𝐥𝗼", "hello"),  # mathematical letters
    ("ㄱㅏ", "가"),  # Hangul compatibility jamo compose
    ("x \u200b y", "x y"),  # an invisible character inside a whitespace run
    ("İ", "i\u0307"),
    ("ı\u0301", "í"),  # dotless i folds to i, which then composes with its accent
])
def test_normalize_examples(text: str, expected: str) -> None:
    norm, _ = check_map(text)
    assert norm == expected


def test_identity_map_for_plain_and_case_only_text() -> None:
    assert normalize("plain ascii text.") == ("plain ascii text.", None)
    assert normalize("MiXeD Case") == ("mixed case", None)
    assert normalize("pаypal")[1] is None  # 1:1 homoglyph fold keeps the identity map
    assert normalize("two  spaces")[1] is not None


@pytest.mark.parametrize(("text", "needle", "original"), [
    (f"AC{ZW}ME  corp", "acme corp", f"AC{ZW}ME  corp"),
    (f"Call AC{ZW}ME  corp{ZW} today", "acme corp", f"AC{ZW}ME  corp"),
    (f"{ZW}{ZW}acme", "acme", "acme"),
    ("x  \t y", " ", "  \t "),
    ("a ﬁne day", "fine", "ﬁne"),
    ("the Straße!", "strasse", "Straße"),
    ("ein cafe\u0301 hier", "café", "cafe\u0301"),
    ("send to pаypal now", "paypal", "pаypal"),
    ("ＡＣＭＥ", "acme", "ＡＣＭＥ"),
    ("end of text   ", "text ", "text   "),
])
def test_match_maps_back_to_original(text: str, needle: str, original: str) -> None:
    norm, offsets = normalize(text)
    start = norm.index(needle)
    begin, end = original_span(text, offsets, start, start + len(needle))
    assert text[begin:end] == original
    assert normalize(text[begin:end])[0] == needle


def test_partial_expansion_maps_to_the_whole_character() -> None:
    text = "x ﬁ y"
    norm, offsets = normalize(text)
    start = norm.index("f")
    assert text[slice(*original_span(text, offsets, start, start + 1))] == "ﬁ"
    start = norm.index("i")
    assert text[slice(*original_span(text, offsets, start, start + 1))] == "ﬁ"


def test_many_slow_characters_take_the_regex_path() -> None:
    # More than 64 slow characters switch _slow_runs to the regex scan; same results.
    text = ("p" + ZW) * 100 + "AYPAL " + "e\u0301" * 80
    norm, offsets = check_map(text)
    assert norm == "p" * 100 + "aypal " + "é" * 80
    start = norm.index("paypal")
    begin, end = original_span(text, offsets, start, start + 6)
    assert text[begin:end] == "p" + ZW + "AYPAL"


def test_skipped_scan_ranges_are_stable() -> None:
    """The table build skips these ranges, claiming they fold to themselves and never join a unit."""
    ranges = [(0x4000, 0x9FFF), (0xAC00, 0xD7A3), (0x20000, 0x2F7FF), (0x2FA20, 0x3FFFF)]
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if unicodedata.category(ch) == "Cn":
                continue
            assert unicodedata.category(ch) != "Cf", hex(cp)
            assert unicodedata.combining(ch) == 0, hex(cp)
            assert norm_module._fold(ch) == ch, hex(cp)
            assert not ch.isspace(), hex(cp)
    tables = norm_module._tables()
    for cp in (0x4E00, 0xAC00, 0x20000):
        assert chr(cp) not in tables.slow_chars


def test_folding_is_idempotent_per_character() -> None:
    tables = norm_module._tables()
    for target in set(tables.trans.values()):
        assert norm_module._fold(target) == target
        assert ord(target) not in tables.trans


# Property tests. The alphabet mixes ASCII, whitespace, invisible characters and homoglyphs: none of
# them expands, so every substring of the normalised text maps back to a slice that normalises to
# exactly that substring.
EVASION_ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzACMEPYL0129.-_!")
    + [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028"]
    + [ZW, "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\ufe0f", "\u202e", "\U000e0041"]
    + list("аеорсхуіѕјԁɡАВЕКМНОРСТХαορΗηΝνΑＡｂ")
)
evasion_text = st.lists(EVASION_ALPHABET, max_size=40).map("".join)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=evasion_text, data=st.data())
def test_offset_map_property(text: str, data: st.DataObject) -> None:
    norm, offsets = check_map(text)
    assert normalize_text(norm) == norm  # idempotent
    if not norm:
        return
    i = data.draw(st.integers(0, len(norm) - 1), label="start")
    j = data.draw(st.integers(i + 1, len(norm)), label="end")
    begin, end = original_span(text, normalize(text)[1], i, j)
    assert 0 <= begin < end <= len(text)
    assert begin == offsets[i]
    assert normalize(text[begin:end])[0] == norm[i:j]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=30), data=st.data())
def test_offset_map_property_any_unicode(text: str, data: st.DataObject) -> None:
    """On arbitrary text, a match may start or end inside one character's expansion: the original
    slice then covers the whole character, so its normalisation contains the match."""
    norm, _ = check_map(text)
    if not norm:
        return
    i = data.draw(st.integers(0, len(norm) - 1), label="start")
    j = data.draw(st.integers(i + 1, len(norm)), label="end")
    begin, end = original_span(text, normalize(text)[1], i, j)
    assert 0 <= begin < end <= len(text)
    assert norm[i:j] in normalize(text[begin:end])[0]
