"""Shared store fixtures: the same tests on SQLite and on the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from gateway.store import Store, open_store
from tests.redisutil import drop_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path) -> Iterator[Callable[[], Store]]:
    """A new store object on the same data each call (a replica of its own), SQLite or Redis (a key
    prefix of its own, dropped afterwards)."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"

    def make() -> Store:
        if request.param == "sqlite":
            return open_store(f"sqlite:///{tmp_path / 'store.db'}")
        return open_store(REDIS_URL, prefix=prefix)

    yield make
    if request.param == "redis":
        drop_prefix(REDIS_URL, prefix)
