"""In front of the pipeline: a repeat costs no GPU, and identical concurrent requests share one computation.

A request for an object whose current ETag (a HEAD, no download) and parameters match a catalogue entry is
answered from it; anything else is computed once, however many identical requests arrive meanwhile, and
kept. The catalogue being down only turns this into the plain pipeline: captions never wait on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.catalogue import Catalogue
from gateway.errors import CatalogueUnavailable
from gateway.metrics import GatewayMetrics
from gateway.pipeline import CaptionPipeline, CaptionRequest, StageTimings
from gateway.records import CaptionLine, CaptionParams, CaptionRecord, Origin
from gateway.sources.s3_uri import parse_s3_uri

log = logging.getLogger("gateway.cache")
T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    record: CaptionRecord
    etag: str
    cached: bool


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Future[T]
    waiters: int = 0


@dataclass
class Coalescer(Generic[T]):
    """One computation per key at a time; it is cancelled only when its last waiter has gone."""

    _flights: dict[Hashable, _Flight[T]] = field(default_factory=dict)

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The computation's result, and whether this call joined one already under way."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = _Flight(asyncio.ensure_future(compute()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _: self._land(key, flight))
        flight.waiters += 1
        try:
            # Shielded: one waiter's cancellation (its client went away) must not stop the others' result.
            return await asyncio.shield(flight.task), joined
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # nobody waits for it any more: no GPU time for nobody

    def _land(self, key: Hashable, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


class CaptionService:
    """What ``POST /caption`` calls: the catalogue as a cache in front of the pipeline."""

    def __init__(
        self,
        pipeline: CaptionPipeline,
        catalogue: Catalogue,
        *,
        read_cache: bool,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.catalogue = catalogue
        self._read_cache = read_cache
        self._metrics = metrics
        self._coalescer: Coalescer[Served] = Coalescer()

    async def caption(
        self, request: CaptionRequest, *, refresh: bool = False, timings: StageTimings | None = None
    ) -> Served:
        timings = timings if timings is not None else StageTimings()
        params = self.pipeline.params_for(request)  # a bad style or language: 422 before any call
        etag = None
        if self._read_cache and not refresh and self.catalogue.available:
            with timings.stage("s3_head"):
                etag = await self.pipeline.source.head_etag(parse_s3_uri(request.s3_uri))
            hit = await self._lookup(request.s3_uri, etag, params)
            if hit is not None:
                return Served(hit, etag, cached=True)
        key = (request.s3_uri, etag, params.key())
        served, joined = await self._coalescer.run(key, lambda: self._compute(request, params, timings))
        if joined:
            self._count("coalesced")
        return served

    async def _lookup(self, s3_uri: str, etag: str, params: CaptionParams) -> CaptionRecord | None:
        try:
            entry = await self.catalogue.lookup(s3_uri, etag, params)
        except CatalogueUnavailable:
            return None  # the database said why once, when it went down; the caption goes on uncached
        self._count("hit" if entry is not None else "miss")
        return CaptionRecord(**dict(entry)) if entry is not None else None

    async def _compute(self, request: CaptionRequest, params: CaptionParams, timings: StageTimings) -> Served:
        result = await self.pipeline.caption(request, timings)
        line = CaptionLine.of(result.record(), result.etag, dict(timings.ms))
        await keep(self.catalogue, line, params, "api")
        return Served(result.record(), result.etag, cached=False)

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.cache.labels(outcome).inc()


async def keep(catalogue: Catalogue, line: CaptionLine, params: CaptionParams, source: Origin) -> int | None:
    """Stores a result; a catalogue that cannot take it is logged, never a lost caption."""
    try:
        return await catalogue.store(line, params, source)
    except CatalogueUnavailable as exc:
        log.info("caption of %s not kept in the catalogue: %s", line.s3_uri, exc.message)
        return None
