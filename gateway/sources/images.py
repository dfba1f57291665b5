"""The pipeline's fetch stage: an image's bytes from S3 or a URL, each under one of the image slots.

``MAX_CONCURRENT_IMAGES`` slots bound the originals in memory at once. A fetch takes its slot before the
first byte and hands it on with the bytes (``HeldImage``); the pipeline gives it back once they are decoded.
Bytes a caller receives itself (an upload, a base64 string) take a slot here too, through ``lease()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

from gateway.errors import GatewayBusy
from gateway.metrics import GatewayMetrics
from gateway.sources.held import HeldImage, Lease, sha256_of
from gateway.sources.s3 import S3Source
from gateway.sources.s3_uri import S3Location
from gateway.sources.url import UrlSource

SLOT_RETRY_AFTER_S = 2.0
Stage = Callable[[str], AbstractContextManager[None]]  # StageTimings.stage: times a named stage


class ImageSources:
    def __init__(
        self,
        s3: S3Source,
        urls: UrlSource | None,
        max_concurrent_images: int,
        metrics: GatewayMetrics | None = None,
        slot_wait_s: float | None = None,
    ) -> None:
        self.s3 = s3
        self.urls = urls
        self._slots = asyncio.Semaphore(max_concurrent_images)
        self._metrics = metrics
        self._slot_wait_s = slot_wait_s  # None: wait as long as it takes (batch bounds its own concurrency)

    async def lease(self) -> Lease:
        """One slot, for whatever is about to hold an original's bytes."""
        if self._slot_wait_s is None:
            await self._slots.acquire()
        else:
            try:
                async with asyncio.timeout(self._slot_wait_s):
                    await self._slots.acquire()
            except TimeoutError:
                # A client waiting longer than this is better told to come back than left hanging.
                raise GatewayBusy(
                    f"every image slot (MAX_CONCURRENT_IMAGES) has been busy for {self._slot_wait_s:g} s",
                    retry_after=SLOT_RETRY_AFTER_S,
                ) from None
        if self._metrics is not None:
            self._metrics.images_in_flight.inc()
        return Lease(self._give_back)

    def _give_back(self) -> None:
        if self._metrics is not None:
            self._metrics.images_in_flight.dec()
        self._slots.release()

    async def from_s3(self, location: S3Location, stage: Stage) -> HeldImage:
        lease = await self.lease()
        try:
            with stage("s3"):
                obj = await self.s3.fetch(location)
            return HeldImage(obj.data, await sha256_of(obj.data), lease, etag=obj.etag)
        except BaseException:
            lease.release()
            raise

    async def from_url(self, url: str, stage: Stage) -> HeldImage:
        assert self.urls is not None, "the pipeline refuses URLs when it has no URL source"
        lease = await self.lease()
        try:
            with stage("url"):
                fetched = await self.urls.fetch(url)
            return HeldImage(fetched.data, fetched.sha256, lease, fetched_url=fetched.url)
        except BaseException:
            lease.release()
            raise
