"""Functions for the `code` metric tests, imported by CodeMetric as tests.metrics.sample_code_metric:NAME."""

from __future__ import annotations

from gateway.metrics.types import MetricValue, Span

NOT_CALLABLE = 42


def score(text: str, scale: float = 1.0) -> float:
    return min(1.0, len(text) / 100.0) * scale


def word_count(text: str) -> int:
    return len(text.split())


def has_secret(text: str) -> bool:
    return "secret" in text


def labels_list(text: str) -> list[str]:
    return [word.upper() for word in text.split() if word.isupper()]


def labels_set(text: str, prefix: str = "") -> set[str]:
    return {prefix + word for word in text.split() if word.startswith("#")}


def labels_tuple(text: str) -> tuple[str, ...]:
    return ("A", "B", "A")


def metric_value(text: str) -> MetricValue:
    start = text.find("bad")
    if start < 0:
        return MetricValue(0.0)
    return MetricValue(0.9, (Span(start, start + 3, "BAD", 0.9),))


def returns_dict(text: str) -> dict[str, int]:
    return {"len": len(text)}


def returns_none(text: str) -> None:
    return None


def returns_str(text: str) -> str:
    return text


def returns_int_labels(text: str) -> list[int]:
    return [1, 2]


def returns_nan(text: str) -> float:
    return float("nan")


def raises(text: str) -> float:
    raise RuntimeError("metric blew up")


def keyword_only(text: str, *, threshold: int) -> bool:
    return len(text) > threshold


class Scorer:
    @staticmethod
    def score(text: str) -> float:
        return 0.25
