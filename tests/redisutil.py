"""Cleaning up after a test that used the shared Redis at 127.0.0.1:6379 under its own key prefix."""

from __future__ import annotations

import redis


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (a test's own, unique one)."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)
