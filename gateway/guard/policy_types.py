"""What a policy `type` is, in one table (issue 26): every type the gateway accepts, one `PolicyType` each.

The compile step (gateway.guard.policy.compile_policy) reads a type's family from here to pick its
builder; the admin catalogue, host-access check, training and the score direction read the rest. A
type not in POLICY_TYPES is an unknown policy type. Lexical families (pattern, measure, code) build
their metric from gateway.metrics.KINDS under the same name; `model` types from
gateway.metrics.model.compile_model_policy, `judge` types from gateway.metrics.judge. The console's
parameter lists (JSON Schema) are the admin catalogue's (gateway/admin/catalogue.py's PARAMS), keyed
by these names; tests/guard/test_policy_types.py keeps them all equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["pattern", "measure", "code", "model", "judge"]
LEXICAL: frozenset[str] = frozenset({"pattern", "measure", "code"})


@dataclass(frozen=True, slots=True)
class PolicyType:
    name: str
    family: Family  # pattern, measure, code: lexical (a gateway.metrics.KINDS metric); model; judge
    description: str
    # Hallucination types score compliance: higher is better, violated below the threshold.
    higher_is_compliant: bool = False
    # Pattern and keyword policies label their spans with the policy id; PII keeps entity types.
    relabelled: bool = False
    # Why a policy of this type reaches into the gateway's host (runs its Python, loads files from its
    # disk): only the config file may define one, not the admin API or a request. None: anyone may.
    host_reason: str | None = None
    trainable: bool = False  # gateway/policies/training.py trains a new version from stored rows
    # The threshold that 0 selects; None: the model's own (its head's calibrated threshold).
    calibrated_threshold: float | None = None

    @property
    def lexical(self) -> bool:
        return self.family in LEXICAL


# Lexical policies score 0 or a span confidence: any threshold below 1 separates them; 0.5 is the calibrated
# one. A judge answers a probability of violation: 0.5 too.
_LEXICAL = 0.5
_JUDGE = 0.5

POLICY_TYPES: dict[str, PolicyType] = {t.name: t for t in (
    PolicyType("classifier", "model", "A head trained on the shared encoder from PASS/FAIL examples.",
               trainable=True),
    PolicyType("code", "code", "A Python function inside the gateway (config file only).", relabelled=True,
               host_reason="runs a Python function inside the gateway", calibrated_threshold=_LEXICAL),
    PolicyType("consistency", "model", "Is the answer supported by the context (compliance score).",
               higher_is_compliant=True),
    PolicyType("contains", "pattern", "Keywords that must not appear.", relabelled=True,
               calibrated_threshold=_LEXICAL),
    PolicyType("detector", "model", "A shipped detector: prompt_injection, harmful or toxicity."),
    PolicyType("factual", "model", "Does the answer agree with a reference text (compliance score).",
               higher_is_compliant=True),
    PolicyType("jailbreak", "model", "The shipped prompt-injection detector."),
    PolicyType("length", "measure", "Text length in characters or tokens.", calibrated_threshold=_LEXICAL),
    PolicyType("onnx_classifier", "model", "A user's ONNX classifier (config file only).",
               host_reason="loads model files from the gateway's disk"),
    PolicyType("pii", "pattern", "Personal data entities.", calibrated_threshold=_LEXICAL),
    PolicyType("regex", "pattern", "Patterns (RE2) that must not appear.", relabelled=True,
               calibrated_threshold=_LEXICAL),
    PolicyType("relevance", "model", "Is the answer relevant to the question (compliance score).",
               higher_is_compliant=True),
    PolicyType("rubric", "judge", "An LLM judge scores against a rubric.", calibrated_threshold=_JUDGE),
    PolicyType("similar", "model", "The nearest labelled examples decide.", trainable=True),
)}

TRAINABLE: tuple[str, ...] = tuple(name for name, t in POLICY_TYPES.items() if t.trainable)

__all__ = ["LEXICAL", "POLICY_TYPES", "TRAINABLE", "Family", "PolicyType"]
