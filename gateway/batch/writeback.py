"""Write-back beside the image: a JSON sidecar, S3 object tags, an XMP sidecar. Never the image itself."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.batch.source import parse_prefix
from gateway.batch.xmp import build_xmp
from gateway.sources.s3 import S3Location, parse_s3_uri
from gateway.sources.s3_batch import S3Batch

MODES = ("sidecar", "tags", "xmp")
TAG_PREFIX = "florence:"
TAG_VALUE_MAX = 256
# The characters AWS documents for tag values; anything else (commas, quotes) becomes a space.
_TAG_UNSAFE = re.compile(r"[^\w +\-=.:/@]+")


def parse_modes(text: str) -> frozenset[str]:
    modes = frozenset(m.strip() for m in text.split(",") if m.strip())
    unknown = modes - set(MODES)
    if unknown:
        raise ValueError(f"unknown --write-back {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    return modes


def tag_value(text: str) -> str:
    clean = " ".join(_TAG_UNSAFE.sub(" ", text).split())
    if len(clean) <= TAG_VALUE_MAX:
        return clean
    cut = clean[: TAG_VALUE_MAX - 3]
    # "..." and not "…": AWS allows only letters, digits, spaces and + - = . _ : / @ in tag values.
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."


def tags_for(record: dict[str, Any], now: datetime | None = None) -> dict[str, str]:
    """Six tags, most useful first, so an object already carrying 5+ tags of its own keeps the best ones."""
    models = record.get("models") or {}
    return {
        f"{TAG_PREFIX}caption": tag_value(str(record["caption"])),
        f"{TAG_PREFIX}keywords": tag_value(" / ".join(record.get("keywords") or [])),
        f"{TAG_PREFIX}colors": tag_value(" / ".join(record.get("colors") or [])),
        f"{TAG_PREFIX}model": tag_value(str(models.get("enhancer") or models.get("vlm") or "")),
        f"{TAG_PREFIX}etag": tag_value(str(record.get("etag", ""))),
        f"{TAG_PREFIX}captioned-at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class WriteBack:
    def __init__(
        self,
        s3: S3Batch,
        modes: Iterable[str],
        *,
        sidecar_prefix: str | None = None,
        language: str | None = None,
    ) -> None:
        self._s3 = s3
        self.modes = frozenset(modes)
        self._sidecar_root = parse_prefix(sidecar_prefix) if sidecar_prefix else None
        self._language = language

    def sidecar_location(self, image: S3Location) -> S3Location:
        if self._sidecar_root is None:
            return S3Location(image.bucket, image.key + ".json")
        return S3Location(self._sidecar_root.bucket, self._sidecar_root.key + image.key + ".json")

    async def apply(self, record: dict[str, Any]) -> None:
        """Runs before the line reaches DEST, so a line in DEST means its write-back is done too."""
        image = parse_s3_uri(str(record["s3_uri"]))
        if "sidecar" in self.modes:
            body = json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8")
            await self._s3.put(self.sidecar_location(image), body, "application/json")
        if "xmp" in self.modes:
            # KEY.xmp (the full key plus .xmp), as digiKam and darktable name sidecars.
            location = S3Location(image.bucket, image.key + ".xmp")
            existing = await self._s3.get(location)
            xmp = build_xmp(
                str(record["caption"]),
                list(record.get("keywords") or []),
                language=self._language,
                existing=existing,
            )
            await self._s3.put(location, xmp, "application/rdf+xml")
        if "tags" in self.modes:
            await self._s3.merge_tags(image, tags_for(record), TAG_PREFIX)
