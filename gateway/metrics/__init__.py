"""Guard metrics and their explicit registry: a name -> factory dict, no directory scanning."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from gateway.metrics.types import Metric, MetricValue, ParamError
from gateway.metrics.code import CodeMetric
from gateway.metrics.contains import ContainsMetric
from gateway.metrics.length import LengthMetric
from gateway.metrics.pii import PiiMetric
from gateway.metrics.regex import RegexMetric

if TYPE_CHECKING:  # onnxruntime and numpy load with the first model metric, not with this package
    from gateway.scoring.runtime import ScoringRuntime

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


def _detector(params: Mapping[str, Any], runtime: ScoringRuntime | None = None) -> Metric:
    from gateway.scoring.detectors import DETECTORS  # onnxruntime loads only when a model metric is used
    from gateway.metrics.model import DetectorMetric

    name = params.get("detector")
    if name not in DETECTORS:
        raise ParamError(("detector",), f"must be one of {', '.join(DETECTORS)}")
    if runtime is None:  # a caller's bug, not a config's: KINDS["detector"] called directly, not make_metric
        raise TypeError("a detector scores with models: build it with make_metric and a scoring runtime")
    return DetectorMetric.named(str(name), runtime)


# Metric kinds a policy `type` or a rule `metric` may name, with the kind of value each returns.
KINDS: dict[str, tuple[Factory, Kind]] = {
    "regex": (RegexMetric.from_params, "labels"),
    "contains": (ContainsMetric.from_params, "labels"),
    "pii": (PiiMetric.from_params, "labels"),
    "length": (LengthMetric.from_params, "number"),
    "code": (_code, "any"),
    "detector": (_detector, "score"),
}

def make_metric(kind: str, params: Mapping[str, Any], runtime: ScoringRuntime | None) -> Metric:
    """A metric of `kind` (a KINDS key) with `params`; model-based kinds score with `runtime`."""
    if kind == "detector":
        return _detector(params, runtime)
    return KINDS[kind][0](params)


# Metrics usable by name in a rule without a policy: (kind, params).
BUILTINS: dict[str, tuple[str, dict[str, Any]]] = {
    "pii": ("pii", {}),
    "length": ("length", {"unit": "chars"}),
    "tokens": ("length", {"unit": "tokens"}),
    "prompt_injection": ("detector", {"detector": "prompt_injection"}),
    "harmful": ("detector", {"detector": "harmful"}),
    "toxicity": ("detector", {"detector": "toxicity"}),
}

__all__ = ["BUILTINS", "KINDS", "Factory", "Kind", "make_metric"]
