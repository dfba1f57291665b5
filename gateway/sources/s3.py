"""S3 reads: the only module that talks to S3 (aiobotocore).

One GET per image, streamed with a size cap so an oversized object is refused before it is held whole.
Retries are ours (tenacity, the same policy as the model backends), so botocore's own are switched off.

The GET itself is cheap on purpose (issue 5: the gateway's CPU per request is a budget). A full
``get_object`` through aiobotocore costs ~3 ms of CPU (event hooks, endpoint rules, signing, response
parsing, checksums); presigning the same request with the same client (~0.4 ms: botocore still resolves
the endpoint, addressing style, region and credentials) and sending it on a plain pooled aiohttp session
(~0.3 ms) does the same GET for a quarter of that. Any answer but 200 goes back through ``get_object``,
so errors (404, 403, region redirects) are mapped exactly as before; 408, 429 and 5xx are retried. When
the environment sets a proxy, every GET goes through ``get_object``, which knows botocore's proxy rules.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
import weakref
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from yarl import URL

from gateway.errors import AccessDenied, ImageTooLarge, InvalidInput, ObjectNotFound, SourceUnavailable
from gateway.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

CONNECT_TIMEOUT_S = 3.0
CHUNK_BYTES = 256 * 1024
PRESIGN_EXPIRES_S = 300
KEEPALIVE_S = 4.0
MAX_ATTEMPTS = 3
RETRY_AFTER_S = 2.0

# Bucket names per S3's rules (3-63 chars, lower-case, digits, dots, hyphens); keys are anything non-empty.
_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")
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
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class S3Object:
    location: S3Location
    data: bytes
    etag: str
    content_type: str | None


class _Retryable(Exception):
    """Internal marker: a transient S3 failure worth another attempt."""


def parse_s3_uri(uri: str) -> S3Location:
    match = _URI.match(uri.strip()) if isinstance(uri, str) else None
    if match is None:
        raise InvalidInput(f"not a valid S3 URI: {uri!r}; expected s3://bucket/key", code="invalid_s3_uri")
    return S3Location(match["bucket"], match["key"])


def _client_config(settings: Settings) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        connect_timeout=min(CONNECT_TIMEOUT_S, settings.s3_timeout_s),
        read_timeout=settings.s3_timeout_s,
        retries={"total_max_attempts": 1},
        max_pool_connections=settings.max_concurrency,
    )


# The pooled session each client's presigned GETs go through, owned by ``open_s3_client``.
_GET_SESSIONS: weakref.WeakKeyDictionary[Any, aiohttp.ClientSession] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def open_s3_client(settings: Settings) -> AsyncIterator[S3Client]:
    """An S3 client for the app's lifetime; the normal AWS credential chain applies."""
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                region_name=settings.aws_region,
                endpoint_url=settings.s3_endpoint_url,
                config=_client_config(settings),
            )
        )
        if urllib.request.getproxies():
            yield client  # proxied: get_object only
            return
        http = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=settings.max_concurrency, keepalive_timeout=KEEPALIVE_S),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=min(CONNECT_TIMEOUT_S, settings.s3_timeout_s)
                ),
                auto_decompress=False,  # the object's bytes as stored, as get_object returns them
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        )
        _GET_SESSIONS[client] = http
        try:
            yield client
        finally:
            _GET_SESSIONS.pop(client, None)


class S3Source:
    def __init__(self, client: S3Client, *, max_bytes: int, timeout_s: float, retry_base_s: float = 0.2):
        self._client = client
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._retry_base_s = retry_base_s

    async def fetch(self, location: S3Location) -> S3Object:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(MAX_ATTEMPTS),
            wait=wait_exponential(multiplier=self._retry_base_s, max=2.0)
            + wait_random(0, self._retry_base_s),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._fetch_once(location)
        except _Retryable as exc:
            raise SourceUnavailable(
                f"S3 is unreachable or throttling for {location.uri} after {MAX_ATTEMPTS} attempts: {exc}",
                retry_after=RETRY_AFTER_S,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    async def _fetch_once(self, location: S3Location) -> S3Object:
        try:
            http = _GET_SESSIONS.get(self._client)
            if http is not None:
                found = await self._fetch_presigned(http, location)
                if found is not None:
                    return found
            return await self._fetch_sdk(location)
        except TimeoutError:
            raise _Retryable(f"no complete answer within {self._timeout_s:g} s") from None
        except ClientError as exc:
            raise _client_error(location, exc) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise AccessDenied(
                f"the gateway has no usable AWS credentials to read {location.uri}; "
                "configure the AWS credential chain (environment, profile or instance role)",
                code="s3_no_credentials",
            ) from None
        except (ConnectionError, HTTPClientError, OSError, aiohttp.ClientError) as exc:
            raise _Retryable(type(exc).__name__) from None
        except BotoCoreError as exc:
            raise SourceUnavailable(f"S3 client error for {location.uri}: {type(exc).__name__}") from None

    async def _fetch_presigned(self, http: aiohttp.ClientSession, location: S3Location) -> S3Object | None:
        """The object, or None when S3 answered anything but 200 (then ``get_object`` maps the error)."""
        params = {"Bucket": location.bucket, "Key": location.key}
        url = await self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=PRESIGN_EXPIRES_S
        )
        async with asyncio.timeout(self._timeout_s):
            # encoded=True: the URL is signed as botocore quoted it; re-quoting would break the signature.
            async with http.get(URL(url, encoded=True), allow_redirects=False) as response:
                if response.status in (408, 429) or response.status >= 500:
                    raise _Retryable(f"S3 answered {response.status}")
                if response.status != 200:
                    return None
                self._check_size(location, response.content_length)
                if response.content_length is not None:
                    data = await response.read()  # framed by Content-Length, which is within the cap
                else:
                    data = await self._read_capped_chunks(location, response.content)
                etag = response.headers.get("ETag", "").strip('"')
                return S3Object(location, data, etag, response.headers.get("Content-Type"))

    async def _fetch_sdk(self, location: S3Location) -> S3Object:
        async with asyncio.timeout(self._timeout_s):
            response = await self._client.get_object(Bucket=location.bucket, Key=location.key)
            self._check_size(location, response.get("ContentLength"))
            data = await self._read_capped(location, response["Body"])
        return S3Object(location, data, str(response.get("ETag", "")).strip('"'), response.get("ContentType"))

    def _check_size(self, location: S3Location, length: int | None) -> None:
        if length is not None and length > self._max_bytes:
            raise ImageTooLarge(
                f"{location.uri} is {length} bytes; the limit is {self._max_bytes} (MAX_IMAGE_BYTES)",
                code="image_too_large",
            )

    async def _read_capped(self, location: S3Location, body: Any) -> bytes:
        # The size header can be absent or wrong; the cap holds while reading too.
        buffer = bytearray()
        async with body as stream:
            while chunk := await stream.read(CHUNK_BYTES):
                buffer += chunk
                if len(buffer) > self._max_bytes:
                    self._check_size(location, len(buffer))
        return bytes(buffer)

    async def _read_capped_chunks(self, location: S3Location, stream: aiohttp.StreamReader) -> bytes:
        buffer = bytearray()
        async for chunk in stream.iter_chunked(CHUNK_BYTES):
            buffer += chunk
            if len(buffer) > self._max_bytes:
                self._check_size(location, len(buffer))
        return bytes(buffer)


def _client_error(location: S3Location, exc: ClientError) -> Exception:
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
        return _Retryable(f"S3 answered {status} {code}")
    return SourceUnavailable(f"S3 refused the request for {location.uri}: {code or status}")
