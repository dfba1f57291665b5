"""What to caption: every image-named object under an S3 prefix, or the S3 URIs listed in a file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.errors import InvalidInput
from gateway.sources.s3 import S3Location, parse_s3_uri
from gateway.sources.s3_batch import S3Batch

# By name only: the content is checked when fetched, and a non-image is reported as a failure then.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)


@dataclass(frozen=True)
class Item:
    """One image to caption; ``etag`` is None when the source does not know it (a URI list)."""

    uri: str
    etag: str | None = None


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


async def iter_items(
    source: str, s3: S3Batch, *, modified_since: datetime | None = None, page_size: int = 1000
) -> AsyncIterator[Item]:
    if source.startswith("s3://"):
        where = parse_prefix(source)
        async for listed in s3.list(
            where.bucket, where.key, modified_since=modified_since, page_size=page_size
        ):
            if is_image_key(listed.location.key):
                yield Item(listed.location.uri, listed.etag)
        return
    for uri in _read_uri_file(Path(source)):
        yield Item(uri)


def _read_uri_file(path: Path) -> Iterator[str]:
    """One S3 URI per line, or JSONL with an ``s3_uri`` field; read lazily, blank lines and # skipped."""
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                try:
                    line = str(json.loads(line)["s3_uri"])
                except (ValueError, KeyError, TypeError):
                    raise InvalidInput(f"{path}:{number}: a JSON line needs an s3_uri") from None
            yield line
