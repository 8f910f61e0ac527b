"""RegexMetric: RE2 compilation and rejection, names, flags, exact spans, linear time, params."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.metrics.types import Metric, MetricValue, ParamError
from gateway.metrics.regex import RegexMetric

SSN = r"\b\d{3}-\d{2}-\d{4}\b"
EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"


def spans(metric: RegexMetric, text: str) -> list[tuple[str, str]]:
    result = metric.measure(text)
    for span in result.spans:
        assert 0 <= span.start < span.end <= len(text)
    return [(s.label, text[s.start:s.end]) for s in result.spans]


@pytest.mark.parametrize(("text", "expected"), [
    ("no pii here", []),
    ("ssn 123-45-6789.", [("ssn", "123-45-6789")]),
    ("mail jane.doe@example.com or 123-45-6789", [("email", "jane.doe@example.com"), ("ssn", "123-45-6789")]),
    ("twice: a@b.io, c@d.io", [("email", "a@b.io"), ("email", "c@d.io")]),
    # Non-ASCII before the match: spans are str offsets, not UTF-8 byte offsets.
    ("Größe “ß” 🙂 → jane@example.com", [("email", "jane@example.com")]),
    ("日本語のテキスト 123-45-6789 です", [("ssn", "123-45-6789")]),
])
def test_named_patterns_and_exact_spans(text: str, expected: list[tuple[str, str]]) -> None:
    metric = RegexMetric.from_params({"patterns": [{"name": "ssn", "pattern": SSN},
                                                   {"name": "email", "pattern": EMAIL}]})
    assert spans(metric, text) == expected
    assert metric.measure(text).value == frozenset(label for label, _ in expected)


def test_default_names() -> None:
    metric = RegexMetric.from_params({"patterns": ["foo+", {"pattern": "bar"}]})
    result = metric.measure("fooo bar")
    assert result.value == frozenset({"foo+", "pattern_1"})
    assert [(s.start, s.end, s.label) for s in result.spans] == [(0, 4, "foo+"), (5, 8, "pattern_1")]


def test_overlapping_patterns_each_report_their_matches() -> None:
    # One alternation would only report the leftmost; each pattern is run for its own spans.
    metric = RegexMetric.from_params({"patterns": [{"name": "word", "pattern": r"secret\w*"},
                                                   {"name": "inner", "pattern": "cret"}]})
    assert spans(metric, "top secrets") == [("word", "secrets"), ("inner", "cret")]


@pytest.mark.parametrize(("flags", "text", "matches"), [
    ([], "ACME", False),
    (["ignorecase"], "ACME", True),
    ([], "x\nacme", False),
    (["multiline"], "x\nacme", True),
    ([], "begin\nend", False),
    (["dotall"], "begin\nend", True),
])
def test_flags(flags: list[str], text: str, matches: bool) -> None:
    metric = RegexMetric.from_params({"patterns": ["^acme$", "begin.end"], "flags": flags})
    assert bool(metric.measure(text).value) is matches


def test_flags_apply_to_every_alternative_of_a_pattern() -> None:
    metric = RegexMetric.from_params({"patterns": ["foo|bar", "zzz"], "flags": ["ignorecase"]})
    assert spans(metric, "BAR") == [("foo|bar", "BAR")]


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(a)\1", "invalid escape sequence"),
    ("(?=x)", "invalid perl operator"),
    ("(?<!x)y", "invalid perl operator"),
    ("a(", "missing )"),
    ("*a", "repetition operator"),
])
def test_re2_rejects_with_index_and_reason(pattern: str, reason: str) -> None:
    with pytest.raises(ParamError) as info:
        RegexMetric.from_params({"patterns": ["fine", {"name": "ok", "pattern": "x"}, pattern]})
    assert info.value.path == ("patterns", 2)
    assert info.value.message.startswith("RE2 rejects this pattern: ")
    assert reason in info.value.message


def test_rejection_inside_a_mapping_points_at_its_pattern_key() -> None:
    with pytest.raises(ParamError) as info:
        RegexMetric.from_params({"patterns": [{"name": "bad", "pattern": r"(a)\1"}]})
    assert info.value.path == ("patterns", 0, "pattern")


def test_linear_time_on_a_pathological_pattern() -> None:
    # (a+)+$ backtracks exponentially in Python's re on "aaa...a!"; RE2 is linear.
    metric = RegexMetric.from_params({"patterns": ["(a+)+$"]})
    text = "a" * 100_000 + "!"
    started = time.perf_counter()
    result = metric.measure(text)
    elapsed = time.perf_counter() - started
    assert result == MetricValue(frozenset())
    assert elapsed < 1.0, f"took {elapsed:.3f}s"


def test_long_matches_are_reported_beyond_max_match_chars() -> None:
    metric = RegexMetric.from_params({"patterns": ["x+"], "max_match_chars": 4})
    assert metric.max_span_chars == 4
    assert spans(metric, "..xxxxxxxxxx..") == [("x+", "xxxxxxxxxx")]
    raw = {"normalize": False, "decode": False}
    assert RegexMetric.from_params({"patterns": ["x"], **raw}).max_span_chars == 1  # bounded: its own width
    # with the evasion views on (the default) a disguised match is longer in the original: 6 x + 16
    assert RegexMetric.from_params({"patterns": ["x"]}).max_span_chars == 22


def test_many_patterns_and_protocol() -> None:
    metric = RegexMetric.from_params({"patterns": [f"token{i}\\b" for i in range(300)]})
    assert isinstance(metric, Metric)
    assert metric.measure("has token299 and token7").value == frozenset({"token299\\b", "token7\\b"})
    assert metric.measure("token3000").value == frozenset()


def test_lone_surrogate_does_not_break_offsets() -> None:
    metric = RegexMetric.from_params({"patterns": ["abc"]})
    text = "\ud800é abc"
    assert spans(metric, text) == [("abc", "abc")]


@pytest.mark.parametrize(("params", "path", "fragment"), [
    ({}, ("patterns",), "required"),
    ({"patterns": []}, ("patterns",), "non-empty list"),
    ({"patterns": "abc"}, ("patterns",), "non-empty list"),
    ({"patterns": ["ok", 5]}, ("patterns", 1), "string or a {name, pattern} mapping"),
    ({"patterns": ["ok", ""]}, ("patterns", 1), "must not be empty"),
    ({"patterns": ["ok", "x*"]}, ("patterns", 1), "matches the empty string"),
    ({"patterns": [{"name": "n"}]}, ("patterns", 0, "pattern"), "required"),
    ({"patterns": [{"name": "", "pattern": "x"}]}, ("patterns", 0, "name"), "non-empty string"),
    ({"patterns": [{"pattern": "x", "colour": 1}]}, ("patterns", 0, "colour"), "allowed: name, pattern"),
    ({"patterns": ["x", {"name": "x", "pattern": "y"}]}, ("patterns", 1, "name"), "duplicate"),
    ({"patterns": ["x", "x"]}, ("patterns", 1), "duplicate"),
    ({"patterns": ["x"], "flags": "ignorecase"}, ("flags",), "list"),
    ({"patterns": ["x"], "flags": ["ignorecase", "verbose"]}, ("flags", 1), "unknown flag 'verbose'"),
    ({"patterns": ["x"], "flags": [["ignorecase"]]}, ("flags", 0), "unknown flag ['ignorecase']"),
    ({"patterns": ["x"], "max_match_chars": 0}, ("max_match_chars",), "positive integer"),
    ({"patterns": ["x"], "max_match_chars": True}, ("max_match_chars",), "positive integer"),
    ({"patterns": ["x"], "colour": "red"}, ("colour",), "unknown parameter; allowed: patterns, flags, max_match_chars"),
])
def test_param_errors(params: dict[str, Any], path: tuple[str | int, ...], fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        RegexMetric.from_params(params)
    assert info.value.path == path
    assert fragment in info.value.message


def test_hold_back_bound_comes_from_the_patterns_when_not_given() -> None:
    from gateway.metrics.regex import RegexMetric

    raw = {"normalize": False, "decode": False}
    patterns = ["PROJECT-[0-9]{4}", "(?i)internal use only"]
    assert RegexMetric.from_params({"patterns": patterns, **raw}).max_span_chars == 21
    assert RegexMetric.from_params({"patterns": patterns}).max_span_chars == 6 * 21 + 16  # views on
    metric = RegexMetric.from_params({"patterns": ["x{,3}"]})  # RE2: a literal; Python: up to three x
    assert metric.measure("x{,3}").spans[0].end == 5 and metric.max_span_chars >= 5
    assert RegexMetric.from_params({"patterns": ["a+b"], **raw}).max_span_chars == 256  # unbounded: the default
    assert RegexMetric.from_params({"patterns": ["x{3}"], "max_match_chars": 40}).max_span_chars == 40
