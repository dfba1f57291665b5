"""The policy every S3 call goes through: a timeout per attempt, retries on transient failures, and S3's
errors mapped to the gateway's. No I/O of its own: ``s3.py`` (reads) and ``s3_writes.py`` (writes) pass
their calls in, whether aiobotocore calls or presigned GETs on the pooled HTTP client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import httpx
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

from gateway.errors import AccessDenied, ObjectNotFound, SourceUnavailable
from gateway.sources.s3_uri import S3Location

T = TypeVar("T")
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

_TRANSIENT = (
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
    aiohttp.ClientError,
    httpx.TransportError,
    OSError,
)


class TransientS3Error(Exception):
    """A transient S3 failure worth another attempt."""


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
        # A dropped connection mid-download surfaces from aiohttp (aiobotocore's transport) or httpx.
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
