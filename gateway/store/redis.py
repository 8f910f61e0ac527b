# size: one Store implementation against Redis: its Lua scripts, then every method of the
# Store Protocol, each a few commands
"""The shared store for several replicas: Redis (redis-py asyncio). Every key starts with `prefix`, so
deployments and test runs sharing a server never collide. The monitoring log is a Redis Stream capped
at `max_records` entries; every document write bumps `{prefix}revision` and is published on
`{prefix}changes` (replicas also poll the revision, for messages missed while disconnected)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store.base import (
    KINDS,
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
    example_matches,
    in_window,
    matches,
    record_key,
    with_age,
)
from gateway.store.changelog import CLOCK_SKEW_S, MAX_CHANGES, Change, change_owner

FILL_LOCK_S = 60     # how long a filler's mark keeps other replicas waiting (`RedisStore.fill`)
FILL_WAIT_S = 10.0   # the longest a feed read waits for another replica's fill before filling too
FILL_BATCH = 500     # documents read, or entries written, per round trip while filling

# `list` is also a Store method: inside the classes, annotations name the builtin through this alias.
List = list

# Write a new version of a document: assign its number (HINCRBY of the kind's counter), store it, point
# `current` at it and bump the revision, in one script, so no other write (from any replica) lands in
# between. With an expected version (G19's compare-and-set), the write happens only if the document's
# current version is that one (0: none, or deleted), checked in the same script. The change feed (G18,
# gateway/store/changelog.py) gets its entry in the same script. KEYS: the kind's version counters, the
# document's versions, the kind's current pointers, the revision, then the feed's (_FEED_KEYS); ARGV: id,
# the entry (JSON), the expected version or "", the feed entry (a JSON object without seq and version).
# Returns {version, revision}, or {0, the current version} if refused.
#
# The feed's first write or deletion (from any replica) first reserves the seqs of the versions stored
# before the feed existed (`reserve`): it copies every kind's version counters (document id -> how many
# versions) as they are then, and moves the seq counter past one seq for each, all in the script, so every
# later entry sorts after them; `RedisStore.fill` enters those versions into the reserved seqs later.
# KEYS[8..]: the reservation ("base count"), the filled mark, the four kinds' counters, the four copies.
_FEED = """
local function reserve()
  if redis.call('EXISTS', KEYS[8]) == 1 or redis.call('EXISTS', KEYS[9]) == 1 then
    return
  end
  local n = 0
  for i = 0, 3 do
    local counts = redis.call('HGETALL', KEYS[10 + i])
    for j = 1, #counts, 2 do
      n = n + tonumber(counts[j + 1])
      redis.call('HSET', KEYS[14 + i], counts[j], counts[j + 1])
    end
  end
  local base = tonumber(redis.call('GET', KEYS[5]) or '0')
  redis.call('SET', KEYS[5], string.format('%d', base + n))
  redis.call('SET', KEYS[8], string.format('%d %d', base, n))
end
local function feed(version, entry)
  local seq = redis.call('INCR', KEYS[5])
  local member = '{"seq": ' .. seq .. ', "version": ' .. version .. ', ' .. string.sub(entry, 2)
  redis.call('ZADD', KEYS[6], seq, member)
  redis.call('ZADD', KEYS[7], seq, member)
end
"""
_PUT = _FEED + """
if ARGV[3] ~= '' then
  local current = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
  if current ~= tonumber(ARGV[3]) then
    return {0, current}
  end
end
reserve()
local version = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], tostring(version), ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], tostring(version))
feed(version, ARGV[4])
return {version, redis.call('INCR', KEYS[4])}
"""

# Delete a document (its current pointer) and enter the deletion in the feed, naming the version that was
# current. KEYS: as _PUT's; ARGV: id, the feed entry. Returns the new revision, or 0 if there was none.
_DELETE = _FEED + """
local current = redis.call('HGET', KEYS[3], ARGV[1])
if not current then
  return 0
