"""Policies (seed 001): a named metric with a threshold. Risk score in [0,1]; violated when score > threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.config.guard_schema import PolicySpec
from gateway.metrics.context import EvalContext
from gateway.metrics.types import Metric, MetricValue, ParamError, Span
from gateway.metrics import KINDS
from gateway.guard.policy_types import POLICY_TYPES, PolicyType

if TYPE_CHECKING:  # onnxruntime loads only for configs that use models
    from gateway.scoring.runtime import ScoringRuntime

# What reaches into the gateway's host: policy types that run its Python or load files from its disk (their
# PolicyType's host_reason), and parameters naming a file there. Only the config file, written by whoever
# deploys the gateway, may use them; a policy from the admin API or from a request (evaluate's
# override_policy) may not.
HOST_PARAMS = {"training_data": "reads a file on the gateway's disk; send the rows instead "
                                "(`examples`, or the policy's data endpoint)"}


def host_access(spec: PolicySpec) -> ParamError | None:
    """Why `spec` may not come from the admin API or a request, or None when it may."""
    ptype = POLICY_TYPES.get(spec.type)
    if ptype is not None and ptype.host_reason is not None:
        return ParamError(("type",), f"a {spec.type} policy {ptype.host_reason}: only the gateway's config "
                                     "file may define one")
    for key, why in HOST_PARAMS.items():
        if key in spec.params:
            return ParamError((key,), f"{why}; only the gateway's config file may name a file")
    return None


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    type: str
    rule: str
    threshold: float
    calibrated_threshold: float
    metric: Metric

    @property
    def higher_is_compliant(self) -> bool:
        return POLICY_TYPES[self.type].higher_is_compliant

    def effective_threshold(self, override: float | None = None) -> float:
        """A per-request threshold wins; 0.0 selects the calibrated threshold (the seed's auto-threshold)."""
        threshold = self.threshold if override is None else override
        return self.calibrated_threshold if threshold == 0.0 else threshold

    def violated(self, score: float, override: float | None = None) -> bool:
        threshold = self.effective_threshold(override)
        return score < threshold if self.higher_is_compliant else score > threshold

    def as_metric(self) -> Metric:
        return _PolicyMetric(self.metric, self.id if POLICY_TYPES[self.type].relabelled else None)  # type: ignore[return-value]

    def score(self, text: str) -> MetricValue:
        return self.as_metric().measure(text)

    async def score_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        """The policy's score of `text`; `context` is the evaluation's, for the metrics that read one."""
        metric = self.as_metric()
        if hasattr(metric, "measure_async"):
            return await metric.measure_async(text, context)  # type: ignore[attr-defined]
        return metric.measure(text)


@dataclass(frozen=True, slots=True)
class _PolicyMetric:
    """A policy used as a metric: its value is the risk score; spans are the underlying metric's.

    Pattern and keyword policies name their spans after the policy (`relabel`): redacting a keyword
    must not print the keyword back as its placeholder."""

    inner: Metric
    relabel: str | None

    @property
    def max_span_chars(self) -> int:
        return self.inner.max_span_chars

    @property
    def blocking(self) -> bool:
        return bool(getattr(self.inner, "blocking", False))

    def __getattr__(self, name: str):  # measure_async, when the inner metric has one
        if name == "measure_async" and hasattr(self.inner, "measure_async"):
            return self._measure_async
        if name == "pending_from" and hasattr(self.inner, "pending_from"):  # spans are the inner metric's
            return self.inner.pending_from
        raise AttributeError(name)

    async def _measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        result = await self.inner.measure_async(text, context)  # type: ignore[attr-defined]
        return MetricValue(result.risk, result.spans)

    def measure(self, text: str) -> MetricValue:
        result = self.inner.measure(text)
        spans = result.spans
        if self.relabel is not None and spans:
            spans = tuple(Span(s.start, s.end, self.relabel, s.score) for s in spans)
        return MetricValue(result.risk, spans)


def compile_policy(spec: PolicySpec, runtime: ScoringRuntime | None = None) -> Policy:
    """Build the policy's metric from its type parameters; raise ParamError with a path inside the policy.

    Model-based types score with `runtime` (the app's, see gateway.app.create_app); the others need none."""
    ptype = POLICY_TYPES.get(spec.type)
    if ptype is None:
        raise ParamError(("type",), f"unknown policy type {spec.type!r}; known: {', '.join(sorted(POLICY_TYPES))}")
    if ptype.family == "judge":
        from gateway.metrics.judge import JudgeMetric

        return Policy(spec.id, spec.type, spec.rule, spec.threshold, _calibrated(ptype),
                      JudgeMetric.from_params(spec.params, spec.rule))
    if ptype.family == "model":
        from gateway.metrics.model import compile_model_policy  # loads onnxruntime only when needed

        metric, calibrated = compile_model_policy(spec, runtime)
        return Policy(spec.id, spec.type, spec.rule, spec.threshold, calibrated, metric)
    factory, _ = KINDS[spec.type]  # a lexical type: its metric class under the same name
    return Policy(spec.id, spec.type, spec.rule, spec.threshold, _calibrated(ptype), factory(spec.params))


def _calibrated(ptype: PolicyType) -> float:
    assert ptype.calibrated_threshold is not None, f"{ptype.name}: a lexical or judge type names its threshold"
    return ptype.calibrated_threshold
