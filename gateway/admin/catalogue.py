"""G15 catalogues for the console's pickers (console-spec section 3):

- `GET /v1/admin/policy-types`: every policy `type`, its parameters (name, JSON type, required, default,
  allowed values), whether it is trainable, whether the admin API may write it (`code` and
  `onnx_classifier` reach into the gateway's host: config file only), and its score direction (risk:
  violated above the threshold; compliance: the hallucination types, violated below it).
- `GET /v1/admin/metrics`: what a stage rule's `metric` may name: the built-ins and every policy the
  gateway enforces, each with its value kind, the operators valid on it (the plan's own check) and, for
  label-valued metrics, the label set (PII entities).

Both take no query parameters (an unknown one is a 400 naming it). Parameter lists mirror the metrics'
own `_ALLOWED` tuples; tests/console/test_catalogue.py keeps them equal.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import ok, wrap
from gateway.admin.console_api import refuse_unknown_query
from gateway.policies.registry import Registry
from gateway.guard.operators import OPERATORS, check_target
from gateway.guard.policy import HOST_PARAMS
from gateway.guard.policy_types import POLICY_TYPES
from gateway.metrics import BUILTINS, KINDS
from gateway.metrics.pii import ENTITY_TYPES
from gateway.metrics.regex import DEFAULT_MAX_MATCH_CHARS
from gateway.wire import RawResponse

DETECTORS = ("prompt_injection", "harmful", "toxicity")  # gateway/scoring/detectors.py's (numpy-free here)


def _p(name: str, schema: dict[str, Any], description: str, required: bool = False,
       default: Any = None, config_only: bool = False) -> dict[str, Any]:
    out = {"name": name, "schema": schema, "required": required, "description": description}
    if default is not None:
        out["default"] = default
    if config_only:
        out["config_only"] = True
    return out


_BOOL = {"type": "boolean"}
_STRINGS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
_VIEWS = [_p("normalize", _BOOL, "Also match on the normalised and joined views of the text.", default=True),
          _p("decode", _BOOL, "Also match on decoded views (base64, hex, URL and HTML escapes).", default=True)]
_TRAINING = [_p("training_data", {"type": "string"}, "A JSONL file of rows on the gateway's disk.", config_only=True)]

# Each policy type's parameters as JSON Schema, keyed by gateway.guard.policy_types's names.
PARAMS: dict[str, list[dict[str, Any]]] = {
    "regex": [_p("patterns", {"type": "array", "minItems": 1, "items": {"anyOf": [
                  {"type": "string"}, {"type": "object", "properties": {"name": {"type": "string"},
                                                                        "pattern": {"type": "string"}},
                                       "required": ["pattern"]}]}},
                 "RE2 patterns (or {name, pattern}) that must not appear.", required=True),
              _p("flags", {"type": "array", "items": {"enum": ["ignorecase", "multiline", "dotall"]}},
                 "RE2 flags applied to every pattern.", default=[]),
              _p("max_match_chars", {"type": "integer", "minimum": 1}, "Longest match looked for, in characters.",
                 default=DEFAULT_MAX_MATCH_CHARS), *_VIEWS],
    "contains": [_p("keywords", _STRINGS, "Keywords that must not appear.", required=True),
                 _p("match", {"enum": ["word", "substring"]}, "Whole words, or anywhere.", default="word"), *_VIEWS],
    "pii": [_p("entities", {"type": "array", "items": {"enum": sorted(ENTITY_TYPES)}},
               "Entity types to look for (default: all)."), *_VIEWS],
    "length": [_p("unit", {"enum": ["chars", "tokens"]}, "What is counted.", default="chars")],
    "code": [_p("function", {"type": "string"}, "'package.module:function', called as fn(text, **params).",
                required=True, config_only=True),
             _p("params", {"type": "object"}, "Keyword arguments for the function.", config_only=True)],
    "detector": [_p("detector", {"enum": list(DETECTORS)}, "Which shipped detector scores the text.", required=True)],
    "jailbreak": [],
    "classifier": [*_TRAINING],
    "similar": [*_TRAINING],
    "relevance": [],
    "consistency": [],
    "factual": [_p("knowledge", {"type": "string"}, "The reference text the answer must agree with, or "
                   "'context' for the request's own context.", required=True)],
    "rubric": [_p("judge_model", {"type": "string"}, "The judge model (on any configured upstream).", required=True),
               _p("rubric", {"type": "string"}, "What the judge scores against (default: the rule)."),
               _p("timeout_ms", {"type": "number", "exclusiveMinimum": 0}, "Judge call timeout.", default=10_000),
               _p("cache_entries", {"type": "integer", "minimum": 0}, "Judge answers cached.", default=1024),
               _p("include_context", _BOOL, "The judge also sees the conversation before the text.", default=False)],
    "onnx_classifier": [_p(n, {"type": t}, d, required=r, config_only=True) for n, t, d, r in (
        ("model", "string", "The ONNX model file.", True), ("tokenizer", "string", "The tokenizer file.", True),
        ("labels", "array", "Label names in logit order.", True),
        ("positive_label", "string", "The label whose probability is the score.", True),
        ("max_tokens", "integer", "Tokens per text (default 512).", False),
        ("threads", "integer", "ONNX Runtime threads (0: min(cores, 4)).", False))],
}

def policy_types() -> list[dict[str, Any]]:
    return [{"type": t.name, "object": "policy_type", "description": t.description, "family": t.family,
             "params": PARAMS[t.name], "trainable": t.trainable, "writable": t.host_reason is None,
             "not_writable_because": t.host_reason,
             "config_only_params": sorted(HOST_PARAMS),
             "score": "compliance" if t.higher_is_compliant else "risk",
             "violated_when": "score < threshold" if t.higher_is_compliant else "score > threshold"}
            for t in sorted(POLICY_TYPES.values(), key=lambda t: t.name)]


def valid_ops(kind: str) -> list[str]:
    """The operators the plan accepts on a metric of `kind` (its own check, probed with a fitting target)."""
    probe = {"contains": "X", "contains_any": ["X"], "contains_all": ["X"], "empty": None, "not_empty": None}
    return [op for op in OPERATORS if check_target(op, probe.get(op, 1), kind)[1] is None]


def metric_catalogue(registry: Registry) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, (kind_name, params) in BUILTINS.items():
        kind = KINDS[kind_name][1]
        labels = sorted(ENTITY_TYPES) if kind_name == "pii" else None
        out.append({"name": name, "object": "metric", "source": "builtin", "type": kind_name, "params": params,
                    "kind": kind, "ops": valid_ops(kind), "labels": labels})
    for policy in registry.flow.plan.policies.values():  # config and stored policies, as enforced now
        out.append({"name": policy.id, "object": "metric", "source": "policy", "type": policy.type, "kind": "score",
                    "ops": valid_ops("score"), "labels": None, "rule": policy.rule,
                    "score": "compliance" if policy.higher_is_compliant else "risk",
                    "default": {"op": "lt" if policy.higher_is_compliant else "gt",
                                "value": policy.effective_threshold()}})
    return out


def catalogue_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    async def list_policy_types(request: Request, role: Role) -> RawResponse:
        """Policy types: parameters with JSON types, trainable, writable through the API, score direction."""
        refuse_unknown_query(request)
        return ok({"object": "list", "data": policy_types()})

    async def list_metrics(request: Request, role: Role) -> RawResponse:
        """What a rule's metric may name: built-ins and policies, value kind, valid operators, label sets."""
        refuse_unknown_query(request)
        return ok({"object": "list", "data": metric_catalogue(registry)})

    return [Route("/v1/admin/policy-types", wrap(admin, list_policy_types), methods=["GET"]),
            Route("/v1/admin/metrics", wrap(admin, list_metrics), methods=["GET"])]

