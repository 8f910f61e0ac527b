"""The evasion set of issue 23 item 1: transforms that disguise a canary, and the three canaries.

Each transform maps the canary's plain form to a disguised form that a reader (or a model) still reads
as the canary. Used by tests/metrics/test_evasion.py and tools/evasion_report.py.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import quote

CARD = "4539148803436467"          # a Luhn-valid Visa number
AWS_KEY = "AKIA4QZ7MRX2LPV9KD3T"   # AKIA + 16 of [A-Z0-9], not an ...EXAMPLE one
CODE = "PROJECT-4242"              # the regex canary: PROJECT-[0-9]{4}
CANARIES = {"card": CARD, "aws_key": AWS_KEY, "regex_code": CODE}
PATTERNS = {"card": r"\b4[0-9]{15}\b", "aws_key": r"\bAKIA[0-9A-Z]{16}\b", "regex_code": r"PROJECT-[0-9]{4}"}
PII_LABELS = {"card": "CREDIT_CARD", "aws_key": "AWS_ACCESS_KEY"}

_CYRILLIC = str.maketrans("AEKMHOPCTXIJSBaeopcxy", "АЕКМНОРСТХІЈЅВаеорсху")
_ZW_MIX = "\u200c\u200d\ufeff"


def _between(sep: str) -> Callable[[str], str]:
    return lambda s: sep.join(s)


def _middle(mark: str) -> Callable[[str], str]:
    return lambda s: s[: len(s) // 2] + mark + s[len(s) // 2:]


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def _math_bold(s: str) -> str:
    out = []
    for c in s:
        if c.isdigit():
            out.append(chr(0x1D7CE + int(c)))
        elif "A" <= c <= "Z":
            out.append(chr(0x1D400 + ord(c) - 65))
        else:
            out.append(c)
    return "".join(out)


def _homoglyph(s: str) -> str:
    # look-alike letters (Cyrillic) and monospace digits
    return "".join(chr(0x1D7F6 + int(c)) if c.isdigit() else c for c in s.translate(_CYRILLIC))


def _arabic_indic(s: str) -> str:
    return "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in s)


def _groups(sep: str, size: int = 4) -> Callable[[str], str]:
    return lambda s: sep.join(s[i:i + size] for i in range(0, len(s), size))


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "zwsp_middle": _middle("\u200b"),
    "zwsp_every": _between("\u200b"),
    "soft_hyphen_middle": _middle("\u00ad"),
    "soft_hyphen_every": _between("\u00ad"),
    "word_joiner_every": _between("\u2060"),
    "zwnj_zwj_bom_mix": lambda s: "".join(_ZW_MIX[i % 3] + c if i else c for i, c in enumerate(s)),
    "fullwidth": _fullwidth,
    "math_bold": _math_bold,
    "homoglyph_letters_digits": _homoglyph,
    "arabic_indic_digits": _arabic_indic,
    "fullwidth_plus_zwsp": lambda s: "\u200b".join(_fullwidth(s)),
    "spaces_every": _between(" "),
    "nbsp_every": _between("\u00a0"),
    "dots_every": _between("."),
    "dashes_every": _between("-"),
    "groups_of_4_spaces": _groups(" "),
    "groups_of_4_dots": _groups("."),
    "one_space_middle": _middle(" "),
    "base64": _b64,
    "base64_urlsafe_unpadded": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "base64_twice": lambda s: _b64(_b64(s)),
    "hex": lambda s: s.encode().hex(),
    "hex_backslash_x": lambda s: "".join(f"\\x{b:02x}" for b in s.encode()),
    "hex_spaced_upper": lambda s: " ".join(f"{b:02X}" for b in s.encode()),
    "url_percent_every": lambda s: "".join(f"%{b:02X}" for b in s.encode()),
    "url_quote_zwsp": lambda s: quote(_middle("\u200b")(s)),
    "html_decimal": lambda s: "".join(f"&#{ord(c)};" for c in s),
    "html_hex": lambda s: "".join(f"&#x{ord(c):x};" for c in s),
    "hex_of_base64": lambda s: _b64(s).encode().hex(),
}

CONTEXTS = (
    ("Here it is: ", " - keep it safe."),
    ("", ""),
    ("The value\n", "\nwas in the log."),
)
