"""Stopping a background task for sure, on Python 3.11 too."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any], timeout_s: float = 5.0) -> bool:
    """Cancel `task` and wait until it has ended, at most `timeout_s`; True if it ended.

    It cancels again every 0.1 s. On Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives
    just as the call it awaits completes, so a `while True` loop around one runs on, and a single
    `cancel()` followed by `await task` waits forever: it hung the gateway's shutdown now and then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("a background task did not stop", extra={"fields": {"task": task.get_name()}})
            return False
        task.cancel()
        await asyncio.wait((task,), timeout=min(0.1, remaining))
    if not task.cancelled():
        task.exception()  # retrieved: asyncio would otherwise log it as never retrieved
    return True
