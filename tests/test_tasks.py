"""Stopping background loops: a cancellation `asyncio.wait_for` swallows (Python 3.11) must not hang shutdown."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gateway.tasks import cancel_and_wait


async def _poller(ready: asyncio.Future[None], inner: asyncio.Future[int], rounds: list[int]) -> None:
    """The shape of the registry's follow loop: wait_for one call, then sleep, forever."""
    while True:
        if not ready.done():
            ready.set_result(None)
        try:
            rounds.append(await asyncio.wait_for(inner, timeout=5))
        except TimeoutError:
            pass
        await asyncio.sleep(30)


def test_a_loop_whose_cancellation_wait_for_swallowed_is_still_stopped() -> None:
    async def main() -> tuple[bool, bool, list[int]]:
        loop = asyncio.get_running_loop()
        ready, inner, rounds = loop.create_future(), loop.create_future(), []
        task = loop.create_task(_poller(ready, inner, rounds))
        await ready
        await asyncio.sleep(0)
        inner.set_result(1)  # the awaited call completes in the same turn as the cancellation below
        once = task.cancel()
        await asyncio.sleep(0.05)
        swallowed = not task.done()  # Python 3.11: the loop went on to its 30 s sleep
        stopped = await cancel_and_wait(task, timeout_s=2.0)
        return once and swallowed, stopped and task.cancelled(), rounds

    raced, stopped, rounds = asyncio.run(main())
    assert stopped
    if sys.version_info < (3, 12):
        assert raced and rounds == [1], "the race this guards against did not happen; the test proves nothing"


def test_a_task_that_will_not_end_is_given_up_on_in_bounded_time() -> None:
    stop = False

    async def stubborn() -> None:
        for _ in range(1000):  # bounded; shrugs off every cancellation until `stop`
            try:
                await asyncio.sleep(0.01 if stop else 10)
            except asyncio.CancelledError:
                pass
            if stop:
                return

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        task = loop.create_task(stubborn())
        await asyncio.sleep(0)
        start = loop.time()
        ended = await cancel_and_wait(task, timeout_s=0.5)
        took = loop.time() - start
        nonlocal stop
        stop = True
        task.cancel()
        await task
        return ended, took

    ended, took = asyncio.run(main())
    assert not ended and took < 2.0


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_a_task_already_ended_is_reported_ended(outcome: str) -> None:
    async def quick() -> None:
        if outcome == "raises":
            raise ValueError("boom")

    async def main() -> bool:
        task = asyncio.get_running_loop().create_task(quick())
        await asyncio.sleep(0.01)
        return await cancel_and_wait(task)

    assert asyncio.run(main())
