"""The Store protocol: what the gateway keeps beyond its config file, with two implementations
(SQLite: embedded default; Redis: shared by replicas) that pass one contract test suite.

Model:
- **Documents** of a few kinds (policy, stage, application), each a JSON object with an `id`. Every
  write creates a new immutable **version**; `current` points at one of them. A write may name the
  version it is based on (`expected_version`): the store refuses it, atomically, if the document moved
  on. `revert` makes an earlier version current again by writing it as a new version (history is never
  rewritten).
  Deleting keeps the history; a deleted document is absent from `get` and `list`.
- **Examples**: labelled training rows per policy, each with an id (`seq`), `created`, `author` and
  `source`; a row can be edited or deleted (one by id, or all of one source), listed a page at a time.
- **Records**: the monitoring log (append-only, bounded: the oldest beyond `max_records` go).
- **Feedback**: a corrected label for a named policy on a record, with an id (`seq`), `time` and
  `author`; applying it writes a training row whose id the item keeps (`row`); an item can be deleted.
- **Jobs**: the status of a policy's training (one per policy), shared by the replicas: `claim_job`
  starts one only when no other is running (or the running one stopped sending heartbeats).
- A **revision** counter that every document write bumps: replicas compare it to know their plan is
  stale (plus a notification channel where the implementation has one).

Every method is async; implementations never block the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, Protocol

from gateway.errors import NotFound, StoreError, VersionConflict  # noqa: F401  (re-exported; defined there)
from gateway.store.changelog import Change

# `list` is also a Store method: inside the classes, annotations name the builtin through this alias.
List = list

KINDS = ("policy", "stage", "application", "pin")


@dataclass(frozen=True)
class Version:
    kind: str
    id: str
    version: int
    body: dict[str, Any]
    created: float
    author: str
    note: str = ""


@dataclass(frozen=True)
class Example:
    text: str
    label: str                     # PASS | FAIL (seed 000's compliance status)
    synthetic: bool = False
    source: str = "manual"         # manual | synthetic | feedback
    seq: int = 0                   # the row's id, given by the store
    created: float = 0.0           # stamped by the store on add (0: a row from before rows had times)
    author: str = ""               # who added it (central | app:<id>)


@dataclass(frozen=True)
class Record:
    seq: int
    time: float
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    seq: int
    record_seq: int
    policy_id: str
    label: str                     # PASS | FAIL: what the policy should have said
    text: str
    time: float
    applied: bool = False
    record: str = ""               # the record's key (`record_key(id, on)`); "" for feedback from before keys
    author: str = ""               # who gave it (central | app:<id>); "" for feedback from before authors
    row: int = 0                   # the training row applying it wrote (0: not applied, or applied before rows were kept)


class Store(Protocol):
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def revision(self) -> int: ...

    # documents
    # `expected_version`: compare-and-set (G19). The write happens only if the document's current version
    # is that one (0: it does not exist or was deleted, so 0 means create only), checked atomically with
    # assigning the new version (across replicas sharing the store); else VersionConflict, carrying the
    # current version (its `param` is "expected_version"; the registry names the caller's).
    async def put(self, kind: str, body: dict[str, Any], author: str, note: str = "", *,
                  expected_version: int | None = None) -> Version: ...
    async def get(self, kind: str, doc_id: str, version: int | None = None) -> Version | None: ...
    async def list(self, kind: str) -> List[Version]: ...
    async def versions(self, kind: str, doc_id: str) -> List[Version]: ...
    async def revert(self, kind: str, doc_id: str, version: int, author: str) -> Version: ...
    async def delete(self, kind: str, doc_id: str, author: str) -> bool: ...

    # training data
    async def add_examples(self, policy_id: str, examples: List[Example]) -> int: ...
    async def examples(self, policy_id: str, source: str | None = None, label: str | None = None,
                       after: int | None = None, limit: int | None = None) -> List[Example]: ...
    async def update_example(self, policy_id: str, seq: int, text: str | None = None,
                             label: str | None = None) -> Example | None: ...
    async def delete_examples(self, policy_id: str, seqs: List[int] | None = None,
                              source: str | None = None) -> int: ...

    # monitoring log
    async def append_records(self, bodies: List[dict[str, Any]]) -> List[int]: ...
    # `where`: a further test on a record's body (e.g. "a monitor-mode stage triggered"), applied while
    # scanning, so `limit` counts matching records.
    async def records(self, limit: int = 100, before: int | None = None, since: float | None = None,
                      until: float | None = None, where: Callable[[dict[str, Any]], bool] | None = None,
                      **match: str) -> List[Record]: ...
    async def record(self, seq: int) -> Record | None: ...
    async def record_by_id(self, record_id: str, on: str) -> Record | None: ...

    # feedback
    async def add_feedback(self, record_seq: int, policy_id: str, label: str, text: str,
                           record: str = "", author: str = "") -> Feedback: ...
    async def record_feedback(self, records: List[str]) -> dict[str, List[Feedback]]: ...  # by record key
    async def feedback(self, policy_id: str, applied: bool | None = None) -> List[Feedback]: ...
    async def feedback_item(self, seq: int) -> Feedback | None: ...
    async def mark_applied(self, seqs: List[int]) -> None: ...
    # Unapplied feedback becomes training rows (source `feedback`, by `author`), each item keeping its
    # row's id; the items applied, with `row` set.
    async def apply_feedback(self, policy_id: str, author: str) -> List[Feedback]: ...
    # The item as it was when deleted (None: no such item); its training row is the caller's to remove.
    # `only_unapplied`: delete it only if it is not applied, checked atomically with the delete (an
    # applied item is then left as it is and returned, `applied` true, so the caller can refuse).
    async def delete_feedback(self, seq: int, only_unapplied: bool = False) -> Feedback | None: ...

    # Training jobs (bodies carry `status` and `updated`). The store stamps `updated` with its own clock
    # on every claim and put, and `job` adds `age_s` (seconds since, by that clock), so replicas whose
    # clocks disagree still agree on whether a heartbeat is fresh.
    async def claim_job(self, policy_id: str, job: dict[str, Any], stale_after_s: float) -> dict[str, Any] | None: ...
    async def put_job(self, policy_id: str, job: dict[str, Any]) -> None: ...
    async def job(self, policy_id: str) -> dict[str, Any] | None: ...

    # G18 (gateway/store/changelog.py). The change feed, newest first: entries with seq < `before`, created
    # at or after `since`, of objects `owner` owns (None: anyone's), at most `limit` (1 to MAX_CHANGES).
    # Every policy's last training job, most recently started first, at most `limit`, with `age_s` as
    # `job` gives it; `owner`: only the jobs of that owner's policies (a job's `owner`: the store fills
    # in its policy's when the job has none). Both read one page of an index, never every job.
    async def change_log(self, limit: int = 100, before: int | None = None, since: float | None = None,
                         owner: str | None = None) -> List[Change]: ...
    async def jobs(self, limit: int = 100, owner: str | None = None) -> List[dict[str, Any]]: ...


ACTIVE_JOB = ("training_queued", "training")


def job_is_active(job: dict[str, Any] | None, now: float, stale_after_s: float) -> bool:
    """A job blocks a new claim while it runs and its heartbeat is fresh (`now` by the clock that stamped it)."""
    return (job is not None and job.get("status") in ACTIVE_JOB
            and now - float(job.get("updated", 0)) <= stale_after_s)


def with_age(job: dict[str, Any], now: float) -> dict[str, Any]:
    return {**job, "age_s": round(max(0.0, now - float(job.get("updated", 0))), 3)}


def in_window(t: float, since: float | None, until: float | None) -> bool:
    return (since is None or t >= since) and (until is None or t <= until)


class DocumentHistory:
    """What both stores share on top of their own get/put: revert writes an old version anew."""

    async def revert(self, kind: str, doc_id: str, version: int, author: str) -> Version:
        old = await self.get(kind, doc_id, version)  # type: ignore[attr-defined]
        if old is None:
            raise NotFound(f"{kind} {doc_id!r} has no version {version}")
        return await self.put(kind, old.body, author, revert_note(version))  # type: ignore[attr-defined]


def revert_note(version: int) -> str:
    return f"revert to version {version}"


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown document kind {kind!r}; known: {', '.join(KINDS)}")


def check_label(label: str) -> str:
    upper = label.upper()
    if upper not in ("PASS", "FAIL"):
        raise ValueError(f"label must be PASS or FAIL, not {label!r}")
    return upper


def example_matches(e: Example, source: str | None, label: str | None, after: int | None) -> bool:
    """The training-row filters of `Store.examples` (rows come in id order, `after` an id)."""
    return ((source is None or e.source == source) and (label is None or e.label == label.upper())
            and (after is None or e.seq > after))


def record_key(record_id: str, on: str) -> str:
    """What makes a monitoring record unique (a retried write is dropped) and finds it by id."""
    return f"{record_id}:{on}"


def doc_id(body: dict[str, Any]) -> str:
    value = body.get("id") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise ValueError("a document needs a non-empty string `id`")
    return value


def matches(body: dict[str, Any], match: dict[str, str]) -> bool:
    """Record filters: each key must equal the record's field (a list field matches if it contains it)."""
    for key, wanted in match.items():
        value = body.get(key)
        if isinstance(value, list):
            if wanted not in value:
                return False
        elif value != wanted:
            return False
    return True
