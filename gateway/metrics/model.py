# size: every model-based metric on the shared encoder (detector, head, similar, relevance, consistency)
# and the one compile step that picks among them; the head's training is in policy_head.py
"""Model-based metrics on the shared encoder: detectors, policy heads, similarity, relevance, consistency.

Each is async (`measure_async`): the engine awaits it under the stage timeout while the embedding
service batches and caches encoder runs. Several policies on one text cost one encoder run: they all
await the same cached (or in-flight) embedding. `measure` is the synchronous equivalent for tools.
The evaluation's context (`EvalContext`: side, prompt, context) comes as an argument; relevance and
consistency read it, the others ignore it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway.config.guard_schema import PolicySpec
from gateway.metrics.context import EvalContext
from gateway.metrics.policy_head import head_from_dict, policy_examples, train_policy_head
from gateway.metrics.types import MetricValue, ParamError
from gateway.text.views import detector_views
from gateway.scoring.batcher import EmbeddingService
from gateway.scoring.hallucination import SupportHead
from gateway.scoring.heads import Head, pooled
from gateway.scoring.runtime import ScoringRuntime
from gateway.scoring.support import support_features
from gateway.errors import MissingKnowledge  # noqa: F401  (re-exported; defined there)

SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
SIMILAR_THRESHOLD_WITH_PASS = 0.5      # nearer a FAIL example than any PASS example
SIMILAR_THRESHOLD_FAIL_ONLY = 0.6      # cosine to the nearest FAIL example (MiniLM paraphrases: >= 0.6)


class _ModelMetric:
    max_span_chars = 0
    blocking = False
    runtime: ScoringRuntime

    @property
    def _service(self) -> EmbeddingService:
        return self.runtime.service

    async def _embedding(self, text: str) -> np.ndarray:
        return pooled(await self._service.embed(text))

    def _embedding_sync(self, text: str) -> np.ndarray:
        return pooled(self._service.encoder.embed([text])[0])


@dataclass
class DetectorMetric(_ModelMetric):
    """A built-in detector head (prompt_injection, harmful, toxicity): risk in [0,1]."""

    head: Head
    runtime: ScoringRuntime
    # what it embeds with (the runtime's service for its layers), resolved once and loaded now, at
    # compile time, not on the first request
    service: EmbeddingService = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.service = self.runtime.detector_service(self.head.name)
        self.service.sentences = self.service.sentences or self.head.sentences

    @classmethod
    def named(cls, name: str, runtime: ScoringRuntime) -> DetectorMetric:
        return cls(runtime.detector(name), runtime)

    @property
    def _service(self) -> EmbeddingService:
        return self.service

    def _first_tier(self, text: str) -> tuple[float | None, float | None, float | None]:
        """(lexical logit, sentence logit, the gate's probability if it decides the text alone)."""
        if not self.head.needs_lexical:
            return None, None, None
        feats = self._service.features(text, sentences=self.head.sentences)
        lex = self.head.lexical(feats.lexical)
        # another head on the service may have had them computed: only a head with `sentences` reads them
        sentence = None
        if self.head.sentences and feats.sentences is not None:
            sentence = self.head.sentence_logit(feats.sentences)
        return lex, sentence, self.head.gated_out(lex, feats.static, sentence)

    def _decided(self, text: str, count: bool) -> tuple[float | None, float | None, float | None]:
        """`_first_tier`, with the decision counted for the text itself (`count`), not for its views."""
        lex, sentence, early = self._first_tier(text)
        if count:
            self.runtime.count_decision(self.head.name, early is not None)
        return lex, sentence, early

    async def _risk(self, text: str, count: bool = True) -> float:
        lex, sentence, early = self._decided(text, count)
        return early if early is not None else self.head.score(await self._embedding(text), lex, sentence)

    def _risk_sync(self, text: str, count: bool = True) -> float:
        lex, sentence, early = self._decided(text, count)
        return early if early is not None else self.head.score(self._embedding_sync(text), lex, sentence)

    async def measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        """The highest risk of the text and its views (`detector_views`, bounded): its decoded forms
        (base64, hex, ROT13, leetspeak, invisible characters...), so a disguise does not hide an attack,
        and a long text's trailing request alone, so a pasted document does not dilute it."""
        views = detector_views(text)
        if not views:
            return MetricValue(await self._risk(text))
        risks = await asyncio.gather(self._risk(text), *(self._risk(t, count=False) for t in views))
        return MetricValue(max(risks))

    def measure(self, text: str) -> MetricValue:
        views = detector_views(text)
        return MetricValue(max([self._risk_sync(text), *(self._risk_sync(t, count=False) for t in views)]))


@dataclass
class HeadMetric(_ModelMetric):
    """A policy head trained from the policy's own examples (type `classifier`)."""

    head: Head
    runtime: ScoringRuntime

    async def measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        return MetricValue(self.head.score(await self._embedding(text)))

    def measure(self, text: str) -> MetricValue:
        return MetricValue(self.head.score(self._embedding_sync(text)))


@dataclass
class SimilarMetric(_ModelMetric):
    """Similarity to FAIL examples against PASS examples (type `similar`).

    With PASS examples: 0.5 + (max cos to FAIL - max cos to PASS) / 2, so > 0.5 means nearer a FAIL.
    Without: the cosine to the nearest FAIL example (clipped to [0,1])."""

    fail: np.ndarray
    passing: np.ndarray
    runtime: ScoringRuntime

    def _risk(self, e: np.ndarray) -> float:
        top_fail = float(np.max(self.fail @ e))
        if len(self.passing) == 0:
            return min(max(top_fail, 0.0), 1.0)
        return min(max(0.5 + (top_fail - float(np.max(self.passing @ e))) / 2, 0.0), 1.0)

    async def measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        return MetricValue(self._risk(await self._embedding(text)))

    def measure(self, text: str) -> MetricValue:
        return MetricValue(self._risk(self._embedding_sync(text)))


def _sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in SENTENCE.split(text)) if len(s) > 2]


