"""One queued object into one caption: the version S3 holds now, captioned once however often it was
announced, written back, then kept in the catalogue with source "event".

The order is what makes a crash cheap: the catalogue row is written last, after the write-back, so a row
there means the work is done; a worker that dies before it leaves an object the next worker captions again,
and one that dies after it leaves nothing to do (the next worker finds the row and makes no model call).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Literal

from gateway.caching import Coalescer
from gateway.catalogue import Catalogue, ObjectVersion, identity_of
from gateway.pipeline import CaptionPipeline, CaptionRequest, StageTimings
from gateway.records import CaptionLine, CaptionParams, WriteBackState
from gateway.sources.s3_uri import S3Location
from gateway.writeback import WriteBack

Done = Literal["captioned", "catalogued"]


class EventCaptioner:
    def __init__(
        self,
        pipeline: CaptionPipeline,
        catalogue: Catalogue,
        writeback: WriteBack,
        request: CaptionRequest,
        *,
        review_required: bool = False,
    ) -> None:
        self._pipeline = pipeline
        self._catalogue = catalogue
        self._writeback = writeback
        self._request = request
        self._review_required = review_required
        self._coalescer: Coalescer[None] = Coalescer()

    @cached_property
    def params(self) -> CaptionParams:
        """What the events' captions are made with (the catalogue's key); EVENTS_* were checked at start."""
        return self._pipeline.params_for(self._request)

    async def caption(self, obj: ObjectVersion, timings: StageTimings) -> Done:
        """Raises the pipeline's typed errors (``ObjectNotFound`` when the object is gone)."""
        location = S3Location(obj.bucket, obj.key)
        # The version S3 holds now, whatever the event said: an event for an overwritten version is
        # answered by captioning the current one, and its own event then finds the work done.
        with timings.stage("s3_head"):
            etag = await self._pipeline.source.head_etag(location)
        if await self._catalogue.lookup(identity_of(location.uri, etag), self.params) is not None:
            return "catalogued"
        # Two rows for one version (its event and an older one's) in hand at once make one model call.
        await self._coalescer.run((location.uri, etag), lambda: self._compute(location.uri, timings))
        return "captioned"

    async def _compute(self, uri: str, timings: StageTimings) -> None:
        result = await self._pipeline.caption(replace(self._request, s3_uri=uri), timings)
        line = CaptionLine.of(result.record(), result.etag, dict(timings.ms))
        written = await self.write_back(line)
        # Last: a row here means done (and, under REVIEW_REQUIRED, what waits for approval is in it).
        await self._catalogue.store(line, result.params, "event", write_back=written)

    async def write_back(self, line: CaptionLine) -> WriteBackState | None:
        """The one place the event path writes back (``EVENTS_WRITE_BACK``); with ``REVIEW_REQUIRED`` it
        writes nothing and the catalogue keeps the modes for the approval (``gateway/review.py``)."""
        return await self._writeback.apply_or_defer(line, defer=self._review_required)
