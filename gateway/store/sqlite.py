# size: one Store implementation against SQLite: its schema migrations, then every method of the
# Store Protocol, each a few lines of SQL on the worker thread
"""The embedded store: one SQLite file (WAL), nothing to install. Calls run on one worker thread
(sqlite3 connections are not shared across threads), so the event loop never waits on disk."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Callable
from typing import Any

from gateway.store.base import (
    DocumentHistory,
    Example,
    Feedback,
    Record,
    StoreError,
    Version,
    VersionConflict,
    check_kind,
    check_label,
    doc_id,
    job_is_active,
    matches,
    record_key,
    with_age,
)
from gateway.store.changelog import MAX_CHANGES, Change

# `list` is also a Store method: inside the classes, annotations name the builtin through this alias.
List = list

# Schema migrations: PRAGMA user_version holds how many have run; each runs once, in order, in one
# transaction with the version bump. A file written by a newer gateway (a higher version) is refused.
_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    created REAL NOT NULL, author TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, id, version));
CREATE TABLE IF NOT EXISTS current (
    kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS examples (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, policy TEXT NOT NULL, text TEXT NOT NULL, label TEXT NOT NULL,
    synthetic INTEGER NOT NULL, source TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS examples_policy ON examples (policy, seq);
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, record INTEGER NOT NULL, policy TEXT NOT NULL, label TEXT NOT NULL,
    text TEXT NOT NULL, time REAL NOT NULL, applied INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS feedback_policy ON feedback (policy, seq);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""


def _v2_record_dedupe(db: sqlite3.Connection) -> None:
    """Retried monitoring writes are stored once (files from before had no dedupe key)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    if "dedupe" not in columns:
        db.execute("ALTER TABLE records ADD COLUMN dedupe TEXT")
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS records_dedupe ON records (dedupe)")


def _v3_jobs_and_record_indexes(db: sqlite3.Connection) -> None:
    """Training jobs shared by every process using the file; monitoring queries by application and time
    use indexes instead of reading the whole log."""
    db.execute("CREATE TABLE IF NOT EXISTS jobs (policy TEXT PRIMARY KEY, body TEXT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS records_app ON records (json_extract(body, '$.application'), seq)")
    db.execute("CREATE INDEX IF NOT EXISTS records_time ON records (time)")


def _v4_example_ids(db: sqlite3.Connection) -> None:
    """Training rows get a time and an author (rows already there keep their data: created 0, author '')
    and an index for listing one policy's rows by source."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(examples)")}
    if "created" not in columns:
        db.execute("ALTER TABLE examples ADD COLUMN created REAL NOT NULL DEFAULT 0")
    if "author" not in columns:
        db.execute("ALTER TABLE examples ADD COLUMN author TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX IF NOT EXISTS examples_source ON examples (policy, source, seq)")


def _v5_feedback_records(db: sqlite3.Connection) -> None:
    """Feedback names the monitoring record it was given on (its key), so the log shows its state."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)")}
    if "record_key" not in columns:
        db.execute("ALTER TABLE feedback ADD COLUMN record_key TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX IF NOT EXISTS feedback_record ON feedback (record_key)")