@dataclass
class RelevanceMetric(_ModelMetric):
    """Compliance in [0,1] (higher = relevant): a relevance head (hallucination.py) on the text's support
    features against its reference plus their encoder cosine.

    Input side: the reference is the context (system/developer messages, an evaluate `context`), read
    by the `relevance_input` head. Output side: the prompt and the context, both read by the
    `relevance_output` head (one missing: the other in its place). No reference: 1.0 (nothing to be
    irrelevant to)."""

    runtime: ScoringRuntime
    heads: Mapping[str, SupportHead]

    def _references(self, ctx: EvalContext | None) -> tuple[str, list[str]]:
        if ctx is None:
            return "relevance_input", []
        if ctx.side == "input":
            return "relevance_input", [ctx.context] if ctx.context.strip() else []
        refs = [r for r in (ctx.prompt, ctx.context) if r.strip()]
        return "relevance_output", refs[:1] * 2 if len(refs) == 1 else refs

    def _score(self, head: str, text: str, refs: list[str], cosines: list[float]) -> float:
        x = np.concatenate([np.append(support_features(text, r), np.float32(c)) for r, c in zip(refs, cosines)])
        return self.heads[head].score(x)

    async def measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        head, refs = self._references(context)
        if not refs:
            return MetricValue(1.0)
        e = await self._embedding(text)
        cosines = [float(e @ await self._embedding(r)) for r in refs]
        return MetricValue(await asyncio.to_thread(self._score, head, text, refs, cosines))

    def measure(self, text: str, context: EvalContext | None = None) -> MetricValue:
        head, refs = self._references(context)
        if not refs:
            return MetricValue(1.0)
        e = self._embedding_sync(text)
        return MetricValue(self._score(head, text, refs, [float(e @ self._embedding_sync(r)) for r in refs]))


