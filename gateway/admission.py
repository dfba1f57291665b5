"""Admission control: at most ``MAX_INFLIGHT`` requests at work, ``MAX_QUEUED`` waiting, the rest refused.

Without it, every request is accepted and they all share one event loop's CPU: past the knee of the
throughput curve each request costs more CPU (more connections, more scheduling) and throughput falls while
latency climbs for everyone (benchmarks/bench_shedding.py). With it, the gateway works on what it can
serve, keeps a short queue to absorb bursts, and tells everyone else at once to come back (``Overloaded``,
an HTTP 429 with Retry-After), in far less time than a queue would have made them wait.

The queue is first come, first served. A request that waits longer than ``QUEUE_TIMEOUT_S`` is refused
too: the backend has slowed down, and the client is better off retrying elsewhere than waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import Overloaded

RETRY_AFTER_S = 1.0


class Admission:
    """One per worker process (each uvicorn worker builds its own app)."""

    def __init__(self, max_inflight: int, max_queued: int, queue_timeout_s: float) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.inflight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds one in-flight place for the body of the ``async with``, or raises ``Overloaded``."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self.inflight < self.max_inflight and not self._waiters:
            self.inflight += 1
            return
        if len(self._waiters) >= self.max_queued:
            raise Overloaded(
                f"the gateway is at capacity ({self.max_inflight} requests in flight, {self.max_queued} "
                "queued); try again shortly",
                retry_after=RETRY_AFTER_S,
            )
        await self._wait_for_turn()

    async def _wait_for_turn(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await waiter  # _release hands its place over: ``inflight`` already counts this request
        except BaseException as exc:
            handed = waiter.done() and not waiter.cancelled()
            if handed and isinstance(exc, TimeoutError):
                return  # the place came just as the clock ran out: take it
            if handed:
                self._release()  # cancelled (the client left) just as its turn came: pass the place on
                raise
            if waiter in self._waiters:  # _release may have dropped it already, as cancelled
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise Overloaded(
                    f"no capacity became free within {self.queue_timeout_s:g} s (QUEUE_TIMEOUT_S); "
                    "try again shortly",
                    retry_after=RETRY_AFTER_S,
                ) from None
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place passes straight to the next in line
                return
        self.inflight -= 1
