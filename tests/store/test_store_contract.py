"""One contract, two stores: SQLite (a file under tmp) and the real Redis at 127.0.0.1:6379 (a unique
key prefix per test, deleted afterwards)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from gateway.store import Example, NotFound, Store, StoreError, open_store

REDIS_URL = "redis://127.0.0.1:6379/0"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path) -> Callable[..., Store]:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"

    def make(max_records: int = 100) -> Store:
        if request.param == "sqlite":
            return open_store(f"sqlite:///{tmp_path / 'store.db'}", max_records=max_records)
        return open_store(REDIS_URL, prefix=prefix, max_records=max_records)

    yield make
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)


async def _with(store: Store, fn):
    try:
        await store.ping()
        return await fn(store)
    finally:
        await store.close()


def test_documents_are_versioned(make_store) -> None:
    async def body(s: Store):
        assert await s.revision() == 0
        v1 = await s.put("policy", {"id": "p1", "type": "regex", "patterns": ["a"]}, "central")
        v2 = await s.put("policy", {"id": "p1", "type": "regex", "patterns": ["b"]}, "app:x", note="edit")
        await s.put("policy", {"id": "p0", "type": "pii"}, "central")
        assert (v1.version, v2.version) == (1, 2) and await s.revision() == 3
        current = await s.get("policy", "p1")
        assert current is not None and current.version == 2 and current.body["patterns"] == ["b"]
        assert current.author == "app:x" and current.note == "edit"
        assert (await s.get("policy", "p1", 1)).body["patterns"] == ["a"]
        assert await s.get("policy", "p1", 9) is None and await s.get("policy", "nope") is None
        assert [d.id for d in await s.list("policy")] == ["p0", "p1"]
        assert await s.list("stage") == []
        reverted = await s.revert("policy", "p1", 1, "central")
        assert reverted.version == 3 and reverted.body["patterns"] == ["a"] and "revert" in reverted.note
        assert [v.version for v in await s.versions("policy", "p1")] == [1, 2, 3]
        with pytest.raises(NotFound):
            await s.revert("policy", "p1", 7, "central")
        rev = await s.revision()
        assert await s.delete("policy", "p1", "central") is True
        assert await s.delete("policy", "p1", "central") is False
        assert await s.revision() == rev + 1
        assert await s.get("policy", "p1") is None and [d.id for d in await s.list("policy")] == ["p0"]
        assert len(await s.versions("policy", "p1")) == 3  # history survives deletion
        again = await s.put("policy", {"id": "p1", "type": "pii"}, "central")
        assert again.version == 4 and (await s.get("policy", "p1")).body["type"] == "pii"
    run(_with(make_store(), body))


def test_bad_documents_are_refused(make_store) -> None:
    async def body(s: Store):
        with pytest.raises(ValueError, match="kind"):
            await s.put("widget", {"id": "x"}, "central")
        with pytest.raises(ValueError, match="`id`"):
            await s.put("policy", {"type": "pii"}, "central")
        assert await s.revision() == 0
    run(_with(make_store(), body))


def test_examples(make_store) -> None:
    async def body(s: Store):
        assert await s.add_examples("p1", [Example("leak", "FAIL"), Example("fine", "pass", synthetic=True,
                                                                             source="synthetic")]) == 2
        await s.add_examples("p2", [Example("other", "FAIL")])
        got = await s.examples("p1")
        assert [(e.text, e.label, e.synthetic, e.source) for e in got] == [
            ("leak", "FAIL", False, "manual"), ("fine", "PASS", True, "synthetic")]
        assert got[0].seq < got[1].seq
        with pytest.raises(ValueError, match="PASS or FAIL"):
            await s.add_examples("p1", [Example("x", "MAYBE")])
        assert len(await s.examples("p1")) == 2 and await s.examples("none") == []
    run(_with(make_store(), body))


def test_training_rows_have_ids_and_are_edited_paged_and_deleted(make_store) -> None:
    async def body(s: Store):
        before = time.time()
        await s.add_examples("p1", [Example("a", "FAIL", author="central"),
                                    Example("b", "PASS", True, "synthetic", author="app:x"),
                                    Example("c", "FAIL", True, "synthetic"), Example("d", "PASS", source="feedback")])
        await s.add_examples("p2", [Example("other", "FAIL")])
        rows = await s.examples("p1")
        ids = [e.seq for e in rows]
        assert ids == sorted(ids) and len(set(ids)) == 4
        assert rows[0].author == "central" and rows[1].author == "app:x" and before - 1 <= rows[0].created <= time.time() + 1
        # filters and paging
        assert [e.text for e in await s.examples("p1", source="synthetic")] == ["b", "c"]
        assert [e.text for e in await s.examples("p1", label="fail")] == ["a", "c"]
        assert [e.text for e in await s.examples("p1", limit=2)] == ["a", "b"]
        assert [e.text for e in await s.examples("p1", after=ids[1], limit=5)] == ["c", "d"]
        assert [e.text for e in await s.examples("p1", source="synthetic", label="PASS")] == ["b"]
        # edit: text, label, or both; another policy's row or an unknown id is None
        edited = await s.update_example("p1", ids[0], text="a2")
        assert edited is not None and (edited.text, edited.label, edited.seq, edited.author) == ("a2", "FAIL", ids[0], "central")
        edited = await s.update_example("p1", ids[1], label="fail")
        assert edited is not None and (edited.text, edited.label, edited.source, edited.synthetic) == ("b", "FAIL", "synthetic", True)
        assert await s.update_example("p2", ids[0], text="x") is None
        assert await s.update_example("p1", 10**9, text="x") is None
        with pytest.raises(ValueError, match="PASS or FAIL"):
            await s.update_example("p1", ids[0], label="MAYBE")
        assert [(e.text, e.label) for e in await s.examples("p1")][:2] == [("a2", "FAIL"), ("b", "FAIL")]
        # delete one, of another policy (nothing), then by source
        assert await s.delete_examples("p1", [ids[3]]) == 1
        assert await s.delete_examples("p2", [ids[0]]) == 0
        assert await s.delete_examples("p1", []) == 0
        assert await s.delete_examples("p1", source="synthetic") == 2
        assert [e.text for e in await s.examples("p1")] == ["a2"]
        assert [e.text for e in await s.examples("p2")] == ["other"]
        await s.add_examples("p1", [Example("e", "PASS")])
        assert (await s.examples("p1"))[-1].seq > ids[-1]  # ids are never reused
        assert await s.delete_examples("p1") == 2 and await s.examples("p1") == []
    run(_with(make_store(), body))


def test_records_are_bounded_and_filterable(make_store) -> None:
    async def body(s: Store):
        seqs = []
        for i in range(12):
            seqs += await s.append_records([{"application": "a" if i % 2 else "b", "action": "block" if i % 3 == 0
                                             else None, "policies": ["p1"] if i % 4 == 0 else [], "i": i}])
        assert seqs == sorted(seqs) and len(set(seqs)) == 12
        latest = await s.records(limit=3)
        assert [r.body["i"] for r in latest] == [11, 10, 9]
        assert [r.body["i"] for r in await s.records(limit=3, before=latest[-1].seq)] == [8, 7, 6]
        assert [r.body["i"] for r in await s.records(limit=50, application="a", action="block")] == [9, 3]
        assert [r.body["i"] for r in await s.records(limit=50, policies="p1")] == [8, 4, 0]
        one = await s.record(seqs[5])
        assert one is not None and one.body["i"] == 5 and await s.record(10**9) is None
    run(_with(make_store(), body))

    async def bounded(s: Store):
        await s.append_records([{"i": i} for i in range(15)])
        kept = await s.records(limit=100)
        assert [r.body["i"] for r in kept] == list(range(14, 4, -1))  # the newest 10
    run(_with(make_store(max_records=10), bounded))


def test_feedback(make_store) -> None:
    async def body(s: Store):
        [seq] = await s.append_records([{"application": "a"}])
        f1 = await s.add_feedback(seq, "p1", "fail", "this should have been blocked")
        f2 = await s.add_feedback(seq, "p1", "PASS", "fine")
        await s.add_feedback(seq, "p2", "PASS", "x")
        assert f1.label == "FAIL" and f1.seq < f2.seq
        assert [f.text for f in await s.feedback("p1")] == ["this should have been blocked", "fine"]
        await s.mark_applied([f1.seq])
        assert [f.seq for f in await s.feedback("p1", applied=False)] == [f2.seq]
        assert [f.seq for f in await s.feedback("p1", applied=True)] == [f1.seq]
        with pytest.raises(ValueError):
            await s.add_feedback(seq, "p1", "MAYBE", "x")
    run(_with(make_store(), body))


def test_feedback_items_keep_author_and_training_row_and_can_be_deleted(make_store) -> None:
    """G13: an item keeps its author; applying writes one training row per item, whose id the item keeps
    (applied once, however often applied); deleting returns the item as it was, and it is gone everywhere."""
    async def body(s: Store):
        f1 = await s.add_feedback(0, "p1", "FAIL", "leak", record="r1:input", author="app:a")
        f2 = await s.add_feedback(0, "p1", "PASS", "fine", record="r2:input", author="central")
        await s.add_examples("p1", [Example("manual", "PASS")])
        assert (await s.feedback_item(f1.seq)).author == "app:a" and await s.feedback_item(10**6) is None
        applied = await s.apply_feedback("p1", "central")
        assert [(f.seq, f.applied) for f in applied] == [(f1.seq, True), (f2.seq, True)]
        rows = {e.seq: e for e in await s.examples("p1", source="feedback")}
        assert sorted(rows) == sorted(f.row for f in applied) and all(f.row for f in applied)
        assert rows[applied[0].row].text == "leak" and rows[applied[0].row].author == "central"
        assert await s.apply_feedback("p1", "central") == []
        assert (await s.feedback_item(f1.seq)).row == applied[0].row
        gone = await s.delete_feedback(f1.seq)
        assert gone is not None and gone.applied and gone.row == applied[0].row and gone.author == "app:a"
        assert await s.delete_feedback(f1.seq) is None and await s.feedback_item(f1.seq) is None
        assert [f.seq for f in await s.feedback("p1")] == [f2.seq]
        assert await s.record_feedback(["r1:input"]) == {}
        assert len(await s.examples("p1")) == 3  # the store leaves the row to the caller
    run(_with(make_store(), body))


def test_feedback_is_found_by_record(make_store) -> None:
    async def body(s: Store):
        await s.add_feedback(0, "p1", "FAIL", "t", record="r1:input")
        await s.add_feedback(0, "p2", "pass", "t", record="r1:input")
        await s.add_feedback(0, "p1", "PASS", "t", record="r2:output")
        await s.add_feedback(0, "p1", "PASS", "t")  # from before records were named
        found = await s.record_feedback(["r1:input", "r2:output", "r3:input", ""])
        assert {k: [(f.policy_id, f.label, f.record) for f in v] for k, v in found.items()} == {
            "r1:input": [("p1", "FAIL", "r1:input"), ("p2", "PASS", "r1:input")],
            "r2:output": [("p1", "PASS", "r2:output")]}
        assert await s.record_feedback([]) == {}
        assert [f.record for f in await s.feedback("p1")] == ["r1:input", "r2:output", ""]
    run(_with(make_store(), body))


def test_a_delete_only_while_unapplied_leaves_an_applied_item(make_store) -> None:
    """G13: `only_unapplied` is checked as the store deletes (an application admin's own item, applied by
    the policy's owner after the admin read it): the applied item stays, returned with applied true; an
    unapplied one goes as before."""
    async def body(s: Store):
        f1 = await s.add_feedback(0, "p1", "FAIL", "leak", record="r1:input", author="app:a")
        f2 = await s.add_feedback(0, "p2", "PASS", "fine", record="r2:input", author="app:a")
        await s.apply_feedback("p1", "central")
        kept = await s.delete_feedback(f1.seq, only_unapplied=True)
        assert kept is not None and kept.seq == f1.seq and kept.applied and kept.row
        assert (await s.feedback_item(f1.seq)) == kept and [f.seq for f in await s.feedback("p1")] == [f1.seq]
        assert list(await s.record_feedback(["r1:input"])) == ["r1:input"]
        gone = await s.delete_feedback(f2.seq, only_unapplied=True)
        assert gone is not None and not gone.applied and await s.feedback_item(f2.seq) is None
        assert await s.feedback("p2") == [] and await s.record_feedback(["r2:input"]) == {}
        assert await s.delete_feedback(f2.seq, only_unapplied=True) is None
        assert (await s.delete_feedback(f1.seq)) == kept and await s.feedback_item(f1.seq) is None
    run(_with(make_store(), body))


def test_records_with_a_predicate(make_store) -> None:
    async def body(s: Store):
        await s.append_records([{"i": i, "application": "a" if i % 2 else "b"} for i in range(1200)])
        odd_tens = await s.records(5, where=lambda b: b["i"] % 10 == 3, application="a")
        assert [r.body["i"] for r in odd_tens] == [1193, 1183, 1173, 1163, 1153]
        older = await s.records(2, before=odd_tens[-1].seq, where=lambda b: b["i"] % 10 == 3)
        assert [r.body["i"] for r in older] == [1143, 1133]
        assert await s.records(5, where=lambda b: False) == []
    run(_with(make_store(max_records=5000), body))


def test_concurrent_writers_get_distinct_versions(make_store) -> None:
    async def body(s: Store):
        versions = await asyncio.gather(*(s.put("stage", {"id": "st", "n": i}, "central") for i in range(20)))
        assert sorted(v.version for v in versions) == list(range(1, 21))
        assert await s.revision() == 20
    run(_with(make_store(), body))


def test_sqlite_persists_across_reopen(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'store.db'}"

    async def write(s: Store):
        await s.put("application", {"id": "app", "key_hashes": ["h"]}, "central")
        await s.append_records([{"x": 1}])

    async def read(s: Store):
        assert (await s.get("application", "app")).body["key_hashes"] == ["h"]
        assert [r.body for r in await s.records()] == [{"x": 1}] and await s.revision() == 1

    run(_with(open_store(url), write))
    run(_with(open_store(url), read))


def test_unreachable_redis_is_a_store_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed

    async def body():
        s = open_store(f"redis://127.0.0.1:{port}/0", prefix="dead:")
        try:
            with pytest.raises(StoreError, match="redis store"):
                await s.revision()
        finally:
            await s.close()
    run(body())


def test_a_retried_record_is_stored_once(make_store) -> None:
    async def body(s: Store):
        first = await s.append_records([{"id": "req-1", "on": "input", "x": 1}, {"id": "req-1", "on": "output"}])
        again = await s.append_records([{"id": "req-1", "on": "input", "x": 1}, {"id": "req-2", "on": "input"}])
        assert len(first) == 2 and len(again) == 1
        assert [r.body.get("id") for r in await s.records()] == ["req-2", "req-1", "req-1"]
    run(_with(make_store(), body))


def test_a_record_is_found_by_its_id(make_store) -> None:
    async def body(s: Store):
        await s.append_records([{"id": f"req-{i}", "on": on, "i": i} for i in range(30) for on in ("input", "output")])
        found = await s.record_by_id("req-7", "output")
        assert found is not None and found.body == {"id": "req-7", "on": "output", "i": 7}
        assert found == await s.record(found.seq)
        assert await s.record_by_id("req-7", "sideways") is None and await s.record_by_id("req-99", "input") is None
        await s.append_records([{"id": "req-7", "on": "output", "i": -1}])  # a retry: the first write stays
        assert (await s.record_by_id("req-7", "output")).body["i"] == 7
    run(_with(make_store(), body))


def test_a_record_older_than_its_dedupe_key_is_still_found_by_id() -> None:
    """Redis keeps the id -> seq key for a day (and gateways before it stored '1' there): past that, the
    lookup falls back to reading the log, and a key pointing at another record is not trusted."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL)

    async def body(s: Store):
        await s.append_records([{"id": "first", "on": "input"}, {"id": "second", "on": "input"},
                                {"id": "third", "on": "input"}])
        client.delete(prefix + "recid:first:input")  # expired
        client.set(prefix + "recid:second:input", "1")  # written by an older gateway: seq 1 is "first"
        assert (await s.record_by_id("first", "input")).body["id"] == "first"
        assert (await s.record_by_id("second", "input")).body["id"] == "second"
        assert client.get(prefix + "recid:third:input") == b"3"
    try:
        run(_with(open_store(REDIS_URL, prefix=prefix), body))
    finally:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)


