"""Admission control: at most `limit` proxied requests at once, a bounded FIFO of waiters, fast refusals.

A request past the cap waits for a slot (up to `pending_timeout_s`) while fewer than `pending` wait;
anything more is refused at once with a 503 and Retry-After, so an overloaded replica sheds load in
microseconds instead of queueing everyone into timeouts (what a load balancer or the OpenAI SDK's
retry can act on). A slot is held until the response has been sent, streams included. A freed slot
goes straight to the oldest waiter: nobody overtakes the queue.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Literal

Refusal = Literal["queue_full", "queue_timeout"]


class Admission:
    __slots__ = ("limit", "pending", "pending_timeout_s", "in_flight", "_waiters")

    def __init__(self, limit: int, pending: int, pending_timeout_s: float) -> None:
        self.limit = limit
        self.pending = pending
        self.pending_timeout_s = pending_timeout_s
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> Refusal | None:
        """None once a slot is held (call `release` after), else why the request is refused."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return None
        if len(self._waiters) >= self.pending:
            return "queue_full"
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.pending_timeout_s)
            return None  # the slot was handed over by release(): in_flight already counts it
        except TimeoutError:
            if waiter.done():  # handed over in the same tick the wait timed out: keep it
                return None
            return "queue_timeout"
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the client left just as its turn came: pass the slot on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight is unchanged
                return
        self.in_flight -= 1
