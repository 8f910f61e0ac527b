# size: a table of recognisers, one per entity, each next to the patterns and checks only it
# uses; the number recognisers share one shape scan (find_numbers), which alone is most of the module
"""PII recognisers for `gateway.metrics.pii`: numbers (cards, IBANs, SSNs, phones, IPv4), e-mail, URL, IPv6.

Each `find_*` function appends `(start, end, label, score)` candidates to a list; overlaps between
recognisers are resolved by the metric. All patterns are standard-library `re`, fixed and reviewed for
linear time: every repetition is either bounded, or a single character class with nothing after it
that could make it give characters back, or a repeated group whose iterations are delimited by a
character the group's body cannot match. Variable-length tokens are found by expanding around a cheap
anchor (a digit run, an "@", a "://", a ":"), and the scan resumes after the token, so no character is
re-scanned by later candidates.

Numbers are found on a "shape" of the text: one `bytes.translate` maps every character to 0 (ASCII
digit), s (a separator numbers are written with: space ( ) . + -), a (ASCII letter) or x (anything
else, one byte per code point, so offsets are the text's). A regex with a literal first character
then finds the digit runs that can hold an entity (7+ characters, or two digits right after a letter:
an IBAN's check digits) at memchr-like speed; a character-class scan of the text itself costs 3x more.
"""

from __future__ import annotations

import ipaddress
import re

Found = tuple[int, int, str, float]

# --- numbers -----------------------------------------------------------------------------------------
_SHAPE = bytes(
    ord("0") if chr(b).isdigit() and b < 128 else ord("s") if chr(b) in " ().+-"
    else ord("a") if chr(b).isalpha() and b < 128 else ord("x") for b in range(256))
_SHAPE_CLUSTER = re.compile(rb"0(?:[0s]{6,}|(?<=a0)0)")
_DIGITS = re.compile(r"[0-9]+")
_WORDS = re.compile(r"[a-z]+")
_PHONE = re.compile(r"""
    (?:(?P<plus>\+|00|011)\ ?(?P<cc>[1-9][0-9]{0,2})(?:[ .-]?\(0\))?[ .-]?)?   # +CC, 00CC, 011CC, then (0)
    (?:\((?P<area>[0-9]{1,5})\)[ .-]?)?                                         # (area)
    (?P<body>[0-9]{1,12}(?:[ .-][0-9]{1,8}){0,5})
    (?![0-9])""", re.VERBOSE)
_EXTENSION = re.compile(r" ?(?:x|ext\.?|extension) ?[0-9]{1,6}(?![0-9A-Za-z])", re.IGNORECASE)
_PHONE_AFTER = re.compile(r"[^0-9A-Za-z\n]{0,3}(?:fax|mobile|cell|office|home|work|phone|tel|landline)\b",
                          re.IGNORECASE)
_NOT_PHONE_AFTER = re.compile(r" ?(?:[%€$£=]|(?:usd|eur|gbp|dollars?|euros?|pounds?|km|kg|mb|gb)\b)", re.IGNORECASE)
# Words in the 40 characters before a number: any of these makes it a phone number...
_PHONE_WORDS = frozenset((
    "phone", "phones", "telephone", "tel", "mobile", "mob", "cell", "cellphone", "fax", "call", "calls",
    "calling", "called", "dial", "sms", "whatsapp", "contact", "hotline", "helpline", "landline",
    "message", "messages", "ring", "ph", "telefon", "telefono", "telephono"))
# ...and, as the last word before it (without one of the above), these make it something else.
_NOT_PHONE_WORDS = frozenset((
    "order", "invoice", "account", "acct", "ref", "reference", "id", "isbn", "serial", "tracking", "ticket",
    "case", "sku", "zip", "postal", "postcode", "version", "page", "pages", "total", "usd", "eur", "gbp",
    "license", "licence", "passport", "policy", "claim", "item", "part", "model"))
_VERSION_WORDS = frozenset(("version", "ver", "v", "release", "build", "firmware", "update", "patch", "oid"))
_CARD_WORDS = frozenset(("card", "cards", "credit", "debit", "cc", "visa", "mastercard", "amex", "maestro",
                         "discover", "jcb", "pan", "unionpay", "diners"))
