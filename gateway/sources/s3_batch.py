"""S3 calls of the batch command: streamed listing, whole-object puts and gets, tag merging.

Lives beside ``s3.py`` (the one place that talks to S3) and shares its client, retry policy and error
mapping, so a batch run reports S3 problems with the same codes as ``POST /caption``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import ObjectNotFound, SourceUnavailable
from gateway.sources.s3 import S3Location, call_with_retries

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import TagTypeDef

T = TypeVar("T")
MAX_TAGS = 10  # S3's limit per object; PutObjectTagging replaces the whole set


@dataclass(frozen=True)
class ListedObject:
    location: S3Location
    etag: str
    last_modified: datetime


class S3Batch:
    def __init__(self, client: S3Client, *, timeout_s: float, retry_base_s: float = 0.2) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._retry_base_s = retry_base_s

    async def list(
        self, bucket: str, prefix: str, *, modified_since: datetime | None = None, page_size: int = 1000
    ) -> AsyncIterator[ListedObject]:
        """One page at a time: a 5-million-key prefix never sits in memory."""
        token: str | None = None
        while True:
            page = await self._page(bucket, prefix, token, page_size)
            for entry in page.get("Contents", []):
                listed = ListedObject(
                    S3Location(bucket, entry["Key"]),
                    str(entry.get("ETag", "")).strip('"'),
                    entry["LastModified"],
                )
                if modified_since is None or listed.last_modified > modified_since:
                    yield listed
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def _page(self, bucket: str, prefix: str, token: str | None, page_size: int) -> Any:
        where = S3Location(bucket, prefix or "*")
        if token:
            return await self._call(
                where,
                lambda: self._client.list_objects_v2(
                    Bucket=bucket, Prefix=prefix, MaxKeys=page_size, ContinuationToken=token
                ),
            )
        return await self._call(
            where, lambda: self._client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=page_size)
        )

    async def head_etag(self, location: S3Location) -> str:
        head = await self._call(
            location, lambda: self._client.head_object(Bucket=location.bucket, Key=location.key)
        )
        return str(head.get("ETag", "")).strip('"')

    async def get(self, location: S3Location) -> bytes | None:
        """The whole object, or None when it does not exist (a fresh sidecar, a first part)."""

        async def read() -> bytes:
            response = await self._client.get_object(Bucket=location.bucket, Key=location.key)
            async with response["Body"] as stream:
                return await stream.read()

        try:
            return await self._call(location, read)
        except ObjectNotFound:
            return None

    async def put(self, location: S3Location, data: bytes, content_type: str) -> None:
        # A single PUT is atomic: readers see the old object or the new one, never half of it.
        await self._call(
            location,
            lambda: self._client.put_object(
                Bucket=location.bucket, Key=location.key, Body=data, ContentType=content_type
            ),
        )

    async def delete(self, location: S3Location) -> None:
        await self._call(
            location, lambda: self._client.delete_object(Bucket=location.bucket, Key=location.key)
        )

    async def merge_tags(self, location: S3Location, ours: dict[str, str], owned_prefix: str) -> None:
        """Adds our tags to the object's own ones; S3's call replaces the whole set, so read first.

        Tags under ``owned_prefix`` are ours from an earlier run and are replaced. The object's other tags
        always survive; ours fill what is left of S3's 10, in the order given (most useful first).
        Read-then-write is not atomic: a concurrent tagger can lose a race (documented).
        """
        current = await self._call(
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
        await self._call(
            location,
            lambda: self._client.put_object_tagging(
                Bucket=location.bucket, Key=location.key, Tagging={"TagSet": tag_set}
            ),
        )

    async def _call(self, location: S3Location, call: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retries(
            location, call, timeout_s=self._timeout_s, retry_base_s=self._retry_base_s
        )
