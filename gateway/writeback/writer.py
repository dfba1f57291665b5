"""Writes one caption beside its image in the chosen modes: a JSON sidecar, S3 object tags, an XMP sidecar."""

from __future__ import annotations

import json
from collections.abc import Iterable

from gateway.records import CaptionLine
from gateway.sources.s3 import S3Source
from gateway.sources.s3_uri import S3Location, parse_s3_uri
from gateway.sources.s3_writes import S3Writer
from gateway.writeback.tags import TAG_PREFIX, tags_for
from gateway.writeback.xmp import build_xmp

MODES = ("sidecar", "tags", "xmp")
SIDECAR_MAX_BYTES = 16 * 1024 * 1024  # an existing XMP sidecar read for merging; real ones are a few KB


def parse_modes(text: str) -> frozenset[str]:
    modes = frozenset(m.strip() for m in text.split(",") if m.strip())
    unknown = modes - set(MODES)
    if unknown:
        raise ValueError(f"unknown --write-back {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    return modes


class WriteBack:
    def __init__(
        self,
        source: S3Source,
        writer: S3Writer,
        modes: Iterable[str],
        *,
        sidecar_prefix: S3Location | None = None,
        language: str | None = None,
    ) -> None:
        self._source = source
        self._writer = writer
        self.modes = frozenset(modes)
        self._sidecar_root = sidecar_prefix
        self._language = language

    def sidecar_location(self, image: S3Location) -> S3Location:
        if self._sidecar_root is None:
            return S3Location(image.bucket, image.key + ".json")
        return S3Location(self._sidecar_root.bucket, self._sidecar_root.key + image.key + ".json")

    async def apply(self, line: CaptionLine) -> None:
        """Runs before the line reaches DEST, so a line in DEST means its write-back is done too."""
        image = parse_s3_uri(line.s3_uri)
        if "sidecar" in self.modes:
            body = json.dumps(line.model_dump(exclude_none=True), ensure_ascii=False, indent=2)
            await self._writer.put(self.sidecar_location(image), body.encode("utf-8"), "application/json")
        if "xmp" in self.modes:
            # KEY.xmp (the full key plus .xmp), as digiKam and darktable name sidecars.
            location = S3Location(image.bucket, image.key + ".xmp")
            existing = await self._source.read(location, SIDECAR_MAX_BYTES)
            xmp = build_xmp(line.caption, line.keywords or [], language=self._language, existing=existing)
            await self._writer.put(location, xmp, "application/rdf+xml")
        if "tags" in self.modes:
            await self._writer.merge_tags(image, tags_for(line), TAG_PREFIX)
