"""In front of the pipeline: a repeat costs no GPU, and identical concurrent requests share one computation.

A request for an S3 object whose current ETag (a HEAD, no download) and parameters match a catalogue entry
is answered from it. Bytes (an upload, base64) and URLs are their own version: their SHA-256, known once
they are in memory (a URL is fetched first, since what it serves can change), is looked up before any model
is called. Anything else is computed once, however many identical requests arrive meanwhile, and kept. The
catalogue being down only turns this into the plain pipeline: captions never wait on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.catalogue import Catalogue, identity_of
from gateway.errors import CatalogueUnavailable
from gateway.metrics import GatewayMetrics
from gateway.pipeline import CaptionPipeline, CaptionRequest, StageTimings
from gateway.records import CaptionLine, CaptionParams, CaptionRecord, Origin, WriteBackState
from gateway.sources.held import HeldImage
from gateway.sources.s3_uri import parse_s3_uri

log = logging.getLogger("gateway.cache")
T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    record: CaptionRecord
    etag: str | None
    cached: bool


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Future[T]
    waiters: int = 0


@dataclass
class Coalescer(Generic[T]):
    """One computation per key at a time; it is cancelled only when its last waiter has gone."""

    _flights: dict[Hashable, _Flight[T]] = field(default_factory=dict)

    def flying(self, key: Hashable) -> bool:
        """A computation for ``key`` is under way: ``run`` would join it."""
        return key in self._flights

    async def run(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], on_done: Callable[[], None] | None = None
    ) -> tuple[T, bool]:
        """The computation's result, and whether this call joined one already under way. ``on_done`` runs
        when a computation this call started ends, however it ends (even cancelled before it began)."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = _Flight(asyncio.ensure_future(compute()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _: self._land(key, flight))
            if on_done is not None:
                flight.task.add_done_callback(lambda _: on_done())
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
        try:
            params = self.pipeline.params_for(request)  # a bad style or language: 422 before any call
            kind = self.pipeline.check_input(request)
        except BaseException:
            if request.image is not None:
                request.image.release()  # an upload refused for its fields gives its slot back at once
            raise
        if kind != "s3":
            return await self._caption_bytes(request, params, refresh, timings)
        etag = None
        if self._reading(refresh):
            with timings.stage("s3_head"):
                etag = await self.pipeline.source.head_etag(parse_s3_uri(request.s3_uri))
            hit = await self._lookup(identity_of(request.s3_uri, etag), params)
            if hit is not None:
                return Served(hit, etag, cached=True)
        key = (request.s3_uri, etag, params.key())
        served, joined = await self._coalescer.run(key, lambda: self._compute(request, params, timings))
        if joined:
            self._count("coalesced")
        return served

    async def _caption_bytes(
        self, request: CaptionRequest, params: CaptionParams, refresh: bool, timings: StageTimings
    ) -> Served:
        """An upload, base64 or a URL: the bytes first (under their image slot), then the catalogue by their
        SHA-256, then one computation per digest and params. Whoever ends up not decoding the bytes gives
        them and their slot back at once: a hit, a request joining a computation under way, a failure."""
        held = await self.pipeline.hold(request, timings)
        handed = False
        try:
            identity = identity_of(None, None, held.sha256)
            if self._reading(refresh):
                hit = await self._lookup(identity, params)
                if hit is not None:
                    return Served(_echo(hit, request, held), None, cached=True)
            key = (identity, params.key())
            handed = not self._coalescer.flying(key)  # the computation takes the bytes over, and frees them
            if not handed:
                held.release()
            served, joined = await self._coalescer.run(
                key, lambda: self._compute_held(request, held, params, timings), on_done=held.release
            )
        finally:
            if not handed:
                held.release()
        if joined:
            self._count("coalesced")
            return Served(_echo(served.record, request, held), None, cached=False)
        return served

    def _reading(self, refresh: bool) -> bool:
        return self._read_cache and not refresh and self.catalogue.available

    async def _lookup(self, identity: str, params: CaptionParams) -> CaptionRecord | None:
        try:
            entry = await self.catalogue.lookup(identity, params)
        except CatalogueUnavailable:
            return None  # the database said why once, when it went down; the caption goes on uncached
        self._count("hit" if entry is not None else "miss")
        return CaptionRecord(**dict(entry)) if entry is not None else None

    async def _compute(self, request: CaptionRequest, params: CaptionParams, timings: StageTimings) -> Served:
        result = await self.pipeline.caption(request, timings)
        return await self._kept(result.record(), result.etag, params, timings)

    async def _compute_held(
        self, request: CaptionRequest, held: HeldImage, params: CaptionParams, timings: StageTimings
    ) -> Served:
        result = await self.pipeline.caption_held(request, held, timings)
        return await self._kept(result.record(), None, params, timings)

    async def _kept(
        self, record: CaptionRecord, etag: str | None, params: CaptionParams, timings: StageTimings
    ) -> Served:
        await keep(self.catalogue, CaptionLine.of(record, etag, dict(timings.ms)), params, "api")
        return Served(record, etag, cached=False)

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.cache.labels(outcome).inc()


async def keep(
    catalogue: Catalogue,
    line: CaptionLine,
    params: CaptionParams,
    source: Origin,
    write_back: WriteBackState | None = None,
) -> int | None:
    """Stores a result; a catalogue that cannot take it is logged, never a lost caption."""
    try:
        return await catalogue.store(line, params, source, write_back=write_back)
    except CatalogueUnavailable as exc:
        what = line.s3_uri or f"sha256:{line.image_sha256}"
        if write_back is not None and write_back.status == "deferred":
            # Nobody can approve what the catalogue does not hold: say so louder than a lost cache entry.
            log.warning(
                "caption of %s not kept in the catalogue (%s): it cannot be reviewed, and nothing was "
                "written beside it (REVIEW_REQUIRED)",
                what,
                exc.message,
            )
        else:
            log.info("caption of %s not kept in the catalogue: %s", what, exc.message)
        return None


def _echo(record: CaptionRecord, request: CaptionRequest, held: HeldImage) -> CaptionRecord:
    """A result for these bytes, as this request sent them: an upload and a URL with the same bytes share
    one catalogue entry, and each is answered with its own ``image_url`` (or none)."""
    return record.model_copy(
        update={"s3_uri": None, "image_url": request.image_url, "image_sha256": held.sha256}
    )
