"""Admission control on its own: the bound, the queue, its order, its timeout, and clients that leave."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.admission import Admission
from gateway.errors import Overloaded


async def hold(admission: Admission, release: asyncio.Event, order: list[int], n: int) -> None:
    async with admission.slot():
        order.append(n)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_beyond_inflight_and_queue_it_refuses_at_once() -> None:
    admission = Admission(max_inflight=2, max_queued=1, queue_timeout_s=30)
    release, order = asyncio.Event(), []
    tasks = [asyncio.create_task(hold(admission, release, order, n)) for n in range(3)]
    await settle()
    assert (admission.inflight, admission.queued) == (2, 1)
    with pytest.raises(Overloaded) as refused:
        await asyncio.wait_for(admission.slot().__aenter__(), 0.5)  # at once: never waits for a place
    assert refused.value.code == "overloaded" and refused.value.retry_after
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]  # the queued one ran once a place was free
    assert (admission.inflight, admission.queued) == (0, 0)


async def test_the_queue_is_first_come_first_served() -> None:
    admission = Admission(max_inflight=1, max_queued=10, queue_timeout_s=30)
    release, order = asyncio.Event(), []
    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(hold(admission, release, order, n)))
        await settle()
    release.set()
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_waiting_longer_than_the_queue_timeout_is_refused() -> None:
    admission = Admission(max_inflight=1, max_queued=5, queue_timeout_s=0.05)
    release, order = asyncio.Event(), []
    first = asyncio.create_task(hold(admission, release, order, 0))
    await settle()
    with pytest.raises(Overloaded, match="QUEUE_TIMEOUT_S"):
        await admission.slot().__aenter__()
    assert admission.queued == 0
    release.set()
    await first
    assert admission.inflight == 0


async def test_a_waiter_that_leaves_gives_its_turn_to_the_next() -> None:
    admission = Admission(max_inflight=1, max_queued=5, queue_timeout_s=30)
    release, order = asyncio.Event(), []
    first = asyncio.create_task(hold(admission, release, order, 0))
    await settle()
    leaver = asyncio.create_task(hold(admission, release, order, 1))
    stayer = asyncio.create_task(hold(admission, release, order, 2))
    await settle()
    leaver.cancel()  # its client disconnected while it was queued
    await settle()
    release.set()
    await asyncio.gather(first, stayer)
    assert order == [0, 2]
    assert (admission.inflight, admission.queued) == (0, 0)


async def test_cancelled_just_as_its_turn_came_passes_the_place_on() -> None:
    admission = Admission(max_inflight=1, max_queued=5, queue_timeout_s=30)
    release, order = asyncio.Event(), []
    release.set()
    held = admission.slot()
    await held.__aenter__()
    unlucky = asyncio.create_task(hold(admission, release, order, 1))
    last = asyncio.create_task(hold(admission, release, order, 2))
    await settle()
    await held.__aexit__(None, None, None)  # hands the place to `unlucky`, which has not run yet...
    unlucky.cancel()  # ...and is cancelled before it can
    await asyncio.gather(unlucky, last, return_exceptions=True)
    assert order == [2]
    assert (admission.inflight, admission.queued) == (0, 0)


async def test_the_loop_lag_watch_sees_a_busy_loop() -> None:
    admission = Admission(max_inflight=4, max_queued=4, queue_timeout_s=30, max_lag_s=0.025)
    async with admission.watching():
        await asyncio.sleep(0.1)
        quiet = admission.lag.seconds
        for _ in range(4):
            time.sleep(0.1)  # the CPU-bound work of a saturated gateway, as the loop sees it
            await asyncio.sleep(0.03)
        busy = admission.lag.seconds
    assert quiet < 0.025 < busy


async def test_while_the_loop_runs_late_new_work_is_refused_at_once() -> None:
    admission = Admission(max_inflight=4, max_queued=4, queue_timeout_s=30, max_lag_s=0.025)
    admission.lag.seconds = 0.2  # as the watch measures on a gateway short of CPU
    async with admission.slot():  # nothing at work: admitted, whatever the lag (refusing would not help)
        with pytest.raises(Overloaded, match="MAX_LOOP_LAG_MS"):
            await asyncio.wait_for(admission.slot().__aenter__(), 0.5)
        admission.lag.seconds = 0.0
        async with admission.slot():  # back on time: admitted again
            assert admission.inflight == 2


async def test_the_limit_shrinks_while_the_loop_runs_late_and_grows_back() -> None:
    admission = Admission(max_inflight=32, max_queued=4, queue_timeout_s=30, max_lag_s=0.025)
    for _ in range(20):  # half a second of samples on a loop 50 ms late
        admission._adapt(0.05)
    assert admission.capacity <= 12  # 32 x 0.95^20
    release, order = asyncio.Event(), []
    tasks = [asyncio.create_task(hold(admission, release, order, n)) for n in range(admission.capacity + 2)]
    await settle()
    assert admission.queued == 2  # beyond the shrunken limit, they wait
    for _ in range(40):  # back on time: +2 a second
        admission._adapt(0.001)
    await settle()
    assert admission.queued == 0  # the grown limit let them in
    for _ in range(400):
        admission._adapt(0.001)
    assert admission.capacity == 32  # never beyond MAX_INFLIGHT
    release.set()
    await asyncio.gather(*tasks)
