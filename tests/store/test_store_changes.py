"""G18, the change feed and the training jobs list, on both stores: SQLite (a file under tmp) and the real
Redis at 127.0.0.1:6379 (a unique key prefix per test, deleted afterwards)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid

import redis

from gateway.store import Store, open_store
from tests.redisutil import drop_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"


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


def test_an_owners_jobs_are_listed_by_the_store_whatever_the_others(make_store) -> None:
    """An application's jobs come from the store's index of its own, however many newer jobs other
    applications have (before: the API read the 1000 newest and each one's policy body, and missed the
    rest); a job written without an owner gets its policy's."""
    async def body(s: Store):
        for i in range(40):
            owner = "app:small" if i < 3 else "app:big"
            await s.put("policy", {"id": f"p{i}", "type": "pii", "owner": owner}, "central")
            await s.put_job(f"p{i}", {"policy": f"p{i}", "status": "ready", "started": 1000.0 + i})
        await s.put("policy", {"id": "c", "type": "pii"}, "central")
        await s.claim_job("c", {"policy": "c", "status": "training", "started": 2000.0, "owner": "central"}, 60)
        assert [j["policy"] for j in await s.jobs(limit=5, owner="app:small")] == ["p2", "p1", "p0"]
        assert [j["owner"] for j in await s.jobs(limit=5, owner="app:small")] == ["app:small"] * 3
        assert [j["policy"] for j in await s.jobs(limit=2, owner="app:big")] == ["p39", "p38"]
        assert [j["policy"] for j in await s.jobs(owner="central")] == ["c"]
        assert await s.jobs(owner="app:none") == []
        assert [j["policy"] for j in await s.jobs(limit=3)] == ["c", "p39", "p38"]
        await s.put_job("p0", {"policy": "p0", "status": "training", "started": 3000.0})  # trained again
        assert [j["policy"] for j in await s.jobs(limit=2, owner="app:small")] == ["p0", "p2"]
        assert (await s.jobs(limit=1))[0]["policy"] == "p0"
    run(make_store(), body)


def test_redis_lists_jobs_without_reading_the_whole_hash() -> None:
    """A page of jobs reads one page of a sorted set and those jobs (no HVALS of every job); jobs stored
    before the sorted sets are entered once, with their policy's owner."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL)
    for i, owner in enumerate(("app:a", "app:b", None)):  # jobs as the code before stored them
        body = {"id": f"p{i}", **({"owner": owner} if owner else {})}
        client.hset(f"{prefix}v:policy:p{i}", "1", json.dumps({"body": body, "created": 1.0, "author": "central"}))
        client.hset(f"{prefix}vn:policy", f"p{i}", 1)
        client.hset(f"{prefix}jobs", f"p{i}", json.dumps({"policy": f"p{i}", "status": "ready", "started": 10.0 + i}))

    async def body(s: Store):
        async def refuse(*_a, **_k):
            raise AssertionError("HVALS of every job")
        s.client.hvals = refuse  # type: ignore[attr-defined]
        assert [j["policy"] for j in await s.jobs(owner="app:a")] == ["p0"]
        assert [j["policy"] for j in await s.jobs(owner="central")] == ["p2"]
        assert [j["policy"] for j in await s.jobs()] == ["p2", "p1", "p0"]
        await s.put_job("p1", {"policy": "p1", "status": "ready", "started": 50.0, "owner": "app:b"})
        assert [j["policy"] for j in await s.jobs(limit=1)] == ["p1"]
    try:
        run(open_store(REDIS_URL, prefix=prefix), body)
        client.delete(f"{prefix}jobs:indexed")  # indexing again (another replica) moves nothing back
        run(open_store(REDIS_URL, prefix=prefix), lambda s: _jobs_are(s, ["p1", "p2", "p0"]))
    finally:
        drop_prefix(REDIS_URL, prefix)


async def _jobs_are(s: Store, policies: list[str]) -> None:
    assert [j["policy"] for j in await s.jobs()] == policies


def test_sqlite_jobs_from_before_get_their_policys_owner(tmp_path) -> None:
    """Jobs in a file from before owners (schema 7), and a job written without one by a process from
    before, get their policy's owner (migration 9 and its trigger)."""
    from gateway.store.sqlite import MIGRATIONS

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:7]:
        migration(db)
    db.execute("PRAGMA user_version = 7")
    for ident, body in (("p1", {"id": "p1", "owner": "app:a"}), ("p2", {"id": "p2"})):
        db.execute("INSERT INTO versions VALUES ('policy', ?, 1, ?, 1.0, 'central', '')", (ident, json.dumps(body)))
        db.execute("INSERT INTO jobs VALUES (?, ?)", (ident, json.dumps({"policy": ident, "started": 5.0})))
    db.close()

    async def body(s: Store):
        assert [j["policy"] for j in await s.jobs(owner="app:a")] == ["p1"]
        assert [j["policy"] for j in await s.jobs(owner="central")] == ["p2"]
        old = sqlite3.connect(path, isolation_level=None)  # a process from before: no owner in the job
        old.execute("INSERT OR REPLACE INTO jobs VALUES ('p1', ?)", (json.dumps({"policy": "p1", "started": 9.0}),))
        old.close()
        assert [(j["policy"], j["owner"]) for j in await s.jobs(owner="app:a")] == [("p1", "app:a")]
    run(open_store(str(path)), body)


