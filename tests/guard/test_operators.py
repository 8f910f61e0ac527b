"""Every operator on every kind of value, and target validation."""

from __future__ import annotations

import pytest

from gateway.guard.operators import OPERATORS, check_target

L = frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER"})
E: frozenset[str] = frozenset()


@pytest.mark.parametrize("op,value,target,expected", [
    ("gt", 0.9, 0.8, True), ("gt", 0.8, 0.8, False), ("gte", 0.8, 0.8, True), ("gte", 0.7, 0.8, False),
    ("lt", 0.2, 0.3, True), ("lt", 0.3, 0.3, False), ("lte", 0.3, 0.3, True), ("lte", 0.4, 0.3, False),
    ("gt", 120, 100.0, True), ("gt", L, 1.0, True), ("gt", L, 2.0, False), ("gt", True, 0.5, True),
    ("eq", 3, 3, True), ("eq", 3, 4, False), ("neq", 3, 4, True), ("neq", 3, 3, False),
    ("eq", True, True, True), ("eq", False, True, False), ("eq", L, ("PHONE_NUMBER", "EMAIL_ADDRESS"), True),
    ("eq", L, ("EMAIL_ADDRESS",), False), ("neq", L, ("EMAIL_ADDRESS",), True),
    ("contains", L, "EMAIL_ADDRESS", True), ("contains", L, "CREDIT_CARD", False),
    ("contains_any", L, frozenset({"CREDIT_CARD", "PHONE_NUMBER"}), True),
    ("contains_any", L, frozenset({"CREDIT_CARD"}), False), ("contains_any", E, frozenset({"X"}), False),
    ("contains_all", L, frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER"}), True),
    ("contains_all", L, frozenset({"EMAIL_ADDRESS", "CREDIT_CARD"}), False),
    ("empty", E, None, True), ("empty", L, None, False), ("empty", 0, None, True), ("empty", 0.1, None, False),
    ("not_empty", L, None, True), ("not_empty", E, None, False), ("not_empty", 2, None, True),
])
def test_operator_table(op: str, value: object, target: object, expected: bool) -> None:
    assert OPERATORS[op](value, target) is expected  # type: ignore[arg-type]


def test_membership_on_a_number_raises_so_the_engine_reports_an_error() -> None:
    with pytest.raises(TypeError):
        OPERATORS["contains"](0.5, "X")


@pytest.mark.parametrize("op,target,kind,error", [
    ("gt", "high", "score", "needs a number"), ("gt", True, "score", "needs a number"),
    ("contains", ["A"], "labels", "one label"), ("contains_any", [], "labels", "non-empty list"),
    ("contains_all", "A", "labels", "non-empty list"), ("contains_any", ["A"], "score", "returns labels"),
    ("empty", 1, "labels", "takes no value"), ("eq", None, "number", "needs a value"),
    ("eq", "x", "score", "needs a number"),
])
def test_bad_targets_are_named(op: str, target: object, kind: str, error: str) -> None:
    _, message = check_target(op, target, kind)
    assert message is not None and error in message


def test_good_targets_are_normalised() -> None:
    assert check_target("gt", 1, "score") == (1.0, None)
    assert check_target("contains_any", ["A", "B"], "labels") == (frozenset({"A", "B"}), None)
    assert check_target("empty", None, "labels") == (None, None)
