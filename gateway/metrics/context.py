"""Per-evaluation context for metrics that compare texts (relevance, consistency) or ask a judge model
(rubric): a ContextVar set by the guard flow and the evaluate API, read by the metric (tasks inherit it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

# (model, messages) -> the model's answer text: asks a model on any configured upstream.
Complete = Callable[[str, list[dict[str, str]]], Awaitable[str]]


@dataclass(frozen=True)
class EvalContext:
    side: str = "input"        # input | output: which texts are being scanned
    prompt: str = ""           # the request's scanned input (what an answer should be relevant to)
    context: str = ""          # system/developer messages and any `context` documents the caller supplied
    complete: Any = None       # a Complete, for LLM-judge metrics (rubric); None outside the gateway


EVAL_CONTEXT: ContextVar[EvalContext | None] = ContextVar("guard_eval_context", default=None)
