"""Writes one caption beside its image in the chosen modes: a JSON sidecar, S3 object tags, an XMP sidecar.

Configured once (``WriteBackConfig.from_settings``: ``XMP_FIELDS``, ``XMP_NAME``) with per-run overrides
(batch's ``--write-back``, ``--xmp-name``...), so batch, the event workers and review approvals write the
same files the same way.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.errors import InvalidInput, XmpNameCollision
from gateway.records import CaptionLine, WriteBackState
from gateway.settings import WRITE_BACK_MODES, XMP_FIELD_NAMES, Settings, XmpName
from gateway.sources.s3 import S3Source
from gateway.sources.s3_uri import S3Location, parse_s3_uri
from gateway.sources.s3_writes import S3Writer
from gateway.writeback.tags import TAG_PREFIX, tags_for
from gateway.writeback.xmp import XmpContent, build_xmp, parse_xmp, source_image

MODES = WRITE_BACK_MODES
XMP_NAMES: tuple[XmpName, ...] = ("full", "stem")
SIDECAR_MAX_BYTES = 16 * 1024 * 1024  # an existing XMP sidecar read for merging; real ones are a few KB


def parse_modes(text: str) -> frozenset[str]:
    modes = frozenset(m.strip() for m in text.split(",") if m.strip())
    unknown = modes - set(MODES)
    if unknown:
        raise ValueError(f"unknown --write-back {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    return modes


def xmp_location(image: S3Location, naming: XmpName) -> S3Location:
    """``full``: KEY.xmp (digiKam, darktable); ``stem``: the extension replaced (Lightroom, Capture One)."""
    if naming == "stem":
        stem, extension = posixpath.splitext(image.key)
        if extension and not stem.endswith("/"):
            return S3Location(image.bucket, stem + ".xmp")
    return S3Location(image.bucket, image.key + ".xmp")


@dataclass(frozen=True)
class WriteBackConfig:
    modes: frozenset[str] = frozenset()
    sidecar_prefix: S3Location | None = None
    language: str | None = None
    xmp_name: XmpName = "full"
    xmp_fields: frozenset[str] = frozenset(XMP_FIELD_NAMES)

    @classmethod
    def from_settings(
        cls, settings: Settings, modes: Iterable[str], *, xmp_name: XmpName | None = None, **overrides: object
    ) -> WriteBackConfig:
        """The settings' defaults (XMP_FIELDS, XMP_NAME), with a caller's overrides (batch flags)."""
        return cls(
            modes=frozenset(modes),
            xmp_name=xmp_name or settings.xmp_name,
            xmp_fields=settings.xmp_field_set,
            **overrides,  # type: ignore[arg-type]
        )


@dataclass
class _Claims:
    """Locks on the stem-named sidecars being written now, so two images of one stem cannot both pass
    the check and both write (the check reads what the other wrote). Entries last only while in use."""

    locks: dict[S3Location, asyncio.Lock] = field(default_factory=dict)
    users: dict[S3Location, int] = field(default_factory=dict)

    @asynccontextmanager
    async def hold(self, location: S3Location) -> AsyncIterator[None]:
        lock = self.locks.setdefault(location, asyncio.Lock())
        self.users[location] = self.users.get(location, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self.users[location] -= 1
            if not self.users[location]:
                del self.users[location], self.locks[location]


class WriteBack:
    def __init__(self, source: S3Source, writer: S3Writer, config: WriteBackConfig) -> None:
        self._source = source
        self._writer = writer
        self.config = config
        self.modes = config.modes
        self._claims = _Claims()

    def sidecar_location(self, image: S3Location) -> S3Location:
        root = self.config.sidecar_prefix
        if root is None:
            return S3Location(image.bucket, image.key + ".json")
        return S3Location(root.bucket, root.key + image.key + ".json")

    async def apply(self, line: CaptionLine) -> None:
        """Runs before the line reaches DEST, so a line in DEST means its write-back is done too.

        The XMP sidecar goes first: a stem-name collision is refused before anything else is written."""
        if not self.modes:
            return
        if not line.s3_uri:
            raise InvalidInput(
                "write-back writes beside an S3 object; an image from a URL has none (leave --write-back out "
                "for URL lists)",
                code="write_back_needs_s3",
            )
        image = parse_s3_uri(line.s3_uri)
        if "xmp" in self.modes:
            await self._xmp(image, line)
        if "sidecar" in self.modes:
            body = json.dumps(line.model_dump(exclude_none=True), ensure_ascii=False, indent=2)
            await self._writer.put(self.sidecar_location(image), body.encode("utf-8"), "application/json")
        if "tags" in self.modes:
            await self._writer.merge_tags(image, tags_for(line), TAG_PREFIX)

    async def apply_or_defer(self, line: CaptionLine, *, defer: bool) -> WriteBackState | None:
        """What a producer (batch, the event workers) does with a new caption: writes it now, or with
        ``REVIEW_REQUIRED`` (``defer``) writes nothing and says which modes wait for a person's approval.
        The catalogue keeps the answer beside the entry; None when no mode is on."""
        modes = sorted(self.modes)
        if not modes:
            return None
        if defer:
            return WriteBackState(status="deferred", modes=modes)
        await self.apply(line)
        return WriteBackState(status="done", modes=modes, at=datetime.now(UTC))

    async def _xmp(self, image: S3Location, line: CaptionLine) -> None:
        location = xmp_location(image, self.config.xmp_name)
        name = posixpath.basename(image.key)
        content = XmpContent(
            caption=line.caption,
            keywords=line.keywords or [],
            alt_text=line.alt_text,
            headline=line.headline,
            language=self.config.language or "en",
            source_image=name,
        )
        async with self._claims.hold(location):
            existing = await self._source.read(location, SIDECAR_MAX_BYTES)
            if self.config.xmp_name == "stem" and existing:
                owner = source_image(parse_xmp(existing))
                if owner is not None and owner != name:
                    raise XmpNameCollision(
                        f"{location.uri} already describes {owner}; {name} has the same stem and would "
                        "overwrite it (use --xmp-name full, or XMP_NAME=full, for KEY.xmp sidecars)"
                    )
            xmp = build_xmp(content, self.config.xmp_fields, existing)
            await self._writer.put(location, xmp, "application/rdf+xml")
