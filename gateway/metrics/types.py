"""Frozen values shared by metrics and the engine: spans, metric values, metric protocol, param errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union, runtime_checkable

from gateway.errors import ParamError  # noqa: F401  (re-exported; defined there)
from gateway.metrics.context import EvalContext

# What a metric measures: a score in [0,1], a count, a flag, or a set of labels (e.g. PII types found).
Value = Union[float, int, bool, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Span:
    """Text a metric matched: `text[start:end]`, with its label (e.g. EMAIL_ADDRESS) and confidence."""

    start: int
    end: int
    label: str
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class MetricValue:
    """A metric's result: the value rules compare, and the spans it matched (for redaction)."""

    value: Value
    spans: tuple[Span, ...] = ()

    @property
    def risk(self) -> float:
        """The value as a risk score in [0,1]: the highest span score, else the value itself."""
        if self.spans:
            return max(span.score for span in self.spans)
        if isinstance(self.value, frozenset):
            return 1.0 if self.value else 0.0
        return float(min(max(self.value, 0.0), 1.0))


@runtime_checkable
class Metric(Protocol):
    """A synchronous, CPU-cheap metric: text -> value (+ spans). Must be thread-safe and pure.

    `max_span_chars` is the longest span it can match (0 if it matches no spans, or unbounded spans
    are cut by the stream guard's window): the stream guard holds back at least that many characters.
    """

    max_span_chars: int

    def measure(self, text: str) -> MetricValue: ...


@runtime_checkable
class AsyncMetric(Metric, Protocol):
    """A metric the engine awaits under the stage timeout (model, classifier and judge metrics).

    `context` is the evaluation's (side, prompt, context documents, judge): the metrics that compare
    texts (relevance, consistency) or ask a judge (rubric) read it; the others ignore it."""

    async def measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue: ...
