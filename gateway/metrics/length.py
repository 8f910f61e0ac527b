"""`length`: the size of the text, in characters or in (estimated) tokens.

Params:
  unit: "chars" (default): `len(text)`, in Unicode code points.
        "tokens": an estimate of what a BPE tokenizer of the GPT-4 family makes of the text, without
        loading one:

            tokens = ceil(ascii / 4 + other / 2) + cjk

        where `ascii` counts ASCII characters (English text averages about 4 characters per token,
        spaces and punctuation included), `cjk` counts Han ideographs, kana, Hangul syllables and
        jamo, and fullwidth/halfwidth forms (about one token each), and `other` counts all remaining
        characters (accented Latin, Cyrillic, Greek, Arabic, Hebrew, Indic, emoji...: these take
        more tokens than ASCII, about 2 characters per token). Empty text is 0 tokens. It is an
        estimate for limits and budgets, within roughly +-30 % on ordinary prose, not a billing count.

Value: int. No spans (`max_span_chars` = 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Self

from gateway.metrics.types import MetricValue, ParamError

_ALLOWED = ("unit",)
_UNITS = ("chars", "tokens")
_NON_ASCII_BYTES = bytes(range(128, 256))
_ASCII_BYTES = bytes(range(128))
_CJK = re.compile("[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                  "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]+")


def estimate_tokens(text: str) -> int:
    """The token estimate documented above."""
    if text.isascii():
        return -(-len(text) // 4)
    data = text.encode("utf-8", "replace")
    ascii_count = len(data.translate(None, _NON_ASCII_BYTES))
    rest = data.translate(None, _ASCII_BYTES).decode("utf-8")
    other = len(_CJK.sub("", rest))
    cjk = len(rest) - other
    return math.ceil(ascii_count / 4 + other / 2) + cjk


class LengthMetric:
    """Text length; pure and thread-safe."""

    __slots__ = ("max_span_chars", "unit")

    def __init__(self, unit: str = "chars") -> None:
        if unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}")
        self.unit = unit
        self.max_span_chars = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        unknown = [key for key in params if key not in _ALLOWED]
        if unknown:
            raise ParamError((unknown[0],), f"unknown parameter; allowed: {', '.join(_ALLOWED)}")
        unit = params.get("unit", "chars")
        if unit not in _UNITS:
            raise ParamError(("unit",), f"must be one of: {', '.join(_UNITS)}")
        return cls(unit)

    def pending_from(self, text: str) -> int:
        """A length reports no spans: nothing needs holding back for it."""
        return len(text)

    def measure(self, text: str) -> MetricValue:
        if self.unit == "chars":
            return MetricValue(len(text))
        return MetricValue(estimate_tokens(text))

    def __repr__(self) -> str:
        return f"LengthMetric(unit={self.unit!r})"