@dataclass
class ConsistencyMetric(_ModelMetric):
    """Compliance in [0,1]: how well the answer is supported by its source (type `consistency`): the
    consistency head (hallucination.py) on support features, which match each sentence against the
    source's sentence windows and keep the weakest sentence. The source is the context, else the
    prompt; with neither, 1.0. Only answers make claims: on the input side, 1.0.

    Type `factual` is the same with the `factual` head and a required knowledge source: the policy's
    `knowledge` text, or `knowledge: context` (the request's context; none is an error for on_error,
    never a confident number)."""

    runtime: ScoringRuntime
    head: SupportHead
    knowledge: str | None = None   # factual: the fixed knowledge, or "context"

    def _source(self, ctx: EvalContext | None) -> str | None:
        if ctx is not None and ctx.side == "input":
            return None
        if self.knowledge is not None and self.knowledge != "context":
            return self.knowledge
        context = ctx.context if ctx is not None else ""
        if self.knowledge == "context":
            if not context.strip():
                raise MissingKnowledge(f"factual policy {self.head.name!r}: the request has no context (system "
                                       "message or evaluate `context`) to check the answer against")
            return context
        return context if context.strip() else (ctx.prompt if ctx is not None else "")

    def _support(self, text: str, source: str | None) -> MetricValue:
        if not source or not source.strip() or not text.strip():
            return MetricValue(1.0)
        return MetricValue(self.head.score(support_features(text, source)))

    async def measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        source = self._source(context)
        return await asyncio.to_thread(self._support, text, source)

    def measure(self, text: str, context: EvalContext | None = None) -> MetricValue:
        return self._support(text, self._source(context))


FACTUAL_NEEDS_KNOWLEDGE = (
    "a factual policy checks answers against a knowledge source: set `knowledge: context` (the request's "
    "system/developer messages or the evaluate API's `context`) or `knowledge: <the reference text>`. Without "
    "one, no text-only scorer can tell a true answer from a false one: to judge facts without a source, use a "
    "`rubric` policy with a `judge_model`")


def _knowledge(params: Mapping[str, Any]) -> str:
    knowledge = params.get("knowledge")
    if not isinstance(knowledge, str) or not knowledge.strip():
        raise ParamError(("knowledge",), FACTUAL_NEEDS_KNOWLEDGE)
    return "context" if knowledge.strip() == "context" else knowledge


# Each model-based type's parameters (the catalogue's PARAMS lists the same names), and what training
# stores in a version (the head, the examples it was trained on, its record): accepted, never asked for.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {
    "jailbreak": (), "detector": ("detector",), "classifier": ("training_data",), "similar": ("training_data",),
    "relevance": (), "consistency": (), "factual": ("knowledge",),
}
TRAINED_KEYS = ("head", "trained", "training_examples")


def accepts(kind: str, key: str) -> bool:
    """Whether a policy of type `kind` may carry parameter `key` (any key, for a type not model-based:
    those check their own parameters)."""
    allowed = MODEL_PARAMS.get(kind)
    return allowed is None or key in allowed or ("training_data" in allowed and key in TRAINED_KEYS)


def unknown_params(kind: str, keys: Iterable[str]) -> ParamError | None:
    """For a model-based type, the first of `keys` (a policy's parameters) it does not have, else None."""
    unknown = next((k for k in keys if not accepts(kind, k)), None)
    if unknown is None:
        return None
    allowed = ", ".join(MODEL_PARAMS[kind]) or "none for this type"
    return ParamError((unknown,), f"unknown parameter; allowed: {allowed}")


def known_params_only(spec: PolicySpec) -> PolicySpec:
    """A stored model-based policy without the keys its type does not have. Versions written before
    those were refused (an earlier release stored any key) still load; a write is checked
    (`unknown_params`) before it is stored."""
    if unknown_params(spec.type, spec.params) is None:
        return spec
    fields = spec.model_dump(exclude=set(spec.params))
    kept = {k: v for k, v in spec.params.items() if accepts(spec.type, k)}
    return PolicySpec.model_validate({**fields, **kept})


