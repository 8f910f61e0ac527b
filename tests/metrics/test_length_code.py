"""LengthMetric units and token estimate; CodeMetric import errors and return-type handling; speed."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from gateway.metrics.types import Metric, MetricValue, ParamError, Span
from gateway.metrics.code import CodeMetric
from gateway.metrics.contains import ContainsMetric
from gateway.metrics.length import LengthMetric, estimate_tokens
from gateway.metrics.regex import RegexMetric

SAMPLE = "tests.metrics.sample_code_metric"


# --- length -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("unit", "text", "expected"), [
    ("chars", "", 0),
    ("chars", "hello", 5),
    ("chars", "héllo 🙂", 7),  # code points, not bytes
    ("tokens", "", 0),
    ("tokens", "a", 1),
    ("tokens", "abcd", 1),
    ("tokens", "abcde", 2),
    ("tokens", "x" * 400, 100),
    ("tokens", "你好世界", 4),  # one per ideograph
    ("tokens", "こんにちは", 5),  # kana
    ("tokens", "안녕하세요", 5),  # Hangul syllables
    ("tokens", "Привет", 3),  # other scripts: 2 characters per token
    ("tokens", "hello 你好", 4),  # ceil(6 / 4) + 2
    ("tokens", "abcd" * 10 + "éé", 11),  # 40 / 4 + 2 / 2
])
def test_length_units(unit: str, text: str, expected: int) -> None:
    metric = LengthMetric.from_params({"unit": unit})
    result = metric.measure(text)
    assert result == MetricValue(expected)
    assert type(result.value) is int
    assert metric.max_span_chars == 0
    assert isinstance(metric, Metric)


def test_length_default_unit_is_chars() -> None:
    assert LengthMetric.from_params({}).measure("abcdef").value == 6


def test_token_estimate_on_english_prose_is_about_a_quarter_of_the_characters() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert estimate_tokens(text) == -(-len(text) // 4)


@pytest.mark.parametrize(("params", "path", "fragment"), [
    ({"unit": "words"}, ("unit",), "chars, tokens"),
    ({"unit": "chars", "colour": 1}, ("colour",), "unknown parameter; allowed: unit"),
])
def test_length_param_errors(params: dict[str, Any], path: tuple[str | int, ...], fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        LengthMetric.from_params(params)
    assert info.value.path == path
    assert fragment in info.value.message


# --- code -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("function", "params", "text", "expected"), [
    ("score", {}, "x" * 50, MetricValue(0.5)),
    ("score", {"scale": 0.5}, "x" * 50, MetricValue(0.25)),
    ("word_count", {}, "one two three", MetricValue(3)),
    ("has_secret", {}, "my secret", MetricValue(True)),
    ("has_secret", {}, "nothing", MetricValue(False)),
    ("labels_list", {}, "call FBI and CIA now", MetricValue(frozenset({"FBI", "CIA"}))),
    ("labels_set", {"prefix": "tag:"}, "#a b #c", MetricValue(frozenset({"tag:#a", "tag:#c"}))),
    ("labels_tuple", {}, "", MetricValue(frozenset({"A", "B"}))),
    ("metric_value", {}, "a bad day", MetricValue(0.9, (Span(2, 5, "BAD", 0.9),))),
    ("Scorer.score", {}, "", MetricValue(0.25)),
    ("keyword_only", {"threshold": 2}, "abc", MetricValue(True)),
])
def test_code_metric_return_values(function: str, params: dict[str, Any], text: str,
                                   expected: MetricValue) -> None:
    metric = CodeMetric.from_params({"function": f"{SAMPLE}:{function}", "params": params})
    result = metric.measure(text)
    assert result == expected
    assert type(result.value) is type(expected.value)
    assert metric.max_span_chars == 0
    assert isinstance(metric, Metric)


@pytest.mark.parametrize(("function", "error", "fragment"), [
    ("returns_dict", TypeError, "returned dict; expected bool, int, float, a set/frozenset/list/tuple"),
    ("returns_none", TypeError, "returned NoneType"),
    ("returns_str", TypeError, "returned str"),
    ("returns_int_labels", TypeError, "with the label 1 of type int; labels must be str"),
    ("returns_nan", ValueError, "returned NaN"),
    ("raises", RuntimeError, "metric blew up"),
])
def test_code_metric_bad_returns_raise_at_measure_time(function: str, error: type[Exception], fragment: str) -> None:
    metric = CodeMetric.from_params({"function": f"{SAMPLE}:{function}"})
    with pytest.raises(error) as info:
        metric.measure("text")
    assert fragment in str(info.value)
    if error is not RuntimeError:
        assert f"{SAMPLE}:{function}" in str(info.value)


@pytest.mark.parametrize(("params", "path", "fragment"), [
    ({}, ("function",), "required"),
    ({"function": 3}, ("function",), "required"),
    ({"function": "no_colon"}, ("function",), "must look like 'package.module:function_name'"),
    ({"function": "a:b:c"}, ("function",), "must look like"),
    ({"function": ":fn"}, ("function",), "must look like"),
    ({"function": "mod:"}, ("function",), "must look like"),
    ({"function": "tests.metrics.no_such_module:fn"}, ("function",),
     "cannot import module 'tests.metrics.no_such_module'"),
    ({"function": "gateway.nope.deeper:fn"}, ("function",), "cannot import module 'gateway.nope.deeper'"),
    ({"function": f"{SAMPLE}:missing"}, ("function",), f"module '{SAMPLE}' has no attribute 'missing'"),
    ({"function": f"{SAMPLE}:Scorer.missing"}, ("function",), f"{SAMPLE}:Scorer has no attribute 'missing'"),
    ({"function": f"{SAMPLE}:NOT_CALLABLE"}, ("function",), "is not callable (it is of type int)"),
    ({"function": f"{SAMPLE}:score", "params": [1]}, ("params",), "must be a mapping"),
    ({"function": f"{SAMPLE}:score", "params": {"nope": 1}}, ("params",), "cannot be called as fn(text, **params)"),
    ({"function": f"{SAMPLE}:keyword_only"}, ("params",), "missing a required argument: 'threshold'"),
    ({"function": f"{SAMPLE}:score", "params": {"not an identifier": 1}}, ("params", "not an identifier"),
     "identifiers"),
    ({"function": f"{SAMPLE}:score", "colour": 1}, ("colour",), "unknown parameter; allowed: function, params"),
])
def test_code_param_errors(params: dict[str, Any], path: tuple[str | int, ...], fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        CodeMetric.from_params(params)
    assert info.value.path == path
    assert fragment in info.value.message


def test_code_metric_accepts_a_builtin_without_signature_checks() -> None:
    metric = CodeMetric.from_params({"function": "builtins:len"})
    assert metric.measure("four").value == 4


# --- speed ----------------------------------------------------------------------------------------

def test_lexical_metrics_together_are_fast_on_a_2kb_prompt() -> None:
    """The budget is well under 1 ms; this guard allows 2 ms (median) for slow CI machines."""
    paragraph = ("Please summarise the quarterly report for the board. Keep the figures exact, the tone "
                 "neutral, and flag anything that looks like a risk.\nContact: jane.doe@example.com.\n\n")
    text = (paragraph * 20)[:2048]
    metrics: list[Metric] = [
        ContainsMetric.from_params({"keywords": ["ignore previous instructions", "system prompt", "paypal",
                                                 "acme corp", "jailbreak", "password"]}),
        RegexMetric.from_params({"patterns": [r"\b\d{3}-\d{2}-\d{4}\b", r"sk-[A-Za-z0-9]{20,}",
                                              r"AKIA[0-9A-Z]{16}", r"(?i)begin [a-z ]*private key"]}),
        LengthMetric.from_params({"unit": "chars"}),
        LengthMetric.from_params({"unit": "tokens"}),
    ]
    for metric in metrics:
        metric.measure(text)  # warm up
    samples = []
    for _ in range(50):
        started = time.perf_counter()
        for metric in metrics:
            metric.measure(text)
        samples.append(time.perf_counter() - started)
    assert statistics.median(samples) < 0.002
