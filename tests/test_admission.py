"""Admission control on its own: the bound, the queue, its order, its timeout, and clients that leave."""

from __future__ import annotations

import asyncio

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
