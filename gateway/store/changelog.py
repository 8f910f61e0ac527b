"""G18: the change feed, one entry per document write or deletion across kinds (policy, stage,
application, pin), newest first, and the list of training jobs, as both stores keep them.

An entry is metadata only (never a body: an application's body holds its key hashes): the change's
`seq` (the store's own counter, the feed's order and its paging cursor), kind, id, version (for a
deletion: the version that was current), created, author, note, `action` (`write` or `delete`) and the
`owner` of the object (`central` or `app:<id>`: a policy's or stage's `owner`, an application's own
id, a pin's application), by which an application token's feed is scoped.

SQLite keeps the entries in a table (`changes`, indexed by owner and by time), written by triggers on
the versions and the deletion marks (schema 8), so in the same transaction as the version whichever
process writes it; Redis in sorted sets scored by seq (one of every entry, one per owner), written by the
Lua script that writes the version. Versions written before the feed existed are entered once, ordered by
their time, before every later entry: SQLite by the schema migration, Redis into seqs that the first
write or deletion after the upgrade reserves for them below its own (`_FEED`), by the first replica that
reads the feed (`RedisStore.fill`). Deletions from before the feed have no entry (the stores did not
record who deleted, or when). Redis replicas of older versions write no entries: upgrade them together
(docs/deploy.md, Upgrading).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MAX_CHANGES = 1000   # the most entries one read answers (`Store.change_log`; `Store.jobs` lists the jobs)
CLOCK_SKEW_S = 60.0  # Redis: replicas stamp `created` by their own clocks; a `since` scan reads this far past it


@dataclass(frozen=True)
class Change:
    seq: int
    kind: str
    id: str
    version: int
    created: float
    author: str
    note: str = ""
    action: str = "write"        # write | delete
    owner: str = "central"       # central | app:<id>

    def meta(self) -> dict[str, Any]:
        """The entry as stored by Redis (and answered by the API): every field."""
        return asdict(self)


def change_owner(kind: str, doc_id: str, body: dict[str, Any]) -> str:
    """Whose object a document is: an application is its own, a pin its application's, a policy or stage
    its `owner` (central when it has none)."""
    if kind == "application":
        return f"app:{doc_id}"
    if kind == "pin":
        return f"app:{body.get('application')}"
    owner = body.get("owner")
    return owner if isinstance(owner, str) and owner else "central"
