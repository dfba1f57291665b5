"""S3 through aiobotocore: the client, the retry and error policy every S3 call goes through, and reads.

Reads (this module): an image, streamed with a size cap so an oversized object is refused before it is held
whole; a HEAD for the current ETag; a listing, page by page; a small whole object (a sidecar, a batch part).
Writes (puts, deletes, tags) are ``s3_writes.py``, on the same client and policy. Retries are ours
(tenacity, the same policy as the model backends), so botocore's own are switched off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ResponseStreamingError,
)
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from gateway.errors import AccessDenied, ImageTooLarge, ObjectNotFound, SourceUnavailable
from gateway.sources.s3_uri import S3Location

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

T = TypeVar("T")
CONNECT_TIMEOUT_S = 3.0
CHUNK_BYTES = 256 * 1024
MAX_ATTEMPTS = 3
RETRY_AFTER_S = 2.0

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
}


@dataclass(frozen=True)
class S3Object:
    location: S3Location
    data: bytes
    etag: str


_TRANSIENT = (
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
    aiohttp.ClientError,
    OSError,
)


@dataclass(frozen=True)
class ListedObject:
    location: S3Location
    etag: str
    last_modified: datetime


class TransientS3Error(Exception):
    """A transient S3 failure worth another attempt."""


@asynccontextmanager
async def open_s3_client(
    *, region: str, endpoint_url: str | None, timeout_s: float, max_connections: int
) -> AsyncIterator[S3Client]:
    """An S3 client for the app's lifetime; the normal AWS credential chain applies."""
    config = AioConfig(
        signature_version="s3v4",
        connect_timeout=min(CONNECT_TIMEOUT_S, timeout_s),
        read_timeout=timeout_s,
        retries={"total_max_attempts": 1},
        max_pool_connections=max_connections,
    )
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            get_session().create_client("s3", region_name=region, endpoint_url=endpoint_url, config=config)
        )
        yield client


class S3Source:
    """Reads under the gateway's policy. ``max_bytes`` caps an image; ``read`` takes its own cap."""

    def __init__(self, client: S3Client, *, max_bytes: int, timeout_s: float, retry_base_s: float = 0.2):
        self.client = client  # shared with ``S3Writer``: one pool per process
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._retry_base_s = retry_base_s

    async def fetch(self, location: S3Location) -> S3Object:
        """An image: refused as ``image_too_large`` above ``MAX_IMAGE_BYTES``, before it is held whole."""
        return await self.call(location, lambda: self._get(location, self._max_bytes, "MAX_IMAGE_BYTES"))

    async def read(self, location: S3Location, max_bytes: int) -> bytes | None:
        """A small whole object (a sidecar, a batch part), or None when it does not exist."""
        try:
            return (
                await self.call(location, lambda: self._get(location, max_bytes, "the reader's cap"))
            ).data
        except ObjectNotFound:
            return None

    async def head_etag(self, location: S3Location) -> str:
        head = await self.call(
            location, lambda: self.client.head_object(Bucket=location.bucket, Key=location.key)
        )
        return str(head.get("ETag", "")).strip('"')

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
            return await self.call(
                where,
                lambda: self.client.list_objects_v2(
                    Bucket=bucket, Prefix=prefix, MaxKeys=page_size, ContinuationToken=token
                ),
            )
        return await self.call(
            where, lambda: self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=page_size)
        )

    async def _get(self, location: S3Location, max_bytes: int, limit: str) -> S3Object:
        response = await self.client.get_object(Bucket=location.bucket, Key=location.key)
        # Entering the body first: an oversized object is refused without reading it, and its
        # connection still goes back to the pool.
        async with response["Body"] as stream:
            _check_size(location, response.get("ContentLength"), max_bytes, limit)
            data = await _read_capped(location, stream, max_bytes, limit)
        return S3Object(location, data, str(response.get("ETag", "")).strip('"'))

    async def call(self, location: S3Location, call: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retries(
            location, call, timeout_s=self._timeout_s, retry_base_s=self._retry_base_s
        )


def _check_size(location: S3Location, length: int | None, max_bytes: int, limit: str) -> None:
    if length is not None and length > max_bytes:
        raise ImageTooLarge(
            f"{location.uri} is {length} bytes; the limit is {max_bytes} ({limit})",
            code="image_too_large",
        )


async def _read_capped(location: S3Location, stream: Any, max_bytes: int, limit: str) -> bytes:
    # The size header can be absent or wrong; the cap holds while reading too.
    buffer = bytearray()
    while chunk := await stream.read(CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > max_bytes:
            _check_size(location, len(buffer), max_bytes, limit)
    return bytes(buffer)


async def call_with_retries(
    location: S3Location, call: Callable[[], Awaitable[T]], *, timeout_s: float, retry_base_s: float
) -> T:
    """One S3 call under the gateway's policy: a timeout per attempt, capped exponential backoff with
    jitter on transient failures, S3's errors mapped to the gateway's. Every S3 call goes through here."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(MAX_ATTEMPTS),
        wait=wait_exponential(multiplier=retry_base_s, max=2.0) + wait_random(0, retry_base_s),
        retry=retry_if_exception_type(TransientS3Error),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await _call_once(location, call, timeout_s)
    except TransientS3Error as exc:
        raise SourceUnavailable(
            f"S3 is unreachable or throttling for {location.uri} after {MAX_ATTEMPTS} attempts: {exc}",
            retry_after=RETRY_AFTER_S,
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises


async def _call_once(location: S3Location, call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            return await call()
    except TimeoutError:
        raise TransientS3Error(f"no complete answer within {timeout_s:g} s") from None
    except ClientError as exc:
        raise map_client_error(location, exc) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise AccessDenied(
            f"the gateway has no usable AWS credentials to read {location.uri}; "
            "configure the AWS credential chain (environment, profile or instance role)",
            code="s3_no_credentials",
        ) from None
    except _TRANSIENT as exc:
        # A dropped connection mid-download surfaces from aiohttp, aiobotocore's transport.
        raise TransientS3Error(type(exc).__name__) from None
    except BotoCoreError as exc:
        raise SourceUnavailable(
            f"S3 client error for {location.uri}: {type(exc).__name__}", retry_after=RETRY_AFTER_S
        ) from None


def map_client_error(location: S3Location, exc: ClientError) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _NOT_FOUND or status == 404:
        what = "bucket" if code == "NoSuchBucket" else "object"
        return ObjectNotFound(f"no such {what}: {location.uri}")
    if code in _DENIED or status == 403:
        return AccessDenied(
            f"S3 refused access to {location.uri} ({code or status}): a credentials or permission "
            "problem; check the gateway's AWS credentials and the bucket policy"
        )
    if status in (408, 429) or status >= 500 or code in {"SlowDown", "Throttling", "RequestTimeout"}:
        return TransientS3Error(f"S3 answered {status} {code}")
    # A permanent refusal (wrong region, archived object, bad request): no Retry-After to invite retries.
    return SourceUnavailable(f"S3 refused the request for {location.uri}: {code or status}")
