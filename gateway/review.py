"""Review: a person's edits and decisions on catalogue entries, and the write-back an approval triggers.

No HTTP here (``api/review.py`` serves it). An approval writes the approved text (the person's edit where
there is one) with the batch command's write-back (``gateway/writeback``): the modes of ``REVIEW_WRITE_BACK``
plus whatever was already written beside that image or deferred to approval (``REVIEW_REQUIRED``), so a
sidecar written before the edit never keeps the model's old text. What happened is recorded on the entry;
a failure stays there until a retry or a new approval succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.catalogue import Catalogue, ReviewStore
from gateway.errors import GatewayError, ReviewConflict
from gateway.records import CatalogueEntry, Decision, WriteBackState, WriteBackStatus
from gateway.settings import Settings
from gateway.sources.s3 import S3Source
from gateway.sources.s3_writes import S3Writer
from gateway.writeback import WriteBack, WriteBackConfig

log = logging.getLogger("gateway.review")
WRITE_BACK_CONCURRENCY = 8  # a bulk approval of a page writes this many entries at once


class ReviewService:
    def __init__(self, catalogue: Catalogue, source: S3Source, writer: S3Writer, settings: Settings) -> None:
        self.catalogue = catalogue
        self._store = ReviewStore(catalogue.database)
        self._source = source
        self._writer = writer
        self._settings = settings  # XMP_FIELDS and XMP_NAME, as batch writes them
        self.write_back = settings.review_write_back_modes
        self._writing = asyncio.Semaphore(WRITE_BACK_CONCURRENCY)
        # One writer per (modes, language), reused: a writer guards the stem-named XMP sidecars it is
        # writing (XMP_NAME=stem), so two approvals at once cannot both claim IMG_1.xmp.
        self._writers: dict[tuple[frozenset[str], str], WriteBack] = {}

    async def edit(
        self, caption_id: int, edits: Mapping[str, Any], decision: Decision | None = None
    ) -> CatalogueEntry:
        return await self._after(await self._store.edit(caption_id, edits, decision))

    async def decide(self, ids: Sequence[int], decision: Decision) -> list[CatalogueEntry]:
        entries = await self._store.decide(ids, decision)
        return list(await asyncio.gather(*(self._after(entry) for entry in entries)))

    async def retry_write_back(self, caption_id: int) -> CatalogueEntry:
        entry = await self.catalogue.get(caption_id)
        if entry.status != "approved":
            raise ReviewConflict(
                f"caption {caption_id} is {entry.status}: only an approved caption is written back",
                code="caption_not_approved",
            )
        if not self.modes_for(entry):
            raise ReviewConflict(
                "nothing to write back: REVIEW_WRITE_BACK is empty and nothing was written for this image",
                code="nothing_to_write_back",
            )
        return await self._write(entry)

    def modes_for(self, entry: CatalogueEntry) -> frozenset[str]:
        earlier = entry.write_back.modes if entry.write_back is not None else []
        return self.write_back | frozenset(earlier)

    async def _after(self, entry: CatalogueEntry) -> CatalogueEntry:
        if entry.status == "approved" and self.modes_for(entry):
            return await self._write(entry)
        return entry

    async def _write(self, entry: CatalogueEntry) -> CatalogueEntry:
        modes = self.modes_for(entry)
        writer = self._writer_for(modes, entry.params.language)
        async with self._writing:
            try:
                await writer.apply(entry.approved_line())
            except GatewayError as exc:
                log.warning("write-back of caption %d (%s) failed: %s", entry.id, entry.s3_uri, exc.code)
                state = _state("failed", modes, f"{exc.code}: {exc.message}")
            else:
                state = _state("done", modes)
        return await self._store.record_write_back(entry.id, state)

    def _writer_for(self, modes: frozenset[str], language: str) -> WriteBack:
        key = (modes, language)
        if key not in self._writers:
            config = WriteBackConfig.from_settings(self._settings, modes, language=language)
            self._writers[key] = WriteBack(self._source, self._writer, config)
        return self._writers[key]


def _state(status: WriteBackStatus, modes: frozenset[str], error: str | None = None) -> WriteBackState:
    return WriteBackState(status=status, modes=sorted(modes), at=datetime.now(UTC), error=error)
