"""Caps on what the admin API stores: regex patterns and contains keywords, per policy and per store.

Every stored policy is compiled into every replica's plan (RE2 programs, an Aho-Corasick automaton), so
their number and size bound the memory and compile time of every replica. A write beyond a cap is
refused with 400, `param` naming the field (`patterns`, `patterns[3]`, `keywords[0]`...). Policies
from the config file are not capped (whoever deploys the gateway sizes them).

Defaults (module constants; the README's admin section repeats them):
- MAX_ENTRIES_PER_POLICY = 10,000 patterns (regex) or keywords (contains) in one policy;
- MAX_ENTRY_CHARS = 1,000 characters in one pattern or keyword (a name of a named pattern: 200);
- MAX_ENTRIES_PER_STORE = 100,000 patterns and keywords in all stored policies together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_ENTRIES_PER_POLICY = 10_000
MAX_ENTRY_CHARS = 1_000
MAX_NAME_CHARS = 200
MAX_ENTRIES_PER_STORE = 100_000

# The list parameter of each capped policy type.
CAPPED = {"regex": "patterns", "contains": "keywords"}


def entries(body: Mapping[str, Any]) -> int:
    """How many patterns or keywords a stored policy body holds (0 for other types or bad shapes)."""
    kind = body.get("type")
    field = CAPPED.get(kind) if isinstance(kind, str) else None  # any other `type` is refused later, by name
    value = body.get(field) if field else None
    return len(value) if isinstance(value, list) else 0


def policy_problem(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(param, message) for the first cap this policy body exceeds, or None."""
    kind = body.get("type")
    field = CAPPED.get(kind) if isinstance(kind, str) else None  # any other `type` is refused later, by name
    value = body.get(field) if field else None
    if field is None or not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        return None  # a shape the policy's own validation refuses, with its own message
    if len(value) > MAX_ENTRIES_PER_POLICY:
        return field, (f"at most {MAX_ENTRIES_PER_POLICY} {field} per policy (this one has {len(value)}); "
                       f"split it into several policies")
    for i, entry in enumerate(value):
        if isinstance(entry, str) and len(entry) > MAX_ENTRY_CHARS:
            return f"{field}[{i}]", f"at most {MAX_ENTRY_CHARS} characters (this one has {len(entry)})"
        if isinstance(entry, Mapping):
            pattern, name = entry.get("pattern"), entry.get("name")
            if isinstance(pattern, str) and len(pattern) > MAX_ENTRY_CHARS:
                return f"{field}[{i}].pattern", f"at most {MAX_ENTRY_CHARS} characters (this one has {len(pattern)})"
            if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
                return f"{field}[{i}].name", f"at most {MAX_NAME_CHARS} characters (this one has {len(name)})"
    return None


def store_problem(bodies: Iterable[Mapping[str, Any]], field: str) -> tuple[str, str] | None:
    """(param, message) when the stored policies together would exceed the per-store cap, or None."""
    total = sum(entries(b) for b in bodies)
    if total > MAX_ENTRIES_PER_STORE:
        return field, (f"the store would hold {total} patterns and keywords in all; at most "
                       f"{MAX_ENTRIES_PER_STORE}: delete or shrink other policies first")
    return None


def growth_problem(body: Mapping[str, Any], before: Iterable[Mapping[str, Any]],
                   after: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The per-store cap for a write of policy `body` (`before`: its stored version, if any; `after`: every
    stored policy with the write in). Only a write that adds entries is refused: a store over the cap
    may shrink."""
    if entries(body) <= sum(entries(b) for b in before):
        return None
    return store_problem(after, CAPPED.get(str(body.get("type")), ""))
