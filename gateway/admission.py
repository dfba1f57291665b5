"""Admission control: at most ``MAX_INFLIGHT`` requests at work, ``MAX_QUEUED`` waiting, the rest refused.

Without it, every request is accepted and they all share one event loop's CPU: past the knee of the
throughput curve each request costs more CPU (more connections, more scheduling) and throughput falls while
latency climbs for everyone (benchmarks/bench_shedding.py). With it, the gateway works on what it can
serve, keeps a short queue to absorb bursts, and tells everyone else at once to come back (``Overloaded``,
an HTTP 429 with Retry-After), in far less time than a queue would have made them wait.

The queue is first come, first served. A request that waits longer than ``QUEUE_TIMEOUT_S`` is refused
too: the backend has slowed down, and the client is better off retrying elsewhere than waiting.

A fixed bound is right for the backend's side (the GPU serves so many at once) but not for the gateway's
own CPU, which other processes on the host may take: the knee moves with the CPU the gateway gets (it was
at 32 in flight on a quiet machine and at 16 on a busy one). So admission also watches the event loop
(``LoopLag``). While it runs more than ``MAX_LOOP_LAG_MS`` late, the in-flight limit shrinks (by 5 % per
25 ms sample) and new requests are refused rather than queued; once it is back on time the limit grows
again (by 2 per second) up to ``MAX_INFLIGHT``: additive increase, multiplicative decrease, as TCP does.
That keeps the loop, and with it every answer and every refusal, on time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from gateway.errors import Overloaded

RETRY_AFTER_S = 1.0
LAG_INTERVAL_S = 0.025
LAG_SMOOTHING = 0.3
LIMIT_DECREASE = 0.95  # per lagging sample
LIMIT_INCREASE = 0.05  # per sample on time: 2 a second


class LoopLag:
    """How late the event loop runs a 25 ms timer, smoothed (EWMA): the process's CPU saturation, whatever
    takes the CPU. Cost: 40 wake-ups a second. ``on_sample`` hears each new value."""

    def __init__(self, on_sample: Callable[[float], None] | None = None) -> None:
        self.seconds = 0.0
        self._on_sample = on_sample

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            late = max(0.0, loop.time() - start - LAG_INTERVAL_S)
            self.seconds += LAG_SMOOTHING * (late - self.seconds)
            if self._on_sample is not None:
                self._on_sample(self.seconds)

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Admission:
    """One per worker process (each uvicorn worker builds its own app). ``max_lag_s`` 0: no lag check."""

    def __init__(
        self, max_inflight: int, max_queued: int, queue_timeout_s: float, max_lag_s: float = 0.0
    ) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.max_lag_s = max_lag_s
        self.lag = LoopLag(self._adapt)
        self.limit = float(max_inflight)  # MAX_INFLIGHT, or less while the loop runs late
        self.inflight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def capacity(self) -> int:
        return max(1, int(self.limit))

    def _adapt(self, lag_s: float) -> None:
        if lag_s > self.max_lag_s:
            self.limit = max(1.0, self.limit * LIMIT_DECREASE)
        elif lag_s < self.max_lag_s / 2 and self.limit < self.max_inflight:
            self.limit = min(float(self.max_inflight), self.limit + LIMIT_INCREASE)
            self._admit_waiters()  # room may have opened for those queued

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """For the app's lifespan: the loop-lag watch runs while the app serves."""
        if not self.max_lag_s:
            yield
            return
        async with self.lag.watching():
            yield

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

    def refusal(self) -> Overloaded | None:
        """Why a request arriving now would be refused at once, if it would: callers check this first to
        answer without starting any work (on a busy loop every extra step costs an iteration)."""
        if self.max_lag_s and self.inflight and self.lag.seconds > self.max_lag_s:
            # The gateway is short of CPU: more work would make everything late, refusals included.
            return Overloaded(
                f"the gateway is short of CPU (its event loop runs {self.lag.seconds * 1000:.0f} ms late; "
                "MAX_LOOP_LAG_MS); try again shortly",
                retry_after=RETRY_AFTER_S,
            )
        busy = self.inflight >= self.capacity or self._waiters
        if busy and len(self._waiters) >= self.max_queued:
            return Overloaded(
                f"the gateway is at capacity ({self.capacity} requests in flight, {self.max_queued} "
                "queued); try again shortly",
                retry_after=RETRY_AFTER_S,
            )
        return None

    async def _acquire(self) -> None:
        refused = self.refusal()
        if refused is not None:
            raise refused
        if self.inflight < self.capacity and not self._waiters:
            self.inflight += 1
            return
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
        self.inflight -= 1
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        """Hands free places to the first in line; ``inflight`` counts them before they resume."""
        while self._waiters and self.inflight < self.capacity:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                self.inflight += 1
                waiter.set_result(None)