_INVALID_SSNS = frozenset({"078051120", "219099999", "123456789", "457555462"})
_IBAN = re.compile(r"[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}")
# IBAN lengths per country (SWIFT IBAN registry, plus the partial/national IBANs validators accept).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
    "AO": 25, "BF": 28, "BJ": 28, "CF": 27, "CG": 27, "CI": 28, "CM": 27, "CV": 25, "DZ": 26, "GA": 27,
    "GQ": 27, "GW": 25, "IR": 26, "KM": 27, "MA": 28, "MG": 27, "ML": 28, "MZ": 25, "NE": 28, "SN": 28,
    "TD": 27, "TG": 28,
}
# mod-97: letters count as 10..35.
_IBAN_DIGITS = str.maketrans({chr(c): str(c - 55) for c in range(65, 91)})
# Card networks: leading digits low..high (inclusive, same length) and the card lengths they issue.
_CARD_RANGES = (
    ("4", "4", (13, 16, 19)),                                                   # Visa
    ("51", "55", (16,)), ("2221", "2720", (16,)),                               # Mastercard
    ("34", "34", (15,)), ("37", "37", (15,)),                                   # American Express
    ("6011", "6011", (16, 17, 18, 19)), ("644", "649", (16, 17, 18, 19)),       # Discover
    ("65", "65", (16, 17, 18, 19)), ("622126", "622925", (16, 17, 18, 19)),
    ("300", "305", (14, 15, 16, 17, 18, 19)), ("3095", "3095", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("36", "36", (14, 15, 16, 17, 18, 19)), ("38", "39", (14, 15, 16, 17, 18, 19)),
    ("35", "35", (16, 17, 18, 19)), ("2131", "2131", (15,)), ("1800", "1800", (15,)),  # JCB (3528-3589 issued)
    ("62", "62", (16, 17, 18, 19)), ("81", "81", (16, 17, 18, 19)),             # UnionPay
    ("2200", "2204", (16, 17, 18, 19)),                                         # Mir
    ("50", "50", tuple(range(12, 20))), ("56", "58", tuple(range(12, 20))),     # Maestro
    ("639", "639", tuple(range(12, 20))), ("67", "67", tuple(range(12, 20))),
    ("6304", "6304", tuple(range(12, 20))),
    ("60", "60", (16, 19)), ("508", "508", (16,)),                              # RuPay
    ("9792", "9792", (16,)),                                                    # Troy
)
# Prefix length -> {prefix: lengths}, longest prefixes first.
_CARD_PREFIXES = tuple(
    (size, {str(p).zfill(size): lengths for low, high, lengths in _CARD_RANGES if len(low) == size
            for p in range(int(low), int(high) + 1)})
    for size in sorted({len(low) for low, _, _ in _CARD_RANGES}, reverse=True))
# Luhn: a doubled digit's digit sum, as a digit character.
_DOUBLED = str.maketrans("0123456789", "0246813579")


def _glued(text: str, i: int) -> bool:
    """Whether text[i] exists and is a word character (a token touching there is part of a longer word)."""
    if 0 <= i < len(text):
        ch = text[i]
        return ch.isalnum() or ch == "_"
    return False


def _words_before(text: str, i: int) -> list[str]:
    return _WORDS.findall(text[max(0, i - 40):i].lower())


def _luhn(digits: str) -> bool:
    odd, even = digits[-1::-2], digits[-2::-2].translate(_DOUBLED)
    return (sum(odd.encode()) + sum(even.encode()) - 48 * len(digits)) % 10 == 0


def _card_network(digits: str) -> bool:
    n = len(digits)
    for size, table in _CARD_PREFIXES:
        lengths = table.get(digits[:size])
        if lengths is not None and n in lengths:
            return True
    return False


def _cards(text: str, groups: list[tuple[int, int]], out: list[Found]) -> None:
    """Runs of digit groups joined by one kind of separator (space or dash): 12-19 digits, Luhn, network."""
    k, i = len(groups), 0
    while i < k:
        best, best_total = -1, 0
        total, sep = 0, None
        for j in range(i, k):
            gs, ge = groups[j]
            if j > i:
                between = text[groups[j - 1][1]:gs]
                if between not in (" ", "-") or (sep is not None and between != sep):
                    break
                sep = between
                if ge - gs < 3 or groups[i][1] - groups[i][0] < 3:
                    break
            total += ge - gs
            if total > 19:
                break
            if total >= 12:
                digits = "".join(text[a:b] for a, b in groups[i:j + 1]) if j > i else text[gs:ge]
                if _card_network(digits) and _luhn(digits):
                    best, best_total = j, total
        if best < 0:
            i += 1
            continue
        start, end = groups[i][0], groups[best][1]
        # 12 digits is a Maestro length only: without a card word nearby it is a weaker match.
        strong = best_total > 12 or not _CARD_WORDS.isdisjoint(_words_before(text, start))
        out.append((start, end, "CREDIT_CARD", 1.0 if strong else 0.8))
        i = best + 1


def _ssns(text: str, groups: list[tuple[int, int]], out: list[Found]) -> None:
    """AAA-GG-SSSS / AAA GG SSSS, not part of a longer number written with the same separator."""
    for i in range(len(groups) - 2):
        (a0, a1), (b0, b1), (c0, c1) = groups[i:i + 3]
        if a1 - a0 != 3 or b1 - b0 != 2 or c1 - c0 != 4:
            continue
        sep = text[a1:b0]
        if sep not in ("-", " ") or text[b1:c0] != sep:
            continue
        if (i > 0 and text[groups[i - 1][1]:a0] == sep) or (i + 3 < len(groups) and text[c1:groups[i + 3][0]] == sep):
            continue
        area, group, serial = text[a0:a1], text[b0:b1], text[c0:c1]
        digits = area + group + serial
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if digits in _INVALID_SSNS or digits.count(digits[0]) == 9:
            continue
        words = _words_before(text, a0)
        context = "ssn" in words or "ssns" in words or ("social" in words and "security" in words)
        out.append((a0, c1, "US_SSN", 1.0 if context else 0.85 if sep == "-" else 0.5))


def _ipv4s(text: str, groups: list[tuple[int, int]], out: list[Found]) -> None:
    """Four dotted numbers 0-255 without leading zeros, not part of five or more (a version, an OID)."""
    k = len(groups)
    for i in range(k - 3):
        run = groups[i:i + 4]
        if text[run[0][1]:run[1][0]] != "." or text[run[1][1]:run[2][0]] != "." or text[run[2][1]:run[3][0]] != ".":
            continue
        if ((i > 0 and text[groups[i - 1][1]:run[0][0]] == ".")
                or (i + 4 < k and text[run[3][1]:groups[i + 4][0]] == ".")):
            continue
        octets = [text[a:b] for a, b in run]
        if not all(len(o) <= 3 and int(o) <= 255 and (len(o) == 1 or o[0] != "0") for o in octets):
            continue
        start = run[0][0]
        if start >= 2 and text[start - 1] in "-." and _glued(text, start - 2):
            continue  # "WinPython-3.4.2.4", "v.1.2.3.4": a name's version
        words = _words_before(text, start)
        if words and words[-1] in _VERSION_WORDS:
            continue
        out.append((run[0][0], run[3][1], "IP_ADDRESS", 0.85))


def _is_date(values: list[str], seps: list[str]) -> bool:
    """Any three consecutive groups that read as a date (Y-M-D, D-M-Y or M-D-Y) with one separator."""
    for i in range(len(values) - 2):
        if seps[i] != seps[i + 1] or seps[i] not in "-./":
            continue
        a, b, c = values[i:i + 3]
        if len(a) == 4 and len(b) <= 2 and len(c) <= 2:
            year, month, day = int(a), int(b), int(c)
        elif len(c) == 4 and len(a) <= 2 and len(b) <= 2:
            year, month, day = int(c), int(b), int(a)
            if month > 12:
                month, day = day, month
        else:
            continue
        if 1800 <= year <= 2199 and 1 <= month <= 12 and 1 <= day <= 31:
            return True
    return False


def _phone_base(m: re.Match[str]) -> float | None:
    """A format-only confidence for a phone candidate; -1: only with phone context; None: not a phone."""
    area = m.group("area") or ""
    body = m.group("body")
    values = _DIGITS.findall(body)
    seps, pos = [], 0  # the one separator after each group but the last
    for v in values[:-1]:
        pos = body.index(v, pos) + len(v)
        seps.append(body[pos])
    ndigits = len(area) + sum(map(len, values))
    if len(values) + bool(area) > 6:
        return None
    if m.group("plus"):
        total = len(m.group("cc")) + ndigits
        return 0.75 if 8 <= total <= 15 and ndigits >= 6 else None
    if not 7 <= ndigits <= 12:
        return None
    if not area and not seps:
        return -1.0  # a bare number
    if "." in seps and (len(values) < 3 or any(s != "." for s in seps) or any(len(v) > 4 for v in values)):
        return None  # a decimal, a version, or dots mixed with other separators
    if seps and seps[0] == "." and len(values) == 4 and all(len(v) <= 3 for v in values):
        return None  # dotted quad: IPv4 or a version
    if _is_date(values, seps) or any(len(v) < 2 for v in values[1:]):
        return None
    if all(len(v) == 4 and v[:2] in ("19", "20") for v in values) or (
            len(values) > 1 and len(values[0]) == 4 and values[0][:2] in ("19", "20") and seps[0] == "-"
            and len(values[1]) == 2):
        return None  # years, year ranges ("1928-29-30")
    lengths = [len(v) for v in values]
    if not area:
        if len(set(seps)) > 1:
            return None  # "4111 1111-1111 1111": mixed separators without a +CC or (area) to explain them
        if len(values) == 2:
            return -1.0  # "1234 5678": as often a street and house number as a phone
        if lengths == [3, 2, 4] and seps[0] in " -":
            return -1.0  # SSN-shaped
        if lengths[0] <= 3 and all(n == 3 for n in lengths[1:]):
            return -1.0  # reads like a number with thousands separators
        if (lengths == [3, 3, 4] and values[0][0] in "23456789" and values[1][0] in "23456789"
                or lengths == [1, 3, 3, 4] and values[0] == "1" and values[1][0] in "23456789"):
            return 0.75  # NANP
    elif len(area) == 3 and lengths == [3, 4] and area[0] in "23456789" and values[0][0] in "23456789":
        return 0.75  # NANP: (415) 555-0100
    if (area or values[0])[0] == "0":
        return 0.6  # a trunk prefix: a national number
    if all(n <= 2 for n in lengths):
        return -1.0  # "70-70-75-70": scores, sizes, codes as often as a phone
    return 0.45


def _first_apart(text: str, first_end: int, end: int) -> bool:
    """Whether the separator after the first group differs from the one after the second group."""
    second = _DIGITS.search(text, first_end + 1, end)
    if second is None or second.end() >= end:
        return False
    return text[first_end:second.start()] != text[second.end():second.end() + 1]


def _shorter(text: str, m: re.Match[str]) -> tuple[re.Match[str], float] | None:
    """The longest valid phone number that a failed candidate starts with, cut before a space where
    that space ends the number: "+1 415 555 2671 10.20.30.40" (the regex read the number on into the
    address, and the whole was too long). A cut is taken only where the part before it is a phone number
    by its format alone (a +CC number of E.164 length, a NANP number), or the space stands out: the part
    before it is grouped with dashes or dots only ("415-555-2671 2024"), or the part after it continues
    with a dot or a dash (an address, a date, an amount: "2671 12.50"). A run of same-looking groups
    ("4111 1111 1111 1112", an IBAN's or an order number's groups) is not cut: a phone inside it would
    be a guess. At most five shorter matches of a bounded candidate: linear."""
    s, body_start = m.start(), m.start("body")
    cuts = [g.end() for g in _DIGITS.finditer(text, body_start, m.end())][:-1]
    for cut in reversed(cuts):
        if text[cut] != " " or not text[cut + 1:cut + 2].isdigit():
            continue
        short = _PHONE.match(text, s, cut)
        if short is None or short.end() != cut:
            continue
        base = _phone_base(short)
        if base is None:
            continue
        after = _DIGITS.match(text, cut + 1).end()  # type: ignore[union-attr]
        apart = text[after:after + 1] in ("-", ".") and text[after + 1:after + 2].isdigit()
        body = short.group("body")
        if base >= 0.75 or apart or (" " not in body and not body.isdigit()):
            return short, base
    return None


def _phones(text: str, start: int, end: int, out: list[Found]) -> None:
    pos = start
    while pos < end:
        m = _PHONE.search(text, pos, end)
        if m is None:
            return
        s, e = m.span()
        nxt = _DIGITS.match(text, m.start("body")).end()  # type: ignore[union-attr]
        pos = max(e, nxt)
        if s > 0 and (text[s - 1] in "+(" or _glued(text, s - 1)):
            pos = nxt
            continue
        base = _phone_base(m)
        if base is None:
            shorter = _shorter(text, m)
            if shorter is None:
                if _first_apart(text, nxt, e):
                    pos = nxt  # retry from the next group: "2023 555-123-4567" holds a phone after the year
                continue
            m, base = shorter
            e = pos = m.end()  # what follows the cut is read on its own
        ext = _EXTENSION.match(text, e)
        if ext is not None:
            e = ext.end()
        elif _glued(text, e):
            continue
        before = text[max(0, s - 40):s]
        stripped = before.rstrip()
        if stripped and stripped[-1] in "#$€£¥/" or _NOT_PHONE_AFTER.match(text, e):
            continue
        words = _WORDS.findall(before.lower())
        context = not _PHONE_WORDS.isdisjoint(words) or _PHONE_AFTER.match(text, e) is not None
        if not context and not _NOT_PHONE_WORDS.isdisjoint(words[-3:]):
            continue  # "order number 555-123-4567", "license no. 2270-66-1551"
        if base < 0:
            if not context:
                continue
            score = 0.7
        else:
            score = round(min(0.95, base + 0.3), 2) if context else base
        out.append((s, e, "PHONE_NUMBER", score))
        pos = e


def _iban_at(text: str, i: int, out: list[Found]) -> int:
    """An IBAN starting at `i` (country code, check digits, BBAN; spaces only between groups of four)."""
    if _glued(text, i - 1):
        return -1
    m = _IBAN.match(text, i)
    if m is None:
        return -1
    length = _IBAN_LENGTHS.get(text[i:i + 2].upper())
    if length is None:
        return -1
    chars: list[str] = []
    pos, stop = i, m.end()
    while len(chars) < length and pos < stop:
        ch = text[pos]
        if ch == " ":
            if len(chars) % 4:
                return -1
        else:
            chars.append(ch)
        pos += 1
    if len(chars) < length or _glued(text, pos):
        return -1
    iban = "".join(chars).upper()
    if int((iban[4:] + iban[:4]).translate(_IBAN_DIGITS)) % 97 != 1:
        return -1
    out.append((i, pos, "IBAN_CODE", 1.0))
    return pos


def find_numbers(text: str, out: list[Found], enabled: frozenset[str]) -> None:
    """Cards, IBANs, SSNs, phone numbers and IPv4 addresses, from one scan over the digit runs."""
    card, iban, ssn = "CREDIT_CARD" in enabled, "IBAN_CODE" in enabled, "US_SSN" in enabled
    phone, ip = "PHONE_NUMBER" in enabled, "IP_ADDRESS" in enabled
    data = text.encode("ascii") if text.isascii() else text.encode("ascii", "replace")
    shape = data.translate(_SHAPE)
    skip = 0
    for m in _SHAPE_CLUSTER.finditer(shape):
        s, e = m.span()
        if s < skip:
            continue
        if s >= 2 and shape[s - 2] == 97 and shape[s - 1] == 97:  # "aa": after two ASCII letters
            if iban:
                end = _iban_at(text, s - 2, out)
                if end > 0:
                    skip = end
            continue
        digits = shape.count(48, s, e)  # every entity below needs 7+ digits, but an IPv4 address 4+
        if digits < 4 or _glued(text, s - 1) or (digits < 7 and not (ip and text.count(".", s, e) >= 3)):
            continue
        while shape[e - 1] != 48:  # trailing separators
            e -= 1
        groups = [g.span() for g in _DIGITS.finditer(text, s, e)]
        before = len(out)
        if card and digits >= 12:
            _cards(text, groups, out)
        if ssn and digits >= 9 and len(groups) >= 3:
            _ssns(text, groups, out)
        if ip and len(groups) >= 4:
            _ipv4s(text, groups, out)
        if len(out) > before and out[-1][0] == s and out[-1][1] == e and out[-1][3] >= 0.95:
            continue  # the whole run is a validated card or SSN: no phone number can outscore it
        if phone and digits >= 7:
            start = s
            while start > 0 and text[start - 1] in "(+" and s - start < 2:
                start -= 1
            if start < s and _glued(text, start - 1):
                start = s
            _phones(text, start, e, out)


# --- e-mail --------------------------------------------------------------------------------------------
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,10}"
                     r"(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{1,59})"
                     r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])")


