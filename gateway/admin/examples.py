"""Labelled examples in the shapes users bring them in: seed 000's Add Data rows (`{example, compliance}`)
and seed 001's policy examples (`{type, output_example, input_example}`), accepted alike wherever a
labelled example is sent (Add Data, a policy's `examples`); both are read into (text, PASS|FAIL)."""

from __future__ import annotations

from typing import Any

from gateway.wire import OpenAIError

LABELS = ("PASS", "FAIL")
_SEED_000 = frozenset({"example", "compliance", "synthetic"})
_SEED_001 = frozenset({"type", "output_example", "input_example"})


def labelled_row(row: Any, at: str) -> tuple[str, str]:
    """(text, PASS|FAIL) of one example at `at` (e.g. `data[3]`), or a 400 naming the field."""
    if not isinstance(row, dict):
        raise _bad(at, "an object: {example, compliance} or {type, output_example}")
    keys = set(row)
    if keys & _SEED_001 and not keys & (_SEED_000 - {"synthetic"}):
        extra, label_key = keys - _SEED_001, "type"
        text = row.get("output_example") or row.get("input_example")
        text_key = "output_example" if row.get("output_example") else "input_example"
    else:
        extra, label_key, text, text_key = keys - _SEED_000, "compliance", row.get("example"), "example"
    if extra:
        name = sorted(extra)[0]
        raise _bad(f"{at}.{name}", "unknown field (an example is {example, compliance} or {type, "
                                   "output_example, input_example}})")
    if not isinstance(text, str) or not text.strip():
        raise _bad(f"{at}.{text_key}", "required, a non-empty string")
    label = row.get(label_key)
    if not isinstance(label, str) or label.upper() not in LABELS:
        raise _bad(f"{at}.{label_key}", "PASS or FAIL")
    return text, label.upper()


def _bad(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, f"{param}: {message}.", code="invalid_request", param=param)