def _refuse_unknown(spec: PolicySpec) -> None:
    problem = unknown_params(spec.type, spec.params)
    if problem is not None:
        raise problem


def compile_model_policy(spec: PolicySpec, runtime: ScoringRuntime | None) -> tuple[Any, float]:
    """(metric, calibrated threshold) for a model-based policy type, scored with `runtime` (a user's ONNX
    classifier needs none); ParamError names the bad key."""
    from gateway.scoring.detectors import DETECTORS

    params: Mapping[str, Any] = spec.params
    if spec.type == "onnx_classifier":
        from gateway.metrics.onnx_classifier import OnnxClassifierMetric

        return OnnxClassifierMetric.from_params(params), 0.5
    _refuse_unknown(spec)
    if runtime is None:  # a caller's bug, not a config's
        raise TypeError(f"a {spec.type} policy scores with models: compile it with a scoring runtime")
    rt = runtime
    if spec.type == "jailbreak":
        metric = DetectorMetric.named("prompt_injection", rt)
        return metric, metric.head.threshold
    if spec.type == "detector":
        name = params.get("detector")
        if name not in DETECTORS:
            raise ParamError(("detector",), f"must be one of {', '.join(DETECTORS)}")
        metric = DetectorMetric.named(str(name), rt)
        return metric, metric.head.threshold
    if spec.type == "classifier":
        head = _classifier_head(spec, rt)
        return HeadMetric(head, rt), head.threshold
    if spec.type == "similar":
        return _similar(spec, rt)
    if spec.type == "relevance":
        _ = rt.service
        heads = rt.hallucination_heads()
        return RelevanceMetric(rt, heads), heads["relevance_input"].threshold
    if spec.type in ("consistency", "factual"):
        knowledge = _knowledge(params) if spec.type == "factual" else None
        _ = rt.service
        support = rt.hallucination_heads()[spec.type]
        return ConsistencyMetric(rt, support, knowledge), support.threshold
    raise ParamError(("type",), f"not a model-based type: {spec.type!r}")


def _classifier_head(spec: PolicySpec, rt: ScoringRuntime) -> Head:
    """A `classifier` policy's head: a stored version's (trained through the admin API), else trained now
    from the policy's examples (cached on disk)."""
    if "head" in spec.params:
        return head_from_dict(spec.id, spec.params["head"], rt)
    texts, labels = policy_examples(spec)
    if sum(labels) == 0:
        raise ParamError(("examples",), "a classifier policy needs at least one FAIL example "
                                        "(examples, disallowed_behaviors or training_data)")
    cache = Path(rt.config.model_dir) if rt.config.model_dir else None
    from gateway.scoring.build import default_cache_dir

    return train_policy_head(spec.id, texts, labels, rt, cache or default_cache_dir())


def _similar(spec: PolicySpec, rt: ScoringRuntime) -> tuple[SimilarMetric, float]:
    """A `similar` policy: its FAIL (and PASS) examples embedded once, and its threshold."""
    texts, labels = policy_examples(spec)
    fail = [t for t, y in zip(texts, labels) if y == 1]
    if not fail:
        raise ParamError(("examples",), "a similar policy needs at least one FAIL example")
    passing = [t for t, y in zip(texts, labels) if y == 0]
    enc = rt.encoder
    f = np.stack([pooled(v) for v in enc.embed(fail)])
    p = np.stack([pooled(v) for v in enc.embed(passing)]) if passing else np.zeros((0, enc.hidden), np.float32)
    return SimilarMetric(f, p, rt), (SIMILAR_THRESHOLD_WITH_PASS if passing else SIMILAR_THRESHOLD_FAIL_ONLY)
