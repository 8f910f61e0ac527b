"""Code metrics for tests: one that works, ones that always fail, a slow one."""

from __future__ import annotations


def shouting(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


def boom(text: str) -> float:
    raise RuntimeError("this metric always fails")


def leaky(text: str) -> float:
    """Fails with a long message that carries the secret in $TEST_LEAK_KEY (as code holding a key may)."""
    import os

    raise RuntimeError(f"scorer refused key {os.environ.get('TEST_LEAK_KEY')}: " + "detail " * 100)


def slow(text: str) -> float:
    import time

    time.sleep(1.0)
    return 0.0
