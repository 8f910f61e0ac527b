"""Code metrics for tests: one that works and one that always fails."""

from __future__ import annotations


def shouting(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


def boom(text: str) -> float:
    raise RuntimeError("this metric always fails")


def slow(text: str) -> float:
    import time

    time.sleep(1.0)
    return 0.0
