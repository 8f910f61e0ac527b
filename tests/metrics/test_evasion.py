"""Issue 23 item 1: the pattern metrics see through disguised canaries, and their spans cover exactly the
disguised characters (so a redaction removes all of them and nothing around them)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guard.redact import redact
from gateway.metrics.types import ParamError
from gateway.metrics.contains import ContainsMetric
from gateway.metrics.evasion import MAX_VIEWS, match_views
from gateway.metrics.pii import PiiMetric
from gateway.metrics.regex import RegexMetric
from tests.metrics.evasion_cases import CANARIES, CONTEXTS, PATTERNS, PII_LABELS, TRANSFORMS

METRICS = {
    "regex": {name: RegexMetric.from_params({"patterns": [{"name": name, "pattern": p}]}) for name, p in PATTERNS.items()},
    "contains": {name: ContainsMetric.from_params({"keywords": [c]}) for name, c in CANARIES.items()},
    "pii": {name: PiiMetric() for name in PII_LABELS},
}


def _cases(metric: str) -> list[tuple[str, str, str, str]]:
    return [(transform, canary, prefix, suffix) for transform in TRANSFORMS for canary in METRICS[metric]
            for prefix, suffix in CONTEXTS]


def _caught(metric: str, transform: str, canary: str, prefix: str, suffix: str) -> bool:
    """The metric reports the canary and its spans for it cover exactly the disguised characters."""
    disguised = TRANSFORMS[transform](CANARIES[canary])
    text = prefix + disguised + suffix
    label = PII_LABELS.get(canary) if metric == "pii" else None
    spans = [s for s in METRICS[metric][canary].measure(text).spans if label is None or s.label == label]
    if not spans:
        return False
    start, end = len(prefix), len(prefix) + len(disguised)
    covered = min(s.start for s in spans) == start and max(s.end for s in spans) == end
    return covered and redact(text, spans, "<X>") == prefix + "<X>" + suffix


def test_the_evasion_set_is_big_enough() -> None:
    assert len(TRANSFORMS) >= 20 and len(CANARIES) == 3
    for transform in TRANSFORMS.values():  # each really disguises every canary
        assert all(transform(c) != c for c in CANARIES.values())


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_detection_on_the_evasion_set_is_at_least_99_percent(metric: str) -> None:
    cases = _cases(metric)
    missed = [case for case in cases if not _caught(metric, *case)]
    assert 1 - len(missed) / len(cases) >= 0.99, missed


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_views_off_find_what_the_raw_matcher_finds(metric: str) -> None:
    off = {"regex": lambda: RegexMetric.from_params({"patterns": [PATTERNS["regex_code"]], "normalize": False,
                                                    "decode": False}),
           "contains": lambda: ContainsMetric.from_params({"keywords": ["PROJECT-4242"], "normalize": False,
                                                          "decode": False}),
           "pii": lambda: PiiMetric.from_params({"normalize": False, "decode": False})}[metric]()
    disguised = TRANSFORMS["zwsp_middle"](CANARIES["aws_key" if metric == "pii" else "regex_code"])
    assert off.measure(f"x {disguised} y").value == frozenset()


@pytest.mark.parametrize("params", [{"normalize": "yes"}, {"decode": 1}, {"decode": None}])
def test_view_params_are_validated(params: dict) -> None:
    key = next(iter(params))
    for factory, base in ((RegexMetric.from_params, {"patterns": ["x"]}),
                          (ContainsMetric.from_params, {"keywords": ["x"]}), (PiiMetric.from_params, {})):
        with pytest.raises(ParamError) as info:
            factory({**base, **params})
        assert info.value.path == (key,) and "true or false" in info.value.message


def test_a_decoded_run_maps_to_the_whole_run_and_escapes_to_themselves() -> None:
    metric = METRICS["regex"]["regex_code"]
    blob = base64.b64encode(b"note: PROJECT-4242 is it").decode()
    text = f"see {blob} ok"
    [span] = metric.measure(text).spans
    assert text[span.start:span.end] == blob
    text = "a %50ROJECT-4242 b &#80;ROJECT-4242 c"
    assert [text[s.start:s.end] for s in metric.measure(text).spans] == ["%50ROJECT-4242", "&#80;ROJECT-4242"]


def test_ordinary_text_has_no_view_and_the_views_are_bounded() -> None:
    assert match_views("What is the capital of France? About 2.1 million people live in Paris.") == []
    nested = "x " + " ".join(base64.b64encode(base64.b64encode(f"word {i} PROJECT-42{i:02d}".encode())).decode()
                             for i in range(30))
    views = match_views(nested)
    assert 0 < len(views) <= MAX_VIEWS
    assert sum(len(v.text) for v in views) <= 4 * len(nested) + 1024


ALPHABET = st.sampled_from(list("abc XYZ019-.%&#;=+/_") + ["\u200b", "\u00ad", "Ａ", "４", "\u0430", "\n"])


@settings(max_examples=300, deadline=None)
@given(text=st.text(ALPHABET, max_size=120))
def test_view_spans_always_lie_inside_the_text(text: str) -> None:
    for view in match_views(text):
        for start in range(len(view.text)):
            lo, hi = view.original(start, start + 1)
            assert 0 <= lo < hi <= len(text)


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(ALPHABET, max_size=30), suffix=st.text(ALPHABET, max_size=30),
       transform=st.sampled_from(sorted(TRANSFORMS)))
def test_redaction_removes_every_disguised_canary_whatever_surrounds_it(prefix: str, suffix: str,
                                                                         transform: str) -> None:
    disguised = TRANSFORMS[transform](CANARIES["regex_code"])
    text = f"{prefix} {disguised} {suffix}"
    value = METRICS["regex"]["regex_code"].measure(text)
    assert value.value == frozenset({"regex_code"})
    start = len(prefix) + 1
    assert any(s.start <= start and s.end >= start + len(disguised) for s in value.spans)
    assert disguised not in redact(text, value.spans, "<X>")
