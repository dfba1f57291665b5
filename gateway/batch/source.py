"""What to caption: every image-named object under an S3 prefix, or the S3 URIs and image URLs listed in a
file (URLs are fetched under the same rules as ``"image_url"``: README, *Images by URL*)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.errors import InvalidInput
from gateway.sources.s3 import S3Source
from gateway.sources.s3_uri import is_image_key, parse_prefix


@dataclass(frozen=True)
class Item:
    """One image to caption. ``etag`` is None when the source does not know it (a URI list); then
    ``done_etag`` is the version DEST already holds, if any, for the worker to compare with a HEAD."""

    uri: str
    etag: str | None = None
    done_etag: str | None = None

    @property
    def is_url(self) -> bool:
        return not self.uri.startswith("s3://")


async def iter_items(
    source: str, s3: S3Source, *, modified_since: datetime | None = None, page_size: int = 1000
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
    """One S3 URI or image URL per line, or JSONL with an ``s3_uri`` or ``image_url`` field; read lazily,
    blank lines and # skipped. A URL is checked when it is fetched, like any other."""
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                    line = str(record.get("s3_uri") or record["image_url"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise InvalidInput(f"{path}:{number}: a JSON line needs an s3_uri or image_url") from None
            yield line
