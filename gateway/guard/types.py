"""The engine's vocabulary. The metric half (spans, metric values, the metric protocol, parameter errors)
lives in gateway.metrics.types, below the engine; it is re-exported here for the engine's callers."""

from __future__ import annotations

from gateway.metrics.types import Metric, MetricValue, ParamError, Span, Value

__all__ = ["Metric", "MetricValue", "ParamError", "Span", "Value"]
