"""The workers that drain the event queue: claim a row under a lease, caption it, settle it.

``EVENT_WORKERS`` tasks per process, each with one row in hand, and a heartbeat renewing the leases of the
rows in hand, so a lease (``EVENTS_LEASE_S``) only runs out when its process is gone. A failure is retried
with capped exponential backoff up to ``EVENTS_MAX_ATTEMPTS``, then kept as failed with its error code;
an object deleted since its event is dropped; an image that cannot be read fails at once (the same bytes
fail the same way). One log line per event, with the request id of the delivery that queued it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta

from gateway.catalogue import ClaimedEvent, EventQueue
from gateway.catalogue.queue import now_utc
from gateway.errors import (
    CatalogueUnavailable,
    GatewayError,
    ImageTooLarge,
    InvalidInput,
    ObjectNotFound,
    UnsupportedImage,
    XmpNameCollision,
)
from gateway.events.captioner import EventCaptioner
from gateway.events.intake import Doorbell
from gateway.metrics import GatewayMetrics
from gateway.pipeline import StageTimings

log = logging.getLogger("gateway.events")
POLL_S = 1.0  # how often an idle worker looks for rows another process queued
DATABASE_PAUSE_S = 2.0  # after the queue's database failed, before asking again
MAX_BACKOFF_FACTOR = 64  # the longest wait between attempts: 64 x EVENTS_BACKOFF_S
# The same bytes and names fail the same way again: failed at once, not retried.
PERMANENT = (UnsupportedImage, ImageTooLarge, InvalidInput, XmpNameCollision)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_s: float

    def delay_s(self, attempts: int) -> float:
        """Capped exponential backoff with jitter, so a burst that failed together does not come back
        together. An error's own Retry-After is advice for HTTP clients (seconds); this schedule is ours."""
        base = self.backoff_s * min(1 << max(attempts - 1, 0), MAX_BACKOFF_FACTOR)
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


def new_owner() -> str:
    """Who holds a lease: host, process and a nonce (a restarted process with a reused pid is another)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class EventWorkers:
    def __init__(
        self,
        queue: EventQueue,
        captioner: EventCaptioner,
        *,
        tasks: int,
        lease_s: float,
        policy: RetryPolicy,
        doorbell: Doorbell,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.queue = queue
        self.captioner = captioner
        self.tasks = tasks
        self.lease_s = lease_s
        self.policy = policy
        self.doorbell = doorbell
        self.metrics = metrics
        self.owner = new_owner()
        self._in_hand: set[int] = set()

    async def run(self) -> None:
        """Until cancelled; then the rows in hand go back to the queue for the next worker."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._heartbeat())
                for _ in range(self.tasks):
                    group.create_task(self._loop())
        finally:
            with contextlib.suppress(CatalogueUnavailable):
                released = await self.queue.release(self.owner)
                if released:
                    log.info("event workers stopped; %d event(s) in hand went back to the queue", released)

    async def _loop(self) -> None:
        while True:
            try:
                event = await self.queue.claim(self.owner, self.lease_s)
            except CatalogueUnavailable:
                await asyncio.sleep(DATABASE_PAUSE_S)  # the database said why once, when it went down
                continue
            if event is None:
                await self.doorbell.wait(POLL_S)
                continue
            self._in_hand.add(event.id)
            try:
                await self._handle(event)
            finally:
                self._in_hand.discard(event.id)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            with contextlib.suppress(CatalogueUnavailable):
                await self.queue.renew(self.owner, set(self._in_hand), self.lease_s)

    async def _handle(self, event: ClaimedEvent) -> None:
        timings = StageTimings()
        started = time.perf_counter()
        outcome, code = await self._attempt(event, timings)
        self._report(event, outcome, code, timings, time.perf_counter() - started)

    async def _attempt(self, event: ClaimedEvent, timings: StageTimings) -> tuple[str, str]:
        """(outcome, error code): the row is settled whatever happens."""
        try:
            outcome: str = await self.captioner.caption(event.object, timings)
        except ObjectNotFound:
            outcome = "gone"  # deleted since its event: nothing to caption, nothing to retry
        except GatewayError as exc:
            return await self._failed(event, exc.code, exc.message, exc), exc.code
        except Exception as exc:  # a bug must not stop the queue: retried, and logged with its traceback
            log.exception(
                "request_id=%s event=%d s3_uri=%r failed", event.request_id, event.id, event.object.uri
            )
            message = f"{type(exc).__name__}: {exc}"
            return await self._failed(event, "internal_error", message), "internal_error"
        await self._settle(self.queue.complete(event.id, self.owner))
        return outcome, ""

    async def _failed(
        self, event: ClaimedEvent, code: str, message: str, exc: Exception | None = None
    ) -> str:
        if isinstance(exc, PERMANENT) or event.attempts >= self.policy.max_attempts:
            await self._settle(self.queue.fail(event.id, self.owner, code, message))
            return "failed"
        at = now_utc() + timedelta(seconds=self.policy.delay_s(event.attempts))
        await self._settle(self.queue.retry(event.id, self.owner, code, message, at))
        return "retry"

    async def _settle(self, call: Awaitable[None]) -> None:
        """A row that cannot be settled (its database went away) keeps its lease until that runs out, and
        the next worker takes it again: nothing is lost, at worst done twice."""
        try:
            await call
        except CatalogueUnavailable as exc:
            log.warning("event queue not updated: %s", exc.message)

    def _report(
        self, event: ClaimedEvent, outcome: str, code: str, timings: StageTimings, seconds: float
    ) -> None:
        waited_s = (now_utc() - event.received_at).total_seconds() - seconds
        stages = " ".join(f"{name}_ms={ms}" for name, ms in timings.ms.items())
        log.info(
            "request_id=%s event=%d s3_uri=%r outcome=%s%s attempt=%d waited_ms=%.0f total_ms=%.1f %s",
            event.request_id or "-",
            event.id,
            event.object.uri,
            outcome,
            f" code={code}" if code else "",
            event.attempts,
            waited_s * 1000,
            seconds * 1000,
            stages,
        )
        if self.metrics is not None:
            self.metrics.events_processed.labels(outcome).inc()
            if timings.ms:
                self.metrics.observe_stages(timings.ms)
