"""G19's compare-and-set in the store: `put(..., expected_version=n)` writes only if the document is at
version n (0: absent or deleted, so 0 is create only), checked atomically with assigning the new version.
Both stores: SQLite (a file under tmp) and the real Redis at 127.0.0.1:6379 (a unique key prefix per
test, deleted afterwards). Concurrent writers based on one version: exactly one lands, from one store
object or from two (two replicas sharing the file or the server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.errors import VersionConflict
from gateway.store import Store

WRITERS = 8


def run(make: Callable[[], Store], fn, replicas: int = 1) -> None:
    async def go() -> None:
        stores = [make() for _ in range(replicas)]
        try:
            await fn(*stores)
        finally:
            for s in stores:
                await s.close()
    asyncio.run(go())


def doc(n: int) -> dict:
    return {"id": "p", "type": "contains", "keywords": [f"w{n}"]}


def test_a_write_based_on_the_current_version_lands(make_store) -> None:
    async def body(s: Store) -> None:
        v1 = await s.put("policy", doc(1), "central", expected_version=0)
        v2 = await s.put("policy", doc(2), "central", "edit", expected_version=1)
        assert (v1.version, v2.version) == (1, 2) and v2.note == "edit"
        current = await s.get("policy", "p")
        assert current is not None and current.version == 2 and current.body == doc(2)
        assert await s.revision() == 2
    run(make_store, body)


def test_a_stale_write_is_refused_and_writes_nothing(make_store) -> None:
    async def body(s: Store) -> None:
        await s.put("policy", doc(1), "central")
        await s.put("policy", doc(2), "central")
        before, revision = await s.versions("policy", "p"), await s.revision()
        with pytest.raises(VersionConflict) as refused:
            await s.put("policy", doc(3), "central", expected_version=1)
        assert (refused.value.kind, refused.value.doc_id) == ("policy", "p")
        assert (refused.value.expected, refused.value.current) == (1, 2)
        assert await s.versions("policy", "p") == before and await s.revision() == revision
        assert (await s.get("policy", "p")).body == doc(2)
        with pytest.raises(VersionConflict):  # ahead of the store is stale too
            await s.put("policy", doc(3), "central", expected_version=3)
        assert await s.versions("policy", "p") == before
        assert (await s.put("policy", doc(3), "central", expected_version=2)).version == 3
    run(make_store, body)


def test_expected_version_zero_creates_only(make_store) -> None:
    async def body(s: Store) -> None:
        assert (await s.put("stage", {"id": "st", "n": 1}, "central", expected_version=0)).version == 1
        with pytest.raises(VersionConflict) as refused:
            await s.put("stage", {"id": "st", "n": 2}, "central", expected_version=0)
        assert refused.value.current == 1 and len(await s.versions("stage", "st")) == 1
        assert await s.delete("stage", "st", "central")
        with pytest.raises(VersionConflict) as refused:  # a deleted document is at version 0
            await s.put("stage", {"id": "st", "n": 3}, "central", expected_version=1)
        assert refused.value.current == 0 and await s.get("stage", "st") is None
        again = await s.put("stage", {"id": "st", "n": 4}, "central", expected_version=0)
        assert again.version == 2 and (await s.get("stage", "st")).body["n"] == 4  # numbering goes on
        # another document of the same id in another kind is another document
        assert (await s.put("policy", {"id": "st", "type": "pii"}, "central", expected_version=0)).version == 1
    run(make_store, body)


def _one_lands(results: list, base: int) -> None:
    landed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(landed) == 1, results
    assert landed[0].version == base + 1
    assert len(refused) == WRITERS - 1 and all(isinstance(r, VersionConflict) for r in refused), refused
    assert all((r.expected, r.current) == (base, base + 1) for r in refused)


def test_concurrent_writers_on_one_version_one_lands(make_store) -> None:
    async def body(s: Store) -> None:
        await s.put("policy", doc(0), "central")
        results = await asyncio.gather(*(s.put("policy", doc(i), f"w{i}", expected_version=1)
                                         for i in range(WRITERS)), return_exceptions=True)
        _one_lands(results, 1)
        history = await s.versions("policy", "p")
        assert [v.version for v in history] == [1, 2] and await s.revision() == 2
        winner = next(r for r in results if not isinstance(r, BaseException))
        assert history[-1].author == winner.author and (await s.get("policy", "p")).body == winner.body
    run(make_store, body)


def test_concurrent_creates_one_lands(make_store) -> None:
    async def body(s: Store) -> None:
        results = await asyncio.gather(*(s.put("stage", {"id": "new", "n": i}, "central", expected_version=0)
                                         for i in range(WRITERS)), return_exceptions=True)
        _one_lands(results, 0)
        assert len(await s.versions("stage", "new")) == 1
    run(make_store, body)


def test_concurrent_writers_from_two_replicas_one_lands(make_store) -> None:
    """Two store objects on the same data (two gateway replicas on one Redis, or two processes on one
    SQLite file): the check holds across them, not only within one."""
    async def body(a: Store, b: Store) -> None:
        await a.put("policy", doc(0), "central")
        await a.put("policy", doc(1), "central")
        results = await asyncio.gather(*((a if i % 2 else b).put("policy", doc(i), f"w{i}", expected_version=2)
                                         for i in range(WRITERS)), return_exceptions=True)
        _one_lands(results, 2)
        assert [v.version for v in await b.versions("policy", "p")] == [1, 2, 3]
        assert await a.revision() == await b.revision() == 3
    run(make_store, body, replicas=2)


def test_without_an_expected_version_the_last_write_wins(make_store) -> None:
    async def body(s: Store) -> None:
        await s.put("policy", doc(0), "central")
        results = await asyncio.gather(*(s.put("policy", doc(i), "central") for i in range(WRITERS)))
        assert sorted(v.version for v in results) == list(range(2, WRITERS + 2))
        current = await s.get("policy", "p")
        assert current is not None and current.version == WRITERS + 1  # `current` is the newest version
    run(make_store, body)
