"""Previews for the review page: an S3 image as a small JPEG, with an ETag that names the object's version.

No HTTP here (``api/thumbnails.py`` serves it). A preview takes one of the pipeline's image slots for its
download and decode, so previews and captions together never hold more than ``MAX_CONCURRENT_IMAGES``
images in memory; the object is refused over ``MAX_IMAGE_BYTES`` and ``MAX_IMAGE_PIXELS`` like a caption's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.pipeline import CaptionPipeline, StageTimings
from gateway.sources.s3_uri import parse_s3_uri

MAX_SIZE = 512
DEFAULT_SIZE = 256
FORMAT_VERSION = "1"  # bump when previews change (quality, colour handling): browsers fetch them again


@dataclass(frozen=True)
class Thumbnail:
    etag: str  # quoted, as the ETag header carries it
    jpeg: bytes | None  # None: the client's copy is current (304)


def thumbnail_etag(object_etag: str, size: int) -> str:
    """Opaque, and different for every object version and size."""
    digest = hashlib.sha256(f"{object_etag}:{size}:{FORMAT_VERSION}".encode()).hexdigest()[:32]
    return f'"{digest}"'


def matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison: any listed tag, with or without ``W/``, or ``*``."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


class Thumbnails:
    def __init__(self, pipeline: CaptionPipeline) -> None:
        self._pipeline = pipeline

    async def get(self, s3_uri: str, size: int, if_none_match: str | None = None) -> Thumbnail:
        location = parse_s3_uri(s3_uri)
        source = self._pipeline.source
        if if_none_match:
            # A HEAD answers a revalidation without downloading or decoding anything.
            etag = thumbnail_etag(await source.head_etag(location), size)
            if matches(if_none_match, etag):
                return Thumbnail(etag, None)
        # Under one of the pipeline's image slots, like a caption: previews never hold more originals at once.
        held = await self._pipeline.images.from_s3(location, StageTimings().stage)
        try:
            jpeg = await self._pipeline.preparer.thumbnail(held.data, size)
        finally:
            held.release()
        return Thumbnail(thumbnail_etag(held.etag or "", size), jpeg)
