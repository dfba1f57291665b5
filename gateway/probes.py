"""A readiness probe's result, shared: one probe in flight at a time, its answer reused while it is fresh.

Orchestrators, load balancers and dashboards all poll ``/health``; without this, forty concurrent probes
were forty backend calls through a small pool, and the last waited seconds for its turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
MAX_AGE_S = 1.0


class CachedProbe(Generic[T]):
    """``get()`` answers a result at most ``max_age_s`` old (counted from when its probe started)."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[T]],
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._max_age_s = max_age_s
        self._clock = clock
        self._last: tuple[float, T] | None = None
        self._running: asyncio.Future[T] | None = None

    async def get(self) -> T:
        last = self._last
        if last is not None and self._clock() - last[0] <= self._max_age_s:
            return last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        # Shielded: a caller that gives up (its client left) must not cancel the probe the others await.
        return await asyncio.shield(self._running)

    async def _run(self) -> T:
        started = self._clock()
        try:
            value = await self._probe()
        finally:
            self._running = None
        self._last = (started, value)
        return value
