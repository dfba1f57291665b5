"""S3: the aiobotocore client and reads; the one module that talks to S3 for reading.

Reads (this module): an image, streamed with a size cap so an oversized object is refused before it is held
whole; a HEAD for the current ETag; a listing, page by page; a small whole object (a sidecar, a batch part).
Writes (puts, deletes, tags) are ``s3_writes.py``, on the same client. Every call goes through the retry and
error policy of ``s3_policy.py`` (tenacity, the same policy as the model backends), so botocore's own
retries are switched off.

Object bodies (every image) are read with a presigned GET on the gateway's pooled HTTP client
(``gateway.http_client``, built by the wiring), where a ``get_object`` call runs aiobotocore's whole
per-request pipeline (event hooks, endpoint rules, signing, response parsing). The URL is signed by
botocore's SigV4 query signer (~0.07 ms of CPU; ``generate_presigned_url``'s event and parameter pipeline
costs ~0.2 ms more), on the URL botocore's endpoint rules give the bucket, asked once per bucket. S3's error
answers are parsed by botocore's own parser, so they map exactly as ``get_object``'s did. Listing, HEAD,
tags and writes stay on aiobotocore.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, NoCredentialsError
from botocore.parsers import create_parser
from botocore.utils import percent_encode

from gateway.errors import ImageTooLarge, ObjectNotFound
from gateway.sources.s3_policy import call_with_retries
from gateway.sources.s3_uri import S3Location

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

T = TypeVar("T")
CONNECT_TIMEOUT_S = 3.0
CHUNK_BYTES = 256 * 1024
PRESIGN_EXPIRES_S = 300  # used at once; S3 checks the expiry when the request starts, not while it streams
ERROR_BODY_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class S3Object:
    location: S3Location
    data: bytes
    etag: str


@dataclass(frozen=True)
class S3Session:
    """The aiobotocore client and the credentials it signs with (refreshed by botocore when they expire)."""

    client: S3Client
    credentials: Any  # aiobotocore's credentials, or None when the AWS chain found none


@dataclass(frozen=True)
class ListedObject:
    location: S3Location
    etag: str
    last_modified: datetime


@asynccontextmanager
async def open_s3_client(
    *, region: str, endpoint_url: str | None, timeout_s: float, max_connections: int
) -> AsyncIterator[S3Session]:
    """An S3 client for the app's lifetime; the normal AWS credential chain applies."""
    config = AioConfig(
        signature_version="s3v4",
        connect_timeout=min(CONNECT_TIMEOUT_S, timeout_s),
        read_timeout=timeout_s,
        retries={"total_max_attempts": 1},
        max_pool_connections=max_connections,
    )
    session = get_session()
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            session.create_client("s3", region_name=region, endpoint_url=endpoint_url, config=config)
        )
        # The very object the client signs with: the session resolved it for create_client and keeps it.
        yield S3Session(client, await session.get_credentials())


class Presigner:
    """GET URLs signed by botocore's SigV4 query signer, on the bucket's URL as botocore's endpoint rules
    give it (path or virtual-host style, custom endpoint, FIPS...), asked once per bucket."""

    def __init__(self, session: S3Session) -> None:
        self._client = session.client
        self._credentials = session.credentials
        self._region = session.client.meta.region_name
        self._prefixes: dict[str, str] = {}  # bucket -> URL up to the key; one entry per bucket read

    async def url(self, location: S3Location) -> str:
        if self._credentials is None:
            raise NoCredentialsError()
        prefix = self._prefixes.get(location.bucket) or await self._prefix(location.bucket)
        # The key as botocore writes S3's {Key+} URI label.
        request = AWSRequest(method="GET", url=prefix + percent_encode(location.key, safe="/~"))
        frozen = await self._credentials.get_frozen_credentials()
        S3SigV4QueryAuth(frozen, "s3", self._region, expires=PRESIGN_EXPIRES_S).add_auth(request)
        return str(request.url)

    async def _prefix(self, bucket: str) -> str:
        sample = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "k"}
        )
        prefix = sample.split("?", 1)[0].removesuffix("k")
        self._prefixes[bucket] = prefix
        return prefix