def test_sqlite_logs_writes_by_a_process_from_before_the_feed(tmp_path) -> None:
    """After the upgrade, a process still running the code from before writes versions and deletion
    marks only: triggers (migration 8) enter them in the feed; the store's own writes are entered once."""
    path = tmp_path / "store.db"

    async def body(s: Store):
        await s.put("policy", {"id": "p", "owner": "app:a"}, "app:a", "new code")
        old = sqlite3.connect(path, isolation_level=None, timeout=5.0)  # as the code before G18 wrote
        old.execute("BEGIN IMMEDIATE")
        old.execute("INSERT INTO versions VALUES ('policy', 'p', 2, ?, ?, 'central', 'old code')",
                    (json.dumps({"id": "p", "owner": "app:a"}), time.time()))
        old.execute("INSERT INTO current VALUES ('policy', 'p', 2, 0) ON CONFLICT (kind, id) DO UPDATE SET "
                    "version=excluded.version, deleted=0")
        old.execute("UPDATE meta SET value = value + 1 WHERE key='revision'")
        old.execute("COMMIT")
        old.execute("UPDATE current SET deleted=1 WHERE kind='policy' AND id='p' AND deleted=0")
        old.close()
        await s.put("stage", {"id": "st", "spec": {}}, "central")
        assert await s.delete("stage", "st", "app:x") is True
        feed = await s.change_log()
        assert _keys(feed) == [("stage", "st", 1, "delete"), ("stage", "st", 1, "write"), ("policy", "p", 2, "delete"),
                               ("policy", "p", 2, "write"), ("policy", "p", 1, "write")]
        assert [(c.author, c.note, c.owner) for c in feed] == [
            ("app:x", "", "central"), ("central", "", "central"), ("", "", "app:a"),
            ("central", "old code", "app:a"), ("app:a", "new code", "app:a")]
        assert feed[0].created >= feed[1].created and feed[2].created >= feed[3].created
    run(open_store(str(path)), body)


def test_sqlite_since_reads_by_the_time_index(tmp_path, monkeypatch) -> None:
    """A `since` later than (nearly) every entry reads the entries since by the changes_created index,
    not every entry by seq."""
    import gateway.store.sqlite as sqlite_store

    chosen: list[bool] = []
    query = sqlite_store.changes_query

    def spy(*args):
        chosen.append(args[-1])
        return query(*args)
    monkeypatch.setattr(sqlite_store, "changes_query", spy)

    async def body(s: Store):
        for i in range(20):
            await s.put("policy", {"id": f"p{i}", "type": "pii"}, "central")
        assert await s.change_log(since=time.time() + 3600) == []
        assert len(await s.change_log(since=0, limit=5)) == 5
        db = sqlite3.connect(tmp_path / "store.db")
        for by_time, owner in ((True, None), (True, "central")):
            sql, args = query(100, None, time.time() + 3600, owner, by_time)
            plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))
            assert "changes_created" in plan, plan
        sql, args = query(100, None, time.time() + 3600, None, False)
        assert "changes_created" not in " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args))
        db.close()
    monkeypatch.setattr(sqlite_store, "SINCE_BY_TIME", 10)
    run(open_store(f"sqlite:///{tmp_path / 'store.db'}"), body)
    assert chosen == [True, False]


def test_redis_fill_orders_old_versions_before_writes_made_during_it(monkeypatch) -> None:
    """Replica A fills the feed slowly (a big store); replica B writes and reads meanwhile. The older
    versions take seqs below B's write, B's read holds them (it waits a bounded time, then fills the same
    entries itself), and no entry is entered twice, however many fills run."""
    import gateway.store.redis as redis_store

    monkeypatch.setattr(redis_store, "FILL_WAIT_S", 0.3, raising=False)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL)
    for version, created in ((1, 10.0), (2, 20.0)):  # versions from before the feed
        client.hset(f"{prefix}v:policy:p", str(version), json.dumps(
            {"body": {"id": "p"}, "created": created, "author": "central", "note": f"old {version}"}))
    client.hset(f"{prefix}vn:policy", "p", 2)
    client.hset(f"{prefix}cur:policy", "p", 2)

    async def go() -> None:
        a, b, c = (open_store(REDIS_URL, prefix=prefix) for _ in range(3))
        gate = asyncio.Event()
        pipeline = a.client.pipeline  # type: ignore[attr-defined]

        def slow_pipeline(*args, **kwargs):
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def slow_execute(*a_, **k_):
                await gate.wait()
                return await execute(*a_, **k_)
            pipe.execute = slow_execute
            return pipe
        a.client.pipeline = slow_pipeline  # type: ignore[attr-defined]
        hkeys = a.client.hkeys  # type: ignore[attr-defined]

        async def slow_hkeys(*args):  # the code before read the documents' ids with HKEYS
            await gate.wait()
            return await hkeys(*args)
        a.client.hkeys = slow_hkeys  # type: ignore[attr-defined]
        try:
            filling = asyncio.create_task(a.change_log())
            await asyncio.sleep(0.2)
            await b.put("policy", {"id": "p"}, "central", "new 3")
            seen = [(x.version, x.note) for x in await b.change_log()]
            gate.set()
            await filling
            feed = await c.change_log()
            assert seen == [(3, "new 3"), (2, "old 2"), (1, "old 1")]
            assert [(x.version, x.note) for x in feed] == seen
            assert [x.seq for x in feed] == [3, 2, 1]
            client.delete(f"{prefix}chlog:filled")
            await asyncio.gather(*(s.fill() for s in (a, b, c)))  # type: ignore[attr-defined]
            assert [(x.seq, x.version) for x in await c.change_log()] == [(3, 3), (2, 2), (1, 1)]
        finally:
            gate.set()
            for s in (a, b, c):
                await s.close()
    try:
        asyncio.run(go())
    finally:
        drop_prefix(REDIS_URL, prefix)
