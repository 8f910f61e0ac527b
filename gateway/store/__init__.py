"""Persistent state beyond the config file: policies and their versions, stages, applications,
training data, the monitoring log and feedback. `open_store` picks the implementation from a URL."""

from __future__ import annotations

from pathlib import Path

from gateway.store.base import KINDS, Example, Feedback, NotFound, Record, Store, StoreError, Version


def open_store(url: str, prefix: str = "gg:", max_records: int = 100_000, timeout_s: float = 0.5) -> Store:
    """`sqlite:///path/to/file.db` (or a bare path) or `redis://host:port/db`."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.store.redis import RedisStore

        return RedisStore(url, prefix, max_records, timeout_s)
    from gateway.store.sqlite import SqliteStore

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return SqliteStore(Path(path), max_records)


__all__ = ["KINDS", "Example", "Feedback", "NotFound", "Record", "Store", "StoreError", "Version", "open_store"]
