"""Guard metrics and their explicit registry: a name -> factory dict, no directory scanning."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from gateway.guard.types import Metric, MetricValue
from gateway.metrics.code import CodeMetric
from gateway.metrics.contains import ContainsMetric
from gateway.metrics.length import LengthMetric
from gateway.metrics.pii import PiiMetric
from gateway.metrics.regex import RegexMetric

Kind = Literal["score", "number", "labels", "any"]
Factory = Callable[[Mapping[str, Any]], Metric]


class _Blocking:
    """Marks user code as blocking: the engine runs it on a thread, under the stage's timeout."""

    blocking = True

    def __init__(self, inner: Metric) -> None:
        self.inner = inner
        self.max_span_chars = inner.max_span_chars

    def measure(self, text: str) -> MetricValue:
        return self.inner.measure(text)


def _code(params: Mapping[str, Any]) -> Metric:
    return _Blocking(CodeMetric.from_params(params))


# Metric kinds a policy `type` or a rule `metric` may name, with the kind of value each returns.
KINDS: dict[str, tuple[Factory, Kind]] = {
    "regex": (RegexMetric.from_params, "labels"),
    "contains": (ContainsMetric.from_params, "labels"),
    "pii": (PiiMetric.from_params, "labels"),
    "length": (LengthMetric.from_params, "number"),
    "code": (_code, "any"),
}

# Metrics usable by name in a rule without a policy: (kind, params).
BUILTINS: dict[str, tuple[str, dict[str, Any]]] = {
    "pii": ("pii", {}),
    "length": ("length", {"unit": "chars"}),
    "tokens": ("length", {"unit": "tokens"}),
}

__all__ = ["BUILTINS", "KINDS", "Factory", "Kind"]