end
reserve()
redis.call('HDEL', KEYS[3], ARGV[1])
feed(current, ARGV[2])
return redis.call('INCR', KEYS[4])
"""

# Only the reservation (a feed read before any write since the upgrade). KEYS: as _PUT's.
_RESERVE = _FEED + """
reserve()
return redis.call('GET', KEYS[8])
"""


# INCR the record counter and XADD the record under that number as its stream id, atomically, so
# concurrent writers never add ids out of order. A record with a dedupe key already seen in the last day
# is skipped: a write that timed out on the client but ran on the server is not stored twice on retry.
# The dedupe key holds the record's seq, so a record written in the last day is found by its id at once.
# ARGV: max_records, then (dedupe key or "", body) pairs.
_APPEND = """
local out = {}
local n = 0
for i = 2, #ARGV, 2 do
  local key = KEYS[3] .. ARGV[i]
  if ARGV[i] == '' or redis.call('EXISTS', key) == 0 then
    local seq = redis.call('INCR', KEYS[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], seq .. '-1', 'b', ARGV[i + 1])
    if ARGV[i] ~= '' then
      redis.call('SET', key, seq, 'EX', 86400)
    end
    n = n + 1
    out[n] = seq
  end
end
return out
"""


# Start a training job unless one is running with a fresh heartbeat. KEYS: the jobs hash, the jobs by
# start time, the owner's jobs by start time (sorted sets of policy ids); ARGV: policy id, the new job
# (JSON), now, stale_after_s, the job's start time. Returns the running job, or false.
_CLAIM = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local job = cjson.decode(raw)
  if (job.status == 'training_queued' or job.status == 'training')
     and tonumber(ARGV[3]) - tonumber(job.updated or 0) <= tonumber(ARGV[4]) then
    return raw
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return false
"""


# Edit or delete training rows in a policy's list in place. KEYS[1]: the list; ARGV[1]: "update" or
# "delete"; update: ARGV[2] the row id, ARGV[3] new text or "", ARGV[4] new label or "" (returns the new
# row or false); delete: ARGV[2] a comma-separated set of ids or "", ARGV[3] a source or "" (returns how
# many went). Deleted rows are overwritten with a tombstone and the tombstones removed in one LREM.
_EXAMPLES = """
local rows = redis.call('LRANGE', KEYS[1], 0, -1)
if ARGV[1] == 'update' then
  for i, raw in ipairs(rows) do
    local row = cjson.decode(raw)
    if tostring(row.seq) == ARGV[2] then
      if ARGV[3] ~= '' then row.text = ARGV[3] end
      if ARGV[4] ~= '' then row.label = ARGV[4] end
      local out = cjson.encode(row)
      redis.call('LSET', KEYS[1], i - 1, out)
      return out
    end
  end
  return false
end
local ids = {}
for id in string.gmatch(ARGV[2], '[^,]+') do ids[id] = true end
local n = 0
for i, raw in ipairs(rows) do
  local row = cjson.decode(raw)
  if (ARGV[2] == '' or ids[tostring(row.seq)]) and (ARGV[3] == '' or row.source == ARGV[3]) then
    redis.call('LSET', KEYS[1], i - 1, '\0deleted')
    n = n + 1
  end
end
if n > 0 then redis.call('LREM', KEYS[1], 0, '\0deleted') end
return n
"""


# Apply a policy's unapplied feedback: each item becomes a training row (source feedback) and keeps the
# row's id, in one script, so two replicas applying at once apply an item once. KEYS: the feedback hash,
# the policy's feedback list, the row counter, the policy's rows; ARGV: author, now. Returns the items
# applied (JSON).
_APPLY_FEEDBACK = """
local out = {}
for _, seq in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local raw = redis.call('HGET', KEYS[1], seq)
  if raw then
    local item = cjson.decode(raw)
    if not item.applied then
      local row = redis.call('INCR', KEYS[3])
      redis.call('RPUSH', KEYS[4], cjson.encode({text = item.text, label = item.label, synthetic = false,
        source = 'feedback', seq = row, created = tonumber(ARGV[2]), author = ARGV[1]}))
      item.applied = true
      item.row = row
      local updated = cjson.encode(item)
      redis.call('HSET', KEYS[1], seq, updated)
      out[#out + 1] = updated
    end
  end
end
return out
"""