def test_records_by_time_window(make_store) -> None:
    """A time window filters the whole log, not only the newest page; a late record (buffered through an
    outage, so a higher seq with an older time) is still found."""
    async def body(s: Store):
        base = 1_700_000_000.0
        await s.append_records([{"time": base + i, "application": "a" if i % 2 else "b", "i": i} for i in range(20)])
        await s.append_records([{"time": base + 3.5, "application": "a", "i": "late"}])
        window = await s.records(limit=100, since=base + 3, until=base + 6)
        assert [r.body["i"] for r in window] == ["late", 6, 5, 4, 3]
        assert [r.body["i"] for r in await s.records(limit=2, since=base + 3, until=base + 6, application="a")] \
            == ["late", 5]
        assert await s.records(limit=5, since=base + 100) == []
    run(_with(make_store(), body))


def test_training_jobs_are_claimed_once(make_store) -> None:
    """One training per policy at a time across every process sharing the store; a job whose heartbeat
    stopped (its replica died) no longer blocks a new one."""
    async def body(s: Store):
        now = time.time()
        assert await s.job("p") is None
        assert await s.claim_job("p", {"status": "training_queued", "updated": now, "replica": "r1"}, 60) is None
        running = await s.claim_job("p", {"status": "training_queued", "updated": now, "replica": "r2"}, 60)
        assert running is not None and running["replica"] == "r1"
        await s.put_job("p", {"status": "ready", "updated": now, "replica": "r1", "version": 3})
        assert (await s.job("p"))["version"] == 3
        assert await s.claim_job("p", {"status": "training_queued", "updated": now, "replica": "r2"}, 60) is None
        await s.put_job("p", {"status": "training", "updated": now, "replica": "r2"})
        await asyncio.sleep(0.3)  # r2 went silent: by the store's clock its heartbeat is 0.3 s old
        assert (await s.job("p"))["age_s"] >= 0.25
        assert await s.claim_job("p", {"status": "training_queued", "updated": now, "replica": "r3"}, 0.2) is None
        assert (await s.job("p"))["replica"] == "r3" and await s.job("other") is None
    run(_with(make_store(), body))