def _v6_feedback_authors(db: sqlite3.Connection) -> None:
    """Feedback keeps who gave it and, once applied, the training row it wrote (items already there:
    author '', row 0), so an item can be deleted with its row (G13)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)")}
    if "author" not in columns:
        db.execute("ALTER TABLE feedback ADD COLUMN author TEXT NOT NULL DEFAULT ''")
    if "row_seq" not in columns:
        db.execute("ALTER TABLE feedback ADD COLUMN row_seq INTEGER NOT NULL DEFAULT 0")


def _owner_sql(kind: str, ident: str, body: str) -> str:
    """changelog.change_owner in SQL, on the named columns."""
    owner = f"json_extract({body}, '$.owner')"
    return (f"CASE {kind} WHEN 'application' THEN 'app:' || {ident} WHEN 'pin' THEN 'app:' || "
            f"COALESCE(json_extract({body}, '$.application'), 'None') ELSE CASE WHEN json_type({body}, '$.owner') "
            f"= 'text' AND {owner} <> '' THEN {owner} ELSE 'central' END END")


_OWNER_SQL = _owner_sql("kind", "id", "body")


def _v7_change_log(db: sqlite3.Connection) -> None:
    """G18: the change feed (gateway/store/changelog.py), with every version already stored entered in
    the order of its time."""
    db.execute("CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
               "id TEXT NOT NULL, version INTEGER NOT NULL, created REAL NOT NULL, author TEXT NOT NULL, "
               "note TEXT NOT NULL DEFAULT '', action TEXT NOT NULL DEFAULT 'write', owner TEXT NOT NULL)")
    db.execute("INSERT INTO changes (kind, id, version, created, author, note, owner) SELECT kind, id, version, "
               f"created, author, note, {_OWNER_SQL} FROM versions ORDER BY created, kind, id, version")
    db.execute("CREATE INDEX IF NOT EXISTS changes_owner ON changes (owner, seq)")
    db.execute("CREATE INDEX IF NOT EXISTS changes_created ON changes (created)")


def _v8_change_triggers(db: sqlite3.Connection) -> None:
    """The change feed is written by triggers, so a write by any process is logged, also one running a
    gateway from before the feed (which writes versions and deletion marks only): a version's entry on its
    INSERT, a deletion's when `current.deleted` turns 1 (by then its author is unknown: ''; the store's own
    delete sets author and time on the entry in its transaction)."""
    db.execute("CREATE TRIGGER IF NOT EXISTS changes_write AFTER INSERT ON versions BEGIN "
               "INSERT INTO changes (kind, id, version, created, author, note, action, owner) VALUES (NEW.kind, "
               "NEW.id, NEW.version, NEW.created, NEW.author, NEW.note, 'write', "
               f"{_owner_sql('NEW.kind', 'NEW.id', 'NEW.body')}); END")
    db.execute("CREATE TRIGGER IF NOT EXISTS changes_delete AFTER UPDATE OF deleted ON current "
               "WHEN NEW.deleted = 1 AND OLD.deleted = 0 BEGIN "
               "INSERT INTO changes (kind, id, version, created, author, note, action, owner) SELECT v.kind, v.id, "
               "v.version, (julianday('now') - 2440587.5) * 86400.0, '', '', 'delete', "
               f"{_owner_sql('v.kind', 'v.id', 'v.body')} FROM versions v WHERE v.kind = NEW.kind AND v.id = NEW.id "
               "AND v.version = NEW.version; END")


_JOB_OWNER_SQL = (f"COALESCE((SELECT {_owner_sql('v.kind', 'v.id', 'v.body')} FROM versions v WHERE v.kind = 'policy' "
                  "AND v.id = {policy} ORDER BY v.version DESC LIMIT 1), 'central')")


def _v9_job_owners(db: sqlite3.Connection) -> None:
    """G18: a training job names its policy's owner (`owner` in its body), so an application's jobs are
    listed by an index. Jobs already there, and a job written without one (by a process from before),
    get their policy's (its last version's: an owner never changes) from a trigger."""
    db.execute("UPDATE jobs SET body = json_set(body, '$.owner', "
               f"{_JOB_OWNER_SQL.format(policy='jobs.policy')}) WHERE json_extract(body, '$.owner') IS NULL")
    db.execute("CREATE TRIGGER IF NOT EXISTS jobs_owner AFTER INSERT ON jobs "
               "WHEN json_extract(NEW.body, '$.owner') IS NULL BEGIN UPDATE jobs SET body = json_set(body, '$.owner', "
               f"{_JOB_OWNER_SQL.format(policy='NEW.policy')}) WHERE policy = NEW.policy; END")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_started ON jobs (json_extract(body, '$.started'))")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_owner_started ON jobs "
               "(json_extract(body, '$.owner'), json_extract(body, '$.started'))")


def _v1_base(db: sqlite3.Connection) -> None:
    db.executescript("BEGIN;" + _V1 + "COMMIT;")


MIGRATIONS = (_v1_base, _v2_record_dedupe, _v3_jobs_and_record_indexes, _v4_example_ids,
              _v5_feedback_records, _v6_feedback_authors,
              _v7_change_log, _v8_change_triggers, _v9_job_owners)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Bring the file's schema up to SCHEMA_VERSION; returns the version it had."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise StoreError(f"sqlite store {path}: schema version {found} was written by a newer gateway (this one "
                         f"knows up to {SCHEMA_VERSION}); upgrade the gateway or point store.url elsewhere")
    for number in range(found + 1, SCHEMA_VERSION + 1):
        if number == 1:
            MIGRATIONS[0](db)  # CREATE ... IF NOT EXISTS: also adopts files from before versioning
            db.execute("PRAGMA user_version = 1")
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if int(db.execute("PRAGMA user_version").fetchone()[0]) < number:  # another process may have run it
                MIGRATIONS[number - 1](db)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return found


SINCE_BY_TIME = 5000  # a `since` read with fewer entries since reads them by the time index and sorts them


def changes_query(limit: int, before: int | None, since: float | None, owner: str | None,
                  by_time: bool) -> tuple[str, List[Any]]:
    """A page of the change feed: newest first by seq, from the top of the table (or of the owner's
    index), or, `by_time`, from the entries created since `since` (the changes_created index), which a
    `since` later than most entries needs: scanning by seq would read every older entry to find none."""
    clauses: List[str] = ["seq < ?"]
    args: List[Any] = [before if before is not None else 1 << 62]
    for clause, value in (("created >= ?", since), ("owner = ?", owner)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    index = " INDEXED BY changes_created" if by_time and since is not None else ""
    return (f"SELECT seq, kind, id, version, created, author, note, action, owner FROM changes{index} "
            f"WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT {max(1, min(int(limit), MAX_CHANGES))}", args)


class SqliteStore(DocumentHistory):
    def __init__(self, path: str | Path, max_records: int = 100_000) -> None:
        self.path = Path(path)
        self.max_records = max_records
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                migrate(conn, self.path)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await self._run(shut)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda: self._db().execute("SELECT 1").fetchone())

    async def revision(self) -> int:
        return await self._run(lambda: int(self._db().execute(
            "SELECT value FROM meta WHERE key='revision'").fetchone()[0]))

    # --- documents ---------------------------------------------------------------------------

    def _write(self, kind: str, body: dict[str, Any], author: str, note: str, expected: int | None) -> Version:
        check_kind(kind)
        ident = doc_id(body)
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # the write lock: no other writer (thread or process) until COMMIT
        try:
            if expected is not None:  # compare-and-set, in the transaction that assigns the version
                found = db.execute("SELECT version FROM current WHERE kind=? AND id=? AND deleted=0",
                                   (kind, ident)).fetchone()
                current = int(found[0]) if found else 0
                if current != expected:
                    raise VersionConflict(kind, ident, expected, current)
            row = db.execute("SELECT MAX(version) FROM versions WHERE kind=? AND id=?", (kind, ident)).fetchone()
            version = (row[0] or 0) + 1
            created = time.time()
            db.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",  # its feed entry: by trigger (v8)
                       (kind, ident, version, json.dumps(body), created, author, note))
            db.execute("INSERT INTO current VALUES (?, ?, ?, 0) ON CONFLICT (kind, id) DO UPDATE SET "
                       "version=excluded.version, deleted=0", (kind, ident, version))
            db.execute("UPDATE meta SET value = value + 1 WHERE key='revision'")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return Version(kind, ident, version, body, created, author, note)

    async def put(self, kind: str, body: dict[str, Any], author: str, note: str = "", *,
                  expected_version: int | None = None) -> Version:
        return await self._run(self._write, kind, body, author, note, expected_version)

    @staticmethod
    def _version(row: tuple) -> Version:
        kind, ident, version, body, created, author, note = row
        return Version(kind, ident, version, json.loads(body), created, author, note)

    async def get(self, kind: str, doc_id: str, version: int | None = None) -> Version | None:
        check_kind(kind)

        def read() -> Version | None:
            db = self._db()
            if version is None:
                row = db.execute("SELECT v.* FROM versions v JOIN current c ON c.kind=v.kind AND c.id=v.id "
                                 "AND c.version=v.version WHERE v.kind=? AND v.id=? AND c.deleted=0",
                                 (kind, doc_id)).fetchone()
            else:
                row = db.execute("SELECT * FROM versions WHERE kind=? AND id=? AND version=?",
                                 (kind, doc_id, version)).fetchone()
            return self._version(row) if row else None
        return await self._run(read)

    async def list(self, kind: str) -> List[Version]:
        check_kind(kind)
        rows = await self._run(lambda: self._db().execute(
            "SELECT v.* FROM versions v JOIN current c ON c.kind=v.kind AND c.id=v.id AND c.version=v.version "
            "WHERE v.kind=? AND c.deleted=0 ORDER BY v.id", (kind,)).fetchall())
        return [self._version(r) for r in rows]

    async def versions(self, kind: str, doc_id: str) -> List[Version]:
        check_kind(kind)
        rows = await self._run(lambda: self._db().execute(
            "SELECT * FROM versions WHERE kind=? AND id=? ORDER BY version", (kind, doc_id)).fetchall())
        return [self._version(r) for r in rows]

    async def delete(self, kind: str, doc_id: str, author: str) -> bool:
        check_kind(kind)

        def remove() -> bool:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                changed = db.execute("UPDATE current SET deleted=1 WHERE kind=? AND id=? AND deleted=0",
                                     (kind, doc_id)).rowcount
                if changed:  # the trigger (v8) entered the deletion: who and when
                    db.execute("UPDATE meta SET value = value + 1 WHERE key='revision'")
                    db.execute("UPDATE changes SET author=?, created=? WHERE seq=(SELECT MAX(seq) FROM changes) "
                               "AND action='delete' AND kind=? AND id=?", (author, time.time(), kind, doc_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return bool(changed)
        return await self._run(remove)

    async def change_log(self, limit: int = 100, before: int | None = None, since: float | None = None,
                         owner: str | None = None) -> List[Change]:
        def read() -> List[Change]:
            db = self._db()
            by_time = since is not None and db.execute(  # few entries since: by the time index (else by seq)
                "SELECT COUNT(*) FROM (SELECT 1 FROM changes WHERE created >= ? LIMIT ?)",
                (since, SINCE_BY_TIME)).fetchone()[0] < SINCE_BY_TIME
            query, args = changes_query(limit, before, since, owner, by_time)
            return [Change(*row) for row in db.execute(query, args).fetchall()]
        return await self._run(read)

    # --- training data -----------------------------------------------------------------------

    _EXAMPLE = "SELECT text, label, synthetic, source, seq, created, author FROM examples"

    async def add_examples(self, policy_id: str, examples: List[Example]) -> int:
        now = time.time()
        rows = [(policy_id, e.text, check_label(e.label), int(e.synthetic), e.source, e.created or now, e.author)
                for e in examples]

        def insert() -> int:
            db = self._db()
            db.execute("BEGIN")
            db.executemany("INSERT INTO examples (policy, text, label, synthetic, source, created, author) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            return len(rows)
        return await self._run(insert)

    async def examples(self, policy_id: str, source: str | None = None, label: str | None = None,
                       after: int | None = None, limit: int | None = None) -> List[Example]:
        where: List[str] = ["policy=?"]
        args: List[Any] = [policy_id]
        for clause, value in (("source=?", source), ("label=?", label and label.upper()), ("seq>?", after)):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = f"{self._EXAMPLE} WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        rows = await self._run(lambda: self._db().execute(query, args).fetchall())
        return [Example(t, lab, bool(s), src, seq, created, author) for t, lab, s, src, seq, created, author in rows]

    async def update_example(self, policy_id: str, seq: int, text: str | None = None,
                             label: str | None = None) -> Example | None:
        checked = check_label(label) if label is not None else None
        if text == "":
            raise ValueError("a training row's text cannot be empty")

        def update() -> tuple[Any, ...] | None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("UPDATE examples SET text=COALESCE(?, text), label=COALESCE(?, label) WHERE policy=? "
                           "AND seq=?", (text, checked, policy_id, seq))
                row = db.execute(f"{self._EXAMPLE} WHERE policy=? AND seq=?", (policy_id, seq)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return row
        row = await self._run(update)
        return Example(row[0], row[1], bool(row[2]), *row[3:]) if row else None

    async def delete_examples(self, policy_id: str, seqs: List[int] | None = None,
                              source: str | None = None) -> int:
        where: List[str] = ["policy=?"]
        args: List[Any] = [policy_id]
        if seqs is not None:
            if not seqs:
                return 0
            where.append(f"seq IN ({','.join('?' * len(seqs))})")
            args += [int(s) for s in seqs]
        if source is not None:
            where.append("source=?")
            args.append(source)
        return int(await self._run(lambda: self._db().execute(
            f"DELETE FROM examples WHERE {' AND '.join(where)}", args).rowcount))

    # --- monitoring log ----------------------------------------------------------------------

    async def append_records(self, bodies: List[dict[str, Any]]) -> List[int]:
        def insert() -> List[int]:
            db = self._db()
            db.execute("BEGIN")
            seqs: List[int] = []
            for b in bodies:  # a record written twice (a retried write) is stored once
                key = record_key(b["id"], b.get("on", "")) if b.get("id") else None
                cur = db.execute("INSERT OR IGNORE INTO records (time, body, dedupe) VALUES (?, ?, ?)",
                                 (float(b.get("time", time.time())), json.dumps(b), key))
                if cur.rowcount and cur.lastrowid is not None:
                    seqs.append(cur.lastrowid)
            if seqs:  # retention: keep the newest max_records
                db.execute("DELETE FROM records WHERE seq <= ?", (seqs[-1] - self.max_records,))
            db.execute("COMMIT")
            return [int(s) for s in seqs]
        return await self._run(insert)

    async def records(self, limit: int = 100, before: int | None = None, since: float | None = None,
                      until: float | None = None, where: Callable[[dict[str, Any]], bool] | None = None,
                      **match: str) -> List[Record]:
        clauses: List[str] = ["seq < ?"]
        args: List[float | str] = []
        if since is not None:
            clauses.append("time >= ?")
            args.append(since)
        if until is not None:
            clauses.append("time <= ?")
            args.append(until)
        if "application" in match:  # indexed (records_app)
            clauses.append("json_extract(body, '$.application') = ?")
            args.append(match["application"])
        query = f"SELECT seq, time, body FROM records WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT 500"

        def read() -> List[Record]:
            out: list[Record] = []
            cursor = before if before is not None else 1 << 62
            db = self._db()
            while len(out) < limit:
                rows = db.execute(query, (cursor, *args)).fetchall()
                if not rows:
                    break
                for seq, t, body in rows:
                    parsed = json.loads(body)
                    if matches(parsed, match) and (where is None or where(parsed)):
                        out.append(Record(seq, t, parsed))
                        if len(out) >= limit:
                            break
                cursor = rows[-1][0]
            return out
        return await self._run(read)

    async def record(self, seq: int) -> Record | None:
        row = await self._run(lambda: self._db().execute(
            "SELECT seq, time, body FROM records WHERE seq=?", (seq,)).fetchone())
        return Record(row[0], row[1], json.loads(row[2])) if row else None

    async def record_by_id(self, record_id: str, on: str) -> Record | None:
        """By the dedupe key's unique index; a file written before it existed is searched for the id."""
        def read() -> tuple[Any, ...] | None:
            db = self._db()
            row = db.execute("SELECT seq, time, body FROM records WHERE dedupe=?", (record_key(record_id, on),)).fetchone()
            if row is None and db.execute("SELECT 1 FROM records WHERE dedupe IS NULL LIMIT 1").fetchone():
                row = db.execute("SELECT seq, time, body FROM records WHERE dedupe IS NULL AND json_extract(body, "
                                 "'$.id') = ? AND json_extract(body, '$.on') = ? ORDER BY seq DESC LIMIT 1",
                                 (record_id, on)).fetchone()
            return row
        row = await self._run(read)
        return Record(row[0], row[1], json.loads(row[2])) if row else None

    # --- feedback ------------------------------------------------------------------------------

    _FEEDBACK = "SELECT seq, record, policy, label, text, time, applied, record_key, author, row_seq FROM feedback"

    async def add_feedback(self, record_seq: int, policy_id: str, label: str, text: str,
                           record: str = "", author: str = "") -> Feedback:
        label = check_label(label)
        now = time.time()
        seq = await self._run(lambda: self._db().execute(
            "INSERT INTO feedback (record, policy, label, text, time, record_key, author) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record_seq, policy_id, label, text, now, record, author)).lastrowid)
        return Feedback(int(seq), record_seq, policy_id, label, text, now, False, record, author)

    @staticmethod
    def _feedback(row: tuple[Any, ...]) -> Feedback:
        s, r, p, lab, t, tm, a, key, author, row_seq = row
        return Feedback(s, r, p, lab, t, tm, bool(a), key, author, row_seq)

    async def feedback_item(self, seq: int) -> Feedback | None:
        row = await self._run(lambda: self._db().execute(self._FEEDBACK + " WHERE seq=?", (seq,)).fetchone())
        return self._feedback(row) if row else None

    async def feedback(self, policy_id: str, applied: bool | None = None) -> List[Feedback]:
        query = self._FEEDBACK + " WHERE policy=?"
        args: tuple = (policy_id,)
        if applied is not None:
            query += " AND applied=?"
            args += (int(applied),)
        rows = await self._run(lambda: self._db().execute(query + " ORDER BY seq", args).fetchall())
        return [self._feedback(r) for r in rows]

    async def record_feedback(self, records: List[str]) -> dict[str, List[Feedback]]:
        keys = sorted({k for k in records if k})
        out: dict[str, List[Feedback]] = {}

        def read() -> List[tuple[Any, ...]]:
            rows: List[tuple[Any, ...]] = []
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                rows += self._db().execute(f"{self._FEEDBACK} WHERE record_key IN ({','.join('?' * len(part))}) "
                                           "ORDER BY seq", part).fetchall()
            return rows
        for row in await self._run(read) if keys else []:
            item = self._feedback(row)
            out.setdefault(item.record, []).append(item)
        return out

    async def mark_applied(self, seqs: List[int]) -> None:
        await self._run(lambda: self._db().executemany("UPDATE feedback SET applied=1 WHERE seq=?",
                                                       [(s,) for s in seqs]))

    async def apply_feedback(self, policy_id: str, author: str) -> List[Feedback]:
        """In one transaction: an item is applied once, however many replicas apply at the same time."""
        def apply() -> List[Feedback]:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                now, out = time.time(), []
                for row in db.execute(self._FEEDBACK + " WHERE policy=? AND applied=0 ORDER BY seq",
                                      (policy_id,)).fetchall():
                    item = self._feedback(row)
                    written = db.execute("INSERT INTO examples (policy, text, label, synthetic, source, created, "
                                         "author) VALUES (?, ?, ?, 0, 'feedback', ?, ?)",
                                         (policy_id, item.text, item.label, now, author)).lastrowid
                    db.execute("UPDATE feedback SET applied=1, row_seq=? WHERE seq=?", (written, item.seq))
                    out.append(dataclasses.replace(item, applied=True, row=int(written or 0)))
                db.execute("COMMIT")
                return out
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return await self._run(apply)

    async def delete_feedback(self, seq: int, only_unapplied: bool = False) -> Feedback | None:
        def delete() -> Feedback | None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(self._FEEDBACK + " WHERE seq=?", (seq,)).fetchone()
                if row is not None and not (only_unapplied and row[6]):  # row[6]: applied
                    db.execute("DELETE FROM feedback WHERE seq=?", (seq,))
                db.execute("COMMIT")
                return self._feedback(row) if row else None
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return await self._run(delete)

    # --- training jobs -------------------------------------------------------------------------

    async def claim_job(self, policy_id: str, job: dict[str, Any], stale_after_s: float) -> dict[str, Any] | None:
        def claim() -> dict[str, Any] | None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT body FROM jobs WHERE policy=?", (policy_id,)).fetchone()
                running = json.loads(row[0]) if row else None
                now = time.time()
                if job_is_active(running, now, stale_after_s):
                    db.execute("COMMIT")
                    return running
                db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (policy_id, json.dumps({**job, "updated": now})))
                db.execute("COMMIT")
                return None
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return await self._run(claim)

    async def put_job(self, policy_id: str, job: dict[str, Any]) -> None:
        await self._run(lambda: self._db().execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)",
                                                   (policy_id, json.dumps({**job, "updated": time.time()}))))

    async def job(self, policy_id: str) -> dict[str, Any] | None:
        row = await self._run(lambda: self._db().execute("SELECT body FROM jobs WHERE policy=?",
                                                         (policy_id,)).fetchone())
        return with_age(json.loads(row[0]), time.time()) if row else None

    async def jobs(self, limit: int = 100, owner: str | None = None) -> List[dict[str, Any]]:
        """By the start index (all, or the owner's: `owner` in the body, v9)."""
        where, args = ("WHERE json_extract(body, '$.owner') = ? ", [owner]) if owner is not None else ("", [])
        rows = await self._run(lambda: self._db().execute(
            f"SELECT body FROM jobs {where}ORDER BY json_extract(body, '$.started') DESC, policy LIMIT ?",
            (*args, max(1, min(int(limit), MAX_CHANGES)))).fetchall())
        now = time.time()
        return [with_age(json.loads(r[0]), now) for r in rows]
