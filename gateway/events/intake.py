"""From a delivery to durable queue rows: which created objects deserve a caption, committed before the 202.

Ignored without a model call: everything that is not a creation (``formats``), keys without an image
extension, our own outputs (``.json``/``.xmp`` sidecars, anything under ``EVENTS_SIDECAR_PREFIX``), and
objects the catalogue already holds at that ETag with the events' parameters. So writing a sidecar or tags
never triggers a second caption.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from gateway.catalogue import EventQueue, ObjectVersion
from gateway.errors import InvalidInput
from gateway.events.formats import parse_events
from gateway.metrics import GatewayMetrics
from gateway.records import CaptionParams
from gateway.sources.s3_uri import S3Location, is_image_key, parse_s3_uri

log = logging.getLogger("gateway.events")
OWN_SUFFIXES = (".json", ".xmp")  # what write-back puts beside an image


class Doorbell:
    """Wakes this process's idle workers when rows were queued here; workers elsewhere poll."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._rung.wait()
        except TimeoutError:
            return
        self._rung.clear()  # every waiter woke with the set; the next ring is a new one


@dataclass(frozen=True)
class Receipt:
    accepted: int
    ignored: int


def ignore_reason(obj: ObjectVersion, sidecar_prefix: S3Location | None) -> str | None:
    """Why a created object gets no caption, or None when it should get one."""
    under_prefix = sidecar_prefix is not None and (
        obj.bucket == sidecar_prefix.bucket and obj.key.startswith(sidecar_prefix.key)
    )
    if under_prefix or obj.key.lower().endswith(OWN_SUFFIXES):
        return "own_output"
    if not is_image_key(obj.key):
        return "not_an_image"
    try:
        parse_s3_uri(obj.uri)
    except InvalidInput:
        return "invalid_name"  # a bucket name S3 does not allow: nothing we could fetch
    return None


class EventIntake:
    def __init__(
        self,
        queue: EventQueue,
        params: Callable[[], CaptionParams],
        *,
        sidecar_prefix: S3Location | None = None,
        doorbell: Doorbell | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.queue = queue
        self.doorbell = doorbell or Doorbell()
        self._params = params  # read when needed: the pipeline that decides them opens with the app
        self._sidecar_prefix = sidecar_prefix
        self._metrics = metrics

    async def receive(self, body: bytes, request_id: str) -> Receipt:
        """Parses a delivery and commits its rows; ``InvalidInput`` for a body of no known format, and
        ``CatalogueUnavailable`` when nothing could be made durable (the store delivers again)."""
        parsed = parse_events(body)
        ignored = parsed.ignored
        wanted: list[ObjectVersion] = []
        for obj in parsed.created:
            reason = ignore_reason(obj, self._sidecar_prefix)
            if reason is None:
                wanted.append(obj)
            else:
                ignored[reason] += 1
        accepted = 0
        if wanted:
            enqueued = await self.queue.enqueue(wanted, self._params().key(), request_id)
            accepted, ignored["catalogued"] = enqueued.accepted, enqueued.catalogued
            self.doorbell.ring()
        self._report(request_id, accepted, +ignored, parsed.notices)
        return Receipt(accepted=accepted, ignored=sum(ignored.values()))

    def _report(self, request_id: str, accepted: int, ignored: Counter[str], notices: list[str]) -> None:
        for notice in notices:
            log.warning("request_id=%s %s", request_id, notice)
        reasons = " ".join(f"{reason}={n}" for reason, n in sorted(ignored.items()))
        log.info(
            "request_id=%s events accepted=%d ignored=%d %s", request_id, accepted, ignored.total(), reasons
        )
        if self._metrics is not None:
            if accepted:
                self._metrics.events_received.labels("accepted").inc(accepted)
            for reason, n in ignored.items():
                self._metrics.events_received.labels(reason).inc(n)
