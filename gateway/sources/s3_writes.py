"""S3 writes: whole-object puts, deletes and tag merging, for batch output and write-back.

Beside ``s3.py`` and on its client, retry policy and error mapping (``S3Source.call``), so a write reports S3
problems with the same codes as a read. The image objects themselves are never written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.errors import SourceUnavailable
from gateway.sources.s3 import S3Source
from gateway.sources.s3_uri import S3Location

if TYPE_CHECKING:
    from types_aiobotocore_s3.type_defs import TagTypeDef

MAX_TAGS = 10  # S3's limit per object; PutObjectTagging replaces the whole set


class S3Writer:
    def __init__(self, source: S3Source) -> None:
        self._source = source
        self._client = source.client

    async def put(self, location: S3Location, data: bytes, content_type: str) -> None:
        # A single PUT is atomic: readers see the old object or the new one, never half of it.
        await self._source.call(
            location,
            lambda: self._client.put_object(
                Bucket=location.bucket, Key=location.key, Body=data, ContentType=content_type
            ),
        )

    async def delete(self, location: S3Location) -> None:
        await self._source.call(
            location, lambda: self._client.delete_object(Bucket=location.bucket, Key=location.key)
        )

    async def merge_tags(self, location: S3Location, ours: dict[str, str], owned_prefix: str) -> None:
        """Adds our tags to the object's own ones; S3's call replaces the whole set, so read first.

        Tags under ``owned_prefix`` are ours from an earlier run and are replaced. The object's other tags
        always survive; ours fill what is left of S3's 10, in the order given (most useful first).
        Read-then-write is not atomic: a concurrent tagger can lose a race (documented).
        """
        current = await self._source.call(
            location, lambda: self._client.get_object_tagging(Bucket=location.bucket, Key=location.key)
        )
        kept = [t for t in current.get("TagSet", []) if not t["Key"].startswith(owned_prefix)]
        room = MAX_TAGS - len(kept)
        added: list[TagTypeDef] = [{"Key": k, "Value": v} for k, v in list(ours.items())[: max(room, 0)]]
        if not added and ours:
            raise SourceUnavailable(
                f"{location.uri} already has {len(kept)} tags of its own; S3 allows {MAX_TAGS}",
                code="s3_tags_full",
            )
        tag_set: list[TagTypeDef] = [*kept, *added]
        await self._source.call(
            location,
            lambda: self._client.put_object_tagging(
                Bucket=location.bucket, Key=location.key, Tagging={"TagSet": tag_set}
            ),
        )