def test_job_heartbeats_use_the_store_clock(make_store) -> None:
    """A replica whose clock is an hour behind (or ahead) still keeps its training claimed, and its
    job reads as fresh on every replica: the store stamps `updated` with its own clock."""
    async def body(s: Store):
        skewed = time.time() - 3600
        assert await s.claim_job("p", {"status": "training_queued", "updated": skewed, "replica": "r1"}, 60) is None
        assert (await s.job("p"))["age_s"] < 5
        running = await s.claim_job("p", {"status": "training_queued", "updated": time.time(), "replica": "r2"}, 60)
        assert running is not None and running["replica"] == "r1"
        await s.put_job("p", {"status": "training", "updated": time.time() + 3600, "replica": "r1"})
        job = await s.job("p")
        assert 0 <= job["age_s"] < 5 and abs(job["updated"] - time.time()) < 5
    run(_with(make_store(), body))


def test_sqlite_migrates_an_older_file(tmp_path) -> None:
    """A file made before schema versioning (no dedupe key, no jobs table) is upgraded in place and keeps
    its data; a file from a newer gateway is refused with a message naming it."""
    import sqlite3

    from gateway.store.sqlite import _V1, SCHEMA_VERSION

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(_V1)
    db.execute("INSERT INTO records (time, body) VALUES (1.0, '{\"id\": \"old\", \"application\": \"a\"}')")
    db.execute("INSERT INTO records (time, body) VALUES (2.0, '{\"id\": \"older\", \"on\": \"output\"}')")
    db.execute("INSERT INTO examples (policy, text, label, synthetic, source) VALUES ('p', 'kept', 'FAIL', 1, 'synthetic')")
    db.execute("INSERT INTO feedback (record, policy, label, text, time) VALUES (1, 'p', 'PASS', 'old feedback', 1.0)")
    db.close()

    async def body(s: Store):
        assert [r.body["id"] for r in await s.records(application="a")] == ["old"]
        assert await s.record_by_id("old", "input") is None  # the old row has no "on"
        assert await s.append_records([{"id": "r", "on": "input"}, {"id": "r", "on": "input"}]) != []
        assert (await s.record_by_id("older", "output")).body["id"] == "older"  # a row from before the key
        assert len(await s.records()) == 3  # the retried record was stored once
        assert await s.claim_job("p", {"status": "training", "updated": time.time()}, 60) is None
        kept = await s.examples("p")  # training rows from before ids had times and authors
        assert [(e.text, e.label, e.synthetic, e.source, e.created, e.author) for e in kept] == [
            ("kept", "FAIL", True, "synthetic", 0.0, "")]
        assert (await s.update_example("p", kept[0].seq, text="edited")).text == "edited"
        await s.add_examples("p", [Example("new", "PASS", author="central")])
        assert (await s.examples("p", source="manual"))[0].author == "central"
        assert [(f.text, f.record) for f in await s.feedback("p")] == [("old feedback", "")]
    run(_with(open_store(str(path)), body))
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    check.commit()
    check.close()

    async def newer():
        s = open_store(str(path))
        try:
            with pytest.raises(StoreError, match=f"{path}: schema version {SCHEMA_VERSION + 1} was written by a newer"):
                await s.revision()
        finally:
            await s.close()
    run(newer())


def test_redis_training_rows_from_before_ids_had_times() -> None:
    """Rows written before `created` and `author` existed read with 0 and '' and can be edited."""
    import json

    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL)
    client.rpush(prefix + "ex:p", json.dumps({"text": "old", "label": "FAIL", "synthetic": False,
                                              "source": "manual", "seq": 7}))

    async def body(s: Store):
        old = await s.examples("p")
        assert [(e.text, e.seq, e.created, e.author) for e in old] == [("old", 7, 0.0, "")]
        assert (await s.update_example("p", 7, label="PASS")).label == "PASS"
    try:
        run(_with(open_store(REDIS_URL, prefix=prefix), body))
    finally:
        client.delete(*client.scan_iter(prefix + "*"))