# Delete a feedback item (its hash entry and its places in the policy's and the record's lists), unless
# ARGV[2] is '1' and it is applied: then it stays. KEYS: the feedback hash, the policy's feedback list,
# the record's feedback list; ARGV: the item's seq, only_unapplied. Returns {deleted 0|1, the item's JSON}
# or nil when there is no such item.
_DELETE_FEEDBACK = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return nil end
if ARGV[2] == '1' and cjson.decode(raw).applied then return {0, raw} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('LREM', KEYS[3], 0, ARGV[1])
return {1, raw}
"""


class RedisStore(DocumentHistory):
    def __init__(self, url: str, prefix: str = "gg:", max_records: int = 100_000,
                 timeout_s: float = 0.5) -> None:
        self.prefix = prefix
        self.max_records = max_records
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                              decode_responses=True)
        self._put = self.client.register_script(_PUT)
        self._delete = self.client.register_script(_DELETE)
        self._reserve = self.client.register_script(_RESERVE)
        self._jobs_indexed = False  # the jobs' sorted sets hold the jobs from before them (`index_jobs`)
        self._filled = False  # the feed holds the versions from before it (`fill`), as far as this replica knows
        self._append = self.client.register_script(_APPEND)
        self._claim = self.client.register_script(_CLAIM)
        self._examples = self.client.register_script(_EXAMPLES)
        self._apply_feedback = self.client.register_script(_APPLY_FEEDBACK)
        self._delete_feedback = self.client.register_script(_DELETE_FEEDBACK)

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _call(self, coro):
        try:
            return await coro
        except RedisError as exc:
            raise StoreError(f"redis store: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def revision(self) -> int:
        return int(await self._call(self.client.get(self.k("revision"))) or 0)

    # --- documents ---------------------------------------------------------------------------

    async def put(self, kind: str, body: dict[str, Any], author: str, note: str = "", *,
                  expected_version: int | None = None) -> Version:
        check_kind(kind)
        ident = doc_id(body)
        created = time.time()
        entry = json.dumps({"body": body, "created": created, "author": author, "note": note})
        owner = change_owner(kind, ident, body)
        keys = [self.k("vn", kind), self.k("v", kind, ident), self.k("cur", kind), self.k("revision"),
                *self._feed_keys(owner)]
        expected = "" if expected_version is None else str(int(expected_version))
        feed = self._feed_entry(Change(0, kind, ident, 0, created, author, note, "write", owner))
        version, other = await self._call(self._put(keys=keys, args=[ident, entry, expected, feed]))
        if not version:  # refused: `other` is the current version
            raise VersionConflict(kind, ident, int(expected), int(other))
        await self._call(self.client.publish(self.k("changes"), str(other)))  # the new revision
        return Version(kind, ident, int(version), body, created, author, note)

    @staticmethod
    def _version(kind: str, ident: str, version: int, raw: str) -> Version:
        entry = json.loads(raw)
        return Version(kind, ident, version, entry["body"], entry["created"], entry["author"], entry.get("note", ""))

    async def get(self, kind: str, doc_id: str, version: int | None = None) -> Version | None:
        check_kind(kind)
        if version is None:
            current = await self._call(self.client.hget(self.k("cur", kind), doc_id))
            if current is None:
                return None
            version = int(current)
        raw = await self._call(self.client.hget(self.k("v", kind, doc_id), str(version)))
        return self._version(kind, doc_id, version, raw) if raw else None

    async def list(self, kind: str) -> List[Version]:
        check_kind(kind)
        current = await self._call(self.client.hgetall(self.k("cur", kind)))
        out = []
        for ident in sorted(current):
            doc = await self.get(kind, ident, int(current[ident]))
            if doc is not None:
                out.append(doc)
        return out

    async def versions(self, kind: str, doc_id: str) -> List[Version]:
        check_kind(kind)
        raw = await self._call(self.client.hgetall(self.k("v", kind, doc_id)))
        return [self._version(kind, doc_id, int(v), raw[v]) for v in sorted(raw, key=int)]

    async def delete(self, kind: str, doc_id: str, author: str) -> bool:
        check_kind(kind)
        doc = await self.get(kind, doc_id)  # whose it is, for the feed (an object's owner never changes)
        if doc is None:
            return False
        owner = change_owner(kind, doc_id, doc.body)
        feed = self._feed_entry(Change(0, kind, doc_id, 0, time.time(), author, "", "delete", owner))
        keys = [self.k("vn", kind), self.k("v", kind, doc_id), self.k("cur", kind), self.k("revision"),
                *self._feed_keys(owner)]
        revision = int(await self._call(self._delete(keys=keys, args=[doc_id, feed])))
        if revision:
            await self._call(self.client.publish(self.k("changes"), str(revision)))
        return bool(revision)

    # --- the change feed (G18) -----------------------------------------------------------------

    def _feed_keys(self, owner: str) -> List[str]:
        """The feed's keys in the write scripts: the seq counter, every entry, the owner's entries, then the
        reservation of the older versions' seqs (`_FEED`)."""
        return [self.k("chseq"), self.k("chlog"), self.k("chlog", "o", owner), self.k("chlog", "reserved"),
                self.k("chlog", "filled"), *(self.k("vn", kind) for kind in KINDS),
                *(self.k("chlog", "old", kind) for kind in KINDS)]

    @staticmethod
    def _feed_entry(c: Change) -> str:
        """The entry as the scripts complete it (they put seq and version first)."""
        return json.dumps({k: v for k, v in c.meta().items() if k not in ("seq", "version")})

    async def change_log(self, limit: int = 100, before: int | None = None, since: float | None = None,
                         owner: str | None = None) -> List[Change]:
        """Newest first by seq, in pages of the sorted set. `created` is the writing replica's clock, so a
        `since` scan stops only at an entry CLOCK_SKEW_S older than `since`."""
        if not self._filled:
            await self.fill()
        key = self.k("chlog") if owner is None else self.k("chlog", "o", owner)
        limit = max(1, min(int(limit), MAX_CHANGES))
        top = f"({before}" if before is not None else "+inf"
        out: List[Change] = []
        while len(out) < limit:
            batch = await self._call(self.client.zrevrangebyscore(key, top, "-inf", start=0, num=limit,
                                                                  withscores=True))
            for member, score in batch:
                change = Change(**json.loads(member))
                if since is not None and change.created < since:
                    if change.created < since - CLOCK_SKEW_S:
                        return out
                    continue
                out.append(change)
                if len(out) >= limit:
                    break
            if len(batch) < limit:
                break
            top = f"({int(batch[-1][1])}"
        return out

    async def fill(self) -> None:
        """Enter the versions written before the feed existed into the seqs reserved for them (`_FEED`:
        below every later entry), before this replica's first read of the feed. The entries are fixed by the
        reservation (each version's seq by the order of time, kind, id, version), so replicas filling at
        once, or a fill run again, write the same members: nothing is entered twice. A replica that finds
        another filling waits for it up to FILL_WAIT_S, then fills too; a write never waits."""
        if await self._call(self.client.exists(self.k("chlog", "filled"))):
            self._filled = True
            return
        if not await self._call(self.client.set(self.k("chlog", "filling"), "1", nx=True, ex=FILL_LOCK_S)):
            deadline = time.monotonic() + FILL_WAIT_S
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                if await self._call(self.client.exists(self.k("chlog", "filled"))):
                    self._filled = True
                    return
        keys = [self.k("vn", "policy"), self.k("v", "policy", ""), self.k("cur", "policy"), self.k("revision")]
        await self._call(self._reserve(keys=[*keys, *self._feed_keys("central")], args=[]))
        pipe = self.client.pipeline(transaction=True)  # the reservation and its copies, as one snapshot
        pipe.get(self.k("chlog", "reserved"))
        for kind in KINDS:
            pipe.hgetall(self.k("chlog", "old", kind))
        reserved, *counts = await self._call(pipe.execute())
        base = int(reserved.split()[0]) if reserved else 0
        logged = {(c["kind"], c["id"], c["version"]) for c in map(json.loads, await self._call(
            self.client.zrangebyscore(self.k("chlog"), "-inf", base)))}  # entered before the reservation
        old = [c for c in await self._old_versions(dict(zip(KINDS, counts)))
               if (c.kind, c.id, c.version) not in logged]
        old.sort(key=lambda c: (c.created, c.kind, c.id, c.version))
        for start in range(0, len(old), FILL_BATCH):
            pipe = self.client.pipeline(transaction=False)
            for seq, c in enumerate(old[start:start + FILL_BATCH], base + 1 + start):
                member = json.dumps({**c.meta(), "seq": seq})
                pipe.zadd(self.k("chlog"), {member: seq})
                pipe.zadd(self.k("chlog", "o", c.owner), {member: seq})
            await self._call(pipe.execute())
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.k("chlog", "filled"), "1")
        pipe.delete(self.k("chlog", "filling"))
        await self._call(pipe.execute())
        self._filled = True

    async def _old_versions(self, counts: dict[str, dict[str, str]]) -> List[Change]:
        """The feed entries (seq 0) of the versions the reservation counted: per kind, id -> how many."""
        out: List[Change] = []
        for kind, found in counts.items():
            ids = sorted(found)
            for start in range(0, len(ids), FILL_BATCH):
                chunk = ids[start:start + FILL_BATCH]
                pipe = self.client.pipeline(transaction=False)
                for ident in chunk:
                    pipe.hmget(self.k("v", kind, ident), [str(n) for n in range(1, int(found[ident]) + 1)])
                for ident, entries in zip(chunk, await self._call(pipe.execute())):
                    for number, raw in enumerate(entries, 1):
                        if raw:
                            entry = json.loads(raw)
                            out.append(Change(0, kind, ident, number, entry["created"], entry["author"],
                                              entry.get("note", ""), "write",
                                              change_owner(kind, ident, entry["body"])))
        return out

    async def changes(self):
        """Revision numbers as other replicas publish them (pub/sub); ends with StoreError on a lost link."""
        pubsub = self.client.pubsub()
        try:
            await self._call(pubsub.subscribe(self.k("changes")))
            while True:
                message = await self._call(pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0))
                if message is not None:
                    yield int(message["data"])
        finally:
            await pubsub.aclose()

    # --- training data -----------------------------------------------------------------------

    async def add_examples(self, policy_id: str, examples: List[Example]) -> int:
        if not examples:
            return 0
        first = int(await self._call(self.client.incrby(self.k("exseq"), len(examples)))) - len(examples) + 1
        now = time.time()
        rows = [json.dumps({"text": e.text, "label": check_label(e.label), "synthetic": e.synthetic,
                            "source": e.source, "seq": first + i, "created": e.created or now, "author": e.author})
                for i, e in enumerate(examples)]
        await self._call(self.client.rpush(self.k("ex", policy_id), *rows))
        return len(rows)

    @staticmethod
    def _example(r: dict[str, Any]) -> Example:
        return Example(r["text"], r["label"], r["synthetic"], r["source"], r["seq"], r.get("created", 0.0),
                       r.get("author", ""))

    async def examples(self, policy_id: str, source: str | None = None, label: str | None = None,
                       after: int | None = None, limit: int | None = None) -> List[Example]:
        """The list is in id order; filters and paging run here (a policy's rows are read whole)."""
        rows = await self._call(self.client.lrange(self.k("ex", policy_id), 0, -1))
        out = [e for e in map(self._example, map(json.loads, rows)) if example_matches(e, source, label, after)]
        return out if limit is None else out[:limit]

    async def update_example(self, policy_id: str, seq: int, text: str | None = None,
                             label: str | None = None) -> Example | None:
        checked = check_label(label) if label is not None else ""
        if text == "":
            raise ValueError("a training row's text cannot be empty")
        raw = await self._call(self._examples(keys=[self.k("ex", policy_id)],
                                              args=["update", str(seq), text or "", checked]))
        return self._example(json.loads(raw)) if raw else None

    async def delete_examples(self, policy_id: str, seqs: List[int] | None = None,
                              source: str | None = None) -> int:
        if seqs is not None and not seqs:
            return 0
        ids = ",".join(str(int(s)) for s in seqs) if seqs is not None else ""
        return int(await self._call(self._examples(keys=[self.k("ex", policy_id)],
                                                   args=["delete", ids, source or ""])))

    # --- monitoring log ----------------------------------------------------------------------

    async def append_records(self, bodies: List[dict[str, Any]]) -> List[int]:
        if not bodies:
            return []
        args = [str(self.max_records)]
        for b in bodies:
            key = record_key(b["id"], b.get("on", "")) if b.get("id") else ""
            args += [key, json.dumps({"time": float(b.get("time", time.time())), "body": b})]
        seqs = await self._call(self._append(keys=[self.k("records"), self.k("recseq"), self.k("recid:")],
                                             args=args))
        return [int(s) for s in seqs]

    @staticmethod
    def _record(entry_id: str, fields: dict[str, str]) -> Record:
        data = json.loads(fields["b"])
        return Record(int(entry_id.split("-")[0]), data["time"], data["body"])

    async def records(self, limit: int = 100, before: int | None = None, since: float | None = None,
                      until: float | None = None, where: Callable[[dict[str, Any]], bool] | None = None,
                      **match: str) -> List[Record]:
        """Newest first. The stream is ordered by seq, not time (a record buffered through an outage is
        written late), so a time window filters the scan rather than ending it; the scan is bounded by the
        stream's length (`max_records`)."""
        out: list[Record] = []
        upper = f"({before}-1" if before is not None else "+"
        while len(out) < limit:
            batch = await self._call(self.client.xrevrange(self.k("records"), max=upper, min="-", count=500))
            if not batch:
                break
            for entry_id, fields in batch:
                record = self._record(entry_id, fields)
                if (in_window(record.time, since, until) and matches(record.body, match)
                        and (where is None or where(record.body))):
                    out.append(record)
                    if len(out) >= limit:
                        break
            upper = f"({batch[-1][0]}"
        return out

    async def record(self, seq: int) -> Record | None:
        batch = await self._call(self.client.xrange(self.k("records"), min=f"{seq}-1", max=f"{seq}-1", count=1))
        return self._record(*batch[0]) if batch else None

    async def record_by_id(self, record_id: str, on: str) -> Record | None:
        """One GET and one XRANGE for a record written in the last day (its dedupe key holds its seq); an
        older one is looked for in the log (a scan bounded by `max_records`)."""
        seq = await self._call(self.client.get(self.k("recid:") + record_key(record_id, on)))
        if seq is not None and seq.isdigit():
            record = await self.record(int(seq))
            if record is not None and record.body.get("id") == record_id and record.body.get("on") == on:
                return record
        found = await self.records(1, None, id=record_id, on=on)
        return found[0] if found else None

    # --- feedback ------------------------------------------------------------------------------

    async def add_feedback(self, record_seq: int, policy_id: str, label: str, text: str,
                           record: str = "", author: str = "") -> Feedback:
        label = check_label(label)
        seq = int(await self._call(self.client.incr(self.k("fbseq"))))
        item = Feedback(seq, record_seq, policy_id, label, text, time.time(), False, record, author)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.k("fb"), str(seq), json.dumps(item.__dict__))
        pipe.rpush(self.k("fb", policy_id), str(seq))
        if record:
            pipe.rpush(self.k("fbrec", record), str(seq))
        await self._call(pipe.execute())
        return item

    async def record_feedback(self, records: List[str]) -> dict[str, List[Feedback]]:
        keys = sorted({k for k in records if k})
        if not keys:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.lrange(self.k("fbrec", key), 0, -1)
        seqs = [s for found in await self._call(pipe.execute()) for s in found]
        if not seqs:
            return {}
        out: dict[str, List[Feedback]] = {}
        for raw in await self._call(self.client.hmget(self.k("fb"), seqs)):
            if raw:
                item = Feedback(**json.loads(raw))
                out.setdefault(item.record, []).append(item)
        for items in out.values():
            items.sort(key=lambda f: f.seq)
        return out

    async def feedback(self, policy_id: str, applied: bool | None = None) -> List[Feedback]:
        seqs = await self._call(self.client.lrange(self.k("fb", policy_id), 0, -1))
        if not seqs:
            return []
        raw = await self._call(self.client.hmget(self.k("fb"), seqs))
        items = [Feedback(**json.loads(r)) for r in raw if r]
        return [f for f in items if applied is None or f.applied == applied]

    async def feedback_item(self, seq: int) -> Feedback | None:
        raw = await self._call(self.client.hget(self.k("fb"), str(seq)))
        return Feedback(**json.loads(raw)) if raw else None

    async def apply_feedback(self, policy_id: str, author: str) -> List[Feedback]:
        applied = await self._call(self._apply_feedback(
            keys=[self.k("fb"), self.k("fb", policy_id), self.k("exseq"), self.k("ex", policy_id)],
            args=[author, repr(time.time())]))
        return [Feedback(**json.loads(raw)) for raw in applied]

    async def delete_feedback(self, seq: int, only_unapplied: bool = False) -> Feedback | None:
        """The item is read again inside the script that deletes it, so an apply in between is seen
        (its policy and record never change)."""
        item = await self.feedback_item(seq)
        if item is None:
            return None
        found = await self._call(self._delete_feedback(
            keys=[self.k("fb"), self.k("fb", item.policy_id), self.k("fbrec", item.record)],
            args=[str(seq), "1" if only_unapplied else "0"]))
        return Feedback(**json.loads(found[1])) if found else None

    async def mark_applied(self, seqs: List[int]) -> None:
        if not seqs:
            return
        raw = await self._call(self.client.hmget(self.k("fb"), [str(s) for s in seqs]))
        updates: dict[Any, Any] = {}  # redis-py's mapping type is invariant in its keys
        for r in raw:
            if r:
                data = json.loads(r)
                data["applied"] = True
                updates[str(data["seq"])] = json.dumps(data)
        if updates:
            await self._call(self.client.hset(self.k("fb"), mapping=updates))

    # --- training jobs -------------------------------------------------------------------------

    async def _now(self) -> float:
        """Redis's clock, which every replica shares (theirs may disagree)."""
        seconds, micros = await self._call(self.client.time())
        return seconds + micros / 1e6

    async def _job_owner(self, policy_id: str, job: dict[str, Any]) -> str:
        """Whose the job is: as the job says (TrainingJobs records it), else its policy's owner (its last
        version, also when deleted: an owner never changes)."""
        owner = job.get("owner")
        if isinstance(owner, str) and owner:
            return owner
        last = await self._call(self.client.hget(self.k("vn", "policy"), policy_id))
        raw = await self._call(self.client.hget(self.k("v", "policy", policy_id), str(last))) if last else None
        return change_owner("policy", policy_id, json.loads(raw)["body"] if raw else {})

    def _job_keys(self, owner: str) -> List[str]:
        """The jobs hash, then the sorted sets of policy ids by their job's start: every job, the owner's."""
        return [self.k("jobs"), self.k("jobs", "t"), self.k("jobs", "t", "o", owner)]

    async def claim_job(self, policy_id: str, job: dict[str, Any], stale_after_s: float) -> dict[str, Any] | None:
        now = await self._now()
        owner = await self._job_owner(policy_id, job)
        running = await self._call(self._claim(keys=self._job_keys(owner),
                                               args=[policy_id, json.dumps({**job, "owner": owner, "updated": now}),
                                                     now, stale_after_s, float(job.get("started") or 0)]))
        return json.loads(running) if running else None

    async def put_job(self, policy_id: str, job: dict[str, Any]) -> None:
        now = await self._now()
        owner = await self._job_owner(policy_id, job)
        started = float(job.get("started") or 0)
        pipe = self.client.pipeline(transaction=True)
        jobs, by_time, owners = self._job_keys(owner)
        pipe.hset(jobs, policy_id, json.dumps({**job, "owner": owner, "updated": now}))
        pipe.zadd(by_time, {policy_id: started})
        pipe.zadd(owners, {policy_id: started})
        await self._call(pipe.execute())

    async def job(self, policy_id: str) -> dict[str, Any] | None:
        pipe = self.client.pipeline(transaction=False)  # the job and Redis's clock in one round trip
        pipe.hget(self.k("jobs"), policy_id)
        pipe.time()
        raw, (seconds, micros) = await self._call(pipe.execute())
        return with_age(json.loads(raw), seconds + micros / 1e6) if raw else None

    async def jobs(self, limit: int = 100, owner: str | None = None) -> List[dict[str, Any]]:
        """The most recently started, by the sorted sets of policy ids (all, or the owner's): one page of
        the set and the jobs on it, never the whole hash."""
        if not self._jobs_indexed:
            await self.index_jobs()
        key = self.k("jobs", "t") if owner is None else self.k("jobs", "t", "o", owner)
        ids = await self._call(self.client.zrevrange(key, 0, max(1, min(int(limit), MAX_CHANGES)) - 1))
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.k("jobs"), ids)
        pipe.time()
        raw, (seconds, micros) = await self._call(pipe.execute())
        found = sorted((json.loads(r) for r in raw if r),
                       key=lambda j: (-float(j.get("started") or 0), str(j.get("policy"))))
        return [with_age(j, seconds + micros / 1e6) for j in found]

    async def index_jobs(self) -> None:
        """Enter the jobs stored before the sorted sets existed, once per store (before this replica's first
        `jobs`), a batch of the hash at a time; a job with no owner is its policy's (one read each). Entries
        only ever move to a later start (ZADD GT), so replicas indexing at once, or a job claimed meanwhile,
        leave each policy at its last job's start."""
        if await self._call(self.client.exists(self.k("jobs", "indexed"))):
            self._jobs_indexed = True
            return
        cursor = 0
        while True:
            cursor, found = await self._call(self.client.hscan(self.k("jobs"), cursor, count=FILL_BATCH))
            jobs = {policy: json.loads(raw) for policy, raw in found.items()}
            owners = {p: await self._job_owner(p, j) for p, j in jobs.items()}  # a read only for an old job
            pipe = self.client.pipeline(transaction=False)
            for policy, job in jobs.items():
                started = float(job.get("started") or 0)
                pipe.zadd(self.k("jobs", "t"), {policy: started}, gt=True)
                pipe.zadd(self.k("jobs", "t", "o", owners[policy]), {policy: started}, gt=True)
            await self._call(pipe.execute())
            if not int(cursor):
                break
        await self._call(self.client.set(self.k("jobs", "indexed"), "1"))
        self._jobs_indexed = True
