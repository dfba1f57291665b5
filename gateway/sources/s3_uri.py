"""S3 locations and names: URIs and prefixes parsed and checked, which keys name images. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import InvalidInput

# Bucket names per S3's rules (3-63 chars, lower-case, digits, dots, hyphens); keys are anything non-empty.
_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")
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
        raise InvalidInput(f"not a valid S3 URI: {uri!r}; expected s3://bucket/key", code="invalid_s3_uri")
    return S3Location(match["bucket"], match["key"])


def is_image_key(key: str) -> bool:
    dot = key.rfind(".")
    return dot > key.rfind("/") and key[dot:].lower() in IMAGE_EXTENSIONS


def parse_prefix(uri: str) -> S3Location:
    """``s3://bucket/prefix/`` (the prefix may be empty: the whole bucket)."""
    if uri.startswith("s3://") and "/" not in uri[5:]:
        uri += "/"
    bucket, _, prefix = uri[5:].partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise InvalidInput(f"not an S3 prefix: {uri!r}; expected s3://bucket/prefix/", code="invalid_s3_uri")
    parse_s3_uri(f"s3://{bucket}/x")  # validates the bucket name
    return S3Location(bucket, prefix)
