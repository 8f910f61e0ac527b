"""Per-evaluation context for metrics that compare texts (relevance, consistency) or ask a judge model
(rubric): built by the guard flow and the evaluate API, passed by the engine to each metric's
`measure_async(text, context)` (an `AsyncMetric`, gateway/metrics/types.py); metrics that read no context
ignore it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# (model, messages) -> the model's answer text: asks a model on any configured upstream.
Complete = Callable[[str, list[dict[str, str]]], Awaitable[str]]


@dataclass(frozen=True)
class EvalContext:
    side: str = "input"        # input | output: which texts are being scanned
    prompt: str = ""           # the request's scanned input (what an answer should be relevant to)
    context: str = ""          # system/developer messages and any `context` documents the caller supplied
    complete: Complete | None = None  # asks a judge model, for LLM-judge metrics (rubric); None outside the gateway
