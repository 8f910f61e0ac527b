"""Rule operators: how a metric's value is compared with a rule's target, and which targets are valid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.metrics.types import Value

NUMERIC = frozenset({"gt", "gte", "lt", "lte"})
EQUALITY = frozenset({"eq", "neq"})
MEMBERSHIP = frozenset({"contains", "contains_any", "contains_all"})
UNARY = frozenset({"empty", "not_empty"})


def _number(value: Value) -> float:
    # A label set compares by its size: `pii gt 0` means "some PII found".
    return float(len(value)) if isinstance(value, frozenset) else float(value)


def _labels(value: Value) -> frozenset[str]:
    if isinstance(value, frozenset):
        return value
    raise TypeError(f"a {type(value).__name__} value has no labels to look in")


def _equal(value: Value, target: Any) -> bool:
    if isinstance(value, frozenset):
        return value == frozenset(target) if isinstance(target, (list, tuple)) else value == frozenset({target})
    if isinstance(target, bool) or isinstance(value, bool):
        return bool(value) == bool(target)
    return _number(value) == float(target)


OPERATORS: dict[str, Callable[[Value, Any], bool]] = {
    "gt": lambda v, t: _number(v) > t,
    "gte": lambda v, t: _number(v) >= t,
    "lt": lambda v, t: _number(v) < t,
    "lte": lambda v, t: _number(v) <= t,
    "eq": _equal,
    "neq": lambda v, t: not _equal(v, t),
    "contains": lambda v, t: t in _labels(v),
    "contains_any": lambda v, t: not _labels(v).isdisjoint(t),
    "contains_all": lambda v, t: _labels(v).issuperset(t),
    "empty": lambda v, t: (not v) if isinstance(v, frozenset) else _number(v) == 0,
    "not_empty": lambda v, t: bool(v) if isinstance(v, frozenset) else _number(v) != 0,
}


def check_target(op: str, target: Any, kind: str) -> tuple[Any, str | None]:
    """Validate and normalise a rule's target for `op` on a metric of `kind`; (target, error message)."""
    if op in UNARY:
        return (None, None) if target is None else (None, f"`{op}` takes no value")
    if op in MEMBERSHIP and kind in ("score", "number"):
        return None, f"`{op}` needs a metric that returns labels; this one returns a {kind}"
    if op in NUMERIC:
        if isinstance(target, bool) or not isinstance(target, (int, float)):
            return None, f"`{op}` needs a number, got {target!r}"
        return float(target), None
    if op == "contains":
        return (target, None) if isinstance(target, str) else (None, f"`contains` needs one label (a string), got {target!r}")
    if op in ("contains_any", "contains_all"):
        if not isinstance(target, (list, tuple)) or not target or not all(isinstance(t, str) for t in target):
            return None, f"`{op}` needs a non-empty list of labels, got {target!r}"
        return frozenset(target), None
    if op in EQUALITY:
        if target is None:
            return None, f"`{op}` needs a value"
        if kind in ("score", "number") and not isinstance(target, (int, float)):
            return None, f"`{op}` on a {kind} needs a number, got {target!r}"
        if isinstance(target, (list, tuple)):
            return tuple(target), None
        return target, None
    return None, f"unknown operator {op!r}"