def find_emails(text: str, out: list[Found]) -> None:
    at = text.find("@")
    while at >= 0:
        start = at
        while start > 0 and at - start < 65 and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        ok = at - start <= 64 and not _glued(text, start - 1)
        while start < at and text[start] in ".-+":
            start += 1
        domain = _DOMAIN.match(text, at + 1) if ok and start < at and text[at - 1] != "." else None
        if domain is not None and domain.end() - start <= 254:
            out.append((start, domain.end(), "EMAIL_ADDRESS", 0.9))
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


# --- URL -------------------------------------------------------------------------------------------------
URL_MAX_CHARS = 2048
# userinfo@, then a host name (Unicode letters allowed), an IPv4 or a [bracketed IPv6], then :port.
_HOST = re.compile(r"(?:[^@/?#\s<>\"'`]{1,256}@)?(\[[0-9A-Fa-f:.]{2,45}\]|[\w.%-]{1,253})(?::[0-9]{1,5})?")
_HOST_NAME = re.compile(r"(?:[^\W_](?:[\w-]{0,62}[^\W_])?\.){1,10}(?:[^\W\d_]{2,24}|xn--[A-Za-z0-9-]{1,59})")
# The path, query and fragment: no spaces, quotes, angle brackets or CJK punctuation.
_URL_REST = re.compile(r"[^\s<>\"'`{}|\\^\u3000-\u303f\uff00-\uffef]{1,%d}" % URL_MAX_CHARS)  # noqa: UP031
_TRAILING = ".,;:!?'\"*"
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _url_end(text: str, start: int, rest: int) -> int:
    """The end of the URL whose host starts at `rest`, or -1 if there is no valid host there."""
    host = _HOST.match(text, rest)
    if host is None:
        return -1
    name = host.group(1).rstrip(".")
    if not (name.startswith("[") or name == "localhost" or _HOST_NAME.fullmatch(name) or _is_ipv4(name)):
        return -1
    end = host.end()
    if text[end:end + 1] in ("/", "?", "#"):
        path = _URL_REST.match(text, end)
        if path is not None:
            end = min(path.end(), start + URL_MAX_CHARS)
    while end > rest:
        ch = text[end - 1]
        if ch in _TRAILING or ch in _CLOSERS and text.count(_CLOSERS[ch], start, end) < text.count(ch, start, end):
            end -= 1
        else:
            break
    return end


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def find_urls(text: str, out: list[Found]) -> None:
    found: list[tuple[int, int]] = []  # scheme URLs, in order: a "www." inside one is part of it
    i = text.find("://")
    while i >= 0:
        head = text[max(0, i - 5):i].lower()
        start = i - 5 if head == "https" else i - 4 if head.endswith("http") else -1
        if start >= 0 and not _glued(text, start - 1):
            end = _url_end(text, start, i + 3)
            if end > 0:
                out.append((start, end, "URL", 0.9))
                found.append((start, end))
                i = text.find("://", end)
                continue
        i = text.find("://", i + 3)
    k, covered = 0, -1
    for i in sorted(_all(text, "www.") + (_all(text, "WWW.") if "W" in text else [])):
        while k < len(found) and found[k][1] <= i:
            k += 1
        inside = i < covered or (k < len(found) and found[k][0] <= i)
        if inside or (i and text[i - 1] in "/.@-") or _glued(text, i - 1):
            continue
        end = _url_end(text, i, i)
        if end > i + 4:
            out.append((i, end, "URL", 0.8))
            covered = end


def _all(text: str, needle: str) -> list[int]:
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + len(needle))
    return found


# --- IPv6 ------------------------------------------------------------------------------------------------
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_RIGHT = re.compile(r"[0-9A-Fa-f:.]{1,45}")
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")


def find_ipv6(text: str, out: list[Found]) -> None:
    done = 0
    for m in _IPV6_HINT.finditer(text):
        p = m.start()
        if p < done:
            continue
        left = p
        while left > 0 and p - left < 40 and text[left - 1] in _HEX_COLON:
            left -= 1
        right = _IPV6_RIGHT.match(text, p)
        end = right.end() if right is not None else m.end()
        done = end
        candidate = text[left:end].rstrip(".")
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate = candidate[:-1]
        stop = left + len(candidate)
        if (_glued(text, left - 1) or text[left - 1:left] == "." or _glued(text, stop)
                or not any(ch.isdigit() for ch in candidate)):
            continue
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        groups = [g for g in candidate.split(":") if g]
        if len(groups) < 2 and not address.is_loopback:
            continue
        out.append((left, stop, "IP_ADDRESS", 0.95 if "::" not in candidate else 0.9))
