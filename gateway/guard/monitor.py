"""The monitoring log: one record per guarded request, PII-redacted, in a bounded in-process buffer."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.guard.engine import Decision
from gateway.guard.redact import redact
from gateway.metrics.types import Metric
from gateway.store import Store, StoreError


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    id: str
    time: float
    application: str
    model: str
    on: str
    action: str | None
    stage: str | None
    ruleset: str | None
    texts: tuple[str, ...]
    stages: tuple[dict[str, Any], ...]
    route: str = ""  # where the request went: the routed upstream and the config's model glob it matched

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "application": self.application, "model": self.model,
                "route": self.route, "on": self.on, "action": self.action, "stage": self.stage,
                "ruleset": self.ruleset, "texts": list(self.texts), "stages": list(self.stages)}


class MonitorLog:
    """Newest records win: the buffer holds at most `size`; texts are cut to `max_text` characters.

    Texts are PII-redacted when read, not on the request path: the buffer lives only in this process's
    memory (as the request itself did) and nothing leaves it unredacted.
    """

    def __init__(self, pii: Metric, size: int = 1000, max_text: int = 2000, outbox: int = 10_000) -> None:
        self._pii = pii
        self._records: collections.deque[MonitorRecord] = collections.deque(maxlen=size)
        self._max_text = max_text
        # Records waiting to be written to the store (a bounded buffer: while the store is down the
        # newest `outbox` records wait; older ones are dropped and counted).
        self._outbox: collections.deque[MonitorRecord] = collections.deque()
        self.outbox_size = outbox
        self.dropped = 0
        self.written = 0

    def add(self, request_id: str, application: str, model: str, on: str, decision: Decision,
            texts: tuple[str, ...], route: str = "") -> None:
        """`model` is the model the client asked for; `route` where the gateway sent it."""
        stages = tuple({"stage": o.stage, "scanned": o.scanned, "mode": o.mode, "ruleset": o.ruleset,
                        "action": o.action, "triggered": list(o.triggered), "errors": list(o.errors),
                        "fail_open": o.fail_open, "values": o.values,
                        "seconds": {m: round(t, 6) for m, t in o.seconds.items()}} for o in decision.outcomes)
        record = MonitorRecord(
            request_id, time.time(), application, model, on, decision.action,
            decision.stage.name if decision.stage else None, decision.ruleset,
            tuple(t[: self._max_text] for t in texts), stages, route)
        self._records.append(record)
        if self.outbox_size:
            if len(self._outbox) >= self.outbox_size:
                self._outbox.popleft()
                self.dropped += 1
            self._outbox.append(record)

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    def take(self, limit: int = 500) -> list[MonitorRecord]:
        out: list[MonitorRecord] = []
        while self._outbox and len(out) < limit:
            out.append(self._outbox.popleft())
        return out

    def put_back(self, records: list[MonitorRecord]) -> None:
        """A failed write: the records go back to the front, oldest dropped beyond the bound."""
        for record in reversed(records):
            if len(self._outbox) >= self.outbox_size:
                self.dropped += 1
                continue
            self._outbox.appendleft(record)

    def stored_form(self, record: MonitorRecord) -> dict[str, Any]:
        """What the store keeps: texts PII-redacted, plus the policies/metrics each stage measured."""
        metrics = sorted({m for st in record.stages for m in st.get("values", {})})
        return {**record.as_dict(), "texts": [self._scrub(t) for t in record.texts], "metrics": metrics}

    async def flush(self, store: Store, interval: float = 0.2) -> None:
        """Write the outbox to the store's shared log in batches, for as long as it runs (the registry's
        background task); while the store is down the records wait, the oldest dropped beyond the bound."""
        while True:
            batch = self.take()
            if batch:
                try:
                    bodies = [self.stored_form(r) for r in batch]
                    await asyncio.wait_for(store.append_records(bodies), timeout=max(2.0, interval * 10))
                    self.written += len(batch)
                    continue  # more may be waiting
                except (StoreError, TimeoutError):
                    self.put_back(batch)
            await asyncio.sleep(interval)

    def query(self, application: str | None = None, action: str | None = None, limit: int = 100,
              where: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        out = []
        for record in reversed(self._records):
            if application and record.application != application:
                continue
            if action and record.action != action:
                continue
            if where is not None and not where(record.as_dict()):
                continue
            out.append({**record.as_dict(), "texts": [self._scrub(t) for t in record.texts]})
            if len(out) >= limit:
                break
        return out

    def get(self, record_id: str, on: str | None = None) -> dict[str, Any] | None:
        """The newest record of that request (and side), texts PII-redacted; None if it left the buffer."""
        for record in reversed(self._records):
            if record.id == record_id and (on is None or record.on == on):
                return {**record.as_dict(), "texts": [self._scrub(t) for t in record.texts]}
        return None

    def _scrub(self, text: str) -> str:
        return redact(text, self._pii.measure(text).spans, "<{label}>")
