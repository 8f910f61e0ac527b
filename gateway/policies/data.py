"""A policy's training data beyond its definition: stored rows (added by hand, generated, or from
feedback), their counts, and feedback: the correct label for a policy on a monitoring record, which
becomes training data when applied (feedback rows count three times in training: training.py)."""

from __future__ import annotations

from typing import Any

from gateway.guard.monitor import MonitorLog
from gateway.store import Example, Feedback, Store
from gateway.store.base import record_key

SOURCES = ("manual", "synthetic", "feedback")


def row_counts(rows: list[Example]) -> dict[str, int]:
    """How many rows in all, per label and per source."""
    counts: dict[str, int] = {"rows": len(rows), "FAIL": 0, "PASS": 0, "manual": 0, "synthetic": 0, "feedback": 0}
    for e in rows:
        counts[e.label] = counts.get(e.label, 0) + 1
        counts[e.source] = counts.get(e.source, 0) + 1
    return counts


async def monitoring_record(monitor: MonitorLog, store: Store, record_id: str,
                            on: str) -> tuple[dict[str, Any] | None, int]:
    """(the monitoring record, its sequence number in the shared log: 0 when this replica's buffer
    has it), or (None, 0). Another replica's record, or one older than this buffer, is in the store."""
    record = monitor.get(record_id, on)
    if record is not None:
        return record, 0
    found = await store.record_by_id(record_id, on)
    return (found.body, found.seq) if found else (None, 0)


async def add_feedback(store: Store, record_id: str, seq: int, on: str, record: dict[str, Any], policy_id: str,
                       label: str, author: str = "") -> Feedback:
    """Feedback on a record, about its texts (PII-redacted as the log shows them)."""
    text = "\n\n".join(record["texts"])
    return await store.add_feedback(seq, policy_id, label, text, record_key(record_id, on), author)


async def apply_feedback(store: Store, policy_id: str, author: str) -> int:
    """Turn the policy's unapplied feedback into training rows (source `feedback`); how many."""
    return len(await store.apply_feedback(policy_id, author))


async def delete_feedback(store: Store, seq: int,
                          only_unapplied: bool = False) -> tuple[Feedback | None, int | None]:
    """Delete a feedback item and, if it was applied, the training row it wrote, so that the next
    training no longer learns it: (the item, the row removed or None). `only_unapplied`: only if it is
    not applied, checked by the store as it deletes (an applied item is then returned undeleted, with
    `applied` true). An item applied before items kept their row's id removes one feedback row of the
    same text and label that no other item keeps as its own (`legacy_row`)."""
    item = await store.delete_feedback(seq, only_unapplied)
    if item is None or not item.applied or only_unapplied:
        return item, None
    row = item.row or await legacy_row(store, item)
    removed = bool(row) and await store.delete_examples(item.policy_id, [row]) > 0
    return item, row if removed else None


async def legacy_row(store: Store, item: Feedback, page: int = 500) -> int:
    """The training row an item applied before rows were kept most likely wrote (0: none): the oldest
    feedback row of its policy with its text and label that no item keeps as its own (`row`) and that
    was not written before the item was given (a row that old cannot be this item's; rows from before
    rows had times count). Pages of `page` rows, stopping at the first that fits."""
    owned = {f.row for f in await store.feedback(item.policy_id) if f.row}
    after = 0
    while True:
        rows = await store.examples(item.policy_id, source="feedback", label=item.label, after=after, limit=page)
        for e in rows:
            if e.text == item.text and e.seq not in owned and (not e.created or e.created >= item.time):
                return e.seq
        if len(rows) < page:
            return 0
        after = rows[-1].seq
