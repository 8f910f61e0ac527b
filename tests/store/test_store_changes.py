"""G18, the change feed and the training jobs list, on both stores: SQLite (a file under tmp) and the real
Redis at 127.0.0.1:6379 (a unique key prefix per test, deleted afterwards)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from gateway.store import Store, open_store
from tests.redisutil import drop_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path) -> Callable[[], Store]:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"

    def make() -> Store:
        if request.param == "sqlite":
            return open_store(f"sqlite:///{tmp_path / 'store.db'}")
        return open_store(REDIS_URL, prefix=prefix)

    yield make
    if request.param == "redis":
        drop_prefix(REDIS_URL, prefix)


def run(store: Store, fn) -> None:
    async def go():
        try:
            await fn(store)
        finally:
            await store.close()
    asyncio.run(go())


def _keys(changes) -> list[tuple[str, str, int, str]]:
    return [(c.kind, c.id, c.version, c.action) for c in changes]


def test_every_write_and_deletion_is_in_the_feed_newest_first(make_store) -> None:
    async def body(s: Store):
        await s.put("policy", {"id": "p", "type": "pii", "owner": "central"}, "central", note="first")
        await s.put("policy", {"id": "p", "type": "pii", "owner": "central"}, "central")
        await s.put("stage", {"id": "st", "owner": "app:a", "spec": {}}, "app:a")
        await s.put("application", {"id": "a", "key_hashes": ["secret-hash"]}, "central")
        await s.put("pin", {"id": "a:st", "application": "a", "stage": "st", "version": 1}, "app:a")
        await s.revert("policy", "p", 1, "central")
        assert await s.delete("stage", "st", "app:a") is True
        assert await s.delete("stage", "st", "app:a") is False  # nothing to delete: no entry
        feed = await s.change_log()
        assert _keys(feed) == [("stage", "st", 1, "delete"), ("policy", "p", 3, "write"), ("pin", "a:st", 1, "write"),
                               ("application", "a", 1, "write"), ("stage", "st", 1, "write"),
                               ("policy", "p", 2, "write"), ("policy", "p", 1, "write")]
        assert [c.seq for c in feed] == sorted((c.seq for c in feed), reverse=True)
        assert feed[-1].note == "first" and feed[1].note == "revert to version 1" and feed[0].author == "app:a"
        assert [c.owner for c in feed] == ["app:a", "central", "app:a", "app:a", "app:a", "central", "central"]
        assert "secret-hash" not in json.dumps([c.meta() for c in feed])  # metadata only, never a body
        # limit and the cursor
        first = await s.change_log(limit=3)
        rest = await s.change_log(limit=10, before=first[-1].seq)
        assert _keys(first + rest) == _keys(feed)
        # an owner's own objects
        assert _keys(await s.change_log(owner="app:a")) == [k for k, c in zip(_keys(feed), feed) if c.owner == "app:a"]
        assert await s.change_log(owner="app:zz") == []
        # since: a time
        mark = time.time()
        await asyncio.sleep(0.01)
        await s.put("policy", {"id": "q", "type": "pii"}, "central")
        assert _keys(await s.change_log(since=mark)) == [("policy", "q", 1, "write")]
        assert (await s.change_log(since=mark))[0].owner == "central"
    run(make_store(), body)


def test_the_feed_reads_a_page_without_reading_every_entry(make_store) -> None:
    async def body(s: Store):
        for i in range(30):
            await s.put("policy", {"id": f"p{i}", "type": "pii", "owner": "app:a" if i % 3 else "central"}, "central")
        page = await s.change_log(limit=5, owner="central")
        assert [c.id for c in page] == ["p27", "p24", "p21", "p18", "p15"]
        assert [c.id for c in await s.change_log(limit=2, before=page[-1].seq, owner="central")] == ["p12", "p9"]
        assert len(await s.change_log(limit=5000)) == 30  # bounded by MAX_CHANGES, here by what there is
    run(make_store(), body)


def test_training_jobs_are_listed(make_store) -> None:
    async def body(s: Store):
        assert await s.jobs() == []
        now = time.time()
        await s.claim_job("old", {"policy": "old", "status": "training", "started": now - 10}, 60)
        await s.put_job("old", {"policy": "old", "status": "failed", "started": now - 10, "error": "boom"})
        await s.claim_job("new", {"policy": "new", "status": "training", "started": now}, 60)
        jobs = await s.jobs()
        assert [(j["policy"], j["status"]) for j in jobs] == [("new", "training"), ("old", "failed")]
        assert jobs[1]["error"] == "boom" and all("age_s" in j for j in jobs)
        assert [j["policy"] for j in await s.jobs(limit=1)] == ["new"]
    run(make_store(), body)


def test_sqlite_enters_versions_from_before_the_feed(tmp_path) -> None:
    """A file from before the feed: its versions are entered by the migration, in time order."""
    from gateway.store.sqlite import _V1

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(_V1)
    db.execute("PRAGMA user_version = 1")
    for kind, ident, version, created, body in (
            ("policy", "p", 1, 10.0, {"id": "p", "owner": "app:a"}), ("application", "a", 1, 5.0, {"id": "a"}),
            ("policy", "p", 2, 20.0, {"id": "p", "owner": "app:a"}),
            ("pin", "a:s", 1, 15.0, {"id": "a:s", "application": "a"})):
        db.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)", (kind, ident, version, json.dumps(body),
                                                                        created, "central", ""))
    db.close()

    async def body(s: Store):
        await s.put("stage", {"id": "s", "spec": {}}, "central")
        feed = await s.change_log()
        assert _keys(feed) == [("stage", "s", 1, "write"), ("policy", "p", 2, "write"), ("pin", "a:s", 1, "write"),
                               ("policy", "p", 1, "write"), ("application", "a", 1, "write")]
        assert [c.owner for c in feed] == ["central", "app:a", "app:a", "app:a", "app:a"]
    run(open_store(str(path)), body)


def test_redis_enters_versions_from_before_the_feed() -> None:
    """A Redis store from before the feed: its versions are entered once, on the first read, before the
    entries written since."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL)
    for kind, ident, version, created, body in (
            ("policy", "p", 1, 10.0, {"id": "p", "owner": "app:a"}), ("application", "a", 1, 5.0, {"id": "a"}),
            ("policy", "p", 2, 20.0, {"id": "p", "owner": "app:a"})):
        client.hset(f"{prefix}v:{kind}:{ident}", str(version),
                    json.dumps({"body": body, "created": created, "author": "central", "note": ""}))
        client.hset(f"{prefix}vn:{kind}", ident, version)
        client.hset(f"{prefix}cur:{kind}", ident, version)

    async def body(s: Store):
        await s.put("policy", {"id": "p", "owner": "app:a"}, "app:a")  # fills first, then logs its own
        feed = await s.change_log()
        assert [c.seq for c in feed] == [4, 3, 2, 1]
        assert _keys(feed) == [("policy", "p", 3, "write"), ("policy", "p", 2, "write"), ("policy", "p", 1, "write"),
                               ("application", "a", 1, "write")]
        assert _keys(await s.change_log(owner="app:a")) == _keys(feed)
        assert _keys(await s.change_log(limit=2, before=feed[1].seq)) == _keys(feed[2:])
        assert _keys(await s.change_log()) == _keys(feed)  # entered once
    async def already_there(s: Store):  # a version logged by the script is not entered again
        client.delete(f"{prefix}chlog:filled")
        await s.fill()  # type: ignore[attr-defined]
        assert [c.seq for c in await s.change_log()] == [4, 3, 2, 1]
    try:
        run(open_store(REDIS_URL, prefix=prefix), body)
        run(open_store(REDIS_URL, prefix=prefix), already_there)
    finally:
        drop_prefix(REDIS_URL, prefix)
