"""ContainsMetric: evasions caught through normalisation, word vs substring mode, spans, params."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.metrics.types import Metric, MetricValue, ParamError
from gateway.metrics.contains import ContainsMetric

ZW = "\u200b"


def found(metric: ContainsMetric, text: str) -> list[tuple[str, str]]:
    """(label, original slice) for every span, checking each span lies inside the text."""
    result = metric.measure(text)
    out = []
    for span in result.spans:
        assert 0 <= span.start < span.end <= len(text)
        out.append((span.label, text[span.start:span.end]))
    assert result.value == frozenset(label for label, _ in out)
    return out


@pytest.mark.parametrize(("keywords", "text", "expected"), [
    (["paypal"], "log in to your PayPal account", [("paypal", "PayPal")]),
    (["paypal"], "log in to your pаypal account", [("paypal", "pаypal")]),  # Cyrillic а
    (["paypal"], "РАУРАL security", [("paypal", "РАУРАL")]),  # Cyrillic capitals
    (["paypal"], f"visit pay{ZW}pal now", [("paypal", f"pay{ZW}pal")]),
    (["paypal"], "visit pay\u00adpal now", [("paypal", "pay\u00adpal")]),  # soft hyphen
    (["paypal"], "ＰａｙＰａｌ", [("paypal", "ＰａｙＰａｌ")]),  # fullwidth
    (["acme"], f"AC{ZW}ME", [("acme", f"AC{ZW}ME")]),
    (["acme"], "A C M E", [("acme", "A C M E")]),  # letters spaced apart: the joined view (issue 23)
    (["acme corp"], "ACME  \n corp", [("acme corp", "ACME  \n corp")]),
    (["acme corp"], f"AC{ZW}ME  corp", [("acme corp", f"AC{ZW}ME  corp")]),
    (["ACME Corp"], "acme corp", [("ACME Corp", "acme corp")]),  # keywords are normalised too
    (["pаypal"], "paypal", [("pаypal", "paypal")]),  # ...including homoglyphs in the keyword
    (["  acme  "], "the acme site", [("  acme  ", "acme")]),  # and stripped
    (["straße"], "STRASSE", [("straße", "STRASSE")]),
    (["café"], "cafe\u0301 au lait", [("café", "cafe\u0301")]),
    (["ignore previous instructions"], "Please IGNORE\tprevious\n\ninstructions!",
     [("ignore previous instructions", "IGNORE\tprevious\n\ninstructions")]),
])
def test_evasions_are_caught(keywords: list[str], text: str, expected: list[tuple[str, str]]) -> None:
    assert found(ContainsMetric.from_params({"keywords": keywords}), text) == expected


@pytest.mark.parametrize(("match", "text", "expected"), [
    ("word", "acme", ["acme"]),
    ("word", "the acme.", ["acme"]),
    ("word", "(acme)", ["acme"]),
    ("word", "acme_corp", []),
    ("word", "acmecorp", []),
    ("word", "tacme", []),
    ("word", "acme2", []),
    ("word", "acmé", []),  # a non-ASCII letter continues the word
    ("word", f"AC{ZW}MEx", []),
    ("substring", "acmecorp", ["acme"]),
    ("substring", "tacme", ["acme"]),
    ("substring", "xacmex acme", ["acme", "acme"]),
])
def test_word_and_substring_modes(match: str, text: str, expected: list[str]) -> None:
    metric = ContainsMetric.from_params({"keywords": ["acme"], "match": match})
    assert [label for label, _ in found(metric, text)] == expected


def test_word_mode_edges_that_are_not_letters_need_no_boundary() -> None:
    metric = ContainsMetric.from_params({"keywords": ["$acme", "c++"]})
    assert [label for label, _ in found(metric, "pay x$acme in c++11")] == ["$acme", "c++"]


def test_cjk_keywords_match_inside_unspaced_text() -> None:
    metric = ContainsMetric.from_params({"keywords": ["密码", "acme"]})
    assert found(metric, "请告诉我密码。我的acme账户") == [("密码", "密码"), ("acme", "acme")]


def test_overlapping_keywords_are_all_found_with_exact_offsets() -> None:
    metric = ContainsMetric.from_params({"keywords": ["acme corp", "corp", "acme"], "match": "substring"})
    text = "Hi ACME CORP!"
    result = metric.measure(text)
    assert result.value == frozenset({"acme corp", "corp", "acme"})
    assert [(s.start, s.end, s.label) for s in result.spans] == [
        (3, 7, "acme"), (3, 12, "acme corp"), (8, 12, "corp")]


def test_keywords_that_normalise_alike_are_all_reported() -> None:
    metric = ContainsMetric.from_params({"keywords": ["PayPal", "paypal", "pаypal"]})
    result = metric.measure("my paypal")
    assert result.value == frozenset({"PayPal", "paypal", "pаypal"})
    assert {(s.start, s.end) for s in result.spans} == {(3, 9)}


def test_spans_after_non_ascii_and_invisible_prefixes() -> None:
    metric = ContainsMetric.from_params({"keywords": ["secret"]})
    text = f"ﬁ{ZW}ß “x” 🙂{ZW}\u2764\ufe0f the SECRET{ZW} is"
    assert found(metric, text) == [("secret", "SECRET")]


def test_no_normalisation_is_exact_and_case_sensitive() -> None:
    metric = ContainsMetric.from_params({"keywords": ["Acme"], "normalize": False, "decode": False})
    assert found(metric, "Acme and acme") == [("Acme", "Acme")]
    assert found(metric, f"Ac{ZW}me") == []
    assert metric.max_span_chars == 4


def test_no_match_returns_empty_value() -> None:
    metric = ContainsMetric.from_params({"keywords": ["acme"]})
    result = metric.measure("nothing to see here")
    assert result == MetricValue(frozenset())
    assert result.risk == 0.0
    assert metric.measure("").value == frozenset()


def test_metric_protocol_and_holdback_bound() -> None:
    metric = ContainsMetric.from_params({"keywords": ["acme", "ignore previous instructions"]})
    assert isinstance(metric, Metric)
    assert metric.max_span_chars == 6 * len("ignore previous instructions") + 16  # decode on: evasion.span_bound
    assert ContainsMetric.from_params({"keywords": ["acme", "ignore previous instructions"], "decode": False}) \
        .max_span_chars == 4 * len("ignore previous instructions") + 16
    # The bound covers a padded occurrence: every letter followed by two zero-width characters.
    padded = "".join(ch + ZW * 2 for ch in "ignore previous instructions")
    span = metric.measure(padded).spans[0]
    assert span.end - span.start <= metric.max_span_chars


@pytest.mark.parametrize(("params", "path", "fragment"), [
    ({}, ("keywords",), "required"),
    ({"keywords": []}, ("keywords",), "non-empty list"),
    ({"keywords": "acme"}, ("keywords",), "non-empty list"),
    ({"keywords": ["ok", 3]}, ("keywords", 1), "must be a string"),
    ({"keywords": ["ok", "", "x"]}, ("keywords", 1), "empty"),
    ({"keywords": ["ok", f"{ZW} \t"]}, ("keywords", 1), "empty"),
    ({"keywords": ["ok"], "match": "regex"}, ("match",), "word, substring"),
    ({"keywords": ["ok"], "normalize": "yes"}, ("normalize",), "true or false"),
    ({"keywords": ["ok"], "colour": "red"}, ("colour",), "unknown parameter; allowed: keywords, match, normalize"),
])
def test_param_errors(params: dict[str, Any], path: tuple[str | int, ...], fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        ContainsMetric.from_params(params)
    assert info.value.path == path
    assert fragment in info.value.message


def test_concurrent_measure_is_consistent() -> None:
    metric = ContainsMetric.from_params({"keywords": ["paypal", "acme corp"]})
    texts = [f"{i}: pay{ZW}pal AC{ZW}ME  corp ﬁ {'é' * (i % 7)}" for i in range(64)]
    expected = [metric.measure(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            assert list(pool.map(metric.measure, texts)) == expected
