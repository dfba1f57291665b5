"""S3 locations and names: URIs and prefixes parsed and checked, which keys name images. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import InvalidInput
from gateway.text import quoted

# Bucket names per S3's rules (3-63 chars, lower-case, digits, dots, hyphens); keys are checked below.
_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$", re.DOTALL)
# C0 and C1 controls and DEL: S3 stores them, but clients, proxies and logs mangle them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_KEY_BYTES = 1024  # S3's own limit, in UTF-8 bytes
# By name only: the content is checked when fetched, and a non-image is reported as a failure then.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Location:
    match = _URI.match(uri.strip()) if isinstance(uri, str) else None
    if match is None:
        raise InvalidInput(
            f"not a valid S3 URI: {quoted(uri)}; expected s3://bucket/key", code="invalid_s3_uri"
        )
    check_key(match["key"], uri)
    return S3Location(match["bucket"], match["key"])


def check_key(key: str, uri: str) -> None:
    """Refuses keys S3 clients do not send as written: HTTP clients resolve ``.`` and ``..`` segments
    (``a/../b.jpg`` would read ``b.jpg``), control characters break signing and logs, and S3 caps keys
    at 1,024 UTF-8 bytes. Such a key is the request's fault, never an S3 outage."""
    problem = _key_problem(key)
    if problem:
        raise InvalidInput(f"not a valid S3 key in {quoted(uri)}: {problem}", code="invalid_s3_uri")


def _key_problem(key: str) -> str | None:
    if any(segment in (".", "..") for segment in key.split("/")):
        return "'.' and '..' path segments are not allowed"
    if _CONTROL.search(key):
        return "control characters are not allowed"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate)"
    if size > MAX_KEY_BYTES:
        return f"the key is {size} bytes; S3 allows {MAX_KEY_BYTES}"
    return None


def is_image_key(key: str) -> bool:
    dot = key.rfind(".")
    return dot > key.rfind("/") and key[dot:].lower() in IMAGE_EXTENSIONS


def parse_prefix(uri: str) -> S3Location:
    """``s3://bucket/prefix/`` (the prefix may be empty: the whole bucket)."""
    if uri.startswith("s3://") and "/" not in uri[5:]:
        uri += "/"
    bucket, _, prefix = uri[5:].partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise InvalidInput(
            f"not an S3 prefix: {quoted(uri)}; expected s3://bucket/prefix/", code="invalid_s3_uri"
        )
    parse_s3_uri(f"s3://{bucket}/x")  # validates the bucket name
    if prefix:
        check_key(prefix, uri)
    return S3Location(bucket, prefix)