class S3Source:
    """Reads under the gateway's policy. ``max_bytes`` caps an image; ``read`` takes its own cap."""

    def __init__(
        self,
        session: S3Session,
        http: httpx.AsyncClient,
        *,
        max_bytes: int,
        timeout_s: float,
        retry_base_s: float = 0.2,
    ) -> None:
        client = session.client
        self.client = client  # shared with ``S3Writer``: one pool per process
        self._http = http  # object bodies, by presigned GET
        self._presigner = Presigner(session)
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._retry_base_s = retry_base_s
        service = client.meta.service_model
        self._error_parser = create_parser(service.metadata["protocol"])
        shape = service.operation_model("GetObject").output_shape
        assert shape is not None  # GetObject has an output shape in every botocore release
        self._get_shape = shape
        # Buckets outside the client's region (see ``_get``): read with get_object, which follows S3's
        # region redirects; botocore signs presigned URLs with the client's region whatever it learnt.
        self._other_region: set[str] = set()

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
        if location.bucket in self._other_region or _has_dot_segment(location.key):
            return await self._get_object(location, max_bytes, limit)
        url = await self._presigner.url(location)
        async with self._http.stream("GET", url) as response:
            if response.status_code == 200:
                # Checked before reading: an oversized object is refused unread, its connection closed.
                _check_size(location, _content_length(response.headers), max_bytes, limit)
                data = await _read_capped(location, response.aiter_raw(), max_bytes, limit)
                return S3Object(location, data, response.headers.get("etag", "").strip('"'))
            if not _is_region_redirect(response):
                raise self._client_error(response.status_code, response.headers, await _error_body(response))
        # AWS: the bucket is in another region (a 301, or a 400 naming the bucket's region).
        self._other_region.add(location.bucket)
        return await self._get_object(location, max_bytes, limit)

    async def _get_object(self, location: S3Location, max_bytes: int, limit: str) -> S3Object:
        response = await self.client.get_object(Bucket=location.bucket, Key=location.key)
        # Entering the body first: an oversized object is refused without reading it, and its
        # connection still goes back to the pool.
        async with response["Body"] as stream:
            _check_size(location, response.get("ContentLength"), max_bytes, limit)
            data = await _read_capped(location, stream.iter_chunks(CHUNK_BYTES), max_bytes, limit)
        return S3Object(location, data, str(response.get("ETag", "")).strip('"'))

    def _client_error(self, status: int, headers: httpx.Headers, body: bytes) -> ClientError:
        """S3's error answer parsed as botocore parses get_object's, so ``map_client_error`` sees the same."""
        raw = {"status_code": status, "headers": dict(headers.items()), "body": body}
        parsed: Any = self._error_parser.parse(raw, self._get_shape)
        return ClientError(parsed, "GetObject")

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


async def _read_capped(
    location: S3Location, chunks: AsyncIterator[bytes], max_bytes: int, limit: str
) -> bytes:
    # The size header can be absent or wrong; the cap holds while reading too.
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) > max_bytes:
            _check_size(location, len(buffer), max_bytes, limit)
    return bytes(buffer)


def _has_dot_segment(key: str) -> bool:
    """``a/../b`` (S3 allows it): an HTTP client resolves ``..`` in a URL and would read another key."""
    return any(segment in {".", ".."} for segment in key.split("/"))


def _content_length(headers: httpx.Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _is_region_redirect(response: httpx.Response) -> bool:
    return 300 <= response.status_code < 400 or (
        response.status_code == 400 and "x-amz-bucket-region" in response.headers
    )


async def _error_body(response: httpx.Response) -> bytes:
    """An error answer's XML, bounded: a misbehaving endpoint cannot make us buffer a large body."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= ERROR_BODY_MAX_BYTES:
            break
    return bytes(body[:ERROR_BODY_MAX_BYTES])


def tls_verify() -> ssl.SSLContext | bool:
    """What botocore verifies S3's TLS with (``AWS_CA_BUNDLE`` or the profile's ``ca_bundle``), for the
    pooled client that reads object bodies; without one, the default trust store, as botocore's."""
    bundle = get_session().get_config_variable("ca_bundle")
    return ssl.create_default_context(cafile=bundle) if bundle else True
